"""Event delivery latency: from the state change to an SSE client of
`redroute serve` (GET /v1/events), to a plain consumer-group reader
(XREADGROUP BLOCK) and to redroute.events.consumer.GroupConsumer, each in its own
process (events_probe.py).

Each consumer is measured alone, so they do not compete for the one core
they share with the producer (and, for SSE, with the server). The producer pushes tasks at a fixed rate (open loop) through the Engine;
each push is one script that appends 4 events (created, reserved,
AGENT_RESERVED, the agent's new state). Latency of an event = its arrival
at the consumer - the wall-clock time the push call was made (the events of
a task are matched by task id); also given from the stream entry id's
millisecond (Redis' clock at XADD; 1 ms resolution) for every event.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from harness import ROOT, load_scripts, summary_ms
from http_bench import redroute_server

from redroute import Engine
from redroute.limits import DAY_MS

TENANT = "events"
PROBES = ("sse", "xreadgroup", "groupconsumer")


async def start_probe(mode: str, target: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "events_probe.py"), mode, target, TENANT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        limit=2**28)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if line.strip() != b"READY":
        err = await proc.stderr.read() if proc.stderr else b""
        raise RuntimeError(f"event probe {mode} did not start: {line!r} {err.decode()[-2000:]}")
    return proc


async def stop_probe(proc: asyncio.subprocess.Process, expect: int) -> list[list[Any]]:
    """Tells the probe how many events to wait for; it answers once they came."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(f"{expect}\n".encode()), 90)
    except TimeoutError:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    if proc.returncode != 0:
        raise RuntimeError(f"event probe failed: {err.decode()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


async def produce(engine: Engine, rate: float, seconds: float) -> dict[str, float]:
    """Pushes at a fixed rate; returns task id -> wall ms of the call."""
    sent: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    n = int(rate * seconds)
    t0 = loop.time()
    pending = []

    async def one(i: int) -> None:
        at = time.time() * 1000
        t = await engine.push_task(f"ev-{i}", "sales")
        sent[t.id] = at

    for i in range(n):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(loop.create_task(one(i)))
    await asyncio.gather(*pending)
    return sent


def latencies(records: list[list[Any]], sent: dict[str, float]) -> dict[str, Any]:
    from_call = [r[3] - sent[r[2]] for r in records if r[2] in sent]
    from_entry = [r[3] - int(r[0].split("-")[0]) for r in records]
    return {"events": len(records), "matched": len(from_call),
            "from_call": summary_ms(from_call), "from_entry_id": summary_ms(from_entry),
            "samples_from_call_ms": sorted(from_call)}


async def setup(engine: Engine, agents: int) -> None:
    await engine.put_mrd("chat", max_requests=1000)
    await engine.put_queue("sales", mrd_id="chat", agent_sla_ms=DAY_MS,
                           agent_request_ttl_ms=7 * DAY_MS)
    for i in range(agents):
        await engine.put_agent(f"e{i}", queues=["sales"])
        await engine.set_agent_state(f"e{i}", "READY")


async def measure(redis: aioredis.Redis, mode: str, target: str, rate: float,
                  seconds: float) -> dict[str, Any]:
    """One consumer alone (so consumers do not compete for the CPU)."""
    proc = await start_probe(mode, target)
    try:
        await asyncio.sleep(0.3)
        sent = await produce(Engine(redis, TENANT), rate, seconds)
        records = await stop_probe(proc, 4 * len(sent))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lat = latencies(records, sent)
    expected = 4 * len(sent)
    if lat["events"] < expected:
        raise RuntimeError(f"{mode}: {lat['events']} of {expected} events arrived")
    lat.update(pushes=len(sent), events_expected=expected)
    return lat


async def run(redis_url: str, quick: bool) -> dict[str, Any]:
    rate, seconds = (100.0, 1.5) if quick else (200.0, 8.0)
    # Open loop: if Redis or this core falls behind, pushes pile up rather
    # than wait for a connection.
    redis = aioredis.from_url(redis_url, decode_responses=True, max_connections=4096)
    await redis.flushall()
    await load_scripts(redis)
    out: dict[str, Any] = {"push_rate": rate, "seconds": seconds, "events_per_push": 4,
                           "consumers": {}}
    try:
        await setup(Engine(redis, TENANT), 20)
        out["consumers"]["xreadgroup"] = await measure(redis, "xreadgroup", redis_url, rate, seconds)
        out["consumers"]["groupconsumer"] = await measure(redis, "groupconsumer", redis_url, rate,
                                                          seconds)
        server = redroute_server(redis_url)
        try:
            await server.ready()
            out["consumers"]["sse"] = await measure(redis, "sse", server.base, rate, seconds)
        finally:
            server.stop()
    finally:
        await redis.aclose()
    return out


def table(r: dict[str, Any]) -> str:
    lines = [f"  pushes at {r['push_rate']:.0f}/s for {r['seconds']:.0f} s per consumer, 4 events each; "
             "latency from the push call (and from the entry id ms)"]
    for m, c in r["consumers"].items():
        a, b = c["from_call"], c["from_entry_id"]
        lines.append(f"    {m:14} p50 {a['p50_ms']:6.2f} ms  p99 {a['p99_ms']:6.2f} ms  max {a['max_ms']:7.2f} ms"
                     f"   (entry id: p50 {b['p50_ms']:5.1f}, p99 {b['p99_ms']:5.1f})")
    return "\n".join(lines)
