"""redroute's benchmark suite: one command, one JSON result, PNG plots.

    python benchmarks/run.py --quick     # CI smoke run, < 2 minutes
    python benchmarks/run.py --full      # the measurement, ~4 minutes
    python benchmarks/run.py --full --publish   # also copies the PNGs to docs/benchmarks/

It starts its own redis-server on a free loopback port (never 6379), pinned
to core 0 with taskset; this process and everything it starts (redroute
serve, the bare baseline server, load generators, timer worker, consumers)
run on the other cores. Sections (see each module's docstring):

  engine       engine_bench.py  scripts/s of push+reserve, accept, close, a lifecycle vs noop
  lua_profile  lua_profile.py   where each script's µs go (redis.call vs Lua), micro-benchmarks
  scaling      scaling_bench.py decision cost vs waiting tasks / agents; bytes per task / agent
  timers       timer_bench.py   fire lag with thousands of live deadlines; TTL and RONA per second
  events       events_bench.py  delivery latency to SSE, XREADGROUP and GroupConsumer
  http         http_bench.py    open-loop latency vs load, against a bare aiohttp handler
  peers        peers_bench.py   BullMQ (Node) and saq beside redroute's lifecycle: units/s, Redis CPU per unit
  skills       skills_bench.py  decision cost with 10 steps, small vs large; lifecycle with 3 steps vs none
  webhooks     webhooks_bench.py deliveries/s to a local receiver vs bare POSTs; step -> receiver latency
  policies     policies_bench.py decision cost with aging and blocking; lifecycle with vs without
  ewt          ewt_bench.py     estimated-wait accuracy on M/M/c loads through the real engine (simulator)
  statistics   statistics_bench.py lifecycle with queue statistics counted vs off; the window read
  simulator    sim_bench.py     an 8-hour day of 8,000 requests through redroute.sim: wall time, requests/s per backend

The targets are reported met or missed; they never change the exit code.
The exit code is non-zero only when a section broke (an exception).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
import traceback
from typing import Any

import engine_bench
import events_bench
import ewt_bench
import http_bench
import lua_profile
import peers_bench
import policies_bench
import scaling_bench
import sim_bench
import skills_bench
import statistics_bench
import timer_bench
import webhooks_bench
from harness import (
    RESULTS,
    ROOT,
    MachineLoad,
    clean_json,
    cpu_split,
    describe_split,
    machine,
    start_redis,
    wait_quiet,
)

SECTIONS = {
    "engine": (engine_bench.run, engine_bench.table, "Engine throughput vs the no-op script"),
    "lua_profile": (lua_profile.run, lua_profile.table, "Where the scripts' time goes"),
    "scaling": (scaling_bench.run, scaling_bench.table, "Scaling and memory"),
    "timers": (timer_bench.run, timer_bench.table, "Timers"),
    "events": (events_bench.run, events_bench.table, "Event delivery latency"),
    "http": (http_bench.run, http_bench.table, "HTTP under open-loop load"),
    "peers": (peers_bench.run, peers_bench.table, "Peers: BullMQ and saq on the same Redis"),
    "skills": (skills_bench.run, skills_bench.table, "Skills: queue steps"),
    "webhooks": (webhooks_bench.run, webhooks_bench.table, "Webhook delivery"),
    "policies": (policies_bench.run, policies_bench.table, "Routing policies: aging, overflow, blocks"),
    "ewt": (ewt_bench.run, ewt_bench.table, "Estimated wait: accuracy on M/M/c"),
    "statistics": (statistics_bench.run, statistics_bench.table, "Queue statistics: counting on vs off"),
    "simulator": (sim_bench.run, sim_bench.table, "Simulator: a contact-center day on the real scripts"),
}
DOCS = ROOT.parent / "docs" / "benchmarks"


def _get(d: dict[str, Any], *path: Any) -> Any:
    for p in path:
        if d is None:
            return None
        d = d[p] if isinstance(p, int) else d.get(p)
    return d


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target as measured in this run: met, missed, or not measured."""
    out: list[dict[str, Any]] = []

    def add(tid: str, what: str, target: str, value: float | None, ok: bool | None, unit: str = "") -> None:
        out.append({"id": tid, "what": what, "target": target,
                    "measured": None if value is None else round(value, 4), "unit": unit,
                    "met": ok})

    def ge(v: float | None, t: float) -> bool | None:
        return None if v is None else v >= t

    def le(v: float | None, t: float) -> bool | None:
        return None if v is None else v <= t

    eng = s.get("engine", {})
    for mode in ("facade", "pipelined"):
        rows = _get(eng, mode, "rows") or []
        life = next((r for r in rows if r["op"] == "lifecycle"), None)
        v = life["client_ratio_to_noop"] if life else None
        m = eng.get(mode, {})
        add(f"engine_lifecycle_{mode}",
            f"lifecycle scripts/s ÷ no-op scripts/s, {mode} (concurrency {m.get('concurrency')}, "
            f"pipeline depth {m.get('pipeline_depth')})", ">= 0.25", v, ge(v, 0.25), "x")
    rows = _get(eng, "pipelined", "rows") or []
    life = next((r for r in rows if r["op"] == "lifecycle"), None)
    v = life["redis_capacity_ratio_to_noop"] if life else None
    add("engine_lifecycle_redis_core", "lifecycle ÷ no-op, Redis-core capacity (Redis CPU µs per "
        "script, pipelined): the limit itself", ">= 0.25", v, ge(v, 0.25), "x")

    http = s.get("http", {})
    for key, label in (("push", "POST /v1/tasks"), ("accept", "accept (PUT …/media/{mid}/state)")):
        v = _get(http, key, "throughput_ratio_to_bare")
        add(f"http_{key}_throughput", f"{label} saturation throughput ÷ bare handler's", ">= 0.70", v,
            ge(v, 0.70), "x")
        v = _get(http, key, "half_saturation", "p99_ms")
        add(f"http_{key}_p99_half", f"{label} p99 at half of its saturation (open loop)", "<= 5 ms", v,
            le(v, 5.0), "ms")

    ev = s.get("events", {})
    for key, label in (("sse", "SSE client (GET /v1/events)"),
                       ("xreadgroup", "consumer-group reader (XREADGROUP BLOCK)"),
                       ("groupconsumer", "redroute.events.consumer.GroupConsumer")):
        v = _get(ev, "consumers", key, "from_call", "p99_ms")
        add(f"events_{key}_p99", f"event delivery p99 to a {label}", "<= 5 ms", v, le(v, 5.0), "ms")

    v = _get(s.get("timers", {}), "fire_lag", "lag", "p99_ms")
    add("timer_lag_p99", "timer fire lag p99 with thousands of live deadlines", "<= 10 ms", v, le(v, 10.0), "ms")

    sc = s.get("scaling", {})
    rw, ra = sc.get("ratio_waiting") or {}, sc.get("ratio_agents") or {}
    v = rw.get("ready_takes_task_script")
    add("scaling_waiting", f"decision cost, {rw.get('to')} vs {rw.get('from')} waiting tasks (agent READY "
        "takes the best task, script µs)", "<= 1.5", v, le(v, 1.5), "x")
    v = ra.get("push_reserves_script")
    add("scaling_agents", f"decision cost, {ra.get('to')} vs {ra.get('from')} agents (push reserves the "
        "best agent, script µs)", "<= 1.5", v, le(v, 1.5), "x")

    sk = s.get("skills", {})
    for key, label in (("ready_takes_task", "an agent READY takes the best task"),
                       ("step_change_reserves", "a task reaching step 10 is reserved")):
        v = _get(sk, "ratio", key)
        add(f"skills_{key}", f"decision cost with 10 steps, {_get(sk, 'large', 'agents')} agents and "
            f"{_get(sk, 'large', 'waiting_tasks')} waiting vs 10 and 100 ({label}, script µs)", "<= 1.5",
            v, le(v, 1.5), "x")
    v = _get(sk, "lifecycle", "throughput_ratio")
    add("skills_lifecycle_3_steps", "lifecycles/s on a queue with 3 steps ÷ on a queue without "
        "(same run)", ">= 0.8", v, ge(v, 0.8), "x")

    wh = s.get("webhooks", {})
    v = _get(wh, "rate_ratio_to_bare")
    add("webhooks_rate", "webhook deliveries/s (durable, one webhook) ÷ bare signed POSTs/s to the "
        "same receiver", ">= 0.3", v, ge(v, 0.3), "x")
    v = _get(wh, "latency", "latency", "p99_ms")
    add("webhooks_latency_p99", "webhook delivery p99, script step -> receiver, 200 events/s",
        "<= 20 ms", v, le(v, 20.0), "ms")

    peers = s.get("peers", {})
    v = peers.get("rate_ratio_saq")
    add("peers_saq_rate", "redroute lifecycles/s ÷ saq's jobs/s (same Redis, concurrency 100)", ">= 5", v,
        ge(v, 5.0), "x")
    v = peers.get("rate_ratio_bullmq")
    add("peers_bullmq_rate", "redroute lifecycles/s ÷ BullMQ's jobs/s (Node client, same Redis, "
        "concurrency 100)", ">= 0.5", v, ge(v, 0.5), "x")
    v = peers.get("redis_cpu_ratio_bullmq")
    add("peers_bullmq_redis_cpu", "Redis CPU per redroute lifecycle ÷ per BullMQ job (same Redis)",
        "<= 2.0", v, le(v, 2.0), "x")

    pol = s.get("policies", {})
    rw = pol.get("ratio_waiting") or {}
    v = rw.get("ready_takes_task_script")
    add("policies_scaling_waiting", f"decision cost with aging and blocking, {rw.get('to')} vs "
        f"{rw.get('from')} waiting tasks (script µs)", "<= 1.5", v, le(v, 1.5), "x")
    v = _get(pol, "lifecycle", "rate_ratio")
    add("policies_lifecycle", "lifecycle scripts/s with the routing policies ÷ without (same run, "
        "alternating rounds)", ">= 0.90", v, ge(v, 0.90), "x")

    for x in _get(s.get("ewt", {}), "loads") or []:
        v = x.get("p50_error_share_of_mean_wait")
        add(f"ewt_accuracy_rho{x['rho']}", f"estimated wait, M/M/{x['agents']} at rho {x['rho']}: the engine's "
            f"median absolute error ÷ the mean wait ({x['steady_answered']} answered in steady state; "
            f"p90 {_get(x, 'engine', 'p90AbsErrorMs')} ms)", "<= 0.30", v, le(v, 0.30), "x")
    v = _get(s.get("statistics", {}), "lifecycle", "rate_ratio")
    add("statistics_lifecycle", "lifecycle scripts/s with queue statistics counted ÷ with counting "
        "off (same run, alternating rounds)", ">= 0.85", v, ge(v, 0.85), "x")
    sim = s.get("simulator", {})
    v = _get(sim, "redis_day", "wall_s") if sim.get("full_day") else None
    add("simulator_day_8h", "simulator: the 8-hour day (8,000 requests, 40 agents, RONA, wrap-up) on "
        "a real Redis, one replication (full run only)", "<= 60 s", v, le(v, 60.0), "s")
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT.parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small counts: a CI smoke run (default)")
    g.add_argument("--full", action="store_true", help="the measurement (~4 minutes on 2 cores)")
    ap.add_argument("--only", help=f"comma-separated sections among {', '.join(SECTIONS)}")
    ap.add_argument("--publish", action="store_true", help="copy the PNG plots to docs/benchmarks/")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="first wait up to this long for the machine to be idle (other processes "
                         "skew every figure); the run starts anyway after that")
    args = ap.parse_args()
    quick = not args.full
    mode = "quick" if quick else "full"
    only = [x.strip() for x in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [x for x in only if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s): {', '.join(unknown)}")
    if not shutil.which("redis-server"):
        print("redis-server is not on PATH", file=sys.stderr)
        return 2

    split = cpu_split()
    quiet = None
    if args.wait_quiet > 0:
        print(f"waiting up to {args.wait_quiet:.0f} s for an idle machine…", flush=True)
        quiet = wait_quiet(args.wait_quiet)
        print(f"  {quiet}", flush=True)
    load = MachineLoad()
    load.start()
    started = time.time()
    results: dict[str, Any] = {
        "suite": "redroute benchmarks", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": mode, "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "commit": git_commit(), "machine": machine(split), "sections": {}, "section_seconds": {},
        "wait_quiet": quiet,
    }
    print(f"redroute benchmarks ({mode}) — {describe_split(split)}", flush=True)
    server = start_redis(split["pinned"])
    print(f"redis-server on 127.0.0.1:{server.port}", flush=True)
    broken = []
    try:
        for name in only:
            fn, table, title = SECTIONS[name]
            t0 = time.time()
            print(f"\n== {title} [{name}]", flush=True)
            try:
                r = await fn(server.url, quick)
                results["sections"][name] = r
                print(table(r), flush=True)
            except Exception as e:  # a broken section: record it, run the rest, fail at the end
                broken.append(name)
                # A section may hand back what it measured before it broke.
                partial = getattr(e, "partial", None) or {}
                results["sections"][name] = {**partial, "error": f"{type(e).__name__}: {e}",
                                             "traceback": traceback.format_exc()}
                if partial:
                    print(table(partial), flush=True)
                print(f"  BROKEN: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc()
            results["section_seconds"][name] = round(time.time() - t0, 1)
            print(f"  ({results['section_seconds'][name]:.0f} s)", flush=True)
    finally:
        server.stop()

    results["machine_load"] = load.stop()
    results["targets"] = targets(results["sections"])
    results["total_seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plot_dir = RESULTS / mode
    if not args.no_plots:
        try:
            import plots

            made = plots.all_plots(results, plot_dir)
            results["plots"] = [str(p.relative_to(ROOT.parent)) for p in made]
            if args.publish:
                DOCS.mkdir(parents=True, exist_ok=True)
                for p in made:
                    shutil.copy2(p, DOCS / p.name)
                results["published"] = [str((DOCS / p.name).relative_to(ROOT.parent)) for p in made]
        except Exception as e:
            broken.append("plots")
            results["plots_error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
    path = RESULTS / f"{mode}-{stamp}.json"
    text = json.dumps(clean_json(results), indent=1)
    path.write_text(text)
    (RESULTS / f"latest-{mode}.json").write_text(text)

    print("\n== Targets (ratios; met or missed never changes the exit code)")
    for t in results["targets"]:
        state = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        val = "not measured" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
        print(f"  [{state}] {t['what']}: {val} (target {t['target']})")
    ml = results["machine_load"]
    print(f"\n{describe_split(split)}")
    print(f"other processes used {ml['cpu_seconds_other_processes']:.0f} of "
          f"{ml['cpu_seconds_available']:.0f} CPU-seconds during the run "
          f"({100 * ml['other_processes_share']:.0f}% of the machine; load average "
          f"{ml['loadavg_start'][0]:.2f} -> {ml['loadavg_end'][0]:.2f})")
    print(f"results: {path.relative_to(ROOT.parent)} (and results/latest-{mode}.json)")
    for p in results.get("plots", []):
        print(f"plot: {p}")
    print(f"total {results['total_seconds']:.0f} s")
    if broken:
        print(f"BROKEN sections: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
