"""Scale-out on Redis Cluster: aggregate routing throughput of a many-tenant
load on a cluster of three masters, against the same load on one master.

Both runs use the same code path: a local Redis Cluster started by this
benchmark (localredis/cluster.py; no persistence, no replicas), with all
16384 slots on one master for the baseline and spread over three for the
scale-out, the same tenants, the same client processes and the same timer
worker process (subscribed on every master, as in production).

Load: `--tenants` tenants (hash tags spread over the masters by CRC16), each
with one MRD, one queue and READY agents with room to spare. `--procs`
client processes, each with `--concurrency` coroutines; each coroutine
handles calls end to end on random tenants through Engine: push_task (which
reserves an agent), accept, close_media — three atomic scripts per call.
The figure is scripts/s over all processes.

Be honest about the machine: all redis-servers, client processes and the
worker share the machine's cores. Three masters can only beat one by as much
as there are cores to run them, and the Python clients need cores too; the
report prints the core count and where the CPU went (servers vs clients).

    python benchmarks/tools/cluster_bench.py                # 1 and 3 masters, 10 s each
    python benchmarks/tools/cluster_bench.py --quick        # 3 s each, fewer tenants
    python benchmarks/tools/cluster_bench.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from localredis.cluster import LocalCluster, start_cluster  # noqa: E402

MAX_REQUESTS = 50
AGENTS = 4


def tenant_names(n: int) -> list[str]:
    return [f"bench-{i}" for i in range(n)]


async def setup(url: str, tenants: list[str]) -> None:
    from redroute import Engine
    from redroute.backend import connect
    from redroute.engine import default_runner

    rc = connect(url)
    try:
        await default_runner().load_all(rc)
        for t in tenants:
            e = Engine(rc, t)
            await e.put_mrd("chat", max_requests=MAX_REQUESTS)
            await e.put_queue("sales", mrd_id="chat")
            for a in range(AGENTS):
                await e.put_agent(f"a{a}", queues=["sales"])
                await e.set_agent_state(f"a{a}", "READY")
    finally:
        await rc.aclose()


def client_process(url: str, tenants: list[str], concurrency: int, start_at: float,
                   duration: float, seed: int, out: Any) -> None:
    """One load-generating process; sends its counts to `out`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> dict[str, Any]:
        from redroute import Engine
        from redroute.backend import connect

        rc = connect(url)
        engines = [Engine(rc, t) for t in tenants]
        rng = random.Random(seed)
        scripts = errors = 0
        lat: list[float] = []
        await rc.initialize()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop = time.time() + duration

        async def caller(i: int) -> None:
            nonlocal scripts, errors
            n = 0
            while time.time() < stop:
                e = engines[rng.randrange(len(engines))]
                t0 = time.perf_counter()
                try:
                    t = await e.push_task(f"c-{seed}-{i}-{n}", "sales")
                    if t.assigned_to is None:
                        errors += 1
                        continue
                    t = await e.accept(t.id, t.media.id, t.assigned_to)
                    await e.close_media(t.id, t.media.id)
                    scripts += 3
                except Exception:  # noqa: BLE001 - counted; a benchmark must not stop
                    errors += 1
                lat.append(time.perf_counter() - t0)
                n += 1

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        await rc.aclose()
        lat.sort()
        return {
            "scripts": scripts, "errors": errors, "calls": len(lat),
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
            "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        }

    out.put(asyncio.run(main()))


def server_stats(cluster: LocalCluster) -> dict[int, dict[str, float]]:
    out = {}
    for n in cluster.nodes:
        c = n.client()
        cpu = c.info("cpu")
        stats = c.info("commandstats")
        out[n.port] = {
            "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            "evalsha": float(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
            "publish": float(stats.get("cmdstat_publish", {}).get("calls", 0)),
        }
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all processes), /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_one(masters: int, args: argparse.Namespace) -> dict[str, Any]:
    # The one-master baseline is still a cluster: same client, same routing.
    cluster = start_cluster(masters, persistent=False)
    worker = None
    try:
        tenants = tenant_names(args.tenants)
        per_master: dict[int, int] = {}
        for t in tenants:
            port = cluster.port_for_tenant(t)
            per_master[port] = per_master.get(port, 0) + 1
        asyncio.run(setup(cluster.url, tenants))
        if args.worker:
            env = {**os.environ, "REDIS_URL": cluster.url, "REDROUTE_LOG_LEVEL": "WARNING",
                   "PYTHONPATH": str(ROOT / "src")}
            worker = subprocess.Popen([sys.executable, "-m", "redroute", "worker"], env=env)
        time.sleep(1.0)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + 2.0 + 0.2 * args.procs  # after every process has started
        procs = [ctx.Process(target=client_process,
                             args=(cluster.url, tenants, args.concurrency, start_at,
                                   args.duration, i, q)) for i in range(args.procs)]
        for p in procs:
            p.start()
        time.sleep(max(0.0, start_at - time.time()))
        before = server_stats(cluster)
        busy0, worker0 = machine_busy_s(), process_cpu_s(worker.pid) if worker else 0.0
        time.sleep(args.duration)
        after = server_stats(cluster)
        busy1, worker1 = machine_busy_s(), process_cpu_s(worker.pid) if worker else 0.0
        results = [q.get(timeout=args.duration + 120) for _ in procs]
        for p in procs:
            p.join(30)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        cluster.stop()
    scripts = sum(r["scripts"] for r in results)
    nodes = {
        port: {
            "tenants": per_master.get(port, 0),
            "scripts": int(after[port]["evalsha"] - before[port]["evalsha"]),
            "publishes": int(after[port]["publish"] - before[port]["publish"]),
            "cpu_s": round(after[port]["cpu_s"] - before[port]["cpu_s"], 2),
        }
        for port in after
    }
    return {
        "masters": masters,
        "scripts_per_s": round(scripts / args.duration),
        "calls_per_s": round(sum(r["calls"] for r in results) / args.duration),
        "errors": sum(r["errors"] for r in results),
        "p50_ms": round(sorted(r["p50_ms"] for r in results)[len(results) // 2], 2),
        "p99_ms": round(max(r["p99_ms"] for r in results), 2),
        "server_cpu_s": round(sum(n["cpu_s"] for n in nodes.values()), 2),
        "client_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "worker_cpu_s": round(worker1 - worker0, 2),
        "machine_busy_s": round(busy1 - busy0, 2),
        "nodes": nodes,
    }


def others_cpu_s(r: dict[str, Any]) -> float:
    """Machine CPU used by anything but this benchmark's processes."""
    return max(0.0, r["machine_busy_s"] - r["server_cpu_s"] - r["client_cpu_s"]
               - r["worker_cpu_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenants", type=int, default=60)
    p.add_argument("--procs", type=int, default=4, help="client processes")
    p.add_argument("--concurrency", type=int, default=32, help="coroutines per process")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--masters", default="1,3", help="comma-separated master counts")
    p.add_argument("--repeat", type=int, default=2, help="runs per master count, alternated")
    p.add_argument("--no-worker", dest="worker", action="store_false",
                   help="run no timer worker process")
    p.add_argument("--quick", action="store_true", help="3 s runs, 24 tenants")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    if args.quick:
        args.duration, args.tenants = 3.0, 24
    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores ({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}; {args.tenants} tenants, {args.procs} client "
          f"processes x {args.concurrency} callers, {args.duration:.0f} s per run, "
          f"timer worker: {'yes' if args.worker else 'no'}")
    if cores < 4:
        print(f"note: only {cores} cores for every redis-server, client process and the worker;"
              " three masters cannot use more CPU than that, so the ratio is bounded by cores")
    runs = []
    counts = [int(x) for x in args.masters.split(",")]
    for rep in range(args.repeat):
        for m in counts:  # alternated, so both see the same background load
            r = run_one(m, args)
            r["repeat"] = rep
            runs.append(r)
            print(f"\n{m} master(s), run {rep + 1}: {r['scripts_per_s']:,} scripts/s "
                  f"({r['calls_per_s']:,} calls/s), errors {r['errors']}, call p50 {r['p50_ms']} ms"
                  f" p99 {r['p99_ms']} ms; CPU s over {args.duration:.0f} s x {cores} cores = "
                  f"{cores * args.duration:.0f}: servers {r['server_cpu_s']}, clients "
                  f"{r['client_cpu_s']}, worker {r['worker_cpu_s']}, other processes "
                  f"{others_cpu_s(r):.1f}")
            for port, n in sorted(r["nodes"].items()):
                per = 1e6 * n["cpu_s"] / n["scripts"] if n["scripts"] else 0.0
                print(f"  master 127.0.0.1:{port}: {n['tenants']} tenants, {n['scripts']:,} "
                      f"scripts, {n['publishes']:,} PUBLISH rr:wake, {n['cpu_s']} CPU s "
                      f"({per:.0f} µs per script)")
    out: dict[str, Any] = {"cores": cores, "args": {k: str(v) for k, v in vars(args).items()},
                           "runs": runs}
    med = {m: statistics.median(r["scripts_per_s"] for r in runs if r["masters"] == m)
           for m in counts}
    # Server CPU per script: what a master costs per script whatever the number
    # of masters; with a core per master, capacity grows with the masters.
    cost = {m: statistics.median(1e6 * r["server_cpu_s"] / max(1, sum(
        n["scripts"] for n in r["nodes"].values())) for r in runs if r["masters"] == m)
        for m in counts}
    out["server_us_per_script"] = {m: round(v, 1) for m, v in cost.items()}
    print("server CPU per script: " + ", ".join(f"{m} master(s) {v:.0f} µs"
                                                 for m, v in cost.items()))
    # Scripts per CPU second of this benchmark's own processes (servers,
    # clients, worker): comparable whatever else the machine was running.
    eff = {m: statistics.median(
        r["scripts_per_s"] * args.duration
        / max(0.01, r["server_cpu_s"] + r["client_cpu_s"] + r["worker_cpu_s"])
        for r in runs if r["masters"] == m) for m in counts}
    out["scripts_per_cpu_s"] = {m: round(v) for m, v in eff.items()}
    print("scripts per CPU second (servers + clients + worker): "
          + ", ".join(f"{m} master(s) {v:,.0f}" for m, v in eff.items()))
    out["median_scripts_per_s"] = med
    print("\nmedian scripts/s: " + ", ".join(f"{m} master(s) {v:,.0f}" for m, v in med.items()))
    if len(counts) >= 2 and med[counts[0]]:
        ratio = med[counts[-1]] / med[counts[0]]
        out["ratio"] = round(ratio, 2)
        print(f"throughput ratio, {counts[-1]} masters / {counts[0]}: {ratio:.2f}x on {cores} "
              f"cores")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
