"""PNG plots of a run's results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"bare": "tab:gray", "push": "tab:blue", "accept": "tab:orange",
          "sse": "tab:green", "xreadgroup": "tab:purple", "groupconsumer": "tab:brown"}


def _subtitle(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    return (f"{meta['date']} · {meta['mode']} · commit {meta.get('commit')} · {m['cpus']} CPUs\n"
            f"{m['split_text']}")


def http_latency(r: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for key in ("bare", "push", "accept"):
        t = r[key]
        xs = [s["offered_rps"] for s in t["steps"]]
        p50 = [s["p50_ms"] for s in t["steps"]]
        p99 = [s["p99_ms"] for s in t["steps"]]
        label = {"bare": "bare aiohttp + 1 EVALSHA", "push": "POST /v1/tasks",
                 "accept": "PUT …/media/{mid}/state (accept)"}[key]
        ax.plot(xs, p99, "-o", color=COLORS[key], label=f"{label} p99")
        ax.plot(xs, p50, "--", marker=".", color=COLORS[key], alpha=0.8, label=f"{label} p50")
        ax.axvline(t["saturation_rps"], color=COLORS[key], linestyle=":", alpha=0.6)
    ax.axhline(5, color="red", linestyle="-.", linewidth=1, label="target p99 5 ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, requests/s (open loop; dotted: closed-loop saturation)")
    ax.set_ylabel("latency from scheduled send, ms")
    ax.set_title("HTTP latency vs offered load\n" + _subtitle(meta), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling(r: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8))
    w = r["waiting"]
    xs = [x["waiting"] for x in w]
    a1.plot(xs, [x["ready_takes_task"]["script_us"] for x in w], "-o", label="agent READY takes best task (script µs)")
    a1.plot(xs, [x["ready_takes_task"]["redis_cpu_us"] for x in w], "--o", label="same, Redis CPU µs/call")
    a1.plot(xs, [x["push_enqueues"]["script_us"] for x in w], "-s", label="push parks in queue (script µs)")
    a1.set_xscale("log")
    a1.set_xlabel("waiting tasks in the queue")
    a1.set_ylabel("µs per call, Redis side")
    a1.set_ylim(bottom=0)
    a1.set_title(f"waiting tasks: x{r['ratio_waiting']['ready_takes_task_script']:.2f} "
                 f"from {xs[0]} to {xs[-1]}", fontsize=10)
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=7)
    ag = r["agents"]
    xs = [x["agents"] for x in ag]
    a2.plot(xs, [x["push_reserves"]["script_us"] for x in ag], "-o", label="push reserves best agent (script µs)")
    a2.plot(xs, [x["push_reserves"]["redis_cpu_us"] for x in ag], "--o", label="same, Redis CPU µs/call")
    a2.set_xscale("log")
    a2.set_xlabel("READY agents in the queue")
    a2.set_ylim(bottom=0)
    a2.set_title(f"agents: x{r['ratio_agents']['push_reserves_script']:.2f} from {xs[0]} to {xs[-1]}",
                 fontsize=10)
    a2.grid(True, which="both", alpha=0.3)
    a2.legend(fontsize=7)
    fig.suptitle("Cost of a routing decision vs scale\n" + _subtitle(meta), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timer_lag(r: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    lag = r["fire_lag"]
    lags = lag["lags_ms"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    hi = max(lags) if lags else 1
    bins = range(0, int(hi) + 2)
    ax.hist(lags, bins=bins, color="tab:blue", alpha=0.8, align="left")
    for p, style in (("p50_ms", "--"), ("p99_ms", "-")):
        ax.axvline(lag["lag"][p], color="black", linestyle=style, label=f"{p[:-3]} {lag['lag'][p]:.1f} ms")
    ax.axvline(10, color="red", linestyle="-.", label="target p99 10 ms")
    ax.set_xlabel("fire lag, ms (Redis clock, 1 ms resolution)")
    ax.set_ylabel("deadlines")
    ax.set_title(f"Timer fire lag: {lag['timed']} TTL deadlines among {lag['live_deadlines']} live\n"
                 + _subtitle(meta), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def engine(r: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, mode in zip(axes, ("facade", "pipelined"), strict=True):
        rows = r[mode]["rows"]
        names = [x["op"] for x in rows]
        client = [x["client_ratio_to_noop"] for x in rows]
        core = [x["redis_capacity_ratio_to_noop"] for x in rows]
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], client, 0.4, label="client scripts/s ÷ no-op's")
        ax.bar([x + 0.2 for x in xs], core, 0.4, label="Redis-core capacity ÷ no-op's")
        ax.axhline(0.25, color="red", linestyle="-.", linewidth=1, label="target 0.25 (lifecycle)")
        ax.set_xticks(list(xs), names, rotation=15, fontsize=8)
        ax.set_ylim(0, 1.1)
        m = r[mode]
        ax.set_title(f"{mode}: concurrency {m['concurrency']}, pipeline depth {m['pipeline_depth']}",
                     fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Engine throughput as a ratio to the no-op script\n" + _subtitle(meta), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def events(r: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, c in r["consumers"].items():
        s = c["samples_from_call_ms"]
        if not s:
            continue
        ys = [(i + 1) / len(s) for i in range(len(s))]
        ax.plot(s, ys, color=COLORS.get(name), label=f"{name}: p50 {c['from_call']['p50_ms']:.2f}, "
                f"p99 {c['from_call']['p99_ms']:.2f} ms")
    ax.axvline(5, color="red", linestyle="-.", label="target p99 5 ms")
    ax.axhline(0.99, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("delivery latency from the push call, ms")
    ax.set_ylabel("fraction of events")
    ax.set_title("Event delivery latency (CDF)\n" + _subtitle(meta), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def all_plots(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    meta = results
    made = []
    s = results["sections"]
    for key, fn, name in (("http", http_latency, "http_latency.png"), ("scaling", scaling, "scaling.png"),
                          ("timers", timer_lag, "timer_lag.png"), ("engine", engine, "engine_ratios.png"),
                          ("events", events, "event_latency.png")):
        if key in s and "error" not in s[key]:
            made.append(fn(s[key], meta, out / name))
    return made
