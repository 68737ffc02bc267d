"""Replaying the event stream rebuilds the live state exactly (docs/design.md,
invariant 3): tasks, agents, and what waits in each queue, in order."""

from __future__ import annotations

import json
import random

import pytest
import redis.asyncio as aioredis

from redroute import Engine
from redroute.checks.projection import Projection, compare, replay
from redroute.events.consumer import GroupConsumer
from redroute.events.stream import StreamGap
from tests.support.center import setup_center, summary
from tests.support.workload import run_workload

# Thousands of operations on real Redis; the embedded backend runs the same
# scripts about five times slower.
OPS = {"redis": 3000, "embedded": 600}


async def test_after_a_random_workload_the_replayed_stream_equals_the_live_state(
    engine: Engine, backend: str,
) -> None:
    stats = await run_workload(engine, OPS[backend], seed=20251124)
    assert stats.fired > 0 and stats.succeeded["transfer"] > 0 and stats.succeeded["accept"] > 0
    projection = await replay(engine)
    assert projection.live_tasks() and any(projection.waiting(q) for q in projection.queue_ids())
    assert await compare(projection, engine) == []


async def test_with_capacity_changes_the_replayed_stream_still_equals_the_live_state(
    engine: Engine, backend: str,
) -> None:
    # Lowering maxRequests under what agents hold is part of it (see
    # tests/support/workload.py); the engine fixture's invariant check runs after.
    await run_workload(engine, OPS[backend], seed=7, capacity_changes=True)
    assert await compare(await replay(engine), engine) == []


async def test_a_seed_replays_the_same_workload_on_the_same_server(redis_server) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        await client.flushall()
        runs = []
        for tenant in ("run-1", "run-2"):
            engine = Engine(client, tenant)
            stats = await run_workload(engine, 800, seed=99)
            runs.append((stats, [summary(e) for e in await engine.events()]))
        assert runs[0] == runs[1]
    finally:
        await client.aclose()


async def test_a_projection_fed_by_a_consumer_group_equals_the_replay(engine: Engine) -> None:
    await run_workload(engine, 300, seed=3)
    fed = Projection()
    consumer = GroupConsumer(engine.redis, fed, tenant=engine.tenant, group="projection", batch=64)
    while await consumer.poll():
        pass
    assert await compare(fed, engine) == []
    replayed = await replay(engine)
    assert (fed.tasks, fed.agents) == (replayed.tasks, replayed.agents)


async def test_duplicated_and_reordered_events_project_the_same_state(engine: Engine) -> None:
    await run_workload(engine, 300, seed=5)
    events = await engine.events()
    shaken = events + random.Random(1).sample(events, len(events))  # every event again, shuffled
    projection = Projection()
    for event in shaken:
        projection.apply(event)
    assert projection.seen == 2 * len(events)
    assert await compare(projection, engine) == []


async def test_queue_contents_are_ordered_by_priority_then_enqueue_time_then_arrival(
    engine: Engine,
) -> None:
    await setup_center(engine, queues=("sales",))
    low = await engine.push_task("c-1", "sales", priority=1)
    await engine.advance_clock(1000)
    high = await engine.push_task("c-2", "sales", priority=5)
    later_low = await engine.push_task("c-3", "sales", priority=1)
    projection = await replay(engine)
    assert projection.waiting("sales") == [high.id, low.id, later_low.id]
    assert await compare(projection, engine) == []


async def test_a_reserved_task_leaves_the_queue_and_appears_with_its_agent(engine: Engine) -> None:
    await setup_center(engine, agents=("a1",), ready=True)
    task = await engine.push_task("c-1", "sales")
    waiting = await engine.push_task("c-2", "sales")
    projection = await replay(engine)
    assert projection.waiting("sales") == [waiting.id]
    assert [t["id"] for t in projection.agent_tasks("a1")] == [task.id]
    assert projection.queue_agents("sales") == {"BUSY": 1}
    assert await compare(projection, engine) == []


async def test_compare_reports_state_that_changed_without_an_event(redis: aioredis.Redis) -> None:
    engine = Engine(redis, "test")  # its state is broken on purpose: no invariant check after
    await setup_center(engine, queues=("sales",))
    task = await engine.push_task("c-1", "sales", priority=3)
    key = f"{engine.prefix}task:{task.id}"
    doc = json.loads(await engine.redis.get(key))
    doc["priority"] = 9
    await engine.redis.set(key, json.dumps(doc))  # behind the engine's back
    diffs = [str(d) for d in await compare(await replay(engine), engine)]
    assert diffs == [f"task {task.id}: priority: stream 3, Redis 9"]


async def test_compare_reports_a_queue_whose_contents_differ(redis: aioredis.Redis) -> None:
    engine = Engine(redis, "test")
    await setup_center(engine, queues=("sales",))
    task = await engine.push_task("c-1", "sales")
    await engine.redis.delete(f"{engine.prefix}q:sales:waiting")
    diffs = [str(d) for d in await compare(await replay(engine), engine)]
    assert f"queue sales: waiting: stream ['{task.id}'], Redis []" in diffs


async def test_a_stream_that_retention_trimmed_cannot_be_replayed(engine: Engine) -> None:
    small = Engine(engine.redis, engine.tenant, events_maxlen=10)
    await setup_center(small, agents=("a1",))
    for i in range(300):
        await small.set_agent_state("a1", "NOT_READY" if i % 2 else "READY")
    with pytest.raises(StreamGap) as gap:
        await replay(small)
    assert gap.value.missed and gap.value.missed > 0


async def test_a_deleted_agent_leaves_the_projection_and_an_older_event_does_not_bring_it_back(
    engine: Engine,
) -> None:
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await engine.delete_agent("a1")
    events = await engine.events()
    projection = Projection()
    for e in events:
        projection.apply(e)

    assert sorted(projection.agents) == ["a2"]
    assert await compare(projection, engine) == []
    older = next(e for e in events if e.agent and e.agent["id"] == "a1")
    assert projection.apply(older) is False and "a1" not in projection.agents


async def test_deletion_events_pass_the_sse_filters_of_what_they_name(engine: Engine) -> None:
    await setup_center(engine, agents=("a1",), queues=("sales", "billing"))
    await engine.put_agent("a1", queues=["sales"])
    await engine.delete_agent("a1")
    await engine.delete_queue("billing")
    deleted = {e.type.value: e for e in await engine.events() if e.type.value.endswith("_DELETED")}

    assert deleted["AGENT_DELETED"].matches(agent_id="a1")
    assert not deleted["AGENT_DELETED"].matches(agent_id="a2")
    assert deleted["QUEUE_DELETED"].matches(queue_id="billing")
    assert not deleted["QUEUE_DELETED"].matches(queue_id="sales")
