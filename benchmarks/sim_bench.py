"""Simulator speed: how fast redroute.sim plays a contact-center day through
the real scripts on a virtual clock, on a real Redis and on the embedded
backend.

* the day (benchmarks/scenarios/day_8h.json): 8 hours at 1,000 requests per
  hour (about 8,000 requests), 40 agents (maxRequests 1), lognormal handle
  times (mean 100 s), 3 s mean to accept, 2% of reservations left to RONA
  (agentSlaMs 15 s, back READY 30 s later), wrap-up (mean 15 s, timeout
  60 s), exponential patience (mean 3 min); one replication, seed 1.
* real Redis: the whole day (the target: under 60 s of wall time); quick
  mode plays its first hour.
* embedded backend (fakeredis + lupa in this process): the first hour of the
  same day (quick: the first 15 minutes), as its requests per wall second.
* parallel: 4 replications of the first hour at once on the real Redis, one
  process, their round trips overlapping (quick: 15 minutes).

Reported per run: requests, wall seconds, simulated requests per wall
second, script calls per request, and the day's KPIs (so a change that
alters the routing shows).

    python benchmarks/sim_bench.py [--quick]   # alone; run.py runs it in the suite
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import fakeredis
import redis.asyncio as aioredis
from harness import run_alone

from redroute.sim import load_scenario, replication_kpis, run_replication, simulate_async

DAY = Path(__file__).resolve().parent / "scenarios" / "day_8h.json"
HOUR_MS = 3_600_000
TARGET_DAY_S = 60.0


def _day(duration_ms: int | None = None, replications: int = 1) -> Any:
    sc = load_scenario(DAY)
    changes: dict[str, Any] = {"replications": replications}
    if duration_ms is not None:
        changes.update(durationMs=duration_ms, warmupMs=min(sc.warmupMs, duration_ms // 4))
    return sc.model_copy(update=changes)


async def _one(redis: Any, sc: Any) -> dict[str, Any]:
    started = time.perf_counter()
    r = await run_replication(sc, 0, redis)
    wall = time.perf_counter() - started
    k = replication_kpis(r, sc)["sales"]
    return {"hours": sc.durationMs / HOUR_MS, "requests": len(r.requests), "wall_s": round(wall, 2),
            "requests_per_s": round(len(r.requests) / wall, 1),
            "script_calls_per_request": round(r.script_calls / max(1, len(r.requests)), 2),
            "unfinished": r.unfinished,
            "kpis": {m: (None if v is None else round(v, 4)) for m, v in k.items()}}


async def run(url: str, quick: bool) -> dict[str, Any]:
    real = aioredis.from_url(url, decode_responses=True, socket_timeout=60)  # a loaded machine stalls
    embedded = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        day = await _one(real, _day(HOUR_MS if quick else None))
        emb = await _one(embedded, _day(HOUR_MS // 4 if quick else HOUR_MS))
        par_sc = _day(HOUR_MS // 4 if quick else HOUR_MS, replications=4)
        par = await simulate_async(par_sc, real, concurrency=4)
    finally:
        await real.aclose()
        await embedded.aclose()
    return {
        "scenario": str(DAY.relative_to(DAY.parents[2])),
        "redis_day": day, "embedded": emb,
        "redis_parallel": {"replications": 4, "hours": par_sc.durationMs / HOUR_MS,
                           "requests": par.requests, "wall_s": round(par.wall_s, 2),
                           "requests_per_s": round(par.requests_per_second, 1)},
        "redis_to_embedded": round(day["requests_per_s"] / emb["requests_per_s"], 2),
        "target_day_s": TARGET_DAY_S,
        "full_day": not quick,
    }


def table(r: dict[str, Any]) -> str:
    if "redis_day" not in r:
        return "  (not measured)"
    rows = [("run", "hours", "requests", "wall s", "requests/s", "calls/request")]
    for key, label in (("redis_day", "real Redis, one replication"),
                       ("embedded", "embedded, one replication")):
        x = r[key]
        rows.append((label, f"{x['hours']:g}", f"{x['requests']:,}", f"{x['wall_s']:.1f}",
                     f"{x['requests_per_s']:,.0f}", f"{x['script_calls_per_request']:.1f}"))
    p = r["redis_parallel"]
    rows.append((f"real Redis, {p['replications']} replications at once", f"{p['hours']:g}",
                 f"{p['requests']:,}", f"{p['wall_s']:.1f}", f"{p['requests_per_s']:,.0f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = ["  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                              enumerate(zip(row, widths, strict=True))) for row in rows]
    k = r["redis_day"]["kpis"]
    lines.append(f"  the day's KPIs (real Redis): SL {k['sl']:.3f}, ASA {k['asaMs'] / 1000:.1f} s, "
                 f"abandon rate {k['abandonRate']:.3f}, occupancy {k['occupancy']:.3f}")
    lines.append(f"  real Redis ÷ embedded: {r['redis_to_embedded']:.1f}x requests per wall second")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    asyncio.run(run_alone("simulator", run, table, ap.parse_args().quick))
