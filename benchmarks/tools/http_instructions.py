"""Instructions per request of the HTTP servers (callgrind): `redroute serve`
answering POST /v1/tasks and the bare baseline (bare_server.py), each under
valgrind, counted over the same number of requests after a warm-up.

Unlike µs or req/s on this shared machine, the count barely moves between
runs (±1%), so it tells whether a Python-side change helped; RESULTS.md's
"what bought what" for the HTTP layer comes from it.

    python benchmarks/tools/http_instructions.py [--requests 1000]

Needs valgrind (callgrind_control). Each server starts in ~15 s under it;
the whole run takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the suite's modules
import http_bench  # noqa: E402
from harness import cpu_split, describe_split, load_scripts, start_redis  # noqa: E402


async def send(url: str, n: int, tag: str, concurrency: int = 8) -> None:
    left = list(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def worker() -> None:
            while left:
                i = left.pop()
                body = json.dumps({"conversationId": f"ci-{tag}-{i}", "queueId": "sales"})
                async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status >= 300:
                        raise RuntimeError(f"{url}: {r.status} {await r.text()}")

        await asyncio.gather(*[worker() for _ in range(concurrency)])


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


async def count(server: http_bench.Server, url: str, n: int, out: Path, agents: bool) -> float:
    """Instructions per request over n requests, after 100 uncounted ones."""
    await http_bench.wait_http(server.base + "/healthz", server.proc, timeout=300)
    if agents:
        await http_bench.add_agents(server.base, 0, 20)
    await send(url, 100, "warm")
    pid = str(server.proc.pid)
    control("-i", "on", pid)
    control("-z", pid)
    await send(url, n, "count")
    control("-d", pid)
    control("-i", "off", pid)
    dumps = sorted(out.glob(f"cg.{pid}.*"), key=lambda p: p.stat().st_mtime)
    totals = next(line for line in dumps[-1].read_text().splitlines() if line.startswith("totals:"))
    return int(totals.split()[1]) / n


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("valgrind (callgrind) is not installed")
    split = cpu_split()
    print(describe_split(split))
    redis_server = start_redis(split["pinned"])
    out = Path(tempfile.mkdtemp(prefix="redroute-http-cg-"))
    grind = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg.%p")
    try:
        redis = aioredis.from_url(redis_server.url, decode_responses=True)
        await load_scripts(redis)
        await redis.aclose()
        result = {}
        for name, make, path, agents in (("bare", http_bench.bare_server, "/bare", False),
                                         ("POST /v1/tasks", http_bench.redroute_server, "/v1/tasks", True)):
            server = make(redis_server.url, wrap=grind)
            try:
                result[name] = await count(server, server.base + path, args.requests, out, agents)
            finally:
                server.stop()
            print(f"  {name:16} {result[name]:12,.0f} instructions per request", flush=True)
        print(f"  bare ÷ POST /v1/tasks: {result['bare'] / result['POST /v1/tasks']:.3f}")
    finally:
        redis_server.stop()
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
