"""Instructions the Python process executes per lifecycle through the Engine
(push -> reserve, accept, close; 16 callers, or --callers), under callgrind: a
run of `--many` lifecycles minus a run of `--few`, so start-up and set-up cancel.
With `--without-fast-paths` the same run with what issue 19 added to the
Python client switched off in the process (redis-py's asyncio packer instead
of hiredis', json instead of orjson): the pair says what those bought.

    python benchmarks/tools/engine_instructions.py [--without-fast-paths]

Needs valgrind. About three minutes: the four runs go in parallel.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the suite's modules
from harness import cpu_split, describe_split, start_redis  # noqa: E402


async def lifecycles(url: str, n: int, tenant: str, slow: bool, callers: int) -> None:
    import redis.asyncio as aioredis

    from redroute import Engine, jsoncodec
    from redroute.backend import connect
    from redroute.limits import DAY_MS

    if slow:
        jsoncodec.loads = lambda raw, floats_in=None, **kw: json.loads(raw, **kw)
    redis = connect(url, socket_timeout=120, socket_connect_timeout=120)  # valgrind: 50x slower
    if slow:
        redis.connection_pool.connection_class = aioredis.Connection
    engine = Engine(redis, tenant)
    await engine.put_mrd("chat", max_requests=4)
    await engine.put_queue("sales", mrd_id="chat", agent_sla_ms=DAY_MS, agent_request_ttl_ms=DAY_MS)
    for i in range(callers + 8):
        await engine.put_agent(f"a{i}", queues=["sales"])
        await engine.set_agent_state(f"a{i}", "READY")
    items = list(range(n))

    async def caller() -> None:
        while items:
            i = items.pop()
            t = await engine.push_task(f"c-{i}", "sales")
            await engine.accept(t.id, t.media.id, t.assigned_to)
            await engine.close_media(t.id, t.media.id)

    await asyncio.gather(*[caller() for _ in range(callers)])
    await redis.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--few", type=int, default=100)
    ap.add_argument("--many", type=int, default=1100)
    ap.add_argument("--callers", type=int, default=16,
                    help="concurrent callers (the peers section runs 100)")
    ap.add_argument("--without-fast-paths", action="store_true")
    ap.add_argument("--run", nargs=5, metavar=("URL", "N", "TENANT", "SLOW", "CALLERS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:  # one counted process
        url, n, tenant, slow, callers = args.run
        asyncio.run(lifecycles(url, int(n), tenant, slow == "1", int(callers)))
        return
    if not shutil.which("valgrind"):
        sys.exit("valgrind (callgrind) is not installed")
    split = cpu_split()
    print(describe_split(split))
    server = start_redis(split["pinned"])
    out = Path(tempfile.mkdtemp(prefix="redroute-engine-cg-"))
    variants = [("with hiredis packing and orjson", "0")]
    if args.without_fast_paths:
        variants.append(("without (redis-py's packer, json)", "1"))
    try:
        procs = {}
        for _, slow in variants:
            for n in (args.few, args.many):
                f = out / f"cg-{slow}-{n}.out"
                procs[(slow, n)] = (f, subprocess.Popen(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={f}", sys.executable,
                     __file__, "--run", server.url, str(n), f"cg{slow}n{n}", slow, str(args.callers)],
                    stdout=subprocess.DEVNULL, stderr=(out / f"cg-{slow}-{n}.log").open("w")))
        totals = {}
        for key, (f, p) in procs.items():
            if p.wait() != 0:
                log = f.with_suffix(".log").read_text()
                sys.exit(f"the counted run {key} failed:\n{log[-2000:]}")
            line = next(x for x in f.read_text().splitlines() if x.startswith("totals:"))
            totals[key] = int(line.split()[1])
        for label, slow in variants:
            per = (totals[(slow, args.many)] - totals[(slow, args.few)]) / (args.many - args.few)
            print(f"  {label:36} {per:12,.0f} instructions per lifecycle (Python process)")
    finally:
        server.stop()
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
