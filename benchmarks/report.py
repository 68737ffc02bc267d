"""Markdown tables of a run's results (the figures part of RESULTS.md), or
the targets of several runs side by side with each target's median.

    python benchmarks/report.py [benchmarks/results/latest-full.json] > figures.md
    python benchmarks/report.py --runs A.json B.json C.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from harness import RESULTS


def f(x: Any, fmt: str = ".0f") -> str:
    return "–" if x is None else format(x, fmt)


def measured(value: float | None, unit: str) -> str:
    """A target's measured value as the tables show it."""
    if value is None:
        return "not measured"
    return f"{value:.3g}{' ' + unit if unit == 'ms' else unit}"


def render(r: dict[str, Any], images: str = "../docs/benchmarks") -> str:
    m = r["machine"]
    s = r["sections"]
    ml = r.get("machine_load") or {}
    out = [f"Run: `{r['command']}` on {r['date']}, commit {r.get('commit')}, {r['total_seconds']:.0f} s.",
           "",
           f"Machine: {m['cpus']} cores ({m['cpu_model']}), {m['memory']}, {m['platform']}, "
           f"Python {m['python']}, {m['redis_server'].split(' sha=')[0]}. {m['split_text']}.",
           ""]
    if ml:
        out += [f"Other processes used {ml['cpu_seconds_other_processes']:.0f} of "
                f"{ml['cpu_seconds_available']:.0f} CPU-seconds during the run "
                f"({100 * ml['other_processes_share']:.0f}% of the machine).", ""]

    out += ["### Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for t in r["targets"]:
        val = measured(t["measured"], t["unit"])
        met = {True: "met", False: "**missed**", None: "–"}[t["met"]]
        out.append(f"| {t['what']} {t['target']} | {val} | {met} |")
    out.append("")

    if "engine" in s and "error" not in s["engine"]:
        e = s["engine"]
        out += ["### Engine throughput vs the no-op script", "",
                f"![engine ratios]({images}/engine_ratios.png)", ""]
        for mode in ("facade", "pipelined"):
            mm = e[mode]
            out += [f"{mode}: concurrency {mm['concurrency']}, pipeline depth {mm['pipeline_depth']}", "",
                    "| operation | client scripts/s | ÷ no-op | Redis CPU µs/script | Redis-core capacity/s | ÷ no-op | script µs |",
                    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for x in mm["rows"]:
                out.append(f"| {x['op']} | {f(x['client_scripts_per_s'])} | {f(x['client_ratio_to_noop'], '.3f')} | "
                           f"{f(x['redis_cpu_us_per_script'], '.1f')} | {f(x['redis_capacity_scripts_per_s'])} | "
                           f"{f(x['redis_capacity_ratio_to_noop'], '.3f')} | {f(x['script_us_per_call'], '.1f')} |")
            out.append("")

    if "http" in s and "error" not in s["http"]:
        h = s["http"]
        out += ["### HTTP under open-loop load", "", f"![HTTP latency]({images}/http_latency.png)", ""]
        for key in ("bare", "push", "accept"):
            t = h[key]
            extra = ""
            if "throughput_ratio_to_bare" in t:
                extra = (f"; {t['throughput_ratio_to_bare']:.2f} × the bare handler's (by server CPU per request "
                         f"at saturation: {t['cpu_ratio_to_bare']:.2f})")
            out += [f"**{t['name']}**: saturation {t['saturation_rps']:.0f} req/s (closed loop, 32 connections; "
                    f"server CPU {t['probe']['server_cpu_us_per_request']:.0f} µs/request){extra}", "",
                    "| offered/s | achieved/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/req | load generator CPU µs/req |",
                    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for x in t["steps"]:
                out.append(f"| {f(x['offered_rps'])} | {f(x['achieved_rps'])} | {f(x['p50_ms'], '.2f')} | "
                           f"{f(x['p99_ms'], '.2f')} | {f(x['p999_ms'], '.2f')} | {x['errors']} | "
                           f"{f(x['server_cpu_us_per_request'])} | {f(x['loadgen_cpu_us_per_request'])} |")
            out.append("")

    if "events" in s and "error" not in s["events"]:
        ev = s["events"]
        out += ["### Event delivery latency", "", f"![event latency]({images}/event_latency.png)", "",
                f"Pushes at {ev['push_rate']:.0f}/s for {ev['seconds']:.0f} s per consumer (4 events per push).", "",
                "| consumer | events | p50 ms | p99 ms | max ms | p50 / p99 from entry id ms |",
                "| --- | ---: | ---: | ---: | ---: | --- |"]
        for name, c in ev["consumers"].items():
            a, b = c["from_call"], c["from_entry_id"]
            out.append(f"| {name} | {c['events']} | {f(a['p50_ms'], '.2f')} | {f(a['p99_ms'], '.2f')} | "
                       f"{f(a['max_ms'], '.2f')} | {f(b['p50_ms'], '.1f')} / {f(b['p99_ms'], '.1f')} |")
        out.append("")

    if "timers" in s and "error" not in s["timers"]:
        t = s["timers"]
        lag = t["fire_lag"]
        out += ["### Timers", "", f"![timer lag]({images}/timer_lag.png)", "",
                f"Fire lag of {lag['timed']} TTL deadlines spread over {lag['spread_ms']} ms among "
                f"{lag['live_deadlines']} live ones: p50 {f(lag['lag']['p50_ms'], '.1f')} ms, p99 "
                f"{f(lag['lag']['p99_ms'], '.1f')} ms, max {f(lag['lag']['max_ms'], '.0f')} ms.", "",
                "| backlog | deadlines | handled/s | script µs per deadline | longest fire_due call ms |",
                "| --- | ---: | ---: | ---: | ---: |"]
        for k in ("ttl_backlog", "rona_backlog"):
            b = t[k]
            out.append(f"| {b['kind']} | {b['deadlines']} | {f(b['per_second'])} | "
                       f"{f(b['redis_script_us_per_fired'])} | {f(b['longest_fire_due_call_ms'], '.1f')} |")
        out.append("")

    if "scaling" in s and "error" not in s["scaling"]:
        sc = s["scaling"]
        out += ["### Scaling and memory", "", f"![scaling]({images}/scaling.png)", "",
                "| waiting tasks | READY takes best task: script µs | Redis CPU µs | push parks: script µs |",
                "| ---: | ---: | ---: | ---: |"]
        for x in sc["waiting"]:
            out.append(f"| {x['waiting']} | {f(x['ready_takes_task']['script_us'], '.1f')} | "
                       f"{f(x['ready_takes_task']['redis_cpu_us'], '.1f')} | {f(x['push_enqueues']['script_us'], '.1f')} |")
        out += ["", "| READY agents | push reserves best agent: script µs | Redis CPU µs |", "| ---: | ---: | ---: |"]
        for x in sc["agents"]:
            out.append(f"| {x['agents']} | {f(x['push_reserves']['script_us'], '.1f')} | "
                       f"{f(x['push_reserves']['redis_cpu_us'], '.1f')} |")
        mw, ma = sc["memory"]["per_waiting_task"], sc["memory"]["per_agent"]
        out += ["", "| Redis memory | total | of which event stream | state |", "| --- | ---: | ---: | ---: |",
                f"| per waiting task (over the last {mw['added']} loaded) | {f(mw['bytes_total'])} B | "
                f"{f(mw['bytes_stream'])} B | {f(mw['bytes_state'])} B |",
                f"| per READY agent (over the last {ma['added']} loaded) | {f(ma['bytes_total'])} B | "
                f"{f(ma['bytes_stream'])} B | {f(ma['bytes_state'])} B |", ""]

    if "peers" in s:
        p = s["peers"]
        out += ["### Peers: BullMQ and saq on the same Redis", "",
                f"{p.get('units')} units each, concurrency {p.get('concurrency')}, one peer at a time on "
                "the same Redis (flushed between them).", "",
                "| system | unit | units/s | Redis CPU per unit | Redis commands per unit |",
                "| --- | --- | ---: | ---: | ---: |"]
        for k in ("bullmq", "saq", "redroute"):
            x = p.get(k) or {"error": "not run"}
            if "error" in x:
                out.append(f"| {k} | broken: {x['error'].splitlines()[0]} | | | |")
                continue
            out.append(f"| {x['name']} | {x['unit']} | {f(x['units_per_s'])} | "
                       f"{f(x['redis_cpu_us_per_unit'])} µs | {f(x['redis_commands_per_unit'], '.1f')} |")
        for k, label in (("saq", "saq"), ("bullmq", "BullMQ")):
            if f"rate_ratio_{k}" in p:
                out.append(f"\nredroute ÷ {label}: {p[f'rate_ratio_{k}']:.2f}× the units/s, "
                           f"{p[f'redis_cpu_ratio_{k}']:.2f}× the Redis CPU per unit.")
        out.append("")

    if "lua_profile" in s and "error" not in s["lua_profile"]:
        lp = s["lua_profile"]
        out += ["### Where the scripts' time goes", "",
                "| script | script µs | redis.calls | µs in them | µs in Lua | events | bytes/event | top commands (per call: count, µs) |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for x in lp["scripts"]:
            top = ", ".join(f"{c} ×{v['per_call']:.1f} {v['us_per_call']:.1f}" for c, v in list(x["commands"].items())[:5])
            out.append(f"| {x['op']} | {f(x['script_us'], '.1f')} | {f(x['redis_calls'], '.1f')} | "
                       f"{f(x['redis_calls_us'], '.1f')} | {f(x['lua_us'], '.1f')} | {f(x['events'], '.1f')} | "
                       f"{f(x['event_bytes'])} | {top} |")
        out += ["", "Micro-benchmarks (µs each, in a loop inside one EVAL):", "", "| piece | µs |", "| --- | ---: |"]
        for k, v in lp["micro_us"].items():
            out.append(f"| {k} | {v:.2f} |")
        wi = lp.get("whatif")
        if wi:
            names = ["baseline", "prologue", "task_json free", "agent_json free", "no XADD", "no events",
                     "XADD no MAXLEN"]
            out += ["", "What-if variants (Redis CPU µs per call, lowest of repeats; built in memory from lua/):", "",
                    "| script | " + " | ".join(names) + " | task_json / agent_json / emit calls per run |",
                    "| --- | " + " | ".join("---:" for _ in names) + " | --- |"]
            for row in wi["ops"]:
                c = row["calls_per_run"]
                calls = " / ".join(f"{c.get(k, 0):g}" for k in ("task_json", "agent_json", "emit"))
                out.append(f"| {row['op']} | " + " | ".join(f(row["us"].get(n)) for n in names) + f" | {calls} |")
        out += ["", "push_task (reserves) vs closed tasks already in its conversation: " + ", ".join(
            f"{c['closed_in_conversation']}: {c['script_us']:.0f} µs ({c['gets']:.0f} GETs)"
            for c in lp.get("push_vs_conversation", [])), ""]
        out += ["", "close_media vs the tasks the closing agent holds: " + ", ".join(
            f"{h['held']} more held: {h['script_us']:.0f} µs" for h in lp["close_vs_held"]), ""]
    return "\n".join(out)


def runs_table(runs: list[dict[str, Any]]) -> str:
    """Each target in every run, and the median of the runs against the target."""
    head = " | ".join(f"{r['date'][11:16]} ({r.get('commit') or '?'})" for r in runs)
    out = [f"| target | wanted | {head} | median |",
           "| --- | --- | " + " | ".join("---" for _ in runs) + " | --- |"]
    for i, t in enumerate(runs[0]["targets"]):
        vals = [r["targets"][i]["measured"] for r in runs]
        cells = ["–" if v is None else measured(v, t["unit"]) for v in vals]
        got = [v for v in vals if v is not None]
        med = statistics.median(got) if got else None
        wanted = float(t["target"].split()[1])  # as written: ">= 0.25", "<= 5 ms"
        met = None if med is None else (med >= wanted if t["target"].startswith(">=") else med <= wanted)
        verdict = "–" if med is None else measured(med, t["unit"]) + (" met" if met else " **missed**")
        out.append(f"| {t['what']} | {t['target']} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(out)


def peers_runs_table(runs: list[dict[str, Any]]) -> str:
    """The peers section of every run: each system's units/s and Redis CPU per
    unit in each run, and their medians (issue 19's table)."""
    runs = [r for r in runs if "peers" in r.get("sections", {})]
    if not runs:
        return ""
    head = " / ".join(r["date"][11:16] for r in runs)
    out = [f"| system | unit | units/s ({head}) | median | Redis CPU per unit ({head}) | median |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
    for k in ("bullmq", "saq", "redroute"):
        rows = [r["sections"]["peers"].get(k) or {} for r in runs]
        ok = [x for x in rows if "units_per_s" in x]
        if not ok:
            continue
        rates = [f(x.get("units_per_s")) for x in rows]
        cpus = [f(x.get("redis_cpu_us_per_unit")) + " µs" if "units_per_s" in x else "–" for x in rows]
        out.append(f"| {ok[0]['name']} | {ok[0]['unit']} | {' / '.join(rates)} | "
                   f"{f(statistics.median(x['units_per_s'] for x in ok))} | {' / '.join(cpus)} | "
                   f"{f(statistics.median(x['redis_cpu_us_per_unit'] for x in ok))} µs |")
    return "\n".join(out)


def main() -> None:
    if sys.argv[1:2] == ["--runs"]:
        runs = [json.loads(Path(a).read_text()) for a in sys.argv[2:]]
        print(runs_table(runs))
        peers = peers_runs_table(runs)
        if peers:
            print("\n" + peers)
        return
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "latest-full.json"
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
