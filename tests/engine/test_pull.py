"""PULL mode and OUTBOUND, one test per rule of docs/lifecycle.md, PULL mode: the agent is known
beforehand, no routing; a new task, or the agent's existing task returned
(autoJoin MRD) or given one more ACTIVE media."""

from __future__ import annotations

import json

import pytest

from redroute import Engine
from redroute.checks.invariants import check
from redroute.errors import InvalidTransition
from tests.support.center import EventLog, setup_center, summary


async def test_no_task_for_the_agent_creates_an_active_task_with_its_media_active(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    log = EventLog(engine)
    await log.skip()

    t, created = await engine.pull_task("a1", "c-1", "chat", request_session={"ch": "web"},
                                        metadata={"customer": "ann"})

    assert created is True
    assert t.state == "ACTIVE" and t.reason_code is None
    # PULL tasks are mode AGENT: the agent is known beforehand
    # (docs/lifecycle.md, Deviations).
    assert (t.direction, t.mode) == ("INBOUND", "AGENT")
    assert [m.state for m in t.active_media] == ["ACTIVE"]
    assert t.assigned_to == "a1" and t.mrd_id == "chat" and t.queue_id is None
    assert t.media.answer_time is not None and t.media.request_session == {"ch": "web"}
    assert t.metadata == {"customer": "ann"}
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "ACTIVE", None, 1),)),
    ]


async def test_new_pull_task_is_inserted_in_the_tasks_repository(engine: Engine):
    await setup_center(engine, ready=True)

    t, _ = await engine.pull_task("a1", "c-1", "chat")

    assert (await engine.get_task(t.id)).to_dict() == t.to_dict()
    assert [x.id for x in await engine.conversation_tasks("c-1")] == [t.id]
    assert [x.id for x in await engine.agent_tasks("a1")] == [t.id]


async def test_new_pull_task_publishes_task_state_changed(engine: Engine):
    await setup_center(engine, ready=True)
    log = EventLog(engine)
    await log.skip()

    t, _ = await engine.pull_task("a1", "c-1", "chat")

    events = await log.take()
    assert events[0].type == "TASK_STATE_CHANGED"
    assert events[0].data == {"task": t.to_dict(), "taskStateChanged": True,
                              "mediaStateChanges": [t.media.id], "transition": "CREATED"}


async def test_new_pull_task_is_counted_in_the_agent_active_tasks(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)

    await engine.pull_task("a1", "c-1", "chat")
    assert (await engine.get_agent("a1")).mrd("chat").active_tasks == 1
    await engine.pull_task("a1", "c-2", "chat")

    agent = await engine.get_agent("a1")
    assert agent.mrd("chat").active_tasks == 2 and agent.mrd("chat").state == "BUSY"
    # A full agent is offered nothing: a PUSH request waits in the queue.
    pushed = await engine.push_task("c-3", "sales")
    assert pushed.media.state == "QUEUED" and pushed.assigned_to is None


async def test_pull_works_while_the_agent_is_not_ready(engine: Engine):
    # PULL needs no routing: a logged-in agent that is NOT_READY can still
    # take a conversation it is handed (a known agent, chosen beforehand).
    await setup_center(engine)
    await engine.set_agent_state("a1", "LOGIN")
    log = EventLog(engine)
    await log.skip()

    t, created = await engine.pull_task("a1", "c-1", "chat")

    assert created and t.media.state == "ACTIVE"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", None, 1),)),
    ]


async def test_task_exists_and_mrd_is_auto_joinable_the_task_is_returned(engine: Engine):
    await setup_center(engine, ready=True, auto_join=True, max_requests=1)
    first, _ = await engine.pull_task("a1", "c-1", "chat")
    log = EventLog(engine)
    await log.skip()

    # Even at capacity (maxRequests 1): joining takes no new slot.
    again, created = await engine.pull_task("a1", "c-1", "chat")

    assert created is False
    assert again.to_dict() == first.to_dict()
    assert await log.take() == []
    assert (await engine.get_agent("a1")).mrd("chat").active_tasks == 1


async def test_task_exists_and_mrd_not_auto_joinable_an_active_media_is_added(engine: Engine):
    await setup_center(engine, ready=True, max_requests=3)
    first, _ = await engine.pull_task("a1", "c-1", "chat")
    log = EventLog(engine)
    await log.skip()

    t, created = await engine.pull_task("a1", "c-1", "chat", request_session={"leg": 2})

    assert created is False and t.id == first.id
    assert t.state == "ACTIVE"
    assert [m.state for m in t.active_media] == ["ACTIVE", "ACTIVE"]
    added = t.active_media[1]
    assert added.id != first.media.id and added.answer_time is not None
    assert added.request_session == {"leg": 2}
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE", "ACTIVE"), False, (added.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "ACTIVE", None, 2),)),
    ]
    assert [x.id for x in await engine.agent_tasks("a1")] == [t.id]


async def test_each_added_media_holds_a_slot_until_it_closes(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    waiting = await engine.push_task("c-2", "sales")
    assert waiting.media.state == "QUEUED"
    log = EventLog(engine)
    await log.skip()

    t = await engine.close_media(t.id, t.active_media[0].id)

    # One media closed: the task goes on, the slot goes to the waiting request.
    assert t.state == "ACTIVE" and [m.state for m in t.active_media] == ["CLOSED", "ACTIVE"]
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("CLOSED", "ACTIVE"), False,
         (t.active_media[0].id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "ACTIVE", None, 1),)),
        ("TASK_STATE_CHANGED", waiting.id, "ACTIVE", None, ("RESERVED",), False, (waiting.media.id,)),
        ("AGENT_RESERVED", waiting.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 2),)),
    ]


async def test_last_media_closed_closes_the_pull_task_done(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    log = EventLog(engine)
    await log.skip()

    t = await engine.close_media(t.id, t.media.id)

    assert t.state == "CLOSED" and t.reason_code == "DONE" and t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "DONE", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]
    assert await engine.agent_tasks("a1") == []


async def test_outbound_pull_creates_an_outbound_agent_task_with_its_media_active(engine: Engine):
    await setup_center(engine, ready=True)
    log = EventLog(engine)
    await log.skip()

    t, created = await engine.pull_task("a1", "c-out", "chat", direction="OUTBOUND")

    assert created is True
    assert (t.direction, t.mode) == ("OUTBOUND", "AGENT")
    assert t.state == "ACTIVE" and t.media.state == "ACTIVE" and t.assigned_to == "a1"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


async def test_outbound_pull_on_an_existing_outbound_conversation_adds_a_media(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    first, _ = await engine.pull_task("a1", "c-out", "chat", direction="OUTBOUND")

    t, created = await engine.pull_task("a1", "c-out", "chat", direction="OUTBOUND")

    assert created is False and t.id == first.id and t.direction == "OUTBOUND"
    assert [m.state for m in t.active_media] == ["ACTIVE", "ACTIVE"]


async def test_pull_of_a_conversation_the_agent_holds_reserved_is_invalid(engine: Engine):
    # Chosen: the agent has a PUSH task of the conversation it has not
    # accepted yet. There is no ACTIVE task to join, and a second task would
    # give it two live tasks of one conversation: it must accept (or decline).
    await setup_center(engine, ready=True, max_requests=2)
    pushed = await engine.push_task("c-1", "sales")
    assert pushed.assigned_to == "a1" and pushed.media.state == "RESERVED"
    log = EventLog(engine)
    await log.skip()

    with pytest.raises(InvalidTransition):
        await engine.pull_task("a1", "c-1", "chat")

    assert await log.take() == []
    assert [x.id for x in await engine.agent_tasks("a1")] == [pushed.id]


async def test_invariant_checker_counts_every_media_that_is_not_closed(engine: Engine):
    # The capacity check counts every open media of an agent's task, whatever
    # its state: one the engine failed to count (here a QUEUED one slipped
    # into a pulled task) is reported.
    await setup_center(engine, ready=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    key = f"{engine.prefix}task:{t.id}"
    stored = await engine.redis.get(key)
    doc = json.loads(stored)
    doc["media"].append({**doc["media"][0], "id": "m-x", "state": "QUEUED"})
    await engine.redis.set(key, json.dumps(doc))

    report = await check(engine, events=False)

    assert "agent a1 mrd chat: stored count 1, open medias 2" in report.violations
    await engine.redis.set(key, stored)
    assert (await check(engine)).ok
