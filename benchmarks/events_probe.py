"""One event consumer, in its own process, that records when each event
arrived (wall clock, the machine's one clock): run by events_bench.py.

    python events_probe.py sse <base url> <tenant>
    python events_probe.py xreadgroup <redis url> <tenant>
    python events_probe.py groupconsumer <redis url> <tenant>

Prints READY once subscribed. Then reads the number of events to expect
from stdin and, once that many arrived (or after 60 s, or on SIGTERM),
prints a JSON list of [entry id, type, task id or null, arrival time in ms]
and exits.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from typing import Any

TASK_ID = re.compile(r'"task":\{"id":"([^"]+)"')
Record = list[Any]


def task_of(data: str) -> str | None:
    m = TASK_ID.search(data)
    return m.group(1) if m else None


async def sse(base: str, tenant: str, out: list[Record], ready: asyncio.Event) -> None:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(
            base + "/v1/events", headers={"X-Tenant": tenant, "Accept": "text/event-stream"}) as r:
        if r.status != 200:
            raise RuntimeError(f"GET /v1/events answered {r.status}: {await r.text()}")
        ready.set()
        entry_id = etype = None
        async for raw in r.content:
            now = time.time() * 1000
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                entry_id = line[4:]
            elif line.startswith("event: "):
                etype = line[7:]
            elif line.startswith("data: ") and entry_id:
                out.append([entry_id, etype, task_of(line), now])
                entry_id = etype = None


async def xreadgroup(url: str, tenant: str, out: list[Record], ready: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    from redroute.keys import TenantKeys

    redis = aioredis.from_url(url, decode_responses=True)
    key = TenantKeys.of(tenant).events
    group = f"bench-{time.time_ns()}"
    await redis.xgroup_create(key, group, id="$", mkstream=True)
    ready.set()
    while True:
        reply = await redis.xreadgroup(group, "c1", {key: ">"}, count=100, block=1000)
        now = time.time() * 1000
        for _stream, entries in reply or ():
            ids = []
            for entry_id, fields in entries:
                out.append([entry_id, fields.get("type"), task_of(fields.get("data", "")), now])
                ids.append(entry_id)
            if ids:
                await redis.xack(key, group, *ids)


async def groupconsumer(url: str, tenant: str, out: list[Record], ready: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    from redroute.events.consumer import GroupConsumer

    redis = aioredis.from_url(url, decode_responses=True)

    async def handle(event: Any) -> None:
        task = event.task or {}
        out.append([event.id, event.type.value, task.get("id"), time.time() * 1000])

    c = GroupConsumer(redis, handle, tenant=tenant, group=f"bench-{time.time_ns()}", name="c1",
                      start="$", block_ms=1000)
    await c.ensure_group()
    ready.set()
    await c.run()


async def main() -> None:
    mode, target, tenant = sys.argv[1:4]
    out: list[Record] = []
    ready = asyncio.Event()
    fn = {"sse": sse, "xreadgroup": xreadgroup, "groupconsumer": groupconsumer}[mode]
    task = asyncio.create_task(fn(target, tenant, out, ready))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what went wrong
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    expect = int(line.strip() or 0)
    deadline = loop.time() + 60
    while len(out) < expect and not stop.is_set() and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    task.cancel()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
