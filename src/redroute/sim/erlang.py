"""Erlang C (M/M/c) and Erlang A (M/M/c+M, exponential patience): the
closed-form answers a workforce planner uses, printed beside the simulation
for single-skill queues and used to validate it.

Rates are per ms; a = arrival rate x mean handle time is the offered load
in Erlangs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ErlangResult:
    model: str  # "Erlang C" or "Erlang A"
    agents: int
    load: float  # offered load, Erlangs
    p_wait: float
    mean_wait_ms: float  # over all requests (until answered, or gone)
    occupancy: float
    sl: float | None = None  # P(answered within the threshold); Erlang C only
    abandon_rate: float | None = None  # Erlang A only

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of c servers at load a (the stable recursion)."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, rate: float, handle_ms: float, threshold_ms: float = 0) -> ErlangResult:
    """M/M/c: P(wait), mean wait, SL = P(wait <= threshold). An overloaded
    queue (a >= c) waits for ever: P(wait) 1, mean wait inf, SL 0."""
    a = rate * handle_ms
    if c <= 0 or a >= c:
        return ErlangResult("Erlang C", c, a, 1.0, math.inf, 1.0, sl=0.0)
    b = erlang_b(c, a)
    p = c * b / (c - a * (1 - b))
    gap = (c - a) / handle_ms  # c*mu - lambda, per ms
    return ErlangResult("Erlang C", c, a, p, p / gap, a / c, sl=1 - p * math.exp(-gap * threshold_ms))


def erlang_a(c: int, rate: float, handle_ms: float, patience_ms: float) -> ErlangResult:
    """M/M/c+M from its birth-death chain (births rate, deaths
    min(n, c)/handle + max(n - c, 0)/patience), truncated where the terms
    vanish: P(wait) = P(n >= c) (arrivals see time averages), abandonment
    = E[queue] / patience / rate, mean wait = E[queue] / rate (Little)."""
    a = rate * handle_ms
    mu, theta = 1 / handle_ms, 1 / patience_ms
    # Unnormalised, in logs until c to stay finite for large c.
    logs = [0.0]
    for n in range(1, c + 1):
        logs.append(logs[-1] + math.log(a) - math.log(n)) if a > 0 else logs.append(-math.inf)
    top = max(logs)
    terms = [math.exp(x - top) for x in logs]
    n, t = c, terms[c]
    queue_terms = []
    while t > 1e-16 * max(1.0, sum(terms)) or n < c + 10:
        n += 1
        t *= rate / (c * mu + (n - c) * theta)
        queue_terms.append(t)
        if n > c + 10_000_000:
            break
    total = sum(terms) + sum(queue_terms)
    p_wait = (terms[c] + sum(queue_terms)) / total
    lq = sum((i + 1) * q for i, q in enumerate(queue_terms)) / total
    busy = (sum(min(k, c) * terms[k] for k in range(c + 1)) + c * sum(queue_terms)) / total
    return ErlangResult("Erlang A", c, a, p_wait, lq / rate if rate else 0.0, busy / c,
                        abandon_rate=lq * theta / rate if rate else 0.0)


def erlang_c_staff(rate: float, handle_ms: float, threshold_ms: float, sl: float,
                   limit: int = 100_000) -> int | None:
    """The fewest agents whose Erlang C SL reaches sl (None past limit)."""
    c = max(1, math.floor(rate * handle_ms) + 1)
    while c <= limit:
        if (erlang_c(c, rate, handle_ms, threshold_ms).sl or 0) >= sl:
            return c
        c += 1
    return None
