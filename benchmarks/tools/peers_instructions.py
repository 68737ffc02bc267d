"""Redis instructions per unit, BullMQ's job beside redroute's lifecycle,
counted by callgrind: the peers section's Redis-cost ratio without the
machine's load in it.

The peers section (peers_bench.py) compares Redis CPU seconds per unit,
which other processes on a shared 2-core machine move by several per cent
between runs. This runs each peer's own unit of peers_bench (BullMQ's Node
client through peers/bullmq_bench.cjs; redroute's push -> reserve -> accept
-> close through the Python Engine; both at concurrency 100) against a
private redis-server under `valgrind --tool=callgrind`, and divides the
instructions that redis-server executed by the units. What a unit costs
Redis in reading requests and writing replies is counted too (the kernel's
share of a system call is not).

  python benchmarks/tools/peers_instructions.py [-n UNITS]   (default 2000; ~1 min)

Needs valgrind, redis-server, node and npm (BullMQ is installed as the peers
section installs it). Not part of run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import redis as syncredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the suite's modules
import peers_bench  # noqa: E402
from lua_instructions import Callgrind  # noqa: E402

CONCURRENCY = peers_bench.CONCURRENCY


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="units per peer (default 2000)")
    n = ap.parse_args().n
    modules = peers_bench.node_modules()
    cg = Callgrind()
    url = f"redis://127.0.0.1:{cg.port}"
    try:
        cg.control("-z")
        subprocess.run([shutil.which("node") or "node", str(peers_bench.PEERS / "bullmq_bench.cjs"), url,
                        str(n), str(CONCURRENCY)], check=True, capture_output=True,
                       env={**os.environ, "NODE_PATH": str(modules)})
        bullmq = cg.counted() / n
        syncredis.Redis(port=cg.port).flushall()
        cg.control("-z")
        await peers_bench.redroute_units(url, n, CONCURRENCY)
        redroute = cg.counted() / n
    finally:
        cg.stop()
    print(f"Redis instructions per unit, {n} units each at concurrency {CONCURRENCY} (each count "
          "includes its peer's set-up and warm-up unit):")
    print(f"  BullMQ job (add -> process -> complete)             {bullmq / 1e3:8.0f}k")
    print(f"  redroute lifecycle (push -> reserve -> accept -> close) {redroute / 1e3:4.0f}k")
    print(f"  redroute / BullMQ: {redroute / bullmq:.2f} (issue 19's target for Redis CPU: <= 2.0)")


if __name__ == "__main__":
    asyncio.run(main())
