"""The peers, on the same Redis and machine, in the same run: BullMQ 5 (Node)
and saq (Python), each doing its unit of work beside redroute's.

  redroute  push -> reserve -> accept -> close, through the Python Engine
            (`concurrency` callers, each a whole lifecycle in turn);
  saq       enqueue -> a Worker picks the job -> the job completes
            (`concurrency` producers, a Worker of `concurrency` slots);
  BullMQ    Queue.add -> a Worker processes the job -> the job completes
            (`concurrency` producers, a Worker of `concurrency` slots), in a
            Node process (peers/bullmq_bench.cjs).

Each uses its own project's client with its defaults, as a new user would.
Redis is flushed before each peer; after a warm-up unit the Redis counters
are reset, and each peer is measured by its throughput (units/s, end to end)
and by the redis-server process's CPU time over its units (INFO cpu), which
no client's speed distorts.

BullMQ is installed by this benchmark: `npm ci` of peers/package-lock.json
into a cache directory (REDROUTE_BENCH_CACHE, or ~/.cache/redroute-bench),
once per lock file. saq comes with the `bench` extra. A peer that cannot
be installed or run is reported as broken (the section breaks, after the
other peers ran).

    python benchmarks/peers_bench.py [--quick]   # alone; run.py runs it in the suite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from harness import ROOT, RedisCounters, run_alone

from redroute import Engine
from redroute.backend import connect
from redroute.limits import DAY_MS

PEERS = ROOT / "peers"
UNITS = {"quick": 1_000, "full": 20_000}
CONCURRENCY = 100
NOT_COUNTED = ("config|resetstat", "info", "config")


class SectionBroken(Exception):
    """Some peer could not run; `partial` holds what the others measured."""

    def __init__(self, message: str, partial: dict[str, Any]) -> None:
        super().__init__(message)
        self.partial = partial


def _row(name: str, unit: str, n: int, seconds: float, cpu_s: float,
         commands: dict[str, int]) -> dict[str, Any]:
    calls = sum(v for k, v in commands.items() if k not in NOT_COUNTED)
    return {"name": name, "unit": unit, "units": n, "seconds": seconds, "units_per_s": n / seconds,
            "redis_cpu_us_per_unit": cpu_s * 1e6 / n, "redis_commands_per_unit": calls / n,
            "commands": commands}


def _counted(r: dict[str, Any]) -> dict[str, int]:
    return {k: v["calls"] for k, v in r["commands"].items()}


async def redroute_units(url: str, n: int, concurrency: int) -> dict[str, Any]:
    redis = connect(url)
    try:
        engine = Engine(redis, "peers")
        await engine.put_mrd("chat", max_requests=4)
        await engine.put_queue("sales", mrd_id="chat", agent_sla_ms=DAY_MS,
                               agent_request_ttl_ms=DAY_MS)
        for i in range(concurrency + 8):
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
                    raise RuntimeError("redroute: a push was not reserved")
                await engine.accept(t.id, t.media.id, t.assigned_to)
                t = await engine.close_media(t.id, t.media.id)
                if t.state != "CLOSED":
                    raise RuntimeError("redroute: a task did not close")

        t0 = time.perf_counter()
        await asyncio.gather(*[caller() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
        r = await c.stop()
    finally:
        await redis.aclose()
    return _row("redroute (Python Engine)", "push → reserve → accept → close", n, elapsed,
                r["redis_cpu_s"], _counted(r))


async def noop_job(ctx: dict[str, Any], **kwargs: Any) -> int:
    return 1


async def saq_units(url: str, n: int, concurrency: int) -> dict[str, Any]:
    import saq
    from saq import Worker
    from saq.queue.redis import RedisQueue

    logging.getLogger("saq").setLevel(logging.CRITICAL)
    # Queue.from_url's client has redis-py's default pool of 100 connections,
    # fewer than `concurrency` producers and as many worker slots hold.
    queue = RedisQueue(aioredis.from_url(url, max_connections=4 * concurrency), name="bench")
    done = asyncio.Event()
    count = 0

    async def after(ctx: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    worker = Worker(queue, functions=[("noop", noop_job)], concurrency=concurrency,
                    after_process=after)
    admin = aioredis.from_url(url, decode_responses=True)
    runner = asyncio.create_task(worker.start())
    try:
        # Warm-up: connections, scripts.
        await queue.enqueue("noop")
        while count < 1:
            await asyncio.sleep(0.01)
        count = 0
        c = RedisCounters(admin)
        await c.start()
        items = list(range(n))

        async def producer() -> None:
            while items:
                i = items.pop()
                if await queue.enqueue("noop", i=i) is None:
                    raise RuntimeError("saq: enqueue returned None")

        t0 = time.perf_counter()
        await asyncio.gather(*[producer() for _ in range(concurrency)])
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - t0
        r = await c.stop()
    finally:
        await worker.stop()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        await queue.disconnect()
        await admin.aclose()
    return _row(f"saq {saq.__version__} (Python)", "enqueue → process → complete", n, elapsed,
                r["redis_cpu_s"], _counted(r))


def node_modules() -> Path:
    """BullMQ installed from peers/package-lock.json (npm ci) into a cache
    directory named by the lock file's hash; done once per lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise RuntimeError("node and npm are needed for the BullMQ peer (Node 18+)")
    lock = (PEERS / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("REDROUTE_BENCH_CACHE") or Path.home() / ".cache" / "redroute-bench")
    home = cache / f"peers-{hashlib.sha256(lock).hexdigest()[:16]}"
    stamp = home / "installed"
    if stamp.exists():
        return home / "node_modules"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(PEERS / name, home / name)
    # No install scripts: msgpackr's optional native build is not needed.
    r = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=home, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"npm ci of the BullMQ peer failed ({r.returncode}):\n"
                           f"{(r.stdout + r.stderr)[-2000:]}")
    stamp.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return home / "node_modules"


async def bullmq_units(url: str, n: int, concurrency: int) -> dict[str, Any]:
    modules = await asyncio.to_thread(node_modules)
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", str(PEERS / "bullmq_bench.cjs"), url, str(n), str(concurrency),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NODE_PATH": str(modules)})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the BullMQ peer did not finish in 600 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the BullMQ peer failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    r = json.loads(out)
    if r["completed"] < n:
        raise RuntimeError(f"BullMQ: {r['completed']} of {n} jobs completed")
    return _row(f"BullMQ {r['bullmq']} (Node {r['node']})", "add → process → complete", n,
                r["seconds"], r["redis_cpu_s"], r["commands"])


PEER_RUNS = {"redroute": redroute_units, "saq": saq_units, "bullmq": bullmq_units}


async def run(url: str, quick: bool, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    n = UNITS["quick" if quick else "full"]
    out: dict[str, Any] = {"units": n, "concurrency": concurrency}
    broken = []
    admin = aioredis.from_url(url, decode_responses=True)
    try:
        for name, measure in PEER_RUNS.items():
            await admin.flushall()
            await admin.script_flush()
            try:
                out[name] = await measure(url, n, concurrency)
            except Exception as e:  # one peer broken: the others still run
                broken.append(name)
                out[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        await admin.flushall()
    finally:
        await admin.aclose()
    rr = out["redroute"]
    for peer in ("saq", "bullmq"):
        p = out[peer]
        if "error" in rr or "error" in p:
            continue
        out[f"rate_ratio_{peer}"] = rr["units_per_s"] / p["units_per_s"]
        out[f"redis_cpu_ratio_{peer}"] = rr["redis_cpu_us_per_unit"] / p["redis_cpu_us_per_unit"]
    if broken:
        raise SectionBroken("broken peer(s): " + "; ".join(f"{b}: {out[b]['error']}" for b in broken), out)
    return out


def table(r: dict[str, Any]) -> str:
    lines = [f"  {r['units']} units each, concurrency {r['concurrency']}, one peer at a time on the "
             "same Redis (flushed between them)",
             f"  {'system':34} {'unit':34} {'units/s':>8} {'Redis CPU µs/unit':>18} {'commands/unit':>14}"]
    for k in PEER_RUNS:
        x = r.get(k, {})
        if "error" in x or not x:
            lines.append(f"  {k:34} BROKEN: {x.get('error', 'not run')}")
            continue
        lines.append(f"  {x['name']:34} {x['unit']:34} {x['units_per_s']:8.0f} "
                     f"{x['redis_cpu_us_per_unit']:18.1f} {x['redis_commands_per_unit']:14.1f}")
    for peer, label in (("saq", "saq"), ("bullmq", "BullMQ")):
        if f"rate_ratio_{peer}" in r:
            lines.append(f"  redroute ÷ {label}: x{r[f'rate_ratio_{peer}']:.2f} units/s, "
                         f"x{r[f'redis_cpu_ratio_{peer}']:.2f} Redis CPU per unit")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, for CI")
    ap.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = ap.parse_args()
    try:
        await run_alone("peers", run, table, args.quick, concurrency=args.concurrency)
    except SectionBroken as e:
        print(table(e.partial))
        print(f"BROKEN: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
