"""Prometheus metrics.

Counters and histograms live in this process (or, with several worker
processes, in prometheus-client's multiprocess files so any process can
answer a scrape for all). Queue depths, task counts and the engine's
running totals (events by type, reservations, RONAs; counted by the scripts
themselves in rr:{t}:counts) are read from Redis at scrape time: they are
the shared truth, the same whichever process answers, and survive restarts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..counts import totals_by_name
from ..engine import Engine
from ..errors import NotFound, RedrouteError, ValidationError
from ..keys import TENANTS
from ..model import EventType

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_TENANTS = 100  # scrape-time reads are bounded, and so is the queue label's cardinality:
MAX_QUEUES = 1000  # at most MAX_TENANTS x MAX_QUEUES series per queue family
# A queue's counts since it was made (rr:{t}:q:<id>:totals): (field, metric,
# help, extra label). Each is a counter (`_total`).
QUEUE_TOTALS = (
    ("e", "redroute_queue_entered", "routing requests that entered the queue", None),
    ("a", "redroute_queue_answered", "requests of the queue accepted by an agent", None),
    ("aw", "redroute_queue_answered_within_threshold",
     "requests answered within the queue's serviceLevelThresholdMs", None),
    ("x", "redroute_queue_abandoned", "requests that left unanswered, by reason", ("reason", "expired")),
    ("c", "redroute_queue_abandoned", "", ("reason", "cancelled")),
    ("bw", "redroute_queue_abandoned_within_threshold",
     "requests abandoned within the queue's serviceLevelThresholdMs", None),
    ("r", "redroute_queue_ronas", "reservations of the queue's requests unanswered or declined", None),
    ("oi", "redroute_queue_overflowed", "requests overflowed, by direction", ("direction", "in")),
    ("oo", "redroute_queue_overflowed", "", ("direction", "out")),
    ("hn", "redroute_queue_handled", "requests of the queue that left ACTIVE (WRAP_UP or CLOSED)", None),
)
# The window of the queue gauges below (service level, waits).
METRICS_WINDOW_MINUTES = 15
# Running totals of rr:{t}:counts shown as their own counters: (field, metric, help).
COUNTED = (
    ("AGENT_RESERVED", "redroute_reservations", "tasks reserved to an agent"),
    ("RONA", "redroute_ronas", "reservations that ended unanswered or declined (RONA)"),
    ("NO_AGENT_AVAILABLE", "redroute_no_agent_available",
     "requests that ended with NO_AGENT_AVAILABLE"),
)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    def __init__(self) -> None:
        # With several processes every metric writes to the shared files and
        # is collected by MultiProcessCollector, so none is registered here.
        self.multiprocess = multiprocess()
        self.registry = None if self.multiprocess else CollectorRegistry()
        r: dict[str, Any] = {"registry": self.registry}
        self.latency = Histogram("redroute_http_request_duration_seconds",
                                 "HTTP request latency by route", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, **r)
        self.responses = Counter("redroute_http_responses", "HTTP responses by route and status",
                                 ["method", "route", "status"], **r)
        self.redis_errors = Counter("redroute_redis_errors",
                                    "Redis connection errors and timeouts", ["source"], **r)
        self.sse_clients = Gauge("redroute_sse_clients", "connected SSE clients",
                                 multiprocess_mode="livesum", **r)
        self.sse_dropped = Counter("redroute_sse_dropped_clients",
                                   "SSE clients dropped for being too slow", **r)
        self.timer_fired = Counter("redroute_timer_fired",
                                   "deadlines fired by this process's timer worker", **r)
        self.timer_lag = Histogram("redroute_timer_lag_seconds",
                                   "how late each deadline fired", buckets=LAG_BUCKETS, **r)
        self._seen_fired = 0
        # Labelled children by route: labels() on every request is a
        # measurable share of a request's cost. Routes are the route table's
        # canonical paths (and "unmatched"), so these stay small.
        self._latency: dict[tuple[str, str], Any] = {}
        self._responses: dict[tuple[str, str, int], Any] = {}

    def route_latency(self, method: str, route: str) -> Any:
        child = self._latency.get((method, route))
        if child is None:
            child = self._latency[(method, route)] = self.latency.labels(method, route)
        return child

    def route_responses(self, method: str, route: str, status: int) -> Any:
        child = self._responses.get((method, route, status))
        if child is None:
            child = self._responses[(method, route, status)] = self.responses.labels(
                method, route, str(status))
        return child

    def pump_timer(self, worker: Any) -> None:
        """Moves what the in-process TimerWorker fired since the last call
        into the counters (its lags_ms holds one lag per fired deadline)."""
        new = worker.fired_total - self._seen_fired
        if new <= 0:
            return
        self._seen_fired = worker.fired_total
        self.timer_fired.inc(new)
        lags = list(worker.lags_ms)[-new:] if new <= len(worker.lags_ms) else list(worker.lags_ms)
        for lag in lags:
            self.timer_lag.observe(max(lag, 0) / 1000)

    async def render(self, redis: Any, engine_for: Callable[[str], Engine]) -> tuple[bytes, str]:
        snapshot = _Snapshot(await read_snapshot(redis, engine_for))
        if self.multiprocess:
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
            registry.register(snapshot)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        scrape = CollectorRegistry()
        scrape.register(snapshot)
        return generate_latest(self.registry) + generate_latest(scrape), CONTENT_TYPE_LATEST


def _queue_families() -> tuple[dict[str, GaugeMetricFamily], dict[str, CounterMetricFamily]]:
    q = ["tenant", "queue"]
    gauges = {
        "waiting": GaugeMetricFamily("redroute_queue_waiting", "tasks waiting in the queue", labels=q),
        "oldest": GaugeMetricFamily("redroute_queue_oldest_wait_seconds",
                                    "the longest current wait in the queue", labels=q),
        "agents": GaugeMetricFamily("redroute_queue_agents", "the queue's agents by MRD state",
                                    labels=[*q, "state"]),
        "reserved": GaugeMetricFamily("redroute_queue_reserved",
                                      "the queue's tasks offered to an agent, not yet accepted", labels=q),
        "active": GaugeMetricFamily("redroute_queue_active",
                                    "the queue's tasks with an agent (not in WRAP_UP)", labels=q),
        "available": GaugeMetricFamily("redroute_queue_available_agents",
                                       "member agents that can take a task of the queue now", labels=q),
        "sl": GaugeMetricFamily("redroute_queue_service_level", "answered within the threshold / "
                                f"answered, over the last {METRICS_WINDOW_MINUTES} minutes (sl; sl2 "
                                "counts abandoned within as met); absent when nothing was",
                                labels=[*q, "kind"]),
        "wait": GaugeMetricFamily("redroute_queue_answer_wait_seconds", "wait until answered over "
                                  f"the last {METRICS_WINDOW_MINUTES} minutes, by quantile",
                                  labels=[*q, "quantile"]),
        "ewt": GaugeMetricFamily("redroute_queue_estimated_wait_seconds", "the expected wait of a "
                                 "request pushed now (method POSITION_RATE); absent with too little history",
                                 labels=q),
        "ewt_error": GaugeMetricFamily("redroute_queue_estimated_wait_abs_error_seconds",
                                       "|actual - predicted wait| of the requests answered over the last "
                                       f"{METRICS_WINDOW_MINUTES} minutes, by quantile",
                                       labels=[*q, "quantile"]),
    }
    counters: dict[str, CounterMetricFamily] = {}
    for _, metric, help_, extra in QUEUE_TOTALS:
        if metric not in counters:
            counters[metric] = CounterMetricFamily(metric, help_, labels=q + ([extra[0]] if extra else []))
    return gauges, counters


async def _add_queue(engine: Engine, tenant: str, qid: str, gauges: dict[str, GaugeMetricFamily],
                     counters: dict[str, CounterMetricFamily]) -> int:
    """One queue's series; returns its waiting count."""
    d = await engine.queue_statistics(qid, METRICS_WINDOW_MINUTES)
    rt, w, labels = d["realtime"], d["window"], [tenant, qid]
    gauges["waiting"].add_metric(labels, rt["waiting"])
    gauges["oldest"].add_metric(labels, (rt["oldestWaitMs"] or 0) / 1000)
    for state, n in sorted(rt["agents"].items()):
        gauges["agents"].add_metric([*labels, state], n)
    gauges["reserved"].add_metric(labels, rt["reserved"])
    gauges["active"].add_metric(labels, rt["active"])
    gauges["available"].add_metric(labels, rt["availableAgents"])
    for kind in ("sl", "sl2"):
        if w["serviceLevel"][kind] is not None:
            gauges["sl"].add_metric([*labels, kind], w["serviceLevel"][kind])
    for quantile, f in (("0.5", "p50Ms"), ("0.9", "p90Ms")):
        if w["waitUntilAnswered"][f] is not None:
            gauges["wait"].add_metric([*labels, quantile], w["waitUntilAnswered"][f] / 1000)
    ewt = d["ewt"]
    if ewt["ms"] is not None:
        gauges["ewt"].add_metric(labels, ewt["ms"] / 1000)
    for quantile, f in (("0.5", "p50AbsErrorMs"), ("0.9", "p90AbsErrorMs")):
        if ewt["accuracy"][f] is not None:
            gauges["ewt_error"].add_metric([*labels, quantile], ewt["accuracy"][f] / 1000)
    totals = await engine.redis.hgetall(engine.keys.q_totals(qid))
    for field, metric, _, extra in QUEUE_TOTALS:
        counters[metric].add_metric(labels + ([extra[1]] if extra else []), int(totals.get(field, 0)))
    return rt["waiting"]


async def read_snapshot(redis: Any, engine_for: Callable[[str], Engine]) -> list[Metric]:
    """Read from Redis now: tasks by state and each queue's figures (gauges
    from its statistics, counters from its totals), and the engine's running
    totals (counters)."""
    tasks = GaugeMetricFamily("redroute_tasks", "tasks by state (live = not closed; queued = "
                              "waiting in a queue)", labels=["tenant", "state"])
    gauges, counters = _queue_families()
    timers = GaugeMetricFamily("redroute_timers_pending", "deadlines not yet fired",
                               labels=["tenant"])
    events = CounterMetricFamily("redroute_events", "events appended to the tenant's stream",
                                 labels=["tenant", "type"])
    totals = {name: CounterMetricFamily(metric, help_, labels=["tenant"])
              for name, metric, help_ in COUNTED}
    for tenant in sorted(await redis.smembers(TENANTS))[:MAX_TENANTS]:
        try:
            engine = engine_for(tenant)
        except RedrouteError:
            continue  # not a valid tenant name: nothing of ours
        k = engine.keys
        queued = 0
        for qid in sorted(await redis.smembers(k.queues))[:MAX_QUEUES]:
            try:
                queued += await _add_queue(engine, tenant, qid, gauges, counters)
            except (NotFound, ValidationError):
                continue
        tasks.add_metric([tenant, "live"], await redis.scard(k.live))
        tasks.add_metric([tenant, "queued"], queued)
        timers.add_metric([tenant], await redis.zcard(k.timers))
        counts = totals_by_name(await redis.hgetall(k.counts))
        for etype in EventType:
            if etype.value in counts:
                events.add_metric([tenant, etype.value], counts[etype.value])
        for name, family in totals.items():
            family.add_metric([tenant], counts.get(name, 0))
    return [tasks, *gauges.values(), *counters.values(), timers, events, *totals.values()]


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
