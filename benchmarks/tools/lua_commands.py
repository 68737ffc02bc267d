"""The Redis commands a lifecycle's scripts run, counted with MONITOR: which
commands, how many, and on which keys (issue 19: what a lifecycle costs
Redis, command by command, beside a BullMQ job's).

A private redis-server on a free port; one tenant with one MRD, queue and
READY agent; one warm-up lifecycle, then a push that reserves, its accept
and the media's close, each script's commands listed under its name.

  python benchmarks/tools/lua_commands.py            the totals per command
  python benchmarks/tools/lua_commands.py --list     every command, in order

Needs redis-server on PATH. Not part of run.py (MONITOR is a tool, not a
measurement of speed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections import Counter
from pathlib import Path

import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the suite's modules
from harness import start_redis  # noqa: E402

from redroute import Engine  # noqa: E402

STOP = "__lua_commands_stop"


def watch(port: int, into: list[str], ready: threading.Event) -> None:
    """Every command Redis runs (scripts' own included) until STOP."""
    with redis.Redis(port=port, decode_responses=True).monitor() as m:
        ready.set()
        for x in m.listen():
            if STOP in x["command"]:
                return
            into.append(x["command"] if x.get("client_type") != "lua" else "  " + x["command"])


async def lifecycle(port: int) -> None:
    e = Engine(aioredis.Redis(port=port, decode_responses=True), "bench")
    await e.put_mrd("chat")
    await e.put_queue("sales", mrd_id="chat")
    await e.put_agent("a1", queues=["sales"])
    await e.set_agent_state("a1", "READY")
    for conv in ("warm-up", "measured"):
        if conv == "measured":
            lines: list[str] = []
            ready = threading.Event()
            t = threading.Thread(target=watch, args=(port, lines, ready))
            t.start()
            ready.wait()
        task = await e.push_task(conv, "sales")
        await e.accept(task.id, task.media.id, "a1")
        await e.close_media(task.id, task.media.id)
    await e.redis.get(STOP)
    t.join()
    await e.redis.aclose()
    report(lines)


def report(lines: list[str]) -> None:
    in_scripts = [x.strip() for x in lines if x.startswith("  ")]
    if ARGS.list:
        print("\n".join(lines))
    by_name = Counter(x.split()[0].strip('"').upper() for x in in_scripts)
    scripts = sum(1 for x in lines if x.strip('"').upper().startswith(("EVALSHA", "FCALL")))
    print(f"{scripts} scripts, {len(in_scripts)} commands run inside them:")
    for name, n in by_name.most_common():
        print(f"  {name:12} {n}")


def main() -> None:
    server = start_redis(pinned=False)
    try:
        asyncio.run(lifecycle(server.port))
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="every command, in order")
    ARGS = ap.parse_args()
    main()
