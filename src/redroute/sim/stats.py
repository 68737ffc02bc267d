"""KPIs of a replication per queue, and their confidence intervals over the
replications (Student's t on the replication means: each replication is one
independent sample).

Definitions (requests that arrived in [warmupMs, durationMs)):
- offered: such requests; answered: accepted by an agent; abandoned: the
  customer hung up (patience) plus those the router closed unanswered (TTL:
  expired; a full queue: blocked), each also given apart;
- SL: answered within the queue's serviceLevelThresholdMs, over the
  requests that ended; ASA: mean wait of the answered (arrival to accept);
- P(wait): share of offered requests not reserved at their arrival;
  mean wait: over all offered, until answer or until they left;
- occupancy: the agent slot time spent on the queue's requests (reservation
  to the task's close, wrap-up included), within the window, over the slot
  time of the agents listing the queue (agents shared by several queues
  count in full for each).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Any

from .core import ReplicationResult
from .scenario import Scenario

METRICS = ("offered", "answered", "abandoned", "hungUp", "expired", "blocked", "sl", "asaMs",
           "pWait", "meanWaitMs", "abandonRate", "occupancy")


def replication_kpis(result: ReplicationResult, scenario: Scenario) -> dict[str, dict[str, float | None]]:
    """queue id -> metric -> value (None where undefined, e.g. ASA with
    nothing answered)."""
    lo, hi = scenario.warmupMs, scenario.durationMs
    out: dict[str, dict[str, float | None]] = {}
    for q in scenario.queues:
        rs = [r for r in result.requests if r.queue_id == q.id and lo <= r.arrival < hi]
        ended = [r for r in rs if r.outcome is not None]
        answered = [r for r in rs if r.outcome == "ANSWERED"]
        waits = [r.wait_ms for r in rs if r.wait_ms is not None]
        count = {o: sum(1 for r in rs if r.outcome == o) for o in ("ABANDONED", "EXPIRED", "BLOCKED")}
        within = sum(1 for r in answered if r.wait_ms is not None and r.wait_ms <= q.serviceLevelThresholdMs)
        capacity = _slots(scenario, q.id) * (hi - lo)
        busy = sum(max(0, min(b.end, hi) - max(b.start, lo)) for b in result.busy if b.queue_id == q.id)
        out[q.id] = {
            "offered": len(rs),
            "answered": len(answered),
            "abandoned": sum(count.values()),
            "hungUp": count["ABANDONED"],
            "expired": count["EXPIRED"],
            "blocked": count["BLOCKED"],
            "sl": within / len(ended) if ended else None,
            "asaMs": fmean(r.wait_ms for r in answered) if answered else None,  # type: ignore[misc]
            "pWait": (sum(1 for r in rs if r.reserved is None or r.reserved > r.arrival) / len(rs)
                      if rs else None),
            "meanWaitMs": fmean(waits) if waits else None,
            "abandonRate": (count["ABANDONED"] + count["EXPIRED"]) / len(rs) if rs else None,
            "occupancy": busy / capacity if capacity else None,
        }
    return out


def _slots(scenario: Scenario, queue_id: str) -> int:
    mrd = scenario.mrd(scenario.queue(queue_id).mrdId)
    return sum(g.count * (g.maxRequests or {}).get(mrd.id, mrd.maxRequests)
               for g in scenario.agents if queue_id in g.queues)


def series(result: ReplicationResult, scenario: Scenario, bucket_ms: int) -> dict[str, dict[str, list[float | None]]]:
    """Per queue, per bucket of the day (by arrival): offered, SL, ASA, and
    the mean number of requests waiting (not yet reserved) over the bucket."""
    n = max(1, math.ceil(scenario.durationMs / bucket_ms))
    out: dict[str, dict[str, list[float | None]]] = {}
    for q in scenario.queues:
        offered = [0] * n
        within = [0] * n
        ended = [0] * n
        wait_sum = [0.0] * n
        answered = [0] * n
        waiting = [0.0] * n
        for r in result.requests:
            if r.queue_id != q.id or r.arrival >= scenario.durationMs:
                continue
            b = r.arrival // bucket_ms
            offered[b] += 1
            if r.outcome is not None:
                ended[b] += 1
            if r.outcome == "ANSWERED" and r.wait_ms is not None:
                answered[b] += 1
                wait_sum[b] += r.wait_ms
                within[b] += r.wait_ms <= q.serviceLevelThresholdMs
            left = r.reserved if r.reserved is not None else (r.ended if r.ended is not None else r.arrival)
            _spread(waiting, r.arrival, left, bucket_ms)
        out[q.id] = {
            "offered": [float(x) for x in offered],
            "sl": [within[i] / ended[i] if ended[i] else None for i in range(n)],
            "asaMs": [wait_sum[i] / answered[i] if answered[i] else None for i in range(n)],
            "waiting": [w / bucket_ms for w in waiting],
        }
    return out


def _spread(acc: list[float], start: int, end: int, bucket_ms: int) -> None:
    """Adds the time [start, end) spends in each bucket."""
    b = start // bucket_ms
    while start < end and b < len(acc):
        stop = min(end, (b + 1) * bucket_ms)
        acc[b] += stop - start
        start, b = stop, b + 1


# Confidence intervals


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width; inf with one replication
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def to_dict(self) -> dict[str, Any]:
        finite = math.isfinite(self.half)
        return {"mean": self.mean, "low": self.low if finite else None,
                "high": self.high if finite else None, "n": self.n}


def interval(values: list[float], confidence: float = 0.95) -> Interval | None:
    """The mean of values and its two-sided Student-t interval."""
    if not values:
        return None
    m = fmean(values)
    if len(values) < 2:
        return Interval(m, math.inf, 1)
    half = t_quantile(0.5 + confidence / 2, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return Interval(m, half, len(values))


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (p > 0.5) for df degrees of freedom: the CDF,
    integrated (Simpson) from the density, inverted by bisection. Accurate
    to about 1e-6, enough for interval half-widths (tests check it against
    the tables)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError("t_quantile needs 0.5 < p < 1 and df >= 1")
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(c - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf_above_half(x: float) -> float:  # P(0 < T <= x)
        steps = 2000
        h = x / steps
        s = pdf(0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
        return s * h / 3

    target = p - 0.5
    lo, hi = 0.0, 1.0
    while cdf_above_half(hi) < target:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf_above_half(mid) < target else (lo, mid)
    return (lo + hi) / 2


def aggregate(per_rep: list[dict[str, dict[str, float | None]]],
              confidence: float = 0.95) -> dict[str, dict[str, Interval | None]]:
    """queue -> metric -> interval over the replications."""
    out: dict[str, dict[str, Interval | None]] = {}
    for q in per_rep[0]:
        out[q] = {m: interval([v for r in per_rep if (v := r[q][m]) is not None], confidence)
                  for m in METRICS}
    return out
