// BullMQ's unit beside redroute's lifecycle (benchmarks/peers_bench.py runs this):
// Queue.add -> a Worker processes the job -> the job completes, with BullMQ's
// defaults (completed jobs kept), as a new user would write it.
//
//   NODE_PATH=<cache>/node_modules node bullmq_bench.cjs REDIS_URL UNITS CONCURRENCY
//
// `concurrency` producers add jobs while a Worker of `concurrency` slots
// processes them. After a warm-up job (connections made, scripts loaded) the
// Redis counters are reset; the run ends when the last job has completed.
// Prints one JSON object: units, seconds, the redis-server process's CPU
// seconds over the units (INFO cpu) and the commands it ran (INFO commandstats).
"use strict";

const { Queue, Worker } = require("bullmq");
const IORedis = require("ioredis");

function infoFields(text) {
  const out = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

async function redisCpu(admin) {
  const f = infoFields(await admin.info("cpu"));
  return parseFloat(f.used_cpu_user) + parseFloat(f.used_cpu_sys);
}

async function main() {
  const [url, unitsArg, concurrencyArg] = process.argv.slice(2);
  const units = parseInt(unitsArg, 10);
  const concurrency = parseInt(concurrencyArg, 10);
  const u = new URL(url);
  const connection = { host: u.hostname, port: parseInt(u.port, 10), maxRetriesPerRequest: null };
  const admin = new IORedis(connection);
  const queue = new Queue("bench", { connection });
  let completed = 0;
  let target = 1;
  let finish;
  let done = new Promise((resolve) => { finish = resolve; });
  let failure = null;
  const worker = new Worker("bench", async () => 1, { connection, concurrency });
  worker.on("completed", () => {
    completed += 1;
    if (completed >= target) finish();
  });
  worker.on("failed", (job, err) => { failure = err; finish(); });
  worker.on("error", (err) => { failure = err; finish(); });

  // Warm-up: one job through, so connections and scripts are in place.
  await queue.add("noop", { i: -1 });
  await done;
  if (failure) throw failure;
  completed = 0;
  target = units;
  done = new Promise((resolve) => { finish = resolve; });

  await admin.config("RESETSTAT");
  const cpu0 = await redisCpu(admin);
  const t0 = process.hrtime.bigint();
  let next = 0;
  async function producer() {
    while (next < units) {
      const i = next++;
      const job = await queue.add("noop", { i });
      if (!job || !job.id) throw new Error("bullmq: add returned no job");
    }
  }
  await Promise.all(Array.from({ length: concurrency }, producer));
  await done;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = (await redisCpu(admin)) - cpu0;
  if (failure) throw failure;
  const stats = infoFields(await admin.info("commandstats"));
  const commands = {};
  for (const [k, v] of Object.entries(stats)) {
    const calls = /calls=(\d+)/.exec(v);
    if (calls) commands[k.replace(/^cmdstat_/, "")] = parseInt(calls[1], 10);
  }
  const pkg = require("bullmq/package.json");
  await worker.close();
  await queue.close();
  await admin.quit();
  process.stdout.write(JSON.stringify({ bullmq: pkg.version, node: process.version, units,
    concurrency, completed, seconds, redis_cpu_s: cpu, commands }) + "\n");
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
