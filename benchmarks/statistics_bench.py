"""Queue statistics: what counting costs a lifecycle, measured against the
same work with counting off in the same run.

* lifecycle: push (reserves at once) -> accept -> close, pipelined, on two
  tenants of one Redis with the same MRD, queue and agents: "off" with the
  queue's statisticsEnabled false (no minute buckets, no totals), "on"
  with it true (the default: a push counts entered, an accept answered
  with its wait, a close its handle time, each in the minute's bucket and
  the queue's totals); measured in alternating rounds. The ratio of their
  median rates is the throughput target (>= 0.85: within 15%). (The
  queue's tally of what it holds, which the realtime figures need, is kept
  either way.)
* read: GET statistics' script (get_statistics) on a queue whose every
  minute of the last 1440 has a bucket: its µs for a window of 15, 60 and
  1440 minutes; the first read of a long window makes the hour buckets of
  its whole past hours (timed alone), the later ones read them.

    python benchmarks/statistics_bench.py [--quick]   # alone; run.py runs it in the suite
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import redis.asyncio as aioredis
from harness import RawScripts, load_scripts, pipelined, run_alone
from policies_bench import lifecycles

from redroute import Engine

DAY_MS = 24 * 3600 * 1000
MAX_REQUESTS = 4


async def lifecycle_tenant(redis: aioredis.Redis, tenant: str, counting: bool, n: int) -> Engine:
    """Enough READY agents (maxRequests 4) for n reservations at once."""
    engine = Engine(redis, tenant)
    raw = RawScripts(engine)
    await engine.put_mrd("chat", max_requests=MAX_REQUESTS)
    await engine.put_queue("sales", mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS,
                           statistics_enabled=counting)

    def agent(p: Any, i: int) -> None:
        raw.add(p, "put_agent", f"a{i}", '["sales"]', "{}", "{}")
        raw.add(p, "set_agent_state", f"a{i}", "READY", "", "")

    await pipelined(redis, list(range(n // MAX_REQUESTS + 64)), agent, 64, 4)
    return engine


async def lifecycle_compare(redis: aioredis.Redis, n: int, rounds: int, depth: int,
                            concurrency: int) -> dict[str, Any]:
    await redis.flushall()
    await load_scripts(redis)
    engines = {"off": await lifecycle_tenant(redis, "stats-off", False, n),
               "on": await lifecycle_tenant(redis, "stats-on", True, n)}
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for r in range(rounds):
        order = ("off", "on") if r % 2 == 0 else ("on", "off")
        for name in order:
            runs[name].append(await lifecycles(redis, engines[name], f"{name}-{r}", n, depth, concurrency))
    counted = await engines["on"].queue_statistics("sales", 1440)
    if counted["window"]["answered"] != rounds * n:
        raise RuntimeError(f"counting on: answered {counted['window']['answered']}, not {rounds * n}")
    out: dict[str, Any] = {"tasks_per_round": n, "rounds": rounds, "pipeline_depth": depth,
                           "concurrency": concurrency}
    for name, rs in runs.items():
        out[name] = {k: statistics.median(x[k] for x in rs) for k in rs[0]} | {"runs": rs}
    out["rate_ratio"] = out["on"]["scripts_per_s"] / out["off"]["scripts_per_s"]
    out["redis_cpu_ratio"] = out["on"]["redis_cpu_us"] / out["off"]["redis_cpu_us"]
    out["script_us_ratio"] = out["on"]["script_us"] / out["off"]["script_us"]
    return out


async def read_cost(redis: aioredis.Redis, calls: int) -> dict[str, Any]:
    """get_statistics' µs per call over 15, 60 and 1440 minutes, every
    minute of the day holding a bucket of a typical size."""
    await redis.flushall()
    engine = Engine(redis, "stats-read")
    await engine.put_mrd("chat")
    await engine.put_queue("sales", mrd_id="chat")
    # A clock standing still, so the window does not move during the reads.
    now_min = (await engine.fire_due(0)).now // 60_000
    await engine.set_clock(now_min * 60_000 + 30_000)
    pipe = redis.pipeline(transaction=False)
    for m in range(now_min - 1439, now_min + 1):
        fields = {"th": 20000, "e": 40, "a": 35, "aw": 30, "x": 2, "c": 3, "bw": 2, "r": 1, "ws": 350000,
                  "wm": 40000, "hn": 35, "hs": 6300000}
        fields |= {f"w{b}": 3 for b in range(20, 40)} | {f"h{b}": 3 for b in range(60, 72)}
        pipe.hset(engine.keys.st("sales", m), mapping=fields)
    await pipe.execute()
    out = {}
    for minutes in (15, 60, 1440):
        t0 = time.perf_counter()
        await engine.queue_statistics("sales", minutes)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(calls):
            d = await engine.queue_statistics("sales", minutes)
        out[str(minutes)] = {"first_us": first * 1e6,
                             "us_per_call": (time.perf_counter() - t0) * 1e6 / calls,
                             "entered": d["window"]["entered"]}
        if d["window"]["entered"] != 40 * minutes:
            raise RuntimeError(f"read: entered {d['window']['entered']} over {minutes} minutes")
    return out


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True, max_connections=32)
    try:
        if quick:
            life = await lifecycle_compare(redis, 1_000, 2, 32, 16)
            read = await read_cost(redis, 5)
        else:
            life = await lifecycle_compare(redis, 8_000, 6, 32, 16)
            read = await read_cost(redis, 30)
        await redis.flushall()
    finally:
        await redis.aclose()
    return {"lifecycle": life, "read": read}


def table(r: dict[str, Any]) -> str:
    life = r["lifecycle"]
    lines = [f"  lifecycle (pipelined, {life['concurrency']} x {life['pipeline_depth']}, median of "
             f"{life['rounds']} alternating rounds of {life['tasks_per_round']}):"]
    for name in ("off", "on"):
        x = life[name]
        lines.append(f"    counting {name:3} {x['scripts_per_s']:10.0f} scripts/s {x['script_us']:8.1f} "
                     f"script µs {x['redis_cpu_us']:8.1f} Redis CPU µs")
    lines.append(f"  on / off: rate x{life['rate_ratio']:.3f}, script µs x{life['script_us_ratio']:.3f}, "
                 f"Redis CPU x{life['redis_cpu_ratio']:.3f}")
    lines.append("  get_statistics, every minute of the day counted (first read / later reads): " + ", ".join(
        f"{m} min {x['first_us']:.0f} / {x['us_per_call']:.0f} µs" for m, x in r["read"].items()))
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, for CI")
    await run_alone("statistics", run, table, ap.parse_args().quick)


if __name__ == "__main__":
    asyncio.run(main())
