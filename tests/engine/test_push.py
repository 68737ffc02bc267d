"""PUSH mode, one test per rule of docs/lifecycle.md: the request is parked in a
queue, an agent is reserved, accepts or not (RONA), or the TTL expires."""

from __future__ import annotations

import pytest

from redroute import Engine, ValidationError
from tests.support.center import EventLog, pass_time, setup_center, summary


async def test_new_request_creates_an_active_inbound_queue_task_with_its_media_queued(engine: Engine):
    await setup_center(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.push_task("c-1", "sales", metadata={"customer": "ann"})

    assert t.state == "ACTIVE" and t.reason_code is None
    assert (t.direction, t.mode) == ("INBOUND", "QUEUE")
    assert [m.state for m in t.active_media] == ["QUEUED"]
    assert t.assigned_to is None and t.queue_id == "sales" and t.mrd_id == "chat"
    assert t.ttl_deadline == t.enqueue_time + 300_000
    assert t.metadata == {"customer": "ann"}
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
    ]
    q = await engine.get_queue("sales")
    assert q.waiting == 1 and q.oldest_wait_ms is not None and q.oldest_wait_ms >= 0


async def test_agent_available_at_request_is_reserved_in_the_same_step(engine: Engine):
    await setup_center(engine, ready=True)
    log = EventLog(engine)
    await log.skip()

    t = await engine.push_task("c-1", "sales")

    assert t.media.state == "RESERVED" and t.assigned_to == "a1"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), False, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]
    assert (await engine.get_queue("sales")).waiting == 0


async def test_agent_reserved_within_ttl_when_it_becomes_ready(engine: Engine):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")
    await engine.advance_clock(10_000)
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "READY")

    t = await engine.get_task(t.id)
    assert t.media.state == "RESERVED" and t.assigned_to == "a1"
    assert agent.mrd("chat").state == "BUSY" and agent.mrd("chat").active_tasks == 1
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), False, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


async def test_agent_accepts_and_the_media_becomes_active(engine: Engine):
    await setup_center(engine, ready=True)
    t = await engine.push_task("c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_media_state(t.id, t.media.id, "ACTIVE", "a1")

    assert t.state == "ACTIVE" and t.media.state == "ACTIVE"
    assert t.media.answer_time is not None and t.media.answer_time >= t.media.enqueue_time
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), False, (t.media.id,)),
    ]
    # Accepted in time: the RONA deadline is gone and nothing fires later.
    assert await pass_time(engine, 60_000) == 0
    assert (await engine.get_task(t.id)).media.state == "ACTIVE"


async def test_rona_deletes_the_task_and_parks_a_new_queued_one_for_the_same_request(engine: Engine):
    await setup_center(engine, sla_ms=20_000, ready=True)
    first = await engine.push_task("c-1", "sales", priority=3, request_session={"ch": "web"})
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 20_000) == 1

    old = await engine.get_task(first.id)
    assert (old.state, old.reason_code, old.media.state) == ("CLOSED", "RONA", "CLOSED")
    tasks = await engine.conversation_tasks("c-1")
    new = tasks[-1]
    assert new.id != first.id and new.request_id == first.request_id
    assert new.enqueue_time == first.enqueue_time and new.ttl_deadline == first.ttl_deadline
    assert (new.state, new.media.state, new.assigned_to) == ("ACTIVE", "QUEUED", None)
    assert new.priority == 3 and new.media.request_session == {"ch": "web"}
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", first.id, "CLOSED", "RONA", ("CLOSED",), True, (first.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", "RONA", 0),)),
        ("TASK_STATE_CHANGED", new.id, "ACTIVE", None, ("QUEUED",), True, (new.media.id,)),
    ]
    agent = await engine.get_agent("a1")
    assert (agent.mrd("chat").state, agent.mrd("chat").reason_code) == ("NOT_READY", "RONA")


async def test_rona_request_keeps_its_place_ahead_of_later_requests(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), sla_ms=20_000)
    await engine.set_agent_state("a1", "READY")
    first = await engine.push_task("c-1", "sales")
    await engine.advance_clock(1_000)
    later = await engine.push_task("c-2", "sales")
    assert later.media.state == "QUEUED"

    await pass_time(engine, 20_000)  # a1 does not answer
    await engine.set_agent_state("a2", "READY")

    retried = (await engine.conversation_tasks("c-1"))[-1]
    assert retried.request_id == first.request_id
    assert (retried.media.state, retried.assigned_to) == ("RESERVED", "a2")
    assert (await engine.get_task(later.id)).media.state == "QUEUED"


async def test_after_rona_the_system_finds_another_agent(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), sla_ms=20_000, ready=True)
    first = await engine.push_task("c-1", "sales")
    assert first.assigned_to == "a1"
    log = EventLog(engine)
    await log.skip()

    await pass_time(engine, 20_000)

    new = (await engine.conversation_tasks("c-1"))[-1]
    assert (new.media.state, new.assigned_to, new.request_id) == ("RESERVED", "a2", first.request_id)
    assert [e.type for e in await log.take()] == [
        "TASK_STATE_CHANGED", "AGENT_STATE_CHANGED",  # a1's task closes RONA
        "TASK_STATE_CHANGED",  # the new task, QUEUED
        "TASK_STATE_CHANGED", "AGENT_RESERVED", "AGENT_STATE_CHANGED",  # reserved to a2
    ]


async def test_decline_takes_the_rona_path_at_once(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    first = await engine.push_task("c-1", "sales")

    closed = await engine.set_task_state(first.id, "CLOSED", "RONA")

    assert (closed.state, closed.reason_code) == ("CLOSED", "RONA")
    new = (await engine.conversation_tasks("c-1"))[-1]
    assert (new.assigned_to, new.media.state, new.request_id) == ("a2", "RESERVED", first.request_id)
    assert (await engine.get_agent("a1")).mrd("chat").reason_code == "RONA"


async def test_rona_task_is_retried_until_the_ttl_then_closes_no_agent_available(engine: Engine):
    await setup_center(engine, sla_ms=20_000, ttl_ms=60_000, ready=True)
    first = await engine.push_task("c-1", "sales")
    await pass_time(engine, 20_000)  # RONA; a1 is NOT_READY, so the request waits
    retried = (await engine.conversation_tasks("c-1"))[-1]
    log = EventLog(engine)
    await log.skip()

    await pass_time(engine, 40_000)  # the original TTL: 60 s after the request

    t = await engine.get_task(retried.id)
    assert (t.state, t.reason_code, t.media.state) == ("CLOSED", "NO_AGENT_AVAILABLE", "CLOSED")
    assert t.ttl_deadline == first.ttl_deadline
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",), True, (t.media.id,)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",)),
    ]


async def test_rona_after_the_ttl_has_passed_ends_the_request(engine: Engine):
    await setup_center(engine, sla_ms=30_000, ttl_ms=10_000, ready=True)
    first = await engine.push_task("c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    await pass_time(engine, 30_000)

    assert [t.id for t in await engine.conversation_tasks("c-1")] == [first.id]
    assert [e.type for e in await log.take()] == [
        "TASK_STATE_CHANGED", "AGENT_STATE_CHANGED", "NO_AGENT_AVAILABLE",
    ]


async def test_request_ttl_expiry_closes_the_task_no_agent_available(engine: Engine):
    await setup_center(engine, ttl_ms=5_000)
    t = await engine.push_task("c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 4_500) == 0  # real time passes too: leave it room
    assert await pass_time(engine, 500) == 1

    t = await engine.get_task(t.id)
    assert (t.state, t.reason_code, t.media.state) == ("CLOSED", "NO_AGENT_AVAILABLE", "CLOSED")
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",), True, (t.media.id,)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",)),
    ]
    assert (await engine.get_queue("sales")).waiting == 0


async def test_request_ttl_can_be_set_per_request(engine: Engine):
    await setup_center(engine, ttl_ms=300_000)
    t = await engine.push_task("c-1", "sales", agent_request_ttl_ms=1_000)
    assert t.ttl_deadline == t.enqueue_time + 1_000
    await pass_time(engine, 1_000)
    assert (await engine.get_task(t.id)).reason_code == "NO_AGENT_AVAILABLE"


async def test_closing_the_last_media_closes_the_task_done_and_frees_the_agent(engine: Engine):
    await setup_center(engine, ready=True)
    t = await engine.push_task("c-1", "sales")
    nxt = await engine.push_task("c-2", "sales")
    assert nxt.media.state == "QUEUED"
    await engine.accept(t.id, t.media.id, "a1")
    log = EventLog(engine)
    await log.skip()

    closed = await engine.set_media_state(t.id, t.media.id, "CLOSED")

    assert (closed.state, closed.reason_code, closed.media.state) == ("CLOSED", "DONE", "CLOSED")
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "DONE", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", nxt.id, "ACTIVE", None, ("RESERVED",), False, (nxt.media.id,)),
        ("AGENT_RESERVED", nxt.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


async def test_customer_leaving_a_queued_request_cancels_it(engine: Engine):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")

    t = await engine.close_media(t.id, t.media.id)

    assert (t.state, t.reason_code) == ("CLOSED", "CANCELLED")
    assert (await engine.get_queue("sales")).waiting == 0
    assert await pass_time(engine, 400_000) == 0


async def test_closed_tasks_stay_readable_then_expire_after_retention(engine: Engine, redis):
    short = Engine(redis, "test", retention_ms=50)
    await setup_center(short, ready=True)
    t = await short.push_task("c-1", "sales")
    await short.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")
    assert (await short.get_task(t.id)).reason_code == "FORCE_CLOSED"
    assert await redis.pttl(engine.keys.task(t.id)) > 0


async def test_a_conversation_index_set_to_expire_lives_again_with_a_new_task(engine: Engine, redis):
    await setup_center(engine, ready=True)
    first = await engine.push_task("c-1", "sales")
    assert await redis.pttl(engine.keys.conv("c-1")) == -1
    await engine.set_task_state(first.id, "CLOSED", "FORCE_CLOSED")
    assert await redis.pttl(engine.keys.conv("c-1")) > 0  # no live task left: expires with retention

    second = await engine.push_task("c-1", "sales")

    assert await redis.pttl(engine.keys.conv("c-1")) == -1
    assert [t.id for t in await engine.conversation_tasks("c-1")] == [first.id, second.id]


async def test_rona_on_the_agents_only_ready_mrd_makes_the_agent_not_ready(engine: Engine):
    await setup_center(engine, sla_ms=1_000, ready=True)
    await engine.push_task("c-1", "sales")
    await pass_time(engine, 1_000)
    agent = await engine.get_agent("a1")
    assert (agent.state, agent.reason_code) == ("NOT_READY", "RONA")
    # Another MRD still ready keeps the agent READY.
    await engine.put_mrd("voice", max_requests=1)
    await engine.set_agent_state("a1", "READY")
    await engine.push_task("c-2", "sales")
    await pass_time(engine, 1_000)
    agent = await engine.set_agent_state("a1", "READY", mrd_id="voice")
    assert agent.state == "READY" and agent.mrd("chat").reason_code == "RONA"


# Idempotency keys: a request retried after an unknown outcome (a timeout,
# a lost connection) must not create a second task.


async def test_a_push_retried_with_its_idempotency_key_creates_one_task(engine: Engine):
    await setup_center(engine, ready=True)
    first, created = await engine.push_task_idempotent("req-1", "c-1", "sales")
    assert created and first.media.state == "RESERVED"
    await engine.accept(first.id, first.media.id)
    log = EventLog(engine)
    await log.skip()

    again, created = await engine.push_task_idempotent("req-1", "c-1", "sales")

    assert not created
    assert again.id == first.id and again.media.state == "ACTIVE"  # the task as it is now
    assert [t.id for t in await engine.conversation_tasks("c-1")] == [first.id]
    assert await log.take() == []


async def test_an_idempotency_key_used_for_another_request_is_rejected_and_changes_nothing(
    engine: Engine,
):
    await setup_center(engine)
    await engine.push_task_idempotent("req-1", "c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    with pytest.raises(ValidationError, match="Idempotency-Key req-1"):
        await engine.push_task_idempotent("req-1", "c-2", "sales")

    assert await engine.conversation_tasks("c-2") == []
    assert await log.take() == []


async def test_idempotency_keys_belong_to_their_tenant(engine: Engine):
    other = Engine(engine.redis, "other-tenant")
    for e in (engine, other):
        await setup_center(e)
    a, _ = await engine.push_task_idempotent("req-1", "c-1", "sales")

    b, created = await other.push_task_idempotent("req-1", "c-1", "sales")

    assert created and (await other.get_task(b.id)).conversation_id == "c-1"
    assert [t.id for t in await engine.conversation_tasks("c-1")] == [a.id]


async def test_a_task_reply_orjson_refuses_still_decodes_as_json_reads_it(engine: Engine):
    import json

    from redroute.model import Task

    await setup_center(engine)
    t = await engine.push_task("c-1", "sales", metadata={"crm": "x"})
    doc = json.loads(t.raw_json)
    for metadata in ({"big": 2**70, "low": -(2**63) - 1}, {"odd": "\ud800"}):  # past 64 bits; a lone surrogate
        doc["metadata"] = metadata
        raw = json.dumps(doc)

        back = Task.from_json(raw)

        assert back.metadata == metadata
        assert [type(x) for x in back.metadata.values()] == [type(x) for x in metadata.values()]
        assert back.raw_json == raw and back.id == t.id
