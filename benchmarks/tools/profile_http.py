"""Where the HTTP server's CPU goes: py-spy samples `redroute serve` and the
bare baseline server under the same closed-loop load, and splits each
server's CPU per request into categories (by the frames on each sampled
stack), so the difference between the two is attributed.

    python benchmarks/tools/profile_http.py [--seconds 8] [--kind push|accept]

Needs py-spy (the `bench` extra) and permission to ptrace the servers
(root, or kernel.yama.ptrace_scope=0). Not part of run.py: it is the tool
for explaining a missed HTTP target. Writes results/profile-http-<kind>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the suite's modules
import http_bench  # noqa: E402
from harness import RESULTS, cpu_split, describe_split, load_scripts, start_redis  # noqa: E402

# First match wins, checked in this order against every frame of a sample.
CATEGORIES: list[tuple[str, str]] = [
    ("event counter feed (SSE hub XREAD for /metrics)", r"TenantFeed\.|count_entries|EventHub\."),
    ("prometheus metrics", r"prometheus_client/"),
    ("timer worker", r"TimerWorker\.|redroute/timers\.py"),
    ("request body: pydantic validation", r"pydantic|model_validate|_validation_problem|_path \("),
    ("request body: read + JSON decode", r"decode_body|RequestHandler\._handle_request.*read|BaseRequest\.read"),
    ("Engine argument checks", r"redroute/validation\.py"),
    ("reply decode: Task.from_json", r"redroute/model\.py.*from_"),
    ("response encode: to_dict + json.dumps", r"negotiation\.py|to_dict"),
    ("redis-py call (send, parse, pool)", r"redis/"),
    ("response socket write", r"_SelectorSocketTransport\.write|writelines|write_eof"),
    ("aiohttp parsing + dispatch", r"aiohttp/"),
    ("asyncio event loop (select, callbacks)", r"asyncio/|selectors\.py"),
]


def categorize(path: Path) -> tuple[int, Counter[str]]:
    total = 0
    cats: Counter[str] = Counter()
    compiled = [(name, re.compile(p)) for name, p in CATEGORIES]
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        frames = stack.split(";")
        # Only what the event loop runs: drop the frames above its callbacks
        # (the roots differ between the two servers).
        loop = [i for i, f in enumerate(frames) if "_run_once" in f]
        if loop:
            frames = frames[loop[-1] + 1:]
        if not frames or all(re.search(r"selectors\.py|select \(", f) for f in frames):
            cats["asyncio event loop (select, callbacks)"] += count
            continue
        for name, rx in compiled:
            if any(rx.search(f) for f in frames):
                cats[name] += count
                break
        else:
            cats["other"] += count
    return total, cats


async def profile_one(server: http_bench.Server, kind: str, seconds: float, items: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "kind": kind, "tenant": "default",
                            "queue": "sales", "connections": 64, "timeout": 5.0, "server_pid": server.proc.pid,
                            "run_id": f"prof{kind}",
                            "steps": [{"closed": 32, "duration": seconds - 1.0, "warmup": 0.2}]}
    if items is not None:
        data = await items(int(5000 * seconds))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
            json.dump(data, tmp)
        spec["items"] = tmp.name
        await http_bench.settle_cpu(server.proc.pid)
    out = Path(tempfile.mkdtemp(prefix="redroute-pyspy-")) / "stacks.txt"
    spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                            "record", "-p", str(server.proc.pid), "-d", str(int(seconds)), "-r", "250",
                            "-f", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    await asyncio.sleep(0.5)
    res = await http_bench.loadgen(spec)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")
    step = res["steps"][0]
    step.pop("latencies_ms", None)
    total, cats = categorize(out)
    cpu = step["server_cpu_us_per_request"]
    return {"rps": step["achieved_rps"], "server_cpu_us_per_request": cpu, "samples": total,
            "categories": {k: {"share": v / total, "us_per_request": cpu * v / total}
                           for k, v in cats.most_common()}}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--kind", choices=("push", "accept"), default="push")
    args = ap.parse_args()
    split = cpu_split()
    redis_server = start_redis(split["pinned"])
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await load_scripts(redis)
    bare = http_bench.bare_server(redis_server.url)
    rr = http_bench.redroute_server(redis_server.url)
    try:
        await bare.ready()
        await rr.ready()
        await http_bench.add_agents(rr.base, 0, 200)
        b = await profile_one(bare, "bare", args.seconds)
        items = http_bench.AcceptItems(redis, rr.base, 200, 0) if args.kind == "accept" else None
        r = await profile_one(rr, args.kind, args.seconds, items)
    finally:
        rr.stop()
        bare.stop()
        await redis.aclose()
        redis_server.stop()
    result = {"kind": args.kind, "split": describe_split(split), "bare": b, "redroute": r}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"profile-http-{args.kind}.json"
    path.write_text(json.dumps(result, indent=1))
    print(describe_split(split))
    print(f"{'category':48} {'bare µs/req':>12} {'redroute µs/req':>16}")
    names = list(dict.fromkeys([*r["categories"], *b["categories"]]))
    for k in names:
        bv = b["categories"].get(k, {}).get("us_per_request", 0.0)
        rv = r["categories"].get(k, {}).get("us_per_request", 0.0)
        print(f"{k:48} {bv:12.0f} {rv:16.0f}")
    print(f"{'total server CPU per request':48} {b['server_cpu_us_per_request']:12.0f} "
          f"{r['server_cpu_us_per_request']:16.0f}")
    print(f"throughput (closed loop, 32 conns): bare {b['rps']:.0f}/s, redroute {r['rps']:.0f}/s")
    print(f"written to {path}")


if __name__ == "__main__":
    asyncio.run(main())
