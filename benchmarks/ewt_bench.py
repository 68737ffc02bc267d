"""Estimated wait: how accurate redroute's wait estimate (method
POSITION_RATE, lua/includes/ewt.lua) is on an M/M/c load through the real
engine.

* load: one queue, c = 10 agents (maxRequests 1), Poisson arrivals,
  exponential handle times (mean 60 s), agents accept at once, nobody hangs
  up; at loads rho = 0.8 and 0.9. Driven by the simulator (redroute.sim) on
  the tenant's virtual clock: the real scripts, no waiting in real time,
  seeded (the same figures on every run and backend).
* steady state: requests arriving in the first 30 minutes are left out;
  the full run keeps at least 2,000 requests after that per load.
* measured: the engine's own figure, the queue's `ewt.accuracy` over the
  minutes after the warm-up (samples, p50 and p90 absolute error, from its
  histograms), and, cross-checking it, the exact errors computed here from
  each request's stored prediction (read right after its push) and its
  wait as the simulator recorded it. Beside them, the same requests'
  errors for a common naive estimate (the mean wait of the last 32
  answered requests, as a wallboard's "average wait" would say), and the
  mean wait itself.
* steps: the same load on a queue with two steps: the first (30 s) for the
  3 experts among the 10 agents, the second for all; a request waits for
  an expert, or its step's timeout and then anyone. Reported beside the
  M/M/c figures (the target is the M/M/c one).
* target: the engine's median absolute error <= 30% of the mean wait.

    python benchmarks/ewt_bench.py [--quick]   # alone; run.py runs it in the suite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from harness import percentile, run_alone

from redroute import Engine
from redroute.sim import Simulation, parse_scenario
from redroute.sim.core import ARRIVE
from redroute.sim.erlang import erlang_c

AGENTS = 10
HANDLE_MS = 60_000
WARMUP_MS = 30 * 60_000
NAIVE_LAST = 32


EXPERTS = 3
STEPS = [{"expression": "expert", "timeoutMs": 30_000}, {"expression": "english"}]


def scenario(rho: float, duration_ms: int, seed: int, steps: bool = False) -> Any:
    rate_per_hour = rho * AGENTS * 3_600_000 / HANDLE_MS
    if steps:
        agents = [{"id": "x", "count": EXPERTS, "queues": ["sales"],
                   "attributes": {"expert": True, "english": True}},
                  {"id": "g", "count": AGENTS - EXPERTS, "queues": ["sales"], "attributes": {"english": True}}]
    else:
        agents = [{"id": "a", "count": AGENTS, "queues": ["sales"]}]
    return parse_scenario({
        "name": f"{'steps' if steps else 'mmc'}-rho{rho}", "seed": seed, "replications": 1,
        "durationMs": duration_ms, "warmupMs": WARMUP_MS,
        "mrds": [{"id": "chat", "maxRequests": 1}],
        "queues": [{"id": "sales", "mrdId": "chat", **({"steps": STEPS} if steps else {})}],
        "agents": agents,
        "arrivals": [{"queueId": "sales", "ratePerHour": rate_per_hour}],
        "handle": {"type": "exponential", "meanMs": HANDLE_MS},
    })


class Recording(Simulation):
    """The simulation, also reading each request's stored prediction (the
    task's ewt field) right after its push."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.predicted: dict[int, int] = {}

    async def _act(self, kind: int, *args: Any) -> bool:
        did = await super()._act(kind, *args)
        if kind == ARRIVE and self._task_of[args[0]] is not None:
            doc = json.loads(await self.engine.redis.get(self.engine.keys.task(self._task_of[args[0]])))
            if doc.get("ewt"):
                self.predicted[args[0]] = int(doc["ewt"])
        return did


def naive_predictions(records: list[Any]) -> dict[int, float]:
    """Each request's naive estimate: the mean wait of the last NAIVE_LAST
    requests answered before it arrived."""
    answers = sorted((r.answered, r.wait_ms) for r in records if r.answered is not None)
    out, last, i = {}, deque(maxlen=NAIVE_LAST), 0
    for r in sorted(records, key=lambda r: r.arrival):
        while i < len(answers) and answers[i][0] <= r.arrival:
            last.append(answers[i][1])
            i += 1
        if len(last) == NAIVE_LAST:
            out[r.n] = sum(last) / len(last)
    return out


def errors_summary(errors: list[float]) -> dict[str, Any]:
    return {"samples": len(errors), "p50_abs_error_ms": percentile(errors, 50),
            "p90_abs_error_ms": percentile(errors, 90)}


async def one_load(redis: aioredis.Redis, rho: float, duration_ms: int, seed: int,
                   steps: bool = False) -> dict[str, Any]:
    sc = scenario(rho, duration_ms, seed, steps)
    engine = Engine(redis, f"ewt-{rho}-{steps}")
    sim = Recording(engine, sc)
    result = await sim.run()
    steady = [r for r in result.requests if r.arrival >= WARMUP_MS and r.answered is not None]
    waits = [r.wait_ms for r in steady]
    exact = [abs(r.wait_ms - sim.predicted[r.n]) for r in steady if r.n in sim.predicted]
    # The requests that waited (reserved after their arrival): the half the
    # median would hide at a light load, where most are reserved at once.
    waited = [abs(r.wait_ms - sim.predicted[r.n]) for r in steady
              if r.n in sim.predicted and r.wait_ms > 0]
    naive = naive_predictions(result.requests)
    naive_errors = [abs(r.wait_ms - naive[r.n]) for r in steady if r.n in naive]
    # The engine's window: the whole minutes from the end of the warm-up to
    # the virtual clock's last minute (answers counted there).
    start_minute = (sc.startTime + WARMUP_MS) // 60_000 + 1
    end_minute = (sc.startTime + result.end_ms) // 60_000
    minutes = min(1440, end_minute - start_minute + 1)
    ewt = await engine.queue_ewt("sales", window_minutes=minutes)
    mean_wait = statistics.fmean(waits)
    p50 = ewt.accuracy.p50_abs_error_ms
    await redis.flushall()
    return {
        "rho": rho, "steps": steps, "agents": AGENTS, "handle_mean_ms": HANDLE_MS, "seed": seed,
        "requests": len(result.requests), "steady_answered": len(steady),
        "waited_share": sum(1 for w in waits if w > 0) / len(waits),
        "mean_wait_ms": mean_wait, "p90_wait_ms": percentile(waits, 90),
        "engine": {"window_minutes": minutes, **ewt.accuracy.to_dict()},
        "erlang_c_mean_wait_ms": None if steps else erlang_c(AGENTS, rho * AGENTS / HANDLE_MS,
                                                              HANDLE_MS).mean_wait_ms,
        "exact": errors_summary(exact),
        "exact_waited": errors_summary(waited),
        "naive_last_32": errors_summary(naive_errors),
        "p50_error_share_of_mean_wait": None if p50 is None else p50 / mean_wait,
        "exact_p50_share_of_mean_wait": percentile(exact, 50) / mean_wait,
        "exact_waited_p50_share_of_mean_wait": percentile(waited, 50) / mean_wait,
        "naive_p50_share_of_mean_wait": percentile(naive_errors, 50) / mean_wait,
        "script_calls": result.script_calls,
    }


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True)
    # The full run: 5 h of traffic per load, >= 2,000 requests after the warm-up.
    duration = (2 if quick else 10) * 30 * 60_000
    try:
        rhos = (0.9,) if quick else (0.8, 0.9)
        loads = [await one_load(redis, rho, duration, seed=7) for rho in rhos]
        stepped = [await one_load(redis, rho, duration, seed=7, steps=True) for rho in rhos]
    finally:
        await redis.aclose()
    return {"loads": loads, "steps": stepped, "duration_ms": duration, "warmup_ms": WARMUP_MS}


def table(r: dict[str, Any]) -> str:
    lines = [f"  M/M/c, c = {AGENTS}, handle mean {HANDLE_MS // 1000} s, warm-up {WARMUP_MS // 60_000} min "
             f"left out; |actual wait - predicted| of the answered requests (s):",
             f"    {'rho':>4} {'answered':>8} {'waited':>6} {'mean wait':>9} {'(Erlang C)':>10} "
             f"{'engine p50':>10} {'p90':>6} {'p50/mean':>8} {'exact p50':>9} {'p90':>6} "
             f"{'waited p50':>10} {'p90':>6} {'naive p50':>9} {'p50/mean':>8}"]
    for x in [*r["loads"], *r.get("steps", [])]:
        if x is r.get("steps", [None])[0]:
            lines.append(f"  the same with two steps ({EXPERTS} experts for the first 30 s, then all {AGENTS}):")
        e, ex, w, nv = x["engine"], x["exact"], x["exact_waited"], x["naive_last_32"]
        lines.append(f"    {x['rho']:4.1f} {x['steady_answered']:8d} {x['waited_share']:6.0%} "
                     f"{x['mean_wait_ms'] / 1000:9.1f} "
                     f"{'-' if x['erlang_c_mean_wait_ms'] is None else round(x['erlang_c_mean_wait_ms'] / 1000, 1):>10} "
                     f"{e['p50AbsErrorMs'] / 1000:10.1f} {e['p90AbsErrorMs'] / 1000:6.1f} "
                     f"{x['p50_error_share_of_mean_wait']:8.0%} "
                     f"{ex['p50_abs_error_ms'] / 1000:9.1f} {ex['p90_abs_error_ms'] / 1000:6.1f} "
                     f"{w['p50_abs_error_ms'] / 1000:10.1f} {w['p90_abs_error_ms'] / 1000:6.1f} "
                     f"{nv['p50_abs_error_ms'] / 1000:9.1f} {x['naive_p50_share_of_mean_wait']:8.0%}")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, for CI")
    await run_alone("ewt", run, table, ap.parse_args().quick)


if __name__ == "__main__":
    asyncio.run(main())
