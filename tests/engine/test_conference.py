"""Direct Queue Conference, one test per rule of docs/lifecycle.md (routed like a
PUSH request), and the named-agent conference of docs/api.md (a
DIRECT_CONFERENCE/AGENT task reserved for one agent)."""

from __future__ import annotations

from redroute import Engine
from tests.support.center import EventLog, pass_time, setup_center, summary


async def _in_conversation(engine: Engine, agent: str = "a1", cid: str = "c-1"):
    """The agent already serves conversation cid (a PULL task, ACTIVE)."""
    t, _ = await engine.pull_task(agent, cid, "chat")
    return t


# Direct Queue Conference


async def test_direct_queue_conference_creates_an_active_direct_conference_queue_task_queued(
    engine: Engine,
):
    await setup_center(engine, ready=True)
    await _in_conversation(engine)  # a1, the only agent, is busy with c-1
    log = EventLog(engine)
    await log.skip()

    t = await engine.conference("c-1", queue_id="sales", metadata={"why": "expert"})

    assert t.state == "ACTIVE" and t.reason_code is None
    assert (t.direction, t.mode) == ("DIRECT_CONFERENCE", "QUEUE")
    assert [m.state for m in t.active_media] == ["QUEUED"]
    assert t.assigned_to is None and t.queue_id == "sales" and t.conversation_id == "c-1"
    assert t.ttl_deadline == t.enqueue_time + 300_000 and t.metadata == {"why": "expert"}
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
    ]
    assert (await engine.get_queue("sales")).waiting == 1


async def test_conference_agent_available_at_request_is_reserved_in_the_same_step(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await _in_conversation(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.conference("c-1", queue_id="sales")

    assert t.media.state == "RESERVED" and t.assigned_to == "a2"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), False, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "BUSY", None, 1),)),
    ]


async def test_conference_agent_reserved_within_ttl_when_it_becomes_ready(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.set_agent_state("a1", "READY")
    await _in_conversation(engine)
    t = await engine.conference("c-1", queue_id="sales")
    await engine.advance_clock(10_000)
    log = EventLog(engine)
    await log.skip()

    await engine.set_agent_state("a2", "READY")

    t = await engine.get_task(t.id)
    assert t.media.state == "RESERVED" and t.assigned_to == "a2"
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a2", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), False, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "BUSY", None, 1),)),
    ]


async def test_conference_agent_accepts_and_the_media_becomes_active(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    host = await _in_conversation(engine)
    t = await engine.conference("c-1", queue_id="sales")
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_media_state(t.id, t.media.id, "ACTIVE", "a2")

    assert t.state == "ACTIVE" and t.media.state == "ACTIVE" and t.media.answer_time is not None
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), False, (t.media.id,)),
    ]
    # Both agents are now in the conversation, each with its own task.
    assert [(x.id, x.assigned_to, x.state) for x in await engine.conversation_tasks("c-1")] == [
        (host.id, "a1", "ACTIVE"), (t.id, "a2", "ACTIVE"),
    ]


async def test_conference_rona_deletes_the_task_and_requeues_a_new_one(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"), ready=True, sla_ms=30_000)
    await _in_conversation(engine)
    first = await engine.conference("c-1", queue_id="sales", priority=7)
    assert first.assigned_to == "a2"
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 30_000) == 1

    first = await engine.get_task(first.id)
    assert first.state == "CLOSED" and first.reason_code == "RONA"
    retried = (await engine.conversation_tasks("c-1"))[-1]
    assert retried.id != first.id and retried.request_id == first.request_id
    assert (retried.direction, retried.mode) == ("DIRECT_CONFERENCE", "QUEUE")
    assert retried.enqueue_time == first.enqueue_time and retried.priority == 7
    assert retried.ttl_deadline == first.ttl_deadline
    # It tries another agent: a2 is NOT_READY (RONA), a1 is in the conversation.
    assert retried.assigned_to == "a3" and retried.media.state == "RESERVED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", first.id, "CLOSED", "RONA", ("CLOSED",), True, (first.media.id,)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "NOT_READY", "RONA", 0),)),
        ("TASK_STATE_CHANGED", retried.id, "ACTIVE", None, ("QUEUED",), True, (retried.media.id,)),
        ("TASK_STATE_CHANGED", retried.id, "ACTIVE", None, ("RESERVED",), False, (retried.media.id,)),
        ("AGENT_RESERVED", retried.id, "ACTIVE", None, ("RESERVED",), "a3"),
        ("AGENT_STATE_CHANGED", "a3", (("chat", "BUSY", None, 1),)),
    ]


async def test_conference_rona_keeps_trying_until_the_ttl_expires(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True, sla_ms=10_000, ttl_ms=60_000)
    await _in_conversation(engine)
    first = await engine.conference("c-1", queue_id="sales")
    await pass_time(engine, 10_000)  # a2 RONA: nobody else can take it, it waits
    retried = (await engine.conversation_tasks("c-1"))[-1]
    assert retried.media.state == "QUEUED"
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 50_000) == 1

    retried = await engine.get_task(retried.id)
    assert retried.state == "CLOSED" and retried.reason_code == "NO_AGENT_AVAILABLE"
    assert retried.request_id == first.request_id
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", retried.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",), True,
         (retried.media.id,)),
        ("NO_AGENT_AVAILABLE", retried.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",)),
    ]


async def test_conference_declined_takes_the_rona_path_at_once(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"), ready=True)
    await _in_conversation(engine)
    first = await engine.conference("c-1", queue_id="sales")
    log = EventLog(engine)
    await log.skip()

    closed = await engine.set_task_state(first.id, "CLOSED", "RONA")

    assert closed.state == "CLOSED" and closed.reason_code == "RONA"
    retried = (await engine.conversation_tasks("c-1"))[-1]
    assert retried.request_id == first.request_id and retried.assigned_to == "a3"
    assert [e.type.value for e in await log.take()] == [
        "TASK_STATE_CHANGED", "AGENT_STATE_CHANGED", "TASK_STATE_CHANGED", "TASK_STATE_CHANGED",
        "AGENT_RESERVED", "AGENT_STATE_CHANGED",
    ]


async def test_conference_request_ttl_expires_closes_no_agent_available(engine: Engine):
    await setup_center(engine, ready=True, ttl_ms=60_000)
    await _in_conversation(engine)
    t = await engine.conference("c-1", queue_id="sales")
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 60_000) == 1

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "NO_AGENT_AVAILABLE"
    assert t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",), True, (t.media.id,)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",)),
    ]
    assert (await engine.get_queue("sales")).waiting == 0


async def test_conference_is_never_offered_to_an_agent_already_in_the_conversation(engine: Engine):
    # a1 has room for a second chat, but it is the agent being conferenced
    # with: the conference waits for another agent.
    await setup_center(engine, agents=("a1", "a2"), max_requests=2)
    await engine.set_agent_state("a1", "READY")
    host = await _in_conversation(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.conference("c-1", queue_id="sales")
    other, _ = await engine.pull_task("a1", "c-2", "chat")
    await engine.close_media(other.id, other.media.id)  # a1 frees a slot: still not offered

    assert (await engine.get_task(t.id)).media.state == "QUEUED"
    assert [x.id for x in await engine.agent_tasks("a1")] == [host.id]
    assert [summary(e) for e in await log.take()][0] == (
        "TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,))

    await log.skip()
    await engine.set_agent_state("a2", "READY")

    t = await engine.get_task(t.id)
    assert t.assigned_to == "a2" and t.media.state == "RESERVED"
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a2", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), False, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "ACTIVE", None, 1),)),
    ]


# Named-agent conference


async def test_named_agent_conference_creates_a_direct_conference_agent_task_reserved(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"), sla_ms=20_000)
    await engine.set_agent_state("a1", "READY")
    host = await engine.push_task("c-1", "sales", priority=4)
    host = await engine.accept(host.id, host.media.id, "a1")
    await engine.set_agent_state("a2", "READY")
    log = EventLog(engine)
    await log.skip()

    t = await engine.conference("c-1", agent_id="a2")

    assert t.state == "ACTIVE" and t.reason_code is None
    assert (t.direction, t.mode) == ("DIRECT_CONFERENCE", "AGENT")
    assert [m.state for m in t.active_media] == ["RESERVED"] and t.assigned_to == "a2"
    # The conversation's MRD and priority; the host task's queue's agentSlaMs.
    assert t.mrd_id == "chat" and t.priority == 4 and t.queue_id is None
    assert t.ttl_deadline == t.created_at + 20_000
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), True, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "BUSY", None, 1),)),
    ]
    assert (await engine.get_task(host.id)).to_dict() == host.to_dict()


async def test_named_agent_conference_accepted_becomes_active(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await _in_conversation(engine)
    t = await engine.conference("c-1", agent_id="a2")
    log = EventLog(engine)
    await log.skip()

    t = await engine.accept(t.id, t.media.id, "a2")

    assert t.state == "ACTIVE" and t.media.state == "ACTIVE"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), False, (t.media.id,)),
    ]


async def test_named_agent_conference_not_accepted_closes_rona_and_is_not_requeued(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"), ready=True)
    await _in_conversation(engine)
    t = await engine.conference("c-1", agent_id="a2", sla_ms=5_000)
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 5_000) == 1

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "RONA"
    assert [x.id for x in await engine.conversation_tasks("c-1")][-1] == t.id  # no new task
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "NOT_READY", "RONA", 0),)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
    ]


async def test_named_agent_conference_declined_closes_rona_and_publishes_no_agent_available(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await _in_conversation(engine)
    t = await engine.conference("c-1", agent_id="a2")
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "RONA")

    assert t.state == "CLOSED" and t.reason_code == "RONA" and t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "NOT_READY", "RONA", 0),)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
    ]
    assert await engine.agent_tasks("a2") == []


async def test_named_agent_conference_to_an_unavailable_agent_closes_rona_at_once(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.set_agent_state("a1", "READY")
    await engine.set_agent_state("a2", "LOGIN")  # logged in, NOT_READY
    await _in_conversation(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.conference("c-1", agent_id="a2")

    assert (t.direction, t.mode) == ("DIRECT_CONFERENCE", "AGENT")
    assert t.state == "CLOSED" and t.reason_code == "RONA" and t.media.state == "CLOSED"
    assert t.assigned_to is None
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
    ]
    agent = await engine.get_agent("a2")
    assert agent.mrd("chat").state == "NOT_READY" and agent.mrd("chat").reason_code is None
