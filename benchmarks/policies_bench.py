"""Routing policies: what priority aging, overflow, maxWaiting and MRD blocks
cost, measured against the same work without them in the same run.

* decision: scaling_bench's waiting sweep (an agent's READY takes the best
  waiting task; 100 … 100k waiting) on a tenant with the policies on: the
  agents serve three chat queues, two aging (priorityUnitMs 60000 and
  15000) and one strict, over which the waiting tasks (priorities 0..6)
  are spread, so every decision compares heads on the aging scale; and
  voice blocks chat, so every availability check of chat reads its
  blockers. The ratio largest/smallest is the flatness target (<= 1.5).
* lifecycle: push (reserves at once) -> accept -> close, pipelined, on two
  tenants of one Redis with the same MRDs (chat, voice), queues (sales,
  tier2) and agents: "plain" without any policy, "policies" with sales
  aging, with maxWaiting and overflowing to tier2 (aging too), and voice
  blocking chat; measured in alternating rounds. The ratio of their median
  rates is the throughput target (>= 0.90: within 10%).

    python benchmarks/policies_bench.py [--quick]   # alone; run.py runs it in the suite
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

import redis.asyncio as aioredis
from engine_bench import pipelined_lifecycles
from harness import (
    RawScripts,
    RedisCounters,
    load_scripts,
    pipelined,
    run_alone,
)
from scaling_bench import waiting_sweep

from redroute import Engine

DAY_MS = 24 * 3600 * 1000
AGING_QUEUES = ("q", "q2", "q3")
MAX_REQUESTS = 4


async def aging_and_blocks(engine: Engine) -> None:
    """Three chat queues (two aging, one strict); voice blocks chat."""
    await engine.put_mrd("chat", max_requests=1)
    await engine.put_mrd("voice", max_requests=1, blocks=["chat"])
    long = dict(mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS)
    await engine.put_queue("q", priority_unit_ms=60_000, **long)
    await engine.put_queue("q2", priority_unit_ms=15_000, **long)
    await engine.put_queue("q3", **long)


def spread_push(raw: RawScripts, pipe: Any, cid: str, i: int) -> None:
    raw.push(pipe, cid, AGING_QUEUES[i % 3], priority=i % 7)


async def lifecycle_tenant(redis: aioredis.Redis, tenant: str, policies: bool, n: int) -> Engine:
    """Enough READY agents (maxRequests 4) for n reservations at once; with
    the policies or without."""
    engine = Engine(redis, tenant)
    raw = RawScripts(engine)
    long = dict(mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS)
    # The same MRDs, queues and memberships either way: only the policies differ.
    await engine.put_mrd("chat", max_requests=MAX_REQUESTS)
    await engine.put_mrd("voice", max_requests=1, blocks=["chat"] if policies else None)
    if policies:
        await engine.put_queue("tier2", priority_unit_ms=60_000, **long)
        await engine.put_queue("sales", priority_unit_ms=60_000, max_waiting=100_000,
                               overflow={"afterMs": DAY_MS, "queueId": "tier2"}, **long)
    else:
        await engine.put_queue("tier2", **long)
        await engine.put_queue("sales", **long)
    queues = '["sales","tier2"]'

    def agent(p: Any, i: int) -> None:
        raw.add(p, "put_agent", f"a{i}", queues, "{}", "{}")
        raw.add(p, "set_agent_state", f"a{i}", "READY", "", "")

    await pipelined(redis, list(range(n // MAX_REQUESTS + 64)), agent, 64, 4)
    return engine


async def lifecycles(redis: aioredis.Redis, engine: Engine, tag: str, n: int, depth: int,
                     concurrency: int) -> dict[str, float]:
    """n pipelined lifecycles: scripts/s and Redis µs per script."""
    c = RedisCounters(redis)
    await c.start()
    await pipelined_lifecycles(redis, RawScripts(engine), tag, n, depth, concurrency)
    r = await c.stop()
    return {"scripts_per_s": 3 * n / r["seconds"], "script_us": r["script_usec_per_call"],
            "redis_cpu_us": r["redis_cpu_s"] * 1e6 / (3 * n)}


async def lifecycle_compare(redis: aioredis.Redis, n: int, rounds: int, depth: int,
                            concurrency: int) -> dict[str, Any]:
    await redis.flushall()
    await load_scripts(redis)
    engines = {"plain": await lifecycle_tenant(redis, "life-plain", False, n),
               "policies": await lifecycle_tenant(redis, "life-policies", True, n)}
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "policies": []}
    for r in range(rounds):
        order = ("plain", "policies") if r % 2 == 0 else ("policies", "plain")
        for name in order:
            runs[name].append(await lifecycles(redis, engines[name], f"{name}-{r}", n, depth, concurrency))
    out: dict[str, Any] = {"tasks_per_round": n, "rounds": rounds, "pipeline_depth": depth,
                           "concurrency": concurrency}
    for name, rs in runs.items():
        out[name] = {k: statistics.median(x[k] for x in rs) for k in rs[0]} | {"runs": rs}
    out["rate_ratio"] = out["policies"]["scripts_per_s"] / out["plain"]["scripts_per_s"]
    out["redis_cpu_ratio"] = out["policies"]["redis_cpu_us"] / out["plain"]["redis_cpu_us"]
    out["script_us_ratio"] = out["policies"]["script_us"] / out["plain"]["script_us"]
    return out


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True, max_connections=32)
    try:
        if quick:
            w = await waiting_sweep(redis, [100, 1_000, 5_000], 2, 50, 0.2, configure=aging_and_blocks,
                                    queues=AGING_QUEUES, add_task=spread_push, tenant="policies-w")
            life = await lifecycle_compare(redis, 1_000, 2, 32, 16)
        else:
            w = await waiting_sweep(redis, [100, 1_000, 10_000, 100_000], 7, 200, 1.0,
                                    configure=aging_and_blocks, queues=AGING_QUEUES, add_task=spread_push,
                                    tenant="policies-w")
            life = await lifecycle_compare(redis, 8_000, 6, 32, 16)
        await redis.flushall()
    finally:
        await redis.aclose()
    return {"waiting": w, "lifecycle": life,
            "ratio_waiting": {
                "from": w[0]["waiting"], "to": w[-1]["waiting"],
                "ready_takes_task_script": w[-1]["ready_takes_task"]["script_us"]
                / w[0]["ready_takes_task"]["script_us"],
                "ready_takes_task_cpu": w[-1]["ready_takes_task"]["redis_cpu_us"]
                / w[0]["ready_takes_task"]["redis_cpu_us"]}}


def table(r: dict[str, Any]) -> str:
    lines = ["  aging (3 queues, 2 aging) and blocking (voice blocks chat) on:",
             f"    {'waiting':>8} {'READY takes task µs':>20} {'(CPU µs)':>9} {'push enqueues µs':>17}"]
    for x in r["waiting"]:
        lines.append(f"    {x['waiting']:8d} {x['ready_takes_task']['script_us']:20.1f} "
                     f"{x['ready_takes_task']['redis_cpu_us']:9.1f} {x['push_enqueues']['script_us']:17.1f}")
    rw = r["ratio_waiting"]
    lines.append(f"  ratio {rw['to']} vs {rw['from']} waiting: READY decision x{rw['ready_takes_task_script']:.2f} "
                 f"(CPU x{rw['ready_takes_task_cpu']:.2f})")
    life = r["lifecycle"]
    lines.append(f"  lifecycle (pipelined, {life['concurrency']} x {life['pipeline_depth']}, median of "
                 f"{life['rounds']} alternating rounds of {life['tasks_per_round']}):")
    for name in ("plain", "policies"):
        x = life[name]
        lines.append(f"    {name:9} {x['scripts_per_s']:10.0f} scripts/s {x['script_us']:8.1f} script µs "
                     f"{x['redis_cpu_us']:8.1f} Redis CPU µs")
    lines.append(f"  policies / plain: rate x{life['rate_ratio']:.3f}, script µs x{life['script_us_ratio']:.3f}, "
                 f"Redis CPU x{life['redis_cpu_ratio']:.3f}")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, for CI")
    await run_alone("policies", run, table, ap.parse_args().quick)


if __name__ == "__main__":
    asyncio.run(main())
