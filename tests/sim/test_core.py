"""The simulator's loop: it drives the real scripts on a virtual clock, in time
order, and a seeded replication is reproducible bit for bit."""

from __future__ import annotations

import heapq
from dataclasses import astuple

import fakeredis
import redis.asyncio as aioredis

from redroute import Engine
from redroute.sim import RequestSpec, Simulation, draw_requests, parse_scenario, run_replication

BASE = {
    "seed": 11, "replications": 1, "durationMs": 3_600_000,
    "mrds": [{"id": "voice"}],
    "queues": [{"id": "q", "mrdId": "voice"}],
    "agents": [{"id": "a", "count": 4, "queues": ["q"]}],
    "arrivals": [{"queueId": "q", "ratePerHour": 70}],
    "handle": {"type": "exponential", "meanMs": 180_000},
}


def scenario(**changes):
    return parse_scenario({**BASE, **changes})


def fcfs_waits(specs: list[RequestSpec], servers: int) -> list[int]:
    """Each request's wait in a c-server first-come-first-served queue,
    computed directly (Kiefer-Wolfowitz: the earliest free server takes the
    next arrival); no router involved."""
    free = [0] * servers
    waits = []
    for s in specs:
        start = max(heapq.heappop(free), s.at)
        waits.append(start - s.at)
        heapq.heappush(free, start + s.handle_ms)
    return waits


async def test_mmc_waits_equal_an_independent_fcfs_computation_request_by_request(engine: Engine):
    sc = scenario()
    result = await Simulation(engine, sc).run()

    assert len(result.requests) > 40
    assert [r.wait_ms for r in result.requests] == fcfs_waits(draw_requests(sc, 0), 4)
    assert all(r.outcome == "ANSWERED" for r in result.requests) and result.unfinished == 0
    assert any(r.wait_ms > 0 for r in result.requests)  # the load makes some wait


async def test_a_run_takes_virtual_time_only(engine: Engine):
    sc = scenario()
    result = await Simulation(engine, sc).run()

    last = max(r.ended for r in result.requests)
    assert await engine.clock() == sc.startTime + last  # the clock went as far as the day did
    assert last > 3_000_000  # an hour of traffic, in well under a second of waiting


async def test_a_seeded_replication_is_the_same_bit_for_bit_on_both_backends(redis_server):
    sc = scenario(noAnswerProbability=0.2, patience={"type": "exponential", "meanMs": 120_000},
                  mrds=[{"id": "voice", "wrapUp": {"enabled": True, "timeoutMs": 30_000}}],
                  wrapUpTime={"type": "lognormal", "meanMs": 20_000, "sdMs": 15_000})
    real = aioredis.from_url(redis_server.url, decode_responses=True)
    emb = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        runs = [await run_replication(sc, 0, real), await run_replication(sc, 0, real),
                await run_replication(sc, 0, emb)]
    finally:
        await real.aclose()
        await emb.aclose()
    first = [astuple(r) for r in runs[0].requests]
    assert all([astuple(r) for r in run.requests] == first for run in runs[1:])
    assert all([astuple(b) for b in run.busy] == [astuple(b) for b in runs[0].busy] for run in runs)
    assert {r.outcome for r in runs[0].requests} >= {"ANSWERED", "ABANDONED"}


async def test_rona_wrap_up_and_hang_ups_play_through_the_real_scripts(engine: Engine):
    # Agents leave a fifth of reservations unanswered (RONA after agentSlaMs),
    # come back READY after ronaRecovery; wrap-up sometimes outlasts its
    # timeout; customers hang up. The engine fixture checks the invariants.
    sc = scenario(noAnswerProbability=0.2, patience={"type": "exponential", "meanMs": 300_000},
                  queues=[{"id": "q", "mrdId": "voice", "agentSlaMs": 15_000}],
                  mrds=[{"id": "voice", "wrapUp": {"enabled": True, "timeoutMs": 30_000}}],
                  wrapUpTime={"type": "exponential", "meanMs": 15_000},
                  ronaRecovery={"type": "fixed", "valueMs": 10_000})
    result = await Simulation(engine, sc).run()

    rs = result.requests
    assert result.unfinished == 0 and all(r.outcome is not None for r in rs)
    assert any(r.reservations > 1 for r in rs)  # re-routed after a RONA
    assert any(r.outcome == "ABANDONED" for r in rs)
    for r in rs:
        if r.outcome == "ANSWERED":
            assert r.arrival <= r.reserved <= r.answered <= r.ended
    agents = [await engine.get_agent(f"a-{i}") for i in range(1, 5)]
    assert all(m.state == "READY" for a in agents for m in a.mrd_states)  # back from every RONA
    assert (await engine.get_queue("q")).waiting == 0


async def test_a_customer_hangs_up_when_patience_runs_out(engine: Engine):
    specs = [RequestSpec("q", 0, 600_000, 0, 0, None), RequestSpec("q", 1000, 60_000, 0, 0, 5000)]
    sc = scenario(agents=[{"id": "a", "count": 1, "queues": ["q"]}], arrivals=[])
    result = await Simulation(engine, sc, requests=specs).run()

    first, second = result.requests
    assert (first.outcome, first.wait_ms) == ("ANSWERED", 0)
    assert (second.outcome, second.ended, second.reserved) == ("ABANDONED", 6000, None)
    task = (await engine.conversation_tasks("c-1"))[0]
    assert (task.state, task.reason_code) == ("CLOSED", "CANCELLED")


async def test_a_replication_leaves_no_key_of_its_tenant(redis: aioredis.Redis):
    result = await run_replication(scenario(durationMs=600_000), 0, redis)

    assert result.tenant.startswith("sim-") and len(result.requests) > 0
    assert [k async for k in redis.scan_iter(match=f"rr:{{{result.tenant}}}:*")] == []
    assert not await redis.sismember("rr:tenants", result.tenant)
