"""Agent logout and NOT_READY with tasks (docs/api.md, Agents): on LOGOUT the
RESERVED tasks are re-routed (REROUTE, same requestId) and the ACTIVE ones
close AGENT_LOGOUT; NOT_READY asked while tasks remain gives
PENDING_NOT_READY, which becomes NOT_READY when the last task closes."""

from __future__ import annotations

from redroute import Engine
from tests.support.center import EventLog, pass_time, setup_center, summary

# LOGOUT


async def test_logout_reroutes_reserved_tasks_with_reason_reroute_and_the_same_request_id(
    engine: Engine,
):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.set_agent_state("a1", "READY")
    old = await engine.push_task("c-1", "sales", priority=5, request_session={"ch": "web"})
    assert old.assigned_to == "a1" and old.media.state == "RESERVED"
    await engine.set_agent_state("a2", "READY")
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "LOGOUT")

    old = await engine.get_task(old.id)
    assert old.state == "CLOSED" and old.reason_code == "REROUTE" and old.media.state == "CLOSED"
    new = (await engine.conversation_tasks("c-1"))[-1]
    assert new.id != old.id and new.request_id == old.request_id
    assert (new.direction, new.mode, new.priority) == ("INBOUND", "QUEUE", 5)
    assert new.enqueue_time == old.enqueue_time and new.ttl_deadline == old.ttl_deadline
    assert new.media.request_session == {"ch": "web"}
    assert new.assigned_to == "a2" and new.media.state == "RESERVED"
    assert agent.state == "LOGOUT" and agent.mrd("chat").state == "LOGOUT"
    assert agent.mrd("chat").active_tasks == 0
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", old.id, "CLOSED", "REROUTE", ("CLOSED",), True, (old.media.id,)),
        ("TASK_STATE_CHANGED", new.id, "ACTIVE", None, ("QUEUED",), True, (new.media.id,)),
        ("TASK_STATE_CHANGED", new.id, "ACTIVE", None, ("RESERVED",), False, (new.media.id,)),
        ("AGENT_RESERVED", new.id, "ACTIVE", None, ("RESERVED",), "a2"),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "BUSY", None, 1),)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "LOGOUT", None, 0),)),
    ]


async def test_logout_reroute_waits_in_the_queue_when_no_other_agent_is_free(engine: Engine):
    await setup_center(engine, ttl_ms=60_000)
    await engine.set_agent_state("a1", "READY")
    old = await engine.push_task("c-1", "sales")
    log = EventLog(engine)
    await log.skip()

    await engine.set_agent_state("a1", "LOGOUT")

    new = (await engine.conversation_tasks("c-1"))[-1]
    assert new.request_id == old.request_id and new.media.state == "QUEUED"
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", old.id, "CLOSED", "REROUTE", ("CLOSED",), True, (old.media.id,)),
        ("TASK_STATE_CHANGED", new.id, "ACTIVE", None, ("QUEUED",), True, (new.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "LOGOUT", None, 0),)),
    ]
    # The request keeps its TTL: it ends NO_AGENT_AVAILABLE when nobody comes.
    assert await pass_time(engine, 60_000) == 1
    assert (await engine.get_task(new.id)).reason_code == "NO_AGENT_AVAILABLE"


async def test_logout_closes_active_tasks_with_agent_logout(engine: Engine):
    await setup_center(engine, ready=True)
    t = await engine.push_task("c-1", "sales")
    t = await engine.accept(t.id, t.media.id, "a1")
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "LOGOUT")

    t = await engine.get_task(t.id)
    assert t.state == "CLOSED" and t.reason_code == "AGENT_LOGOUT" and t.media.state == "CLOSED"
    assert [x.id for x in await engine.conversation_tasks("c-1")] == [t.id]  # not re-routed
    assert agent.mrd("chat").active_tasks == 0
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "AGENT_LOGOUT", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "LOGOUT", None, 0),)),
    ]
    assert await engine.agent_tasks("a1") == []


async def test_logout_ends_every_task_oldest_first_and_publishes_the_agent_once(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), max_requests=4, wrap_up=True)
    await engine.set_agent_state("a1", "READY")
    wrapping = await engine.push_task("c-0", "sales")
    await engine.accept(wrapping.id, wrapping.media.id, "a1")
    wrapping = await engine.close_media(wrapping.id, wrapping.media.id)
    assert wrapping.state == "WRAP_UP"
    active, _ = await engine.pull_task("a1", "c-1", "chat")
    reserved = await engine.push_task("c-2", "sales")
    assert reserved.assigned_to == "a1"
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "LOGOUT")

    new = (await engine.conversation_tasks("c-2"))[-1]
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", wrapping.id, "CLOSED", "AGENT_LOGOUT", ("CLOSED",), True, ()),
        ("TASK_STATE_CHANGED", active.id, "CLOSED", "AGENT_LOGOUT", ("CLOSED",), True,
         (active.media.id,)),
        ("TASK_STATE_CHANGED", reserved.id, "CLOSED", "REROUTE", ("CLOSED",), True,
         (reserved.media.id,)),
        ("TASK_STATE_CHANGED", new.id, "ACTIVE", None, ("QUEUED",), True, (new.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "LOGOUT", None, 0),)),
    ]
    assert agent.mrd("chat").active_tasks == 0 and await engine.agent_tasks("a1") == []
    assert await pass_time(engine, 60_000) == 0  # no wrap-up or RONA deadline left behind


async def test_logout_with_a_reserved_named_agent_task_publishes_no_agent_available(
    engine: Engine,
):
    # Named-agent tasks are not re-queued: the REROUTE ends the request.
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    host, _ = await engine.pull_task("a1", "c-1", "chat")
    conf = await engine.conference("c-1", agent_id="a2")
    log = EventLog(engine)
    await log.skip()

    await engine.set_agent_state("a2", "LOGOUT")

    conf = await engine.get_task(conf.id)
    assert conf.state == "CLOSED" and conf.reason_code == "REROUTE"
    assert [x.id for x in await engine.conversation_tasks("c-1")] == [host.id, conf.id]
    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", conf.id, "CLOSED", "REROUTE", ("CLOSED",), True, (conf.media.id,)),
        ("NO_AGENT_AVAILABLE", conf.id, "CLOSED", "REROUTE", ("CLOSED",)),
        ("AGENT_STATE_CHANGED", "a2", (("chat", "LOGOUT", None, 0),)),
    ]


async def test_logged_out_agent_is_offered_nothing(engine: Engine):
    await setup_center(engine, ready=True)
    await engine.set_agent_state("a1", "LOGOUT")

    t = await engine.push_task("c-1", "sales")

    assert t.media.state == "QUEUED" and t.assigned_to is None


# NOT_READY with tasks


async def test_not_ready_with_tasks_gives_pending_not_ready_then_not_ready_when_the_last_closes(
    engine: Engine,
):
    await setup_center(engine, ready=True, max_requests=2)
    t = await engine.push_task("c-1", "sales")
    t = await engine.accept(t.id, t.media.id, "a1")
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "NOT_READY", reason_code="BREAK")

    assert agent.state == "NOT_READY" and agent.reason_code == "BREAK"
    assert agent.mrd("chat").state == "PENDING_NOT_READY" and agent.mrd("chat").active_tasks == 1
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a1", (("chat", "PENDING_NOT_READY", "BREAK", 1),)),
    ]
    # Pending: the free slot is not offered.
    waiting = await engine.push_task("c-2", "sales")
    assert waiting.media.state == "QUEUED"
    await log.skip()

    await engine.close_media(t.id, t.media.id)

    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "DONE", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", "BREAK", 0),)),
    ]
    assert (await engine.get_task(waiting.id)).media.state == "QUEUED"


async def test_pending_not_ready_lasts_until_the_last_of_several_tasks_closes(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    t1, _ = await engine.pull_task("a1", "c-1", "chat")
    t2, _ = await engine.pull_task("a1", "c-2", "chat")
    await engine.set_agent_state("a1", "NOT_READY")
    log = EventLog(engine)
    await log.skip()

    await engine.set_task_state(t1.id, "CLOSED")
    await engine.set_task_state(t2.id, "CLOSED")

    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t1.id, "CLOSED", "DONE", ("CLOSED",), True, (t1.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "PENDING_NOT_READY", None, 1),)),
        ("TASK_STATE_CHANGED", t2.id, "CLOSED", "DONE", ("CLOSED",), True, (t2.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", None, 0),)),
    ]


async def test_pending_not_ready_waits_for_the_wrap_up_to_close(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True, wrap_up_timeout_ms=20_000)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    await engine.set_agent_state("a1", "NOT_READY")
    log = EventLog(engine)
    await log.skip()

    await engine.close_media(t.id, t.media.id)
    assert (await engine.get_agent("a1")).mrd("chat").state == "PENDING_NOT_READY"
    assert await pass_time(engine, 20_000) == 1

    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "WRAP_UP", "DONE", ("CLOSED",), True, (t.media.id,)),
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "WRAP_UP_EXPIRED", ("CLOSED",), True, ()),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", None, 0),)),
    ]


async def test_not_ready_without_tasks_is_not_ready_at_once(engine: Engine):
    await setup_center(engine, ready=True)
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "NOT_READY")

    assert agent.state == "NOT_READY" and agent.mrd("chat").state == "NOT_READY"
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", None, 0),)),
    ]


async def test_mrd_not_ready_with_tasks_gives_pending_not_ready_on_that_mrd_alone(engine: Engine):
    await setup_center(engine, ready=True)
    await engine.put_mrd("voice", max_requests=1)
    await engine.set_agent_state("a1", "READY", mrd_id="voice")
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "NOT_READY", mrd_id="chat")

    assert agent.state == "READY"  # voice is still ready
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a1", (("chat", "PENDING_NOT_READY", None, 1),
                                       ("voice", "READY", None, 0))),
    ]

    await engine.close_media(t.id, t.media.id)

    assert [summary(e) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "DONE", ("CLOSED",), True, (t.media.id,)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", None, 0), ("voice", "READY", None, 0))),
    ]


async def test_ready_again_while_pending_not_ready_takes_waiting_work(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    await engine.set_agent_state("a1", "NOT_READY")
    waiting = await engine.push_task("c-2", "sales")
    log = EventLog(engine)
    await log.skip()

    agent = await engine.set_agent_state("a1", "READY")

    assert agent.mrd("chat").state == "BUSY" and agent.mrd("chat").active_tasks == 2
    assert [summary(e) for e in await log.take()] == [
        ("AGENT_STATE_CHANGED", "a1", (("chat", "ACTIVE", None, 1),)),
        ("TASK_STATE_CHANGED", waiting.id, "ACTIVE", None, ("RESERVED",), False, (waiting.media.id,)),
        ("AGENT_RESERVED", waiting.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 2),)),
    ]
