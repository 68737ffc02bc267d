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
MAX_TENANTS = 100  # scrape-time reads are bounded
MAX_QUEUES = 1000
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


async def read_snapshot(redis: Any, engine_for: Callable[[str], Engine]) -> list[Metric]:
    """Read from Redis now: tasks by state and each queue's depth, oldest
    wait and agents by MRD state (gauges), and the engine's running totals
    (counters)."""
    tasks = GaugeMetricFamily("redroute_tasks", "tasks by state (live = not closed; queued = "
                              "waiting in a queue)", labels=["tenant", "state"])
    waiting = GaugeMetricFamily("redroute_queue_waiting", "tasks waiting in the queue",
                                labels=["tenant", "queue"])
    oldest = GaugeMetricFamily("redroute_queue_oldest_wait_seconds",
                               "the longest current wait in the queue", labels=["tenant", "queue"])
    agents = GaugeMetricFamily("redroute_queue_agents", "the queue's agents by MRD state",
                               labels=["tenant", "queue", "state"])
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
                q = await engine.get_queue(qid)
            except (NotFound, ValidationError):
                continue
            queued += q.waiting or 0
            waiting.add_metric([tenant, qid], q.waiting or 0)
            oldest.add_metric([tenant, qid], (q.oldest_wait_ms or 0) / 1000)
            for state, n in sorted((q.agents or {}).items()):
                agents.add_metric([tenant, qid, state], n)
        tasks.add_metric([tenant, "live"], await redis.scard(k.live))
        tasks.add_metric([tenant, "queued"], queued)
        timers.add_metric([tenant], await redis.zcard(k.timers))
        counts = totals_by_name(await redis.hgetall(k.counts))
        for etype in EventType:
            if etype.value in counts:
                events.add_metric([tenant, etype.value], counts[etype.value])
        for name, family in totals.items():
            family.add_metric([tenant], counts.get(name, 0))
    return [tasks, waiting, oldest, agents, timers, events, *totals.values()]


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
