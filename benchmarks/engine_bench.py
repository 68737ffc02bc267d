"""Engine throughput against the no-op script, at the same concurrency and
pipelining, on a redis-server this benchmark starts itself.

Operations: push+reserve (push_task that reserves an agent at once), accept,
close (close_media of an accepted task, which frees the agent), a whole
lifecycle (push, accept, close of one task in turn), and noop.lua (the
floor of a script call). Two ways of calling:

  facade     Engine methods, one round trip each, `concurrency` callers
             (what a Python caller of redroute sees, validation and
             decoding included);
  pipelined  the same EVALSHA calls, `depth` per pipeline, over
             `concurrency` connections (Python amortised: closer to what
             one Redis core can do).

For each: scripts/s seen by the client, Redis CPU µs per script (INFO cpu of
the redis-server process: parsing, the script, replies) and the script's own
µs (INFO commandstats), each as a ratio to the no-op's in the same setting.

    python benchmarks/engine_bench.py [--quick]   # alone; run.py runs it in the suite
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import redis.asyncio as aioredis
from harness import (
    SCRIPT_CALLS,
    RawScripts,
    RedisCounters,
    load_scripts,
    pipelined,
    run_alone,
    task_ids,
)

from redroute import Engine
from redroute.limits import DAY_MS

OPS = ("noop", "push+reserve", "accept", "close", "lifecycle")


MAX_REQUESTS = 4  # a chat agent's concurrent tasks


async def setup(redis: aioredis.Redis, tasks: int) -> Engine:
    """Enough READY agents (maxRequests 4) for `tasks` reservations at once."""
    await redis.flushall()
    await load_scripts(redis)
    engine = Engine(redis, "bench")
    raw = RawScripts(engine)
    await engine.put_mrd("chat", max_requests=MAX_REQUESTS)
    # Long RONA and TTL deadlines: no timer fires during the measurement.
    await engine.put_queue("sales", mrd_id="chat", agent_sla_ms=DAY_MS,
                           agent_request_ttl_ms=7 * DAY_MS)

    def agent(p: Any, i: int) -> None:
        raw.add(p, "put_agent", f"a{i}", '["sales"]', "{}", "{}")
        raw.add(p, "set_agent_state", f"a{i}", "READY", "", "")

    await pipelined(redis, list(range(tasks // MAX_REQUESTS + 64)), agent, 64, 4)
    return engine


async def _callers(items: list[Any], op: Any, concurrency: int) -> None:
    queue = list(reversed(items))

    async def caller() -> None:
        while queue:
            await op(queue.pop())

    await asyncio.gather(*[caller() for _ in range(concurrency)])


async def measured(redis: aioredis.Redis, name: str, scripts: int, run: Any) -> dict[str, Any]:
    c = RedisCounters(redis)
    await c.start()
    await run()
    r = await c.stop()
    return {
        "op": name, "scripts": scripts, "seconds": r["seconds"],
        "client_scripts_per_s": scripts / r["seconds"],
        "redis_cpu_us_per_script": r["redis_cpu_s"] * 1e6 / scripts,
        "redis_cpu_util": r["redis_cpu_util"],
        "script_us_per_call": r["script_usec_per_call"],
        "script_calls": r["script_calls"],
        "commands": {k: v for k, v in r["commands"].items() if k not in SCRIPT_CALLS},
    }


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of an operation: totals over all of them,
    and each run's rate kept."""
    scripts = sum(r["scripts"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    row = {**runs[0], "scripts": scripts, "seconds": seconds, "client_scripts_per_s": scripts / seconds}
    for k in ("redis_cpu_us_per_script", "script_us_per_call"):
        row[k] = sum(r[k] * r["scripts"] for r in runs) / scripts
    row["runs_scripts_per_s"] = [r["client_scripts_per_s"] for r in runs]
    return row


async def noop_twice(redis: aioredis.Redis, n: int, run: Any, ops: Any) -> list[dict[str, Any]]:
    """The no-op measured before and after the operations, each time over as
    many scripts as the lifecycle row makes: a short run of the fast no-op
    swung with the client's warm-up and pauses (43k to 73k scripts/s
    between two runs), and the ratio with it."""
    first = await measured(redis, "noop", 3 * n, run)
    rows = await ops()
    last = await measured(redis, "noop", 3 * n, run)
    return [combined([first, last]), *rows]


async def facade_rows(redis: aioredis.Redis, n: int, concurrency: int) -> list[dict[str, Any]]:
    engine = await setup(redis, n)

    def noop() -> Any:
        return _callers(list(range(3 * n)), lambda _: engine.call("noop"), concurrency)

    return await noop_twice(redis, n, noop, lambda: facade_ops(engine, redis, n, concurrency))


async def facade_ops(engine: Engine, redis: aioredis.Redis, n: int, concurrency: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    tasks: list[Any] = []

    async def push(i: int) -> None:
        tasks.append(await engine.push_task(f"c-{i}", "sales"))

    rows.append(await measured(redis, "push+reserve", n,
                               lambda: _callers(list(range(n)), push, concurrency)))
    if not all(t.media.state == "RESERVED" for t in tasks):
        raise RuntimeError("benchmark setup: not every push reserved an agent")
    rows.append(await measured(redis, "accept", n, lambda: _callers(
        tasks, lambda t: engine.accept(t.id, t.media.id), concurrency)))
    rows.append(await measured(redis, "close", n, lambda: _callers(
        tasks, lambda t: engine.close_media(t.id, t.media.id), concurrency)))

    async def lifecycle(i: int) -> None:
        t = await engine.push_task(f"l-{i}", "sales")
        await engine.accept(t.id, t.media.id)
        t = await engine.close_media(t.id, t.media.id)
        if t.state != "CLOSED":
            raise RuntimeError(f"lifecycle: task {t.id} ended {t.state}")

    rows.append(await measured(redis, "lifecycle", 3 * n,
                               lambda: _callers(list(range(n)), lifecycle, concurrency)))
    return rows


async def pipelined_rows(redis: aioredis.Redis, n: int, concurrency: int,
                         depth: int) -> list[dict[str, Any]]:
    engine = await setup(redis, n)
    raw = RawScripts(engine)
    return await noop_twice(redis, n, lambda: pipelined(
        redis, list(range(3 * n)), lambda p, _: raw.noop(p), depth, concurrency),
        lambda: pipelined_ops(engine, raw, redis, n, concurrency, depth))


async def pipelined_ops(engine: Engine, raw: RawScripts, redis: aioredis.Redis, n: int, concurrency: int,
                        depth: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    replies: list[Any] = []

    async def pushes() -> None:
        replies.extend(await pipelined(redis, list(range(n)),
                                       lambda p, i: raw.push(p, f"c-{i}", "sales"), depth, concurrency))

    rows.append(await measured(redis, "push+reserve", n, pushes))
    tasks = [task_ids(r) for r in replies]
    if not all(t[3] == "RESERVED" for t in tasks):
        raise RuntimeError("benchmark setup: not every push reserved an agent")
    rows.append(await measured(redis, "accept", n, lambda: pipelined(
        redis, tasks, lambda p, t: raw.accept(p, t[0], t[1]), depth, concurrency)))
    rows.append(await measured(redis, "close", n, lambda: pipelined(
        redis, tasks, lambda p, t: raw.close(p, t[0], t[1]), depth, concurrency)))

    rows.append(await measured(redis, "lifecycle", 3 * n, lambda: pipelined_lifecycles(
        redis, raw, "l", n, depth, concurrency)))
    return rows


async def pipelined_lifecycles(redis: aioredis.Redis, raw: RawScripts, tag: str, n: int, depth: int,
                               concurrency: int) -> None:
    """n lifecycles on queue "sales" (push that reserves, accept, close), each
    step `depth` tasks per pipeline over `concurrency` connections."""
    chunks = [list(range(i, min(i + depth, n))) for i in range(0, n, depth)]
    chunks.reverse()

    async def worker() -> None:
        while chunks:
            chunk = chunks.pop()
            pipe = redis.pipeline(transaction=False)
            for i in chunk:
                raw.push(pipe, f"{tag}-{i}", "sales")
            ts = [task_ids(r) for r in await pipe.execute()]
            if any(t[3] != "RESERVED" for t in ts):
                raise RuntimeError("lifecycle: a push did not reserve")
            pipe = redis.pipeline(transaction=False)
            for t in ts:
                raw.accept(pipe, t[0], t[1])
            await pipe.execute()
            pipe = redis.pipeline(transaction=False)
            for t in ts:
                raw.close(pipe, t[0], t[1])
            for r in await pipe.execute():
                if '"state":{"name":"CLOSED"' not in r:
                    raise RuntimeError("lifecycle: a task did not close")

    await asyncio.gather(*[worker() for _ in range(concurrency)])


def add_ratios(rows: list[dict[str, Any]]) -> None:
    noop = rows[0]
    for r in rows:
        r["client_ratio_to_noop"] = r["client_scripts_per_s"] / noop["client_scripts_per_s"]
        # Capacity of one Redis core: scripts/s if Redis' CPU were the only limit.
        r["redis_capacity_scripts_per_s"] = 1e6 / r["redis_cpu_us_per_script"]
        r["redis_capacity_ratio_to_noop"] = noop["redis_cpu_us_per_script"] / r["redis_cpu_us_per_script"]
        r["script_us_ratio_to_noop"] = (noop["script_us_per_call"] / r["script_us_per_call"]
                                        if r["script_us_per_call"] else float("nan"))


async def run(url: str, quick: bool, concurrency: int = 16, depth: int = 32) -> dict[str, Any]:
    n_facade = 600 if quick else 8_000
    n_pipe = 1_000 if quick else 16_000
    redis = aioredis.from_url(url, decode_responses=True, max_connections=concurrency + 8)
    try:
        facade = await facade_rows(redis, n_facade, concurrency)
        add_ratios(facade)
        piped = await pipelined_rows(redis, n_pipe, concurrency, depth)
        add_ratios(piped)
        await redis.flushall()
    finally:
        await redis.aclose()
    return {"concurrency": concurrency, "pipeline_depth": depth,
            "facade": {"concurrency": concurrency, "pipeline_depth": 1, "rows": facade},
            "pipelined": {"concurrency": concurrency, "pipeline_depth": depth, "rows": piped}}


def table(result: dict[str, Any]) -> str:
    out = []
    for mode in ("facade", "pipelined"):
        m = result[mode]
        out.append(f"  {mode}: concurrency {m['concurrency']}, pipeline depth {m['pipeline_depth']}")
        out.append(f"    {'operation':14} {'client scripts/s':>16} {'x noop':>7} {'Redis CPU µs':>13} "
                   f"{'core cap/s':>10} {'x noop':>7} {'script µs':>10}")
        for r in m["rows"]:
            out.append(f"    {r['op']:14} {r['client_scripts_per_s']:16.0f} {r['client_ratio_to_noop']:7.3f} "
                       f"{r['redis_cpu_us_per_script']:13.1f} {r['redis_capacity_scripts_per_s']:10.0f} "
                       f"{r['redis_capacity_ratio_to_noop']:7.3f} {r['script_us_per_call']:10.1f}")
    return "\n".join(out)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, for CI")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--depth", type=int, default=32)
    args = ap.parse_args()
    await run_alone("engine", run, table, args.quick, concurrency=args.concurrency, depth=args.depth)


if __name__ == "__main__":
    asyncio.run(main())
