"""A peer on the same Redis and machine: saq (a Python Redis job queue)
doing enqueue -> a worker picks the job -> the job completes, beside
redroute's push -> reserve -> accept -> close, in the same run.

Both run in this one process on the load core, through each library's
public API, with the same number of Redis calls in flight: saq with
`concurrency` producers enqueueing and a Worker of `concurrency` slots;
redroute with 2 x `concurrency` callers each doing a whole lifecycle in
turn. Reported: lifecycles/s end to end, and the Redis CPU time and the
commands one lifecycle costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from harness import RedisCounters, load_scripts

from redroute import Engine
from redroute.limits import DAY_MS


async def noop_job(ctx: dict[str, Any], **kwargs: Any) -> int:
    return 1


async def saq_lifecycles(url: str, redis: aioredis.Redis, n: int, concurrency: int) -> dict[str, Any]:
    from saq import Queue, Worker

    logging.getLogger("saq").setLevel(logging.CRITICAL)
    await redis.flushall()
    queue = Queue.from_url(url, name="bench")
    done = asyncio.Event()
    count = 0

    async def after(ctx: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    worker = Worker(queue, functions=[("noop", noop_job)], concurrency=concurrency,
                    after_process=after)
    # Warm up: connections, scripts.
    await queue.enqueue("noop")
    runner = asyncio.create_task(worker.start())
    while count < 1:
        await asyncio.sleep(0.01)
    count = 0
    c = RedisCounters(redis)
    await c.start()
    items = list(range(n))

    async def producer() -> None:
        while items:
            i = items.pop()
            job = await queue.enqueue("noop", i=i)
            if job is None:
                raise RuntimeError("saq: enqueue returned None")

    t0 = time.perf_counter()
    await asyncio.gather(*[producer() for _ in range(concurrency)])
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - t0
    r = await c.stop()
    await worker.stop()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await runner
    await queue.disconnect()
    return _row("saq enqueue -> pick -> complete", n, elapsed, r)


async def redroute_lifecycles(redis: aioredis.Redis, n: int, callers: int) -> dict[str, Any]:
    await redis.flushall()
    await load_scripts(redis)
    engine = Engine(redis, "peer")
    await engine.put_mrd("chat", max_requests=4)
    await engine.put_queue("sales", mrd_id="chat", agent_sla_ms=DAY_MS, agent_request_ttl_ms=DAY_MS)
    for i in range(callers + 8):
        await engine.put_agent(f"a{i}", queues=["sales"])
        await engine.set_agent_state(f"a{i}", "READY")
    t = await engine.push_task("warm", "sales")
    await engine.accept(t.id, t.media.id)
    await engine.close_media(t.id, t.media.id)
    c = RedisCounters(redis)
    await c.start()
    items = list(range(n))

    async def caller() -> None:
        while items:
            i = items.pop()
            t = await engine.push_task(f"c-{i}", "sales")
            if t.media.state != "RESERVED":
                raise RuntimeError("peer: a push was not reserved")
            await engine.accept(t.id, t.media.id, t.assigned_to)
            t = await engine.close_media(t.id, t.media.id)
            if t.state != "CLOSED":
                raise RuntimeError("peer: a task did not close")

    t0 = time.perf_counter()
    await asyncio.gather(*[caller() for _ in range(callers)])
    elapsed = time.perf_counter() - t0
    r = await c.stop()
    return _row("redroute push -> reserve -> accept -> close", n, elapsed, r)


def _row(name: str, n: int, elapsed: float, r: dict[str, Any]) -> dict[str, Any]:
    calls = sum(v["calls"] for k, v in r["commands"].items()
                if k not in ("config|resetstat", "info", "config"))
    return {"name": name, "lifecycles": n, "seconds": elapsed, "lifecycles_per_s": n / elapsed,
            "redis_cpu_us_per_lifecycle": r["redis_cpu_s"] * 1e6 / n,
            "redis_commands_per_lifecycle": calls / n,
            "commands": {k: v["calls"] for k, v in r["commands"].items()}}


async def run(url: str, quick: bool, concurrency: int = 8) -> dict[str, Any]:
    n = 500 if quick else 6_000
    redis = aioredis.from_url(url, decode_responses=True, max_connections=64)
    try:
        saq = await saq_lifecycles(url, redis, n, concurrency)
        rr = await redroute_lifecycles(redis, n, 2 * concurrency)
        await redis.flushall()
    finally:
        await redis.aclose()
    return {"concurrency": {"saq_producers": concurrency, "saq_worker_slots": concurrency,
                            "redroute_callers": 2 * concurrency},
            "saq": saq, "redroute": rr,
            "rate_ratio": rr["lifecycles_per_s"] / saq["lifecycles_per_s"],
            "redis_cpu_ratio": saq["redis_cpu_us_per_lifecycle"] / rr["redis_cpu_us_per_lifecycle"]}


def table(r: dict[str, Any]) -> str:
    lines = []
    for k in ("saq", "redroute"):
        x = r[k]
        lines.append(f"  {x['name']:44} {x['lifecycles_per_s']:7.0f} /s   Redis CPU "
                     f"{x['redis_cpu_us_per_lifecycle']:6.1f} µs, {x['redis_commands_per_lifecycle']:.1f} "
                     "commands per lifecycle")
    lines.append(f"  redroute / saq: x{r['rate_ratio']:.2f} lifecycles/s; saq's Redis CPU per lifecycle is "
                 f"x{r['redis_cpu_ratio']:.2f} redroute's")
    return "\n".join(lines)
