"""Direct Queue Transfer and Named Agent Transfer, one test per bullet of the
spec: a new DIRECT_TRANSFER task, the transferring agent's task WRAP_UP then
CLOSED (both TRANSFERRED), and a transfer task that is not accepted closes
RONA with NO_AGENT_AVAILABLE instead of being re-queued."""

from __future__ import annotations

import json

import pytest

from redroute import Engine
from redroute.checks.invariants import check
from redroute.errors import NotFound
from redroute.model import Task
from tests.support.center import EventLog, pass_time, setup_center, summary


async def _serving(engine: Engine, agent: str = "a1", cid: str = "c-1", **push) -> Task:
    """`agent` (READY, the only one ready so far) serves conversation cid: a
    PUSH task of queue sales, accepted."""
    await engine.set_agent_state(agent, "READY")
    t = await engine.push_task(cid, "sales", **push)
    assert t.assigned_to == agent
    return await engine.accept(t.id, t.media.id, agent)


def _old_task_transferred(old: Task, agent_after: tuple) -> list[tuple]:
    """The events of the transferring agent's side: WRAP_UP, then CLOSED,
    both TRANSFERRED, then its freed slot."""
    return [
        ("TASK_STATE_CHANGED", old.id, "WRAP_UP", "TRANSFERRED", ("CLOSED",), True, (old.media.id,)),
        ("TASK_STATE_CHANGED", old.id, "CLOSED", "TRANSFERRED", ("CLOSED",), True, ()),
        ("AGENT_STATE_CHANGED", "a1", agent_after),
    ]


# Direct Queue Transfer


async def test_direct_queue_transfer_creates_an_active_direct_transfer_queue_task_queued(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"), queues=("sales", "support"))
    old = await _serving(engine, priority=6, request_session={"ch": "web"},
                         metadata={"customer": "ann"})
    log = EventLog(engine)
    await log.skip()

    t = await engine.transfer("c-1", "a1", queue_id="support")

    assert t.state == "ACTIVE" and t.reason_code is None
    assert (t.direction, t.mode) == ("DIRECT_TRANSFER", "QUEUE")
    assert [m.state for m in t.active_media] == ["QUEUED"]
    assert t.assigned_to is None and t.queue_id == "support" and t.conversation_id == "c-1"
    assert t.request_id != old.request_id  # a new routing request
    # What the customer brought along goes with the conversation.
    assert t.priority == 6 and t.metadata == {"customer": "ann"}
    assert t.media.request_session == {"ch": "web"}
    assert t.ttl_deadline == t.enqueue_time + 300_000
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
        *_old_task_transferred(old, (("chat", "READY", None, 0),)),
    ]
    assert (await engine.get_queue("support")).waiting == 1


async def test_direct_queue_transfer_wraps_up_then_closes_the_transferring_agents_task(
    engine: Engine,
):
    # Even on an MRD with wrap-up enabled, the transferring agent's task does
    # not wait out a wrap-up timer: WRAP_UP is applied, then CLOSED, at once.
    await setup_center(engine, agents=("a1", "a2"), wrap_up=True)
    old = await _serving(engine)
    log = EventLog(engine)
    await log.skip()

    await engine.transfer("c-1", "a1", queue_id="sales")

    old = await engine.get_task(old.id)
    assert old.state == "CLOSED" and old.reason_code == "TRANSFERRED"
    assert old.media.state == "CLOSED"
    events = [summary(e) for e in await log.take()]
    assert events[1:] == _old_task_transferred(old, (("chat", "READY", None, 0),))
    assert await engine.agent_tasks("a1") == []
    assert await pass_time(engine, 60_000) == 0  # no wrap-up deadline was left behind


async def test_direct_queue_transfer_to_an_available_agent_presents_the_task(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    old = await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    log = EventLog(engine)
    await log.skip()

    t = await engine.transfer("c-1", "a1", queue_id="sales")

    assert t.media.state == "RESERVED" and t.assigned_to == "a2"
    assert (await engine.get_task(t.id)).to_dict() == t.to_dict()
    assert [x.id for x in await engine.agent_tasks("a2")] == [t.id]
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), False, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "BUSY", None, 1),)),
        *_old_task_transferred(old, (("chat", "READY", None, 0),)),
    ]


async def test_direct_queue_transfer_is_never_routed_back_to_the_transferring_agent(
    engine: Engine,
):
    await setup_center(engine, agents=("a1",))
    await _serving(engine)

    t = await engine.transfer("c-1", "a1", queue_id="sales")

    # a1 is READY again with a free slot, and still not offered the transfer.
    assert (await engine.get_task(t.id)).media.state == "QUEUED"
    assert (await engine.get_agent("a1")).mrd("chat").state == "READY"
    assert await engine.agent_tasks("a1") == []


async def test_direct_queue_transfer_is_never_routed_to_an_agent_already_in_the_conversation(
    engine: Engine,
):
    # a2 is conferenced into c-1 and has room for more: the transfer must not
    # give it a second task of the conversation; it waits for a3.
    await setup_center(engine, agents=("a1", "a2", "a3"), max_requests=2)
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    conf = await engine.conference("c-1", agent_id="a2")
    conf = await engine.accept(conf.id, conf.media.id, "a2")

    t = await engine.transfer("c-1", "a1", queue_id="sales")

    assert t.media.state == "QUEUED"
    assert [x.id for x in await engine.agent_tasks("a2")] == [conf.id]
    await engine.set_agent_state("a3", "READY")
    t = await engine.get_task(t.id)
    assert t.assigned_to == "a3" and t.media.state == "RESERVED"


@pytest.mark.parametrize("target", [{"queue_id": "sales"}, {"agent_id": "a2"}],
                         ids=["direct_queue", "named_agent"])
async def test_transfer_accepted_becomes_active(engine: Engine, target: dict):
    await setup_center(engine, agents=("a1", "a2"))
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    t = await engine.transfer("c-1", "a1", **target)
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_media_state(t.id, t.media.id, "ACTIVE", "a2")

    assert t.state == "ACTIVE" and t.media.state == "ACTIVE" and t.media.answer_time is not None
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), False, (t.media.id,)),
    ]


async def test_direct_queue_transfer_declined_closes_rona_and_publishes_no_agent_available(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2", "a3"))
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    t = await engine.transfer("c-1", "a1", queue_id="sales")
    await engine.set_agent_state("a3", "READY")  # another agent is free: still no re-queue
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "RONA")

    assert t.state == "CLOSED" and t.reason_code == "RONA" and t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "NOT_READY", "RONA", 0),)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
    ]
    # Removed from the repository of live tasks: nobody holds it, nothing retries.
    assert await engine.agent_tasks("a2") == [] and await engine.agent_tasks("a3") == []
    assert [x.id for x in await engine.conversation_tasks("c-1")][-1] == t.id


async def test_direct_queue_transfer_not_accepted_in_time_closes_rona(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), sla_ms=15_000)
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    t = await engine.transfer("c-1", "a1", queue_id="sales")
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 15_000) == 1

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "RONA"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "NOT_READY", "RONA", 0),)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
    ]
    assert await engine.agent_tasks("a2") == []


async def test_direct_queue_transfer_waiting_past_its_ttl_closes_no_agent_available(
    engine: Engine,
):
    await setup_center(engine, agents=("a1",), ttl_ms=60_000)
    await _serving(engine)
    t = await engine.transfer("c-1", "a1", queue_id="sales")
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 60_000) == 1

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "NO_AGENT_AVAILABLE"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",), True,
         (t.media.id,)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "NO_AGENT_AVAILABLE", ("CLOSED",)),
    ]


# Named Agent Transfer


async def test_named_agent_transfer_creates_a_direct_transfer_agent_task_reserved(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), sla_ms=25_000)
    old = await _serving(engine, priority=3, metadata={"customer": "bob"})
    await engine.set_agent_state("a2", "READY")
    log = EventLog(engine)
    await log.skip()

    t = await engine.transfer("c-1", "a1", agent_id="a2")

    assert t.state == "ACTIVE" and t.reason_code is None
    assert (t.direction, t.mode) == ("DIRECT_TRANSFER", "AGENT")
    assert [m.state for m in t.active_media] == ["RESERVED"] and t.assigned_to == "a2"
    assert t.mrd_id == "chat" and t.queue_id is None and t.priority == 3
    assert t.metadata == {"customer": "bob"}
    # The old task's queue's agentSlaMs is the time a2 has to accept.
    assert t.ttl_deadline == t.created_at + 25_000
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",), True, (t.media.id,)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "BUSY", None, 1),)),
        *_old_task_transferred(old, (("chat", "READY", None, 0),)),
    ]


async def test_named_agent_transfer_wraps_up_then_closes_the_transferring_agents_task(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"), wrap_up=True)
    old = await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    log = EventLog(engine)
    await log.skip()

    await engine.transfer("c-1", "a1", agent_id="a2")

    old = await engine.get_task(old.id)
    assert old.state == "CLOSED" and old.reason_code == "TRANSFERRED"
    assert [summary(e) for e in await log.take()][3:] == _old_task_transferred(
        old, (("chat", "READY", None, 0),))
    assert await engine.agent_tasks("a1") == []


async def test_named_agent_transfer_to_an_available_agent_presents_the_task(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")

    t = await engine.transfer("c-1", "a1", agent_id="a2", sla_ms=9_000)

    assert (await engine.get_task(t.id)).to_dict() == t.to_dict()
    assert [x.id for x in await engine.agent_tasks("a2")] == [t.id]
    assert t.ttl_deadline == t.created_at + 9_000
    tasks = await engine.conversation_tasks("c-1")
    assert [(x.state, x.reason_code, x.assigned_to) for x in tasks] == [
        ("CLOSED", "TRANSFERRED", "a1"), ("ACTIVE", None, "a2"),
    ]


async def test_named_agent_transfer_declined_closes_rona_and_publishes_no_agent_available(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"))
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    t = await engine.transfer("c-1", "a1", agent_id="a2")
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


async def test_named_agent_transfer_not_accepted_in_time_closes_rona(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    t = await engine.transfer("c-1", "a1", agent_id="a2", sla_ms=4_000)
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 3_000) == 0
    assert await pass_time(engine, 1_000) == 1

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "RONA"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "NOT_READY", "RONA", 0),)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
    ]


async def test_named_agent_transfer_to_an_unavailable_agent_closes_rona_at_once(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    old = await _serving(engine)
    await engine.set_agent_state("a2", "LOGIN")  # NOT_READY
    log = EventLog(engine)
    await log.skip()

    t = await engine.transfer("c-1", "a1", agent_id="a2")

    assert (t.direction, t.mode) == ("DIRECT_TRANSFER", "AGENT")
    assert t.state == "CLOSED" and t.reason_code == "RONA" and t.assigned_to is None
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA", ("CLOSED",), True, (t.media.id,)),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "RONA", ("CLOSED",)),
        *_old_task_transferred(old, (("chat", "READY", None, 0),)),
    ]


async def test_transfer_of_a_conversation_held_on_two_mrds_takes_the_oldest_task(engine: Engine):
    # An agent serving customers by chat and by voice at once: a transfer
    # moves the conversation's task the agent took first, whatever the MRDs
    # are called and however Redis orders the agent's task set (hash order);
    # the other task stays with the agent.
    await setup_center(engine, agents=("a1", "a2"), queues=("support",), max_requests=20)
    await engine.put_mrd("voice", max_requests=20)
    await engine.set_agent_state("a1", "READY")
    pairs = []
    for k in range(10):
        first, second = ("chat", "voice") if k % 2 else ("voice", "chat")
        older, _ = await engine.pull_task("a1", f"c-{k}", first)
        newer, _ = await engine.pull_task("a1", f"c-{k}", second)
        pairs.append((older, newer))

    for k, (older, newer) in enumerate(pairs):
        await engine.transfer(f"c-{k}", "a1", queue_id="support")
        moved = await engine.get_task(older.id)
        assert (moved.state, moved.reason_code) == ("CLOSED", "TRANSFERRED"), k
        assert (await engine.get_task(newer.id)).state == "ACTIVE", k


async def test_transferring_agent_takes_the_next_waiting_task_once_its_task_closed(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"))
    old = await _serving(engine)
    waiting = await engine.push_task("c-9", "sales")
    await engine.set_agent_state("a2", "READY")
    waiting = await engine.get_task(waiting.id)
    assert waiting.assigned_to == "a2"
    await engine.accept(waiting.id, waiting.media.id, "a2")
    nxt = await engine.push_task("c-10", "sales")
    log = EventLog(engine)
    await log.skip()

    t = await engine.transfer("c-1", "a1", queue_id="sales")

    # Nobody is free for the transfer; a1's freed slot goes to c-10, which
    # waited longer than the transfer's request (and a1 may not take its own).
    nxt = await engine.get_task(nxt.id)
    assert t.media.state == "QUEUED" and nxt.assigned_to == "a1"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",), True, (t.media.id,)),
        *_old_task_transferred(old, (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", nxt.id, "ACTIVE", None, ("RESERVED",), False, (nxt.media.id,)),
        ("AGENT_RESERVED", nxt.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


# Reads: a task, a conversation's tasks, an agent's tasks


async def test_read_a_task_returns_its_whole_shape_live_or_closed(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    old = await _serving(engine, request_session={"ch": "web"}, metadata={"k": "v"})
    log = EventLog(engine)
    await log.skip()

    read = await engine.get_task(old.id)
    assert read.to_dict() == old.to_dict()
    raw = await engine.call("get_task", old.id)
    # The wire shape of docs/api.md, Objects, field for field (v2 adds routing).
    assert set(json.loads(raw)) == {
        "id", "requestId", "conversationId", "state", "assignedTo", "type", "queueId", "mrdId",
        "priority", "activeMedia", "enqueueTime", "ttlDeadline", "createdAt", "updatedAt",
        "metadata", "routing",
    }
    await engine.transfer("c-1", "a1", queue_id="sales")
    closed = await engine.get_task(old.id)  # closed tasks stay readable
    assert closed.state == "CLOSED" and closed.reason_code == "TRANSFERRED"
    assert closed.metadata == {"k": "v"} and closed.media.request_session == {"ch": "web"}
    await log.skip()
    await engine.get_task(old.id)
    assert await log.take() == []  # reads publish nothing


async def test_read_a_conversations_tasks_oldest_first_closed_ones_included(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"), max_requests=2)
    old = await _serving(engine)
    await engine.set_agent_state("a2", "READY")
    await engine.set_agent_state("a3", "READY")
    conf = await engine.conference("c-1", agent_id="a3")
    conf = await engine.accept(conf.id, conf.media.id, "a3")
    moved = await engine.transfer("c-1", "a1", agent_id="a2")
    await engine.push_task("c-2", "sales")  # another conversation

    tasks = await engine.conversation_tasks("c-1")

    assert [(t.id, t.state, t.reason_code, t.assigned_to, t.direction) for t in tasks] == [
        (old.id, "CLOSED", "TRANSFERRED", "a1", "INBOUND"),
        (conf.id, "ACTIVE", None, "a3", "DIRECT_CONFERENCE"),
        (moved.id, "ACTIVE", None, "a2", "DIRECT_TRANSFER"),
    ]
    assert await engine.conversation_tasks("c-404") == []


async def test_read_an_agents_tasks_lists_its_live_tasks_only(engine: Engine):
    await setup_center(engine, ready=True, max_requests=4, wrap_up=True)
    wrapping, _ = await engine.pull_task("a1", "c-1", "chat")
    wrapping = await engine.close_media(wrapping.id, wrapping.media.id)
    active, _ = await engine.pull_task("a1", "c-2", "chat")
    reserved = await engine.push_task("c-3", "sales")
    gone, _ = await engine.pull_task("a1", "c-4", "chat")
    await engine.set_task_state(gone.id, "CLOSED", "FORCE_CLOSED")

    tasks = await engine.agent_tasks("a1")

    assert [(t.id, t.state, t.active_media[-1].state) for t in tasks] == [
        (wrapping.id, "WRAP_UP", "CLOSED"),
        (active.id, "ACTIVE", "ACTIVE"),
        (reserved.id, "ACTIVE", "RESERVED"),
    ]
    with pytest.raises(NotFound):
        await engine.agent_tasks("nobody")
    with pytest.raises(NotFound):
        await engine.get_task("t-404")


async def test_invariant_checker_reports_two_live_tasks_for_one_agents_side(engine: Engine):
    # What a transfer (or conference) routed back into the conversation would
    # leave: one agent holding two live tasks of one conversation and MRD.
    await setup_center(engine, ready=True, max_requests=2)
    t1, _ = await engine.pull_task("a1", "c-1", "chat")
    t2, _ = await engine.pull_task("a1", "c-2", "chat")
    key = f"{engine.prefix}task:{t2.id}"
    stored = await engine.redis.get(key)
    await engine.redis.set(key, json.dumps({**json.loads(stored), "conversationId": "c-1"}))

    report = await check(engine, events=False)

    assert report.violations == [
        f"agent a1 holds 2 live tasks {sorted([t1.id, t2.id])} of conversation c-1 on mrd chat"]
    await engine.redis.set(key, stored)
    assert (await check(engine)).ok
