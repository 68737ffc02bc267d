"""Wrap-up and how a task ends: WRAP_UP when the last media closes on an MRD
that enables it, CLOSED/WRAP_UP_EXPIRED when its timer fires, CLOSED earlier
with the reason given; a WRAP_UP task holds one slot of its agent until it is
CLOSED. And the force close of a task in any live state."""

from __future__ import annotations

from redroute import Engine
from redroute.model import Task
from tests.support.center import EventLog, pass_time, setup_center, summary


async def _active(engine: Engine, cid: str = "c-1", agent: str = "a1") -> Task:
    """A PUSH task reserved to the agent and accepted."""
    t = await engine.push_task(cid, "sales")
    assert t.assigned_to == agent
    return await engine.accept(t.id, t.media.id, agent)


async def test_last_media_closed_on_an_mrd_with_wrap_up_goes_wrap_up(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, wrap_up_timeout_ms=30_000)
    t = await _active(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_media_state(t.id, t.media.id, "CLOSED")

    assert t.state == "WRAP_UP" and t.reason_code == "DONE"
    assert t.media.state == "CLOSED" and t.assigned_to == "a1"
    # Only the task changes: the agent keeps the slot, so no agent event.
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "WRAP_UP", "DONE", ("CLOSED",), True, (t.media.id,)),
    ]
    agent = await engine.get_agent("a1")
    assert agent.mrd("chat").state == "BUSY" and agent.mrd("chat").active_tasks == 1
    assert [x.id for x in await engine.agent_tasks("a1")] == [t.id]


async def test_wrap_up_starts_only_when_the_last_of_several_medias_closes(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    first, second = t.active_media
    log = EventLog(engine)
    await log.skip()

    t = await engine.close_media(t.id, first.id)
    assert t.state == "ACTIVE"
    t = await engine.close_media(t.id, second.id)

    assert t.state == "WRAP_UP" and [m.state for m in t.active_media] == ["CLOSED", "CLOSED"]
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("CLOSED", "ACTIVE"), False, (first.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "ACTIVE", None, 1),)),
        ("TASK_STATE_CHANGED", t.id, "WRAP_UP", "DONE", ("CLOSED", "CLOSED"), True, (second.id,)),
    ]
    assert (await engine.get_agent("a1")).mrd("chat").active_tasks == 1


async def test_last_media_closed_without_wrap_up_closes_done(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=False)
    t = await _active(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.close_media(t.id, t.media.id)

    assert t.state == "CLOSED" and t.reason_code == "DONE"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "DONE", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]


async def test_customer_leaving_before_the_agent_joined_cancels_without_wrap_up(engine: Engine):
    # Nothing to wrap up when no agent joined: CLOSED/CANCELLED even though
    # the MRD enables wrap-up.
    await setup_center(engine, ready=True, wrap_up=True)
    t = await engine.push_task("c-1", "sales")
    assert t.media.state == "RESERVED"
    log = EventLog(engine)
    await log.skip()

    t = await engine.close_media(t.id, t.media.id)

    assert t.state == "CLOSED" and t.reason_code == "CANCELLED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "CANCELLED", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]
    assert await pass_time(engine, 60_000) == 0  # its RONA deadline went with it


async def test_wrap_up_asked_by_the_agent_closes_the_medias_and_keeps_the_reason(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "WRAP_UP", "WRAP_UP_APPLIED")

    assert t.state == "WRAP_UP" and t.reason_code == "WRAP_UP_APPLIED"
    assert t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "WRAP_UP", "WRAP_UP_APPLIED", ("CLOSED",), True, (t.media.id,)),
    ]
    assert (await engine.get_agent("a1")).mrd("chat").active_tasks == 1


async def test_wrap_up_timer_fires_and_closes_wrap_up_expired(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, wrap_up_timeout_ms=30_000)
    t = await _active(engine)
    t = await engine.close_media(t.id, t.media.id)
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 29_000) == 0
    assert (await engine.get_task(t.id)).state == "WRAP_UP"
    assert await pass_time(engine, 1_000) == 1

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "WRAP_UP_EXPIRED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "WRAP_UP_EXPIRED", ("CLOSED",), True, ()),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]
    assert await engine.agent_tasks("a1") == []


async def test_wrap_up_closed_earlier_with_the_reason_given(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, wrap_up_timeout_ms=30_000)
    t = await _active(engine)
    t = await engine.close_media(t.id, t.media.id)
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "WRAP_UP_APPLIED")

    assert t.state == "CLOSED" and t.reason_code == "WRAP_UP_APPLIED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "WRAP_UP_APPLIED", ("CLOSED",), True, ()),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]
    assert await pass_time(engine, 30_000) == 0  # the timer went with it
    assert (await engine.get_task(t.id)).reason_code == "WRAP_UP_APPLIED"


async def test_wrap_up_closed_earlier_without_a_reason_closes_done(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    t = await engine.close_media(t.id, t.media.id)

    t = await engine.set_task_state(t.id, "CLOSED")

    assert t.state == "CLOSED" and t.reason_code == "DONE"


async def test_wrap_up_task_holds_the_agents_slot_until_it_is_closed(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, max_requests=1)
    t = await _active(engine)
    t = await engine.close_media(t.id, t.media.id)

    waiting = await engine.push_task("c-2", "sales")
    assert waiting.media.state == "QUEUED"  # a1 is still BUSY with the wrap-up
    log = EventLog(engine)
    await log.skip()

    await engine.set_task_state(t.id, "CLOSED", "WRAP_UP_APPLIED")

    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "WRAP_UP_APPLIED", ("CLOSED",), True, ()),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", waiting.id, "ACTIVE", None, ("RESERVED",), False, (waiting.media.id,)),
        ("AGENT_RESERVED", waiting.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


async def test_wrap_up_expiry_hands_the_slot_to_the_next_waiting_task(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, wrap_up_timeout_ms=10_000)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    waiting = await engine.push_task("c-2", "sales")
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 10_000) == 1

    assert [summary(e)[:4] for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "WRAP_UP_EXPIRED"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", waiting.id, "ACTIVE", None),
        ("AGENT_RESERVED", waiting.id, "ACTIVE", None),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


# Force close


async def test_force_close_of_an_active_task_frees_the_agent(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    waiting = await engine.push_task("c-2", "sales")
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")

    # Forced: no wrap-up, even though the MRD enables it.
    assert t.state == "CLOSED" and t.reason_code == "FORCE_CLOSED" and t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "FORCE_CLOSED", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", waiting.id, "ACTIVE", None, ("RESERVED",), False, (waiting.media.id,)),
        ("AGENT_RESERVED", waiting.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
    ]


async def test_force_close_of_a_wrap_up_task_ends_it_and_its_timer(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")

    assert t.state == "CLOSED" and t.reason_code == "FORCE_CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "FORCE_CLOSED", ("CLOSED",), True, ()),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]
    assert await pass_time(engine, 120_000) == 0


async def test_force_close_of_a_queued_task_takes_it_out_of_its_queue(engine: Engine):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")

    assert t.state == "CLOSED" and t.reason_code == "FORCE_CLOSED" and t.media.state == "CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "FORCE_CLOSED", ("CLOSED",), True, (t.media.id,)),
    ]
    assert (await engine.get_queue("sales")).waiting == 0
    assert await pass_time(engine, 600_000) == 0  # no TTL left to fire


async def test_force_close_of_a_reserved_task_is_not_a_rona(engine: Engine):
    await setup_center(engine, ready=True)
    t = await engine.push_task("c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    t = await engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")

    # Not re-routed, and the agent stays READY (no RONA penalty).
    assert t.state == "CLOSED" and t.reason_code == "FORCE_CLOSED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "FORCE_CLOSED", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ]
    assert [x.id for x in await engine.conversation_tasks("c-1")] == [t.id]
    assert await pass_time(engine, 60_000) == 0
