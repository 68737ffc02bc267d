"""What a simulation prints and writes: a table per queue (the simulated KPIs
with their intervals, Erlang C and Erlang A beside them for single-skill
queues), the JSON document of --json, and the day's series for the plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .erlang import ErlangResult, erlang_a, erlang_c
from .runner import SimulationRun
from .scenario import HOUR_MS, Scenario
from .stats import METRICS, Interval, series


@dataclass(frozen=True)
class SingleSkill:
    """A queue the Erlang formulas describe: one Poisson stream at a constant
    rate, a pool of agents that serve it alone, one request each."""

    agents: int
    rate: float  # per ms
    service_ms: float  # accept + handle + wrap-up, the time an agent is held
    threshold_ms: int
    patience_ms: float | None


def single_skill(scenario: Scenario, queue_id: str) -> SingleSkill | None:
    q = scenario.queue(queue_id)
    streams = [a for a in scenario.arrivals if a.queueId == queue_id]
    if len(streams) != 1 or isinstance(streams[0].ratePerHour, list) or q.steps or q.overflow:
        return None
    if any(o.overflow and o.overflow.get("queueId") == queue_id for o in scenario.queues):
        return None
    groups = [g for g in scenario.agents if queue_id in g.queues]
    mrd = scenario.mrd(q.mrdId)
    if any(len(g.queues) != 1 or (g.maxRequests or {}).get(mrd.id, mrd.maxRequests) != 1
           for g in groups):
        return None
    service = (q.accept or scenario.accept).mean_ms + (q.handle or scenario.handle).mean_ms
    if mrd.wrapUp.enabled:
        service += min((q.wrapUpTime or scenario.wrapUpTime).mean_ms, mrd.wrapUp.timeoutMs)
    patience = q.patience or scenario.patience
    return SingleSkill(sum(g.count for g in groups), streams[0].rate_at(0), service,
                       q.serviceLevelThresholdMs, None if patience is None else patience.mean_ms)


def erlang_for(scenario: Scenario, queue_id: str) -> tuple[ErlangResult | None, ErlangResult | None]:
    """Erlang C (abandonment ignored) and, with patience, Erlang A (patience
    taken as exponential with its mean) for a single-skill queue."""
    s = single_skill(scenario, queue_id)
    if s is None or s.service_ms <= 0:
        return None, None
    c = erlang_c(s.agents, s.rate, s.service_ms, s.threshold_ms)
    a = None if s.patience_ms is None or s.patience_ms <= 0 else erlang_a(
        s.agents, s.rate, s.service_ms, s.patience_ms)
    return c, a


def _span(ms: int) -> str:
    """A scenario's length: hours from one hour up, else minutes."""
    return f"{ms / HOUR_MS:.4g} h" if ms >= HOUR_MS else f"{ms / 60_000:.4g} min"


def _secs(ms: float) -> str:
    return "inf" if math.isinf(ms) else f"{ms / 1000:.1f} s"


_ROWS = [  # metric, label, format of a value
    ("offered", "offered", lambda x: f"{x:,.1f}"),
    ("answered", "answered", lambda x: f"{x:,.1f}"),
    ("abandoned", "abandoned", lambda x: f"{x:,.1f}"),
    ("sl", "SL", lambda x: f"{x:.3f}"),
    ("asaMs", "ASA", _secs),
    ("pWait", "P(wait)", lambda x: f"{x:.3f}"),
    ("meanWaitMs", "mean wait", _secs),
    ("abandonRate", "abandon rate", lambda x: f"{x:.3f}"),
    ("occupancy", "occupancy", lambda x: f"{x:.3f}"),
]
_ERLANG = {"sl": "sl", "asaMs": "mean_wait_ms", "pWait": "p_wait", "meanWaitMs": "mean_wait_ms",
           "abandonRate": "abandon_rate", "occupancy": "occupancy"}


def _cell(iv: Interval | None, fmt: Any) -> str:
    if iv is None:
        return "-"
    if not math.isfinite(iv.half):
        return fmt(iv.mean)
    # Every KPI is >= 0: an interval reaching below is shown from 0.
    return f"{fmt(iv.mean)} [{fmt(max(0.0, iv.low))}, {fmt(iv.high)}]"


def _erlang_cell(r: ErlangResult | None, metric: str, fmt: Any) -> str:
    if r is None or metric not in _ERLANG:
        return ""
    value = getattr(r, _ERLANG[metric])
    return "" if value is None else fmt(value)


def table(run: SimulationRun, confidence: float = 0.95) -> str:
    sc = run.scenario
    out = [f"{sc.name}: {sc.replications} replication{'s' if sc.replications != 1 else ''} of "
           f"{_span(sc.durationMs)} (warm-up {_span(sc.warmupMs)}), seed {sc.seed}, "
           f"{run.backend} backend; means with {confidence:.0%} intervals over the replications"]
    intervals = run.intervals(confidence)
    for q in sc.queues:
        c, a = erlang_for(sc, q.id)
        head = f"queue {q.id} ({sc.agent_count(q.id)} agents, SL within {q.serviceLevelThresholdMs / 1000:g} s)"
        rows = [("", "simulated", "Erlang C" if c else "", "Erlang A" if a else "")]
        for metric, label, fmt in _ROWS:
            rows.append((label, _cell(intervals[q.id][metric], fmt), _erlang_cell(c, metric, fmt),
                         _erlang_cell(a, metric, fmt)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        out += ["", head] + ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                             for r in rows]
        if c is None:
            out.append("  (no Erlang figures: the queue is not single-skill with a constant rate)")
    out += ["", f"{run.requests:,} requests simulated in {run.wall_s:.1f} s "
                f"({run.requests_per_second:,.0f} per wall second)"]
    return "\n".join(out)


def bucket_ms(scenario: Scenario) -> int:
    """The plot's and the series' step: 15 min, or finer for short days."""
    return min(15 * 60_000, max(60_000, scenario.durationMs // 32))


def day_series(run: SimulationRun) -> dict[str, Any]:
    """Per queue, per bucket: the mean over the replications of offered, SL,
    ASA and requests waiting."""
    sc = run.scenario
    step = bucket_ms(sc)
    per = [series(r, sc, step) for r in run.results]
    out: dict[str, Any] = {"bucketMs": step, "queues": {}}
    for q in sc.queues:
        qs: dict[str, list[float | None]] = {}
        for m in ("offered", "sl", "asaMs", "waiting"):
            cols = zip(*(p[q.id][m] for p in per), strict=True)
            qs[m] = [(sum(v) / len(v)) if (v := [x for x in col if x is not None]) else None
                     for col in cols]
        out["queues"][q.id] = qs
    return out


def document(run: SimulationRun, confidence: float = 0.95) -> dict[str, Any]:
    """The JSON of --json."""
    sc = run.scenario
    intervals = run.intervals(confidence)
    queues = {}
    for q in sc.queues:
        c, a = erlang_for(sc, q.id)
        queues[q.id] = {
            "agents": sc.agent_count(q.id),
            "kpis": {m: (None if iv is None else iv.to_dict()) for m, iv in intervals[q.id].items()},
            "erlangC": None if c is None else c.to_dict(),
            "erlangA": None if a is None else a.to_dict(),
        }
    return {
        "scenario": sc.name, "seed": sc.seed, "replications": sc.replications,
        "durationMs": sc.durationMs, "warmupMs": sc.warmupMs, "confidence": confidence,
        "backend": run.backend, "wallSeconds": run.wall_s, "requests": run.requests,
        "requestsPerSecond": run.requests_per_second, "metrics": list(METRICS),
        "queues": queues, "perReplication": run.kpis, "series": day_series(run),
    }


def comparison(recorded: dict[str, dict[str, float | None]], run: SimulationRun,
               confidence: float = 0.95, title: str = "") -> str:
    """The recorded day's KPIs beside the replay's, per queue, with the
    difference (replayed - recorded)."""
    intervals = run.intervals(confidence)
    out = [title] if title else []
    for q in run.scenario.queues:
        if q.id not in recorded or not recorded[q.id]["offered"]:
            continue
        rows = [("", "recorded", "replayed", "difference")]
        for metric, label, fmt in _ROWS:
            rec, iv = recorded[q.id][metric], intervals[q.id][metric]
            diff = "" if rec is None or iv is None else (
                ("+" if iv.mean >= rec else "-") + fmt(abs(iv.mean - rec)))
            rows.append((label, "-" if rec is None else fmt(rec), _cell(iv, fmt), diff))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        out += ["", f"queue {q.id} ({run.scenario.agent_count(q.id)} agents in the scenario)"]
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)
