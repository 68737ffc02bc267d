"""The fewest agents that meet a target, found by simulation: the scenario is
run with an agent group at n agents, n searched from Erlang C's answer (or
the offered load) down while the target holds and up while it does not.
Every n runs on the same customers (the draws do not depend on the agents),
so the comparison between two counts is not blurred by the traffic.

A target is `<metric><op><value>[@<threshold ms>]`:
  sl>=0.8@20000    SL within 20 s at least 0.8 (the threshold defaults to the queue's)
  asa<=30000       mean wait of the answered at most 30 s
  abandon<=0.05    share of requests that hang up or expire at most 5%
It holds when the mean over the replications meets it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .erlang import erlang_c, erlang_c_staff
from .report import single_skill
from .runner import SimulationRun
from .scenario import Scenario
from .stats import Interval

_TARGET = re.compile(r"^\s*(sl|asa|abandon)\s*(>=|<=)\s*([0-9.]+)\s*(?:@\s*([0-9]+))?\s*$", re.I)
_METRIC = {"sl": "sl", "asa": "asaMs", "abandon": "abandonRate"}
_OP = {"sl": ">=", "asa": "<=", "abandon": "<="}
MAX_AGENTS = 10_000


@dataclass(frozen=True)
class Target:
    metric: str  # sl, asa or abandon
    op: str
    value: float
    threshold_ms: int | None = None

    def met(self, mean: float | None) -> bool:
        if mean is None:
            return False
        return mean >= self.value if self.op == ">=" else mean <= self.value

    def __str__(self) -> str:
        at = f"@{self.threshold_ms}" if self.threshold_ms is not None else ""
        return f"{self.metric}{self.op}{self.value:g}{at}"


def parse_target(text: str) -> Target:
    m = _TARGET.match(text)
    if not m:
        raise ValueError(f"target must read like sl>=0.8@20000, asa<=30000 or abandon<=0.05; got {text!r:.60}")
    metric, op, value, at = m.group(1).lower(), m.group(2), float(m.group(3)), m.group(4)
    if op != _OP[metric]:
        raise ValueError(f"a {metric} target is {metric}{_OP[metric]}<value>")
    if at is not None and metric != "sl":
        raise ValueError("only an sl target takes @<threshold ms>")
    if metric in ("sl", "abandon") and not 0 <= value <= 1:
        raise ValueError(f"a {metric} target is a share from 0 to 1")
    return Target(metric, op, value, None if at is None else int(at))


@dataclass
class StaffResult:
    queue_id: str
    group_id: str
    target: Target
    agents: int | None  # the fewest that meet it (None: not within the bounds)
    tried: dict[int, Interval | None] = field(default_factory=dict)  # agents -> the KPI
    erlang_c: int | None = None  # Erlang C's answer (single-skill queues, SL targets)
    agents_elsewhere: int = 0  # agents of other groups serving the queue


def prepare(scenario: Scenario, queue_id: str, target: Target) -> Scenario:
    """The scenario with the target's SL threshold on the queue."""
    if target.threshold_ms is None:
        return scenario
    queues = [q.model_copy(update={"serviceLevelThresholdMs": target.threshold_ms})
              if q.id == queue_id else q for q in scenario.queues]
    return scenario.model_copy(update={"queues": queues})


def erlang_c_answer(scenario: Scenario, queue_id: str, target: Target) -> int | None:
    s = single_skill(scenario, queue_id)
    if s is None:
        return None
    if target.metric == "sl":
        return erlang_c_staff(s.rate, s.service_ms, s.threshold_ms, target.value, MAX_AGENTS)
    if target.metric == "asa":
        c = max(1, math.floor(s.rate * s.service_ms) + 1)
        while c <= MAX_AGENTS and erlang_c(c, s.rate, s.service_ms).mean_wait_ms > target.value:
            c += 1
        return c if c <= MAX_AGENTS else None
    return None  # Erlang C has no abandonment


def find_staff(scenario: Scenario, queue_id: str, group_id: str, target: Target,
               run: Callable[[Scenario], SimulationRun], *, low: int = 1,
               high: int = MAX_AGENTS) -> StaffResult:
    """The fewest agents of group_id in [low, high] for which the queue's
    KPI (mean over the replications) meets the target; run simulates a
    scenario."""
    sc = prepare(scenario, queue_id, target)
    result = StaffResult(queue_id, group_id, target, None,
                         erlang_c=erlang_c_answer(sc, queue_id, target),
                         agents_elsewhere=sc.agent_count(queue_id) - next(
                             g.count for g in sc.agents if g.id == group_id))

    def ok(n: int) -> bool:
        if n not in result.tried:
            r = run(sc.with_agents(group_id, n))
            result.tried[n] = r.intervals()[queue_id][_METRIC[target.metric]]
        iv = result.tried[n]
        return target.met(None if iv is None else iv.mean)

    s = single_skill(sc, queue_id)
    guess = result.erlang_c or (math.floor(s.rate * s.service_ms) + 1 if s else
                                next(g.count for g in sc.agents if g.id == group_id) or 1)
    n = min(max(guess, low), high)
    if ok(n):
        while n > low and ok(n - 1):
            n -= 1
        result.agents = n
        return result
    # Up, doubling the step, then back by bisection to the first that meets it.
    step, last_bad = 1, n
    while True:
        nxt = min(high, last_bad + step)
        if ok(nxt):
            lo, hi = last_bad, nxt  # lo fails, hi meets
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if ok(mid) else (mid, hi)
            result.agents = hi
            return result
        if nxt == high:
            return result
        last_bad, step = nxt, step * 2
