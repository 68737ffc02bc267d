"""Named transitions (docs/api.md, Events): every TASK_STATE_CHANGED names
what happened in its `transition`, as the script that made the change saw
it. One test per path that publishes one; the model-based test checks the
transition of every step it takes."""

from __future__ import annotations

from redroute import Engine
from redroute.checks.invariants import transition_problem
from redroute.model import Transition
from tests.support.center import EventLog, pass_time, setup_center


async def step_transitions(log: EventLog) -> list[tuple[str, str]]:
    """(task id, transition) of each TASK_STATE_CHANGED since the last take."""
    return [(e.task["id"], e.data["transition"]) for e in await log.take()
            if e.type == "TASK_STATE_CHANGED"]


async def started(engine: Engine, **kw) -> EventLog:
    await setup_center(engine, **kw)
    log = EventLog(engine)
    await log.skip()
    return log


async def test_a_push_that_waits_is_created(engine: Engine):
    log = await started(engine)
    t = await engine.push_task("c1", "sales")
    assert await step_transitions(log) == [(t.id, "CREATED")]


async def test_a_push_offered_at_once_is_created_then_reserved(engine: Engine):
    log = await started(engine, ready=True)
    t = await engine.push_task("c1", "sales")
    assert await step_transitions(log) == [(t.id, "CREATED"), (t.id, "RESERVED")]


async def test_an_agent_becoming_ready_reserves_the_waiting_task(engine: Engine):
    log = await started(engine)
    t = await engine.push_task("c1", "sales")
    await log.skip()
    await engine.set_agent_state("a1", "READY")
    assert await step_transitions(log) == [(t.id, "RESERVED")]


async def test_accepting_is_accepted(engine: Engine):
    log = await started(engine, ready=True)
    t = await engine.push_task("c1", "sales")
    await log.skip()
    await engine.accept(t.id, t.media.id, "a1")
    assert await step_transitions(log) == [(t.id, "ACCEPTED")]


async def test_a_decline_is_declined_and_the_request_rerouted(engine: Engine):
    log = await started(engine, agents=("a1", "a2"), ready=True)
    t = await engine.push_task("c1", "sales")
    await log.skip()
    await engine.set_task_state(t.id, "CLOSED", "RONA")
    [_, again] = await engine.conversation_tasks("c1")
    assert await step_transitions(log) == [(t.id, "DECLINED"), (again.id, "REROUTED"),
                                           (again.id, "RESERVED")]


async def test_a_reservation_not_accepted_in_time_is_rona_and_the_request_rerouted(engine: Engine):
    log = await started(engine, ready=True)
    t = await engine.push_task("c1", "sales")
    await log.skip()
    await pass_time(engine, 30_000)
    [_, again] = await engine.conversation_tasks("c1")
    assert await step_transitions(log) == [(t.id, "RONA"), (again.id, "REROUTED")]


async def test_a_logout_reroutes_a_reservation_and_closes_an_active_task(engine: Engine):
    log = await started(engine, max_requests=2, ready=True)
    active = await engine.push_task("c1", "sales")
    await engine.accept(active.id, active.media.id, "a1")
    reserved = await engine.push_task("c2", "sales")
    await log.skip()
    await engine.set_agent_state("a1", "LOGOUT")
    again = (await engine.conversation_tasks("c2"))[-1]
    assert await step_transitions(log) == [(active.id, "CLOSED"), (reserved.id, "REROUTED"),
                                           (again.id, "REROUTED")]


async def test_a_waiting_request_past_its_ttl_is_ttl_expired(engine: Engine):
    log = await started(engine, ttl_ms=60_000)
    t = await engine.push_task("c1", "sales")
    await log.skip()
    await pass_time(engine, 60_000)
    assert await step_transitions(log) == [(t.id, "TTL_EXPIRED")]
    assert (await engine.get_task(t.id)).reason_code == "NO_AGENT_AVAILABLE"


async def test_the_customer_leaving_before_an_agent_joined_is_closed(engine: Engine):
    log = await started(engine)
    t = await engine.push_task("c1", "sales")
    await log.skip()
    await engine.close_media(t.id, t.media.id)
    assert await step_transitions(log) == [(t.id, "CLOSED")]
    assert (await engine.get_task(t.id)).reason_code == "CANCELLED"


async def test_a_pull_creates_a_task_and_a_second_pull_adds_a_media(engine: Engine):
    log = await started(engine, max_requests=2, ready=True)
    t, _ = await engine.pull_task("a1", "c1", "chat")
    same, created = await engine.pull_task("a1", "c1", "chat")
    assert (same.id, created) == (t.id, False)
    assert await step_transitions(log) == [(t.id, "CREATED"), (t.id, "MEDIA_ADDED")]


async def test_one_media_closing_while_another_stays_open_is_media_closed(engine: Engine):
    log = await started(engine, max_requests=2, ready=True)
    t, _ = await engine.pull_task("a1", "c1", "chat")
    t, _ = await engine.pull_task("a1", "c1", "chat")
    await log.skip()
    await engine.close_media(t.id, t.active_media[0].id)
    assert await step_transitions(log) == [(t.id, "MEDIA_CLOSED")]


async def test_the_last_media_closing_with_wrap_up_is_wrap_up_then_its_timeout_closed(engine: Engine):
    log = await started(engine, ready=True, wrap_up=True, wrap_up_timeout_ms=10_000)
    t, _ = await engine.pull_task("a1", "c1", "chat")
    await log.skip()
    await engine.close_media(t.id, t.media.id)
    assert await step_transitions(log) == [(t.id, "WRAP_UP")]
    await pass_time(engine, 10_000)
    assert await step_transitions(log) == [(t.id, "CLOSED")]
    assert (await engine.get_task(t.id)).reason_code == "WRAP_UP_EXPIRED"


async def test_an_agent_ending_wrap_up_is_closed(engine: Engine):
    log = await started(engine, ready=True, wrap_up=True)
    t, _ = await engine.pull_task("a1", "c1", "chat")
    await engine.set_task_state(t.id, "WRAP_UP", None)
    await log.skip()
    await engine.set_task_state(t.id, "CLOSED", None)
    assert await step_transitions(log) == [(t.id, "CLOSED")]


async def test_a_transfer_to_a_queue_creates_the_new_task_and_transfers_then_closes_the_old(
    engine: Engine,
):
    log = await started(engine, agents=("a1", "a2"), ready=True)
    old = await engine.push_task("c1", "sales")
    await engine.accept(old.id, old.media.id, old.assigned_to)
    await log.skip()
    new = await engine.transfer("c1", old.assigned_to, queue_id="sales")
    assert await step_transitions(log) == [(new.id, "CREATED"), (new.id, "RESERVED"),
                                           (old.id, "TRANSFERRED"), (old.id, "CLOSED")]


async def test_a_named_agent_conference_is_created_reserved(engine: Engine):
    log = await started(engine, agents=("a1", "a2"), ready=True)
    host, _ = await engine.pull_task("a1", "c1", "chat")
    await log.skip()
    t = await engine.conference("c1", agent_id="a2")
    assert t.media.state == "RESERVED"
    assert await step_transitions(log) == [(t.id, "CREATED")]


async def test_a_named_agent_who_cannot_take_it_now_is_rona_at_once(engine: Engine):
    log = await started(engine, agents=("a1", "a2"), ready=True)
    await engine.set_agent_state("a2", "NOT_READY")
    await engine.pull_task("a1", "c1", "chat")
    await log.skip()
    t = await engine.conference("c1", agent_id="a2")
    assert (t.state, t.reason_code) == ("CLOSED", "RONA")
    assert await step_transitions(log) == [(t.id, "RONA")]


async def test_every_transition_published_is_one_the_contract_names(engine: Engine):
    log = await started(engine, agents=("a1", "a2"), ready=True, wrap_up=True)
    t = await engine.push_task("c1", "sales")
    await engine.accept(t.id, t.media.id, t.assigned_to)
    await engine.close_media(t.id, t.media.id)
    await pass_time(engine, 60_000)
    names = {e.data["transition"] for e in await log.take() if e.type == "TASK_STATE_CHANGED"}
    assert names and names <= {str(x) for x in Transition}
    assert all(e.transition is not None for e in await engine.events()
               if e.type == "TASK_STATE_CHANGED")


def test_the_checker_flags_a_transition_its_snapshot_contradicts():
    task = {"id": "t-1", "state": {"name": "ACTIVE", "reasonCode": None},
            "activeMedia": [{"id": "m-1", "state": "QUEUED"}]}
    good = {"task": task, "taskStateChanged": True, "mediaStateChanges": ["m-1"], "transition": "CREATED"}
    assert transition_problem(good) is None
    assert "ACCEPTED" in transition_problem({**good, "taskStateChanged": False, "transition": "ACCEPTED"})
    assert "ACTIVE" in transition_problem({**good, "transition": "TTL_EXPIRED"})
    assert "unknown" in transition_problem({**good, "transition": "TELEPORTED"})
