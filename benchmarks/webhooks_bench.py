"""Webhook delivery: deliveries per second to a local receiver, and the
latency from the script's step (the event's stream id, Redis clock) to the
receiver, each beside a baseline measured in the same run.

- throughput: a backlog of events (one webhook) drained by one dispatcher
  (redroute.webhooks.dispatcher.Dispatcher) into an aiohttp receiver on
  loopback, against the same number of plain signed POSTs made straight to
  that receiver with the same concurrency (no Redis): the ratio is what the
  durable, at-least-once path costs.
- latency: events pushed at a steady rate while the dispatcher runs; each
  delivery's latency is its arrival time at the receiver minus the time in
  its stream id (both clocks are this machine's; 1 ms resolution).

The receiver, the dispatcher and the load run in this process (one core):
the figures include their competition for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from harness import summary_ms

from redroute import Engine
from redroute.webhooks.dispatcher import Dispatcher
from redroute.webhooks.model import DeliverySettings
from redroute.webhooks.signing import sign

SETTINGS = DeliverySettings(allow_private=True, poll_interval=0.05)


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []  # (event id, arrival ms)
        self.count = 0
        self.done = asyncio.Event()
        self.expect = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time() * 1000
        event_id = request.headers.get("X-Redroute-Event-Id", "")
        await request.read()
        self.arrivals.append((event_id, now))
        self.count += 1
        if self.count >= self.expect:
            self.done.set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/in", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/in"

    def reset(self, expect: int) -> None:
        self.arrivals, self.count, self.expect = [], 0, expect
        self.done = asyncio.Event()


async def _backlog(engine: Engine, n: int) -> None:
    await engine.put_mrd("chat")
    await engine.put_queue("q", mrd_id="chat")
    for i in range(n):
        await engine.push_task(f"c-{i}", "q")


async def _drain(redis: Any, engine: Engine, receiver: Receiver, n: int) -> float:
    """Seconds one dispatcher takes to deliver a backlog of n events."""
    receiver.reset(n)
    d = Dispatcher(redis, settings=SETTINGS, engine_factory=engine.for_tenant, refresh=0.05)
    started = time.perf_counter()
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(receiver.done.wait(), 600)
    took = time.perf_counter() - started
    d.stop()
    await task
    return took


async def _bare(receiver: Receiver, n: int, concurrency: int) -> float:
    """Seconds n signed POSTs take straight to the receiver."""
    receiver.reset(n)
    body = b'{"id":"1-0","type":"TASK_STATE_CHANGED","data":{},"tenant":"bench","time":1}'
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one() -> None:
            async with gate:
                ts = str(int(time.time() * 1000))
                async with session.post(receiver.url, data=body, headers={
                        "X-Redroute-Timestamp": ts,
                        "X-Redroute-Signature": sign("s", ts, body)}) as r:
                    await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - started


async def _latency(redis: Any, engine: Engine, receiver: Receiver, n: int,
                   rate: float) -> dict[str, Any]:
    receiver.reset(n)
    d = Dispatcher(redis, settings=SETTINGS, engine_factory=engine.for_tenant, refresh=0.05)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.3)  # the dispatcher has found the tenant
    for i in range(n):
        await engine.push_task(f"l-{i}", "q")
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(receiver.done.wait(), 120)
    d.stop()
    await task
    lat = [at - int(eid.split("-")[0]) for eid, at in receiver.arrivals]
    return {"events": n, "rate_per_s": rate, "latency": summary_ms(lat)}


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True)
    receiver = Receiver()
    await receiver.start()
    n = 1_000 if quick else 10_000
    try:
        await redis.flushall()
        engine = Engine(redis, "bench-wh")
        await engine.put_webhook("bench", url=receiver.url, secret="s", allow_private=True)
        await _backlog(engine, n)
        drained = await _drain(redis, engine, receiver, n)
        bare = await _bare(receiver, n, SETTINGS.per_webhook)
        lat = await _latency(redis, engine, receiver, 300 if quick else 3_000, 200.0)
        await redis.flushall()
    finally:
        if receiver.runner is not None:
            await receiver.runner.cleanup()
        await redis.aclose()
    return {
        "deliveries": n, "per_webhook_in_flight": SETTINGS.per_webhook,
        "deliveries_per_s": n / drained, "bare_posts_per_s": n / bare,
        "rate_ratio_to_bare": (n / drained) / (n / bare),
        "latency": lat,
    }


def table(r: dict[str, Any]) -> str:
    lat = r["latency"]["latency"]
    return "\n".join([
        f"  backlog of {r['deliveries']} events, one webhook, {r['per_webhook_in_flight']} in "
        f"flight: {r['deliveries_per_s']:.0f} deliveries/s; bare signed POSTs "
        f"{r['bare_posts_per_s']:.0f}/s; ratio {r['rate_ratio_to_bare']:.2f}x",
        f"  latency step -> receiver at {r['latency']['rate_per_s']:.0f} events/s: "
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.0f} ms "
        f"({lat['n']} deliveries; 1 ms resolution)",
    ])


if __name__ == "__main__":  # python benchmarks/webhooks_bench.py REDIS_URL
    import sys

    res = asyncio.run(run(sys.argv[1], "--full" not in sys.argv))
    print(table(res))
