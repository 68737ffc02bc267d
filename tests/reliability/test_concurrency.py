"""Several processes push, accept, decline, close, pull, transfer, conference
and log agents in and out against one real Redis with few agents, while a
timer worker fires RONA and TTL deadlines. Afterwards the invariants hold,
and the event history shows no agent was ever over capacity, no task was
reserved twice or closed twice, and every request ended or is still live."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
import redis.asyncio as aioredis

from redroute import Engine, RedrouteError
from redroute.checks.invariants import check
from redroute.timers import TimerWorker
from tests.support.center import setup_center

TENANT = "load"
AGENTS = [f"a{i}" for i in range(5)]
QUEUES = ["sales", "support"]
PROCESSES = 4
OPS_PER_PROCESS = 2000


async def _one_op(engine: Engine, rng: random.Random, n: int) -> str:
    agent = rng.choice(AGENTS)
    roll = rng.random()
    if roll < 0.30:
        await engine.push_task(f"c-{rng.randrange(400)}", rng.choice(QUEUES),
                               priority=rng.randrange(4))
        return "push"
    if roll < 0.42:
        await engine.set_agent_state(agent, rng.choice(["READY", "READY", "NOT_READY"]))
        return "state"
    if roll < 0.43:
        await engine.set_agent_state(agent, "LOGOUT")
        return "logout"
    if roll < 0.48:

        await engine.pull_task(agent, f"p-{rng.randrange(100)}", "chat",
                               direction=rng.choice(["INBOUND", "OUTBOUND"]))
        return "pull"
    for agent in rng.sample(AGENTS, 3):  # look for an agent with work
        tasks = await engine.agent_tasks(agent)
        if tasks:
            break
    else:
        await engine.set_agent_state(agent, "READY")  # idle agents come back
        return "state"
    t = rng.choice(tasks)
    reserved = [m for m in t.active_media if m.state == "RESERVED"]
    active = [m for m in t.active_media if m.state == "ACTIVE"]
    pick = rng.random()
    if reserved:
        if pick < 0.85:
            await engine.accept(t.id, reserved[0].id, agent)
            return "accept"
        await engine.set_task_state(t.id, "CLOSED", "RONA")
        return "decline"
    if active:
        if pick < 0.55:
            await engine.close_media(t.id, active[0].id)
            return "close"
        if pick < 0.65:
            await engine.set_task_state(t.id, "WRAP_UP")
            return "wrap_up"
        if pick < 0.80:
            if rng.random() < 0.5:
                await engine.transfer(t.conversation_id, agent, queue_id=rng.choice(QUEUES))
            else:
                await engine.transfer(t.conversation_id, agent, agent_id=rng.choice(AGENTS))
            return "transfer"
        if rng.random() < 0.5:
            await engine.conference(t.conversation_id, queue_id=rng.choice(QUEUES))
        else:
            await engine.conference(t.conversation_id, agent_id=rng.choice(AGENTS))
        return "conference"
    await engine.set_task_state(t.id, "CLOSED", "WRAP_UP_APPLIED")
    return "wrap_up_close"


async def _drive(url: str, seed: int, ops: int) -> Counter[str]:
    redis = aioredis.from_url(url, decode_responses=True)
    engine = Engine(redis, TENANT)
    rng = random.Random(seed)
    done: Counter[str] = Counter()
    for n in range(ops):
        try:
            done[await _one_op(engine, rng, n)] += 1
        except RedrouteError as e:
            done[f"refused:{e.code}"] += 1
    await redis.aclose()
    return done


def run_process(url: str, seed: int, ops: int) -> Counter[str]:
    return asyncio.run(_drive(url, seed, ops))


@pytest.mark.slow
async def test_concurrent_clients_keep_every_invariant(redis_server):
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    engine = Engine(redis, TENANT)
    await setup_center(engine, agents=tuple(AGENTS), queues=tuple(QUEUES), max_requests=2,
                       sla_ms=300, ttl_ms=2_000, wrap_up=True, wrap_up_timeout_ms=200,
                       ready=True)
    worker = TimerWorker(aioredis.from_url(redis_server.url, decode_responses=True),
                         max_sleep=0.05)
    worker_run = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
        results = await asyncio.gather(*[
            loop.run_in_executor(pool, run_process, redis_server.url, seed, OPS_PER_PROCESS)
            for seed in range(PROCESSES)
        ])
    worker.stop()
    await worker_run
    totals = sum(results, Counter())
    for op in ("push", "accept", "decline", "close", "pull", "transfer", "conference", "logout",
               "wrap_up", "wrap_up_close"):
        assert totals[op] > 0, f"the load never did {op}: {totals}"

    report = await check(engine)
    assert report.ok, "\n".join(report.violations[:20])

    events = await engine.events()
    over = [e.id for e in events if e.type == "AGENT_STATE_CHANGED"
            for m in e.agent["mrdStates"] if m["activeTasks"] > m["maxRequests"]]
    assert not over, f"agents over capacity at events {over[:5]}"
    reserved = Counter(e.task["id"] for e in events if e.type == "AGENT_RESERVED")
    assert max(reserved.values()) == 1, "a task was reserved twice"
    closed = Counter(e.task["id"] for e in events if e.type == "TASK_STATE_CHANGED"
                     and e.task["state"]["name"] == "CLOSED")
    assert max(closed.values()) == 1, "a task was closed twice"

    # Nothing is stuck: once every deadline has passed, no request is left
    # waiting or reserved; what remains is with agents who joined.
    # (Each RONA readies nobody, so this ends within a few rounds.)
    for _ in range(50):
        await engine.advance_clock(3_600_000)
        while (await engine.fire_due()).processed:
            pass
        if not await redis.zcard(engine.prefix + "timers"):
            break
    assert not await redis.zcard(engine.prefix + "timers")
    report = await check(engine)
    assert report.ok, "\n".join(report.violations[:20])
    live = [t for a in AGENTS for t in await engine.agent_tasks(a)]
    assert all(m.state != "RESERVED" for t in live for m in t.active_media)
    assert [(await engine.get_queue(q)).waiting for q in QUEUES] == [0, 0]
    requests = {e.task["requestId"] for e in events if e.task}
    ended_or_live = {t.request_id for t in live}
    for e in await engine.events():
        if e.task and e.task["state"]["name"] == "CLOSED":
            assert e.task["state"]["reasonCode"], "a task closed without a reason"
            ended_or_live.add(e.task["requestId"])
    assert requests <= ended_or_live
    await worker.redis.aclose()
    await redis.aclose()
    print(f"\nconcurrency: {sum(totals.values())} operations {dict(totals)}; "
          f"{report.tasks_live} live, {report.tasks_closed} closed tasks; {len(events)} events")
