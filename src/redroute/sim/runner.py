"""Replications: each on its own tenant (`sim-<token>-r<n>`, with its own
virtual clock), on the embedded backend or on a real Redis (REDIS_URL or
url), several at once: `workers` processes, each running `concurrency`
replications side by side (on a real Redis their round trips overlap). A
replication's keys are deleted when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from ..backend import close_quietly, connect, is_embedded
from ..engine import Engine
from ..keys import TENANTS
from .core import ReplicationResult, RequestSpec, Simulation
from .scenario import Scenario
from .stats import Interval, aggregate, replication_kpis

# The traffic of a replication, when it is not drawn from the scenario
# (a recorded day): replication number -> requests.
Traffic = Callable[[int], list[RequestSpec]]


@dataclass
class SimulationRun:
    scenario: Scenario
    results: list[ReplicationResult]
    backend: str  # "embedded" or "redis"
    wall_s: float
    kpis: list[dict[str, dict[str, float | None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.kpis:
            self.kpis = [replication_kpis(r, self.scenario) for r in self.results]

    def intervals(self, confidence: float = 0.95) -> dict[str, dict[str, Interval | None]]:
        return aggregate(self.kpis, confidence)

    @property
    def requests(self) -> int:
        return sum(len(r.requests) for r in self.results)

    @property
    def requests_per_second(self) -> float:
        """Simulated requests per wall second, all replications together."""
        return self.requests / self.wall_s if self.wall_s > 0 else float("inf")


async def drop_tenant(redis: Any, tenant: str) -> None:
    """Deletes every key of a simulation's tenant and its registration."""
    batch: list[str] = []
    async for k in redis.scan_iter(match=f"rr:{{{tenant}}}:*", count=1000):
        batch.append(k)
        if len(batch) >= 1000:
            await redis.unlink(*batch)
            batch = []
    if batch:
        await redis.unlink(*batch)
    await redis.srem(TENANTS, tenant)


async def run_replication(scenario: Scenario, replication: int, redis: Any, *,
                          requests: list[RequestSpec] | None = None, keep: bool = False,
                          tenant: str | None = None) -> ReplicationResult:
    """One replication on its own fresh tenant of redis (deleted after,
    unless keep)."""
    tenant = tenant or f"sim-{secrets.token_hex(4)}-r{replication}"
    engine = Engine(redis, tenant)
    try:
        return await Simulation(engine, scenario, replication, requests).run()
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                await drop_tenant(redis, tenant)


async def _together(scenario: Scenario, reps: list[int], redis: Any, concurrency: int,
                    traffic: Traffic | None) -> list[ReplicationResult]:
    """Replications reps on redis, concurrency at once; one failing cancels the rest."""
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(n: int) -> ReplicationResult:
        async with sem:
            return await run_replication(scenario, n, redis,
                                         requests=None if traffic is None else traffic(n))

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(n)) for n in reps]
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None
    return [t.result() for t in tasks]


async def _run_many(scenario: Scenario, reps: list[int], url: str | None, concurrency: int,
                    traffic: Traffic | None) -> list[ReplicationResult]:
    # A replication is a long series of calls: a busy machine stalling one
    # for a few seconds is no reason to fail the run.
    redis = connect(url, socket_timeout=60)
    try:
        return await _together(scenario, reps, redis, concurrency, traffic)
    finally:
        await close_quietly(redis)


def _worker(scenario: Scenario, reps: list[int], url: str | None, concurrency: int,
            traffic: Traffic | None) -> list[ReplicationResult]:
    return asyncio.run(_run_many(scenario, reps, url, concurrency, traffic))


def backend_of(url: str | None) -> str:
    url = url if url is not None else os.environ.get("REDIS_URL") or None
    return "redis" if url else "embedded"


def simulate(scenario: Scenario, *, url: str | None = None, workers: int | None = None,
             concurrency: int | None = None, traffic: Traffic | None = None) -> SimulationRun:
    """Runs scenario.replications replications; url (or REDIS_URL) selects a
    real Redis, else the embedded backend. workers: processes (default: one
    per core, at most one per replication); concurrency: replications at once
    in each (default 4 on a real Redis, 1 embedded). traffic: a picklable
    function giving each replication's requests (a recorded day), instead of
    drawing them. Call it outside an event loop (it starts its own)."""
    backend = backend_of(url)
    url = url if url is not None else os.environ.get("REDIS_URL") or None
    reps = list(range(scenario.replications))
    workers = max(1, min(len(reps), workers or os.cpu_count() or 1))
    concurrency = concurrency or (4 if backend == "redis" else 1)
    started = time.perf_counter()
    if workers == 1:
        results = _worker(scenario, reps, url, concurrency, traffic)
    else:
        shares = [reps[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(_worker, [scenario] * workers, shares, [url] * workers,
                                  [concurrency] * workers, [traffic] * workers))
        results = sorted((r for part in parts for r in part), key=lambda r: r.replication)
    return SimulationRun(scenario, results, backend, time.perf_counter() - started)


async def simulate_async(scenario: Scenario, redis: Any, *, concurrency: int = 4,
                         traffic: Traffic | None = None) -> SimulationRun:
    """simulate() inside a running event loop, on a client you hold (its
    backend decides embedded or real), concurrency replications at once."""
    started = time.perf_counter()
    results = await _together(scenario, list(range(scenario.replications)), redis, concurrency,
                              traffic)
    return SimulationRun(scenario, results, "embedded" if is_embedded(redis) else "redis",
                         time.perf_counter() - started)
