"""Routing policies: priority aging, maxWaiting (QUEUE_FULL), overflow by age
and on a full queue, re-prioritising a waiting task, and MRD blocks."""

from __future__ import annotations

import json

import pytest

from redroute import Engine, InvalidTransition, NotFound, QueueFull, ValidationError
from redroute.checks.invariants import check
from tests.support.center import EventLog, pass_time, setup_center

MINUTE = 60_000


async def waiting_order(engine: Engine, agent: str, n: int) -> list[str]:
    """The order in which agent (max 1 task) takes n waiting tasks: it is made
    ready, takes one, closes it, takes the next…"""
    await engine.set_agent_state(agent, "READY")
    order = []
    for _ in range(n):
        [t] = await engine.agent_tasks(agent)
        order.append(t.conversation_id)
        await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    return order


def transitions(events, task_id: str) -> list[str | None]:
    return [e.data.get("transition") for e in events if e.task and e.task["id"] == task_id
            and e.type == "TASK_STATE_CHANGED"]


# Priority aging


async def test_strict_queue_takes_higher_priority_first_whatever_the_wait(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.push_task("old-low", "sales", priority=1)
    await engine.advance_clock(60 * MINUTE)
    await engine.push_task("new-high", "sales", priority=2)
    assert await waiting_order(engine, "a1", 2) == ["new-high", "old-low"]


async def test_aging_queue_orders_by_enqueue_time_less_priority_times_unit(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.put_queue("sales", mrd_id="chat", priority_unit_ms=MINUTE)
    await engine.push_task("p1-t0", "sales", priority=1)       # score t0 - 1 min
    await engine.advance_clock(3 * MINUTE)
    await engine.push_task("p3-t3", "sales", priority=3)       # t0 + 3 - 3 = t0
    await engine.push_task("p5-t3", "sales", priority=5)       # t0 - 2 min
    await engine.advance_clock(MINUTE)
    await engine.push_task("p2-t4", "sales", priority=2)       # t0 + 2 min
    assert await waiting_order(engine, "a1", 4) == ["p5-t3", "p1-t0", "p3-t3", "p2-t4"]


async def test_aging_lets_an_old_low_priority_task_pass_a_new_high_one(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.put_queue("sales", mrd_id="chat", priority_unit_ms=MINUTE)
    await engine.push_task("old-low", "sales", priority=0)
    await engine.advance_clock(10 * MINUTE + 1)
    await engine.push_task("new-high", "sales", priority=10)
    assert await waiting_order(engine, "a1", 2) == ["old-low", "new-high"]


async def test_agent_of_several_aging_queues_takes_the_smallest_score(engine: Engine):
    await setup_center(engine, agents=("a1",), queues=("slow", "fast"))
    await engine.put_queue("slow", mrd_id="chat", priority_unit_ms=MINUTE)
    await engine.put_queue("fast", mrd_id="chat", priority_unit_ms=10 * MINUTE)
    await engine.push_task("slow-p5", "slow", priority=5)       # t0 - 5 min
    await engine.advance_clock(MINUTE)
    await engine.push_task("fast-p1", "fast", priority=1)       # t0 + 1 - 10 = t0 - 9 min
    await engine.push_task("slow-p1", "slow", priority=1)       # t0 + 1 - 1 = t0
    assert await waiting_order(engine, "a1", 3) == ["fast-p1", "slow-p5", "slow-p1"]


async def test_a_strict_queue_counts_as_a_unit_of_ten_billion_ms_against_aging_ones(engine: Engine):
    await setup_center(engine, agents=("a1",), queues=("strict", "aging", "small"))
    await engine.put_queue("aging", mrd_id="chat", priority_unit_ms=10**10)
    await engine.put_queue("small", mrd_id="chat", priority_unit_ms=1)
    # Same priority, same unit: the earlier task first, whichever queue.
    await engine.push_task("aging-first", "aging", priority=3)
    await engine.advance_clock(1)
    await engine.push_task("strict-second", "strict", priority=3)
    # One priority point more on the strict queue outweighs any wait below 10^10 ms.
    await engine.advance_clock(MINUTE)
    await engine.push_task("strict-p4", "strict", priority=4)
    # A small unit: a high priority there counts for little.
    await engine.push_task("small-p100", "small", priority=100)
    order = await waiting_order(engine, "a1", 4)
    assert order == ["strict-p4", "aging-first", "strict-second", "small-p100"]


async def test_aging_applies_within_each_step_index(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_queue("sales", mrd_id="chat", priority_unit_ms=MINUTE,
                           steps=[{"expression": "vip", "timeoutMs": 10 * MINUTE}, {"expression": ""}])
    await engine.put_agent("a1", queues=["sales"], attributes={"vip": True})
    await engine.push_task("p1-t0", "sales", priority=1)
    await engine.advance_clock(2 * MINUTE)
    await engine.push_task("p2-t2", "sales", priority=2)
    assert await waiting_order(engine, "a1", 2) == ["p1-t0", "p2-t2"]


async def test_changing_priority_unit_reorders_the_waiting_tasks(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.push_task("old-low", "sales", priority=1)
    await engine.advance_clock(5 * MINUTE)
    await engine.push_task("new-high", "sales", priority=2)
    await engine.put_queue("sales", mrd_id="chat", priority_unit_ms=MINUTE)
    assert await waiting_order(engine, "a1", 2) == ["old-low", "new-high"]


async def test_queue_without_policies_shows_none_of_their_fields(engine: Engine):
    await setup_center(engine)
    d = (await engine.get_queue("sales")).to_dict()
    assert not {"priorityUnitMs", "maxWaiting", "overflow"} & set(d)


# Re-prioritising


async def test_reprioritised_waiting_task_takes_its_new_place(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.push_task("first", "sales", priority=1)
    second = await engine.push_task("second", "sales", priority=1)
    log = EventLog(engine)
    await log.skip()
    t = await engine.set_task_priority(second.id, 9)
    assert (t.priority, t.media.state) == (9, "QUEUED")
    events = await log.take()
    assert [(e.type.value, e.data.get("transition")) for e in events] == [
        ("TASK_STATE_CHANGED", "REPRIORITIZED")]
    assert events[0].task["priority"] == 9
    assert (await engine.task_routing(second.id)).position == 1
    assert await waiting_order(engine, "a1", 2) == ["second", "first"]


async def test_reprioritising_keeps_enqueue_time_step_and_deadlines(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.put_queue("sales", mrd_id="chat", priority_unit_ms=MINUTE,
                           steps=[{"expression": "x", "timeoutMs": MINUTE}, {"expression": ""}])
    t = await engine.push_task("c1", "sales")
    after = await engine.set_task_priority(t.id, 50)
    assert (after.enqueue_time, after.ttl_deadline, after.routing) == (t.enqueue_time, t.ttl_deadline, t.routing)


@pytest.mark.parametrize("how", ["reserved", "active", "closed"])
async def test_reprioritising_a_task_that_is_not_waiting_is_409_and_changes_nothing(engine: Engine, how: str):
    await setup_center(engine, agents=("a1",), ready=True)
    t = await engine.push_task("c1", "sales")
    if how == "active":
        t = await engine.accept(t.id, t.media.id, "a1")
    if how == "closed":
        t = await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    log = EventLog(engine)
    await log.skip()
    with pytest.raises(InvalidTransition):
        await engine.set_task_priority(t.id, 9)
    assert await log.take() == []
    assert (await engine.get_task(t.id)).priority == 1


async def test_reprioritising_an_unknown_task_is_404(engine: Engine):
    with pytest.raises(NotFound):
        await engine.set_task_priority("t-404", 3)


# maxWaiting


async def test_push_to_a_full_queue_is_queue_full_and_changes_nothing(engine: Engine):
    await setup_center(engine)
    await engine.put_queue("sales", mrd_id="chat", max_waiting=2)
    await engine.push_task("c1", "sales")
    await engine.push_task("c2", "sales")
    log = EventLog(engine)
    await log.skip()
    seq = await engine.redis.get(engine.keys.seq)
    with pytest.raises(QueueFull) as e:
        await engine.push_task("c3", "sales")
    assert e.value.status == 409 and e.value.code == "QUEUE_FULL"
    assert await log.take() == []
    assert await engine.redis.get(engine.keys.seq) == seq
    assert await engine.conversation_tasks("c3") == []
    assert (await engine.get_queue("sales")).waiting == 2


async def test_a_queue_below_max_waiting_takes_pushes_again(engine: Engine):
    await setup_center(engine)
    await engine.put_queue("sales", mrd_id="chat", max_waiting=1)
    t = await engine.push_task("c1", "sales")
    await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    assert (await engine.push_task("c2", "sales")).media.state == "QUEUED"


async def test_max_waiting_zero_refuses_every_push(engine: Engine):
    await setup_center(engine)
    await engine.put_queue("sales", mrd_id="chat", max_waiting=0)
    with pytest.raises(QueueFull):
        await engine.push_task("c1", "sales")


# Overflow


async def overflow_center(engine: Engine, *, after_ms: int = 2 * MINUTE, max_waiting: int | None = None,
                          tier2_steps: list | None = None) -> None:
    """sales overflows to tier2 (same MRD); a1 serves sales, a2 serves tier2 (both LOGOUT)."""
    await engine.put_mrd("chat")
    await engine.put_queue("tier2", mrd_id="chat", steps=tier2_steps)
    await engine.put_queue("sales", mrd_id="chat", max_waiting=max_waiting,
                           overflow={"afterMs": after_ms, "queueId": "tier2"})
    await engine.put_agent("a1", queues=["sales"])
    await engine.put_agent("a2", queues=["tier2"])


async def test_a_task_still_waiting_after_after_ms_moves_to_the_overflow_queue(engine: Engine):
    await overflow_center(engine)
    t = await engine.push_task("c1", "sales", priority=3)
    assert await pass_time(engine, 2 * MINUTE - 1_000) == 0
    log = EventLog(engine)
    await log.skip()
    assert await pass_time(engine, 1_000) == 1
    got = await engine.get_task(t.id)
    assert (got.id, got.request_id, got.enqueue_time, got.queue_id, got.media.queue_id) == (
        t.id, t.request_id, t.enqueue_time, "tier2", "tier2")
    assert (got.priority, got.ttl_deadline, got.media.state) == (3, t.ttl_deadline, "QUEUED")
    events = await log.take()
    assert [(e.type.value, e.data.get("transition"), e.data["taskStateChanged"]) for e in events] == [
        ("TASK_STATE_CHANGED", "OVERFLOWED", False)]
    assert events[0].task["queueId"] == "tier2"
    assert (await engine.get_queue("sales")).waiting == 0
    assert (await engine.get_queue("tier2")).waiting == 1


async def test_an_overflowed_task_is_routed_at_once_in_the_target(engine: Engine):
    await overflow_center(engine)
    await engine.set_agent_state("a2", "READY")
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"  # a2 is not a member of sales
    log = EventLog(engine)
    await log.skip()
    await pass_time(engine, 2 * MINUTE)
    assert [(e.type.value, e.data.get("transition")) for e in await log.take()] == [
        ("TASK_STATE_CHANGED", "OVERFLOWED"), ("TASK_STATE_CHANGED", "RESERVED"),
        ("AGENT_RESERVED", None), ("AGENT_STATE_CHANGED", None)]
    got = await engine.get_task(t.id)
    assert (got.assigned_to, got.queue_id, got.media.state) == ("a2", "tier2", "RESERVED")


async def test_the_step_is_recomputed_in_the_overflow_queue_from_the_task_age(engine: Engine):
    steps = [{"expression": "senior", "timeoutMs": MINUTE}, {"expression": "senior", "timeoutMs": 2 * MINUTE},
             {"expression": ""}]
    await overflow_center(engine, after_ms=90_000, tier2_steps=steps)
    t = await engine.push_task("c1", "sales")
    assert t.routing.step is None
    await pass_time(engine, 90_000)
    got = await engine.get_task(t.id)
    assert (got.queue_id, got.routing.step, got.routing.steps) == ("tier2", 2, 3)
    assert got.routing.next_step_at == t.enqueue_time + 3 * MINUTE


async def test_a_task_taken_before_its_deadline_does_not_overflow(engine: Engine):
    await overflow_center(engine)
    t = await engine.push_task("c1", "sales")
    await engine.set_agent_state("a1", "READY")
    await engine.accept(t.id, t.media.id, "a1")
    assert await pass_time(engine, 3 * MINUTE) == 0
    assert (await engine.get_task(t.id)).queue_id == "sales"


async def test_a_rona_requeue_past_the_deadline_overflows_at_once_keeping_its_request(engine: Engine):
    await overflow_center(engine, after_ms=20_000)
    t = await engine.push_task("c1", "sales")
    await engine.set_agent_state("a1", "READY")  # reserved at once; RONA after 30 s
    await pass_time(engine, 30_000)
    [rona, requeued] = await engine.conversation_tasks("c1")
    assert rona.id == t.id and rona.reason_code == "RONA"
    assert (requeued.request_id, requeued.enqueue_time, requeued.queue_id) == (t.request_id, t.enqueue_time, "tier2")
    assert transitions(await engine.events(), requeued.id) == ["REROUTED", "OVERFLOWED"]


async def test_overflow_chains_move_on_while_each_deadline_is_passed(engine: Engine):
    await overflow_center(engine, after_ms=MINUTE)
    await engine.put_queue("tier3", mrd_id="chat")
    await engine.put_queue("tier2", mrd_id="chat", overflow={"afterMs": 3 * MINUTE, "queueId": "tier3"})
    t = await engine.push_task("c1", "sales")
    await pass_time(engine, MINUTE)
    assert (await engine.get_task(t.id)).queue_id == "tier2"
    await pass_time(engine, 2 * MINUTE)
    assert (await engine.get_task(t.id)).queue_id == "tier3"


async def test_with_max_waiting_reached_a_push_goes_straight_to_the_overflow_queue(engine: Engine):
    await overflow_center(engine, max_waiting=1)
    first = await engine.push_task("c1", "sales")
    t = await engine.push_task("c2", "sales")
    assert (first.queue_id, t.queue_id, t.media.queue_id) == ("sales", "tier2", "tier2")
    await engine.set_agent_state("a2", "READY")
    assert (await engine.get_task(t.id)).assigned_to == "a2"


async def test_a_full_overflow_queue_without_overflow_refuses_the_push(engine: Engine):
    await overflow_center(engine, max_waiting=1)
    await engine.put_queue("tier2", mrd_id="chat", max_waiting=1)
    await engine.push_task("c1", "sales")
    await engine.push_task("c2", "sales")
    with pytest.raises(QueueFull):
        await engine.push_task("c3", "sales")


async def test_overflow_to_an_unknown_queue_is_404(engine: Engine):
    await engine.put_mrd("chat")
    with pytest.raises(NotFound):
        await engine.put_queue("sales", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "nowhere"})


async def test_overflow_to_a_queue_of_another_mrd_is_refused(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_mrd("voice")
    await engine.put_queue("calls", mrd_id="voice")
    with pytest.raises(ValidationError, match="mrdId"):
        await engine.put_queue("sales", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "calls"})
    with pytest.raises(NotFound):
        await engine.get_queue("sales")


async def test_overflow_loops_are_refused_also_when_a_later_put_would_close_one(engine: Engine):
    await engine.put_mrd("chat")
    with pytest.raises(ValidationError, match="itself"):
        await engine.put_queue("a", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "a"})
    await engine.put_queue("c", mrd_id="chat")
    await engine.put_queue("b", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "c"})
    await engine.put_queue("a", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "b"})
    before = (await engine.get_queue("c")).to_dict()
    with pytest.raises(ValidationError, match="loop"):
        await engine.put_queue("c", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "a"})
    assert (await engine.get_queue("c")).to_dict() == before


async def test_a_queue_others_overflow_to_cannot_change_its_mrd(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_mrd("voice")
    await engine.put_queue("tier2", mrd_id="chat")
    await engine.put_queue("sales", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "tier2"})
    with pytest.raises(ValidationError, match="overflows"):
        await engine.put_queue("tier2", mrd_id="voice")
    assert (await engine.get_queue("tier2")).mrd_id == "chat"


async def test_removing_overflow_drops_the_deadlines_of_waiting_tasks(engine: Engine):
    await overflow_center(engine)
    t = await engine.push_task("c1", "sales")
    await engine.put_queue("sales", mrd_id="chat")
    assert await pass_time(engine, 3 * MINUTE) == 0
    assert (await engine.get_task(t.id)).queue_id == "sales"


async def test_setting_overflow_moves_tasks_already_past_it(engine: Engine):
    await overflow_center(engine)
    await engine.put_queue("sales", mrd_id="chat")
    t = await engine.push_task("c1", "sales")
    await engine.advance_clock(5 * MINUTE)
    await engine.put_queue("sales", mrd_id="chat", overflow={"afterMs": MINUTE, "queueId": "tier2"})
    assert (await engine.get_task(t.id)).queue_id == "tier2"


async def test_overflow_deadline_fires_once_with_any_number_of_workers(engine: Engine):
    await overflow_center(engine)
    t = await engine.push_task("c1", "sales")
    await engine.advance_clock(2 * MINUTE)
    other = Engine(engine.redis, engine.tenant)
    fired = [(await engine.fire_due()).fired, (await other.fire_due()).fired]
    assert sorted(fired) == [0, 1]
    assert transitions(await engine.events(), t.id).count("OVERFLOWED") == 1


@pytest.mark.parametrize("tier2_steps", [None, [{"expression": "y", "timeoutMs": 2 * MINUTE}, {"expression": ""}]])
async def test_an_overflow_due_with_a_step_deadline_moves_the_task_and_the_stale_step_does_nothing(
        engine: Engine, tier2_steps: list | None):
    await overflow_center(engine, after_ms=MINUTE, tier2_steps=tier2_steps)
    await engine.put_queue("sales", mrd_id="chat", overflow={"afterMs": MINUTE, "queueId": "tier2"},
                           steps=[{"expression": "x", "timeoutMs": MINUTE}, {"expression": ""}])
    t = await engine.push_task("c1", "sales")
    assert await pass_time(engine, MINUTE) == 1  # the overflow; the step deadline left is stale
    got = await engine.get_task(t.id)
    assert got.queue_id == "tier2"
    assert transitions(await engine.events(), t.id) == ["CREATED", "OVERFLOWED"]
    if tier2_steps:
        assert (got.routing.step, got.routing.next_step_at) == (1, t.enqueue_time + 2 * MINUTE)


async def test_invariants_see_a_task_left_past_its_overflow_deadline(engine: Engine):
    await overflow_center(engine)
    await engine.push_task("c1", "sales")
    await engine.advance_clock(3 * MINUTE)
    report = await check(engine, overdue_ms=10_000)
    assert any("past its overflow deadline" in v for v in report.violations)
    await engine.fire_due()
    assert (await check(engine, overdue_ms=10_000)).ok


# MRD blocks


async def blocking_center(engine: Engine) -> None:
    """voice blocks chat and email; a1 serves calls, sales (chat, 3) and mail (email, 2)."""
    await engine.put_mrd("chat", max_requests=3)
    await engine.put_mrd("email", max_requests=2)
    await engine.put_mrd("voice", blocks=["chat", "email"])
    await engine.put_queue("calls", mrd_id="voice")
    await engine.put_queue("sales", mrd_id="chat")
    await engine.put_queue("mail", mrd_id="email")
    await engine.put_agent("a1", queues=["calls", "sales", "mail"])
    await engine.set_agent_state("a1", "READY")


async def test_mrd_shows_its_blocks(engine: Engine):
    await blocking_center(engine)
    assert (await engine.get_mrd("voice")).blocks == ["chat", "email"]
    assert "blocks" not in (await engine.get_mrd("chat")).to_dict()


async def test_an_agent_holding_a_call_is_offered_no_chat_and_shows_blocked_by(engine: Engine):
    await blocking_center(engine)
    call = await engine.push_task("call", "calls")
    assert call.assigned_to == "a1"
    chat = await engine.push_task("chat", "sales")
    assert (chat.media.state, chat.assigned_to) == ("QUEUED", None)
    a = await engine.get_agent("a1")
    assert (a.mrd("chat").blocked_by, a.mrd("email").blocked_by, a.mrd("voice").blocked_by) == (
        ["voice"], ["voice"], [])
    assert a.mrd("chat").state == "READY"
    explained = await engine.task_routing(chat.id)
    assert (explained.candidate("a1").reason, explained.candidate("a1").available) == ("BLOCKED", False)


async def test_blocked_by_is_empty_without_blocks(engine: Engine):
    await setup_center(engine, ready=True)
    await engine.push_task("c1", "sales")
    assert (await engine.get_agent("a1")).mrd("chat").blocked_by == []


async def test_blocking_never_changes_tasks_already_held(engine: Engine):
    await blocking_center(engine)
    chat = await engine.push_task("chat", "sales")
    chat = await engine.accept(chat.id, chat.media.id, "a1")
    call = await engine.push_task("call", "calls")
    assert call.assigned_to == "a1"  # voice is not blocked by chat
    held = await engine.get_task(chat.id)
    assert (held.assigned_to, held.media.state) == ("a1", "ACTIVE")
    a = await engine.get_agent("a1")
    assert (a.mrd("chat").active_tasks, a.mrd("chat").blocked_by) == (1, ["voice"])
    # the chat still closes normally
    await engine.close_media(chat.id, chat.media.id)


async def test_when_the_blocking_media_closes_the_agent_takes_waiting_tasks_at_once(engine: Engine):
    await blocking_center(engine)
    call = await engine.push_task("call", "calls")
    call = await engine.accept(call.id, call.media.id, "a1")
    chat = await engine.push_task("chat", "sales")
    mail = await engine.push_task("mail", "mail")
    log = EventLog(engine)
    await log.skip()
    await engine.close_media(call.id, call.media.id)
    events = await log.take()
    assert (await engine.get_task(chat.id)).assigned_to == "a1"
    assert (await engine.get_task(mail.id)).assigned_to == "a1"
    assert (await engine.get_agent("a1")).mrd("chat").blocked_by == []
    reserved = [e.task["id"] for e in events if e.type == "AGENT_RESERVED"]
    assert reserved == [chat.id, mail.id]


async def test_the_block_lifts_when_the_media_closes_even_if_wrap_up_follows(engine: Engine):
    await blocking_center(engine)
    await engine.put_mrd("voice", blocks=["chat"], wrap_up_enabled=True)
    call = await engine.push_task("call", "calls")
    call = await engine.accept(call.id, call.media.id, "a1")
    chat = await engine.push_task("chat", "sales")
    wrapped = await engine.close_media(call.id, call.media.id)
    assert wrapped.state == "WRAP_UP"
    assert (await engine.get_task(chat.id)).assigned_to == "a1"


async def test_the_agent_is_published_when_a_block_lifts_even_if_it_takes_nothing(engine: Engine):
    await blocking_center(engine)
    await engine.put_mrd("voice", blocks=["chat"], wrap_up_enabled=True)
    call = await engine.push_task("call", "calls")
    call = await engine.accept(call.id, call.media.id, "a1")
    await engine.set_agent_state("a1", "NOT_READY", mrd_id="chat")
    log = EventLog(engine)
    await log.skip()
    await engine.close_media(call.id, call.media.id)  # WRAP_UP: the voice slot stays held
    agents = [e.agent for e in await log.take() if e.agent is not None]
    assert agents and [m["blockedBy"] for m in agents[-1]["mrdStates"] if m["mrdId"] == "chat"] == [[]]


async def test_a_reservation_that_ends_in_rona_lifts_the_block(engine: Engine):
    await blocking_center(engine)
    await engine.push_task("call", "calls")
    chat = await engine.push_task("chat", "sales")
    await pass_time(engine, 30_000)  # the call is not answered: RONA, voice NOT_READY
    assert (await engine.get_task(chat.id)).assigned_to == "a1"


async def test_pull_mode_is_not_blocked(engine: Engine):
    await blocking_center(engine)
    await engine.push_task("call", "calls")
    t, created = await engine.pull_task("a1", "out-1", "chat", direction="OUTBOUND")
    assert created and t.assigned_to == "a1"


async def test_adding_blocks_takes_busy_agents_out_and_removing_them_lets_them_take_work(engine: Engine):
    await blocking_center(engine)
    await engine.put_mrd("voice")
    call = await engine.push_task("call", "calls")
    await engine.accept(call.id, call.media.id, "a1")
    await engine.put_mrd("voice", blocks=["chat"])
    assert (await engine.get_agent("a1")).mrd("chat").blocked_by == ["voice"]
    chat = await engine.push_task("chat", "sales")
    assert chat.media.state == "QUEUED"
    await engine.put_mrd("voice")
    assert (await engine.get_task(chat.id)).assigned_to == "a1"
    assert (await engine.get_agent("a1")).mrd("chat").blocked_by == []


async def test_blocks_naming_an_unknown_mrd_is_404_and_itself_422(engine: Engine):
    await engine.put_mrd("voice")
    with pytest.raises(NotFound):
        await engine.put_mrd("voice", blocks=["nowhere"])
    with pytest.raises(ValidationError):
        await engine.put_mrd("voice", blocks=["voice"])
    assert (await engine.get_mrd("voice")).blocks is None


async def test_invariants_see_a_blocked_agent_left_in_an_index(engine: Engine):
    await blocking_center(engine)
    await engine.push_task("call", "calls")
    await engine.redis.zadd(engine.keys.q_avail("sales"), {"a1": 1})
    report = await check(engine, events=False)
    assert any("availability index" in v for v in report.violations)
    await engine.redis.zrem(engine.keys.q_avail("sales"), "a1")


# Hostile values: refused, nothing changed

BAD_CALLS = [
    *[("put_queue", {"priority_unit_ms": v}) for v in (0, -1, 10**10 + 1, True, "60000", 1.5, [])],
    *[("put_queue", {"max_waiting": v}) for v in (-1, 1_000_001, False, "5", 0.5)],
    *[("put_queue", {"overflow": v}) for v in (
        {}, {"afterMs": 1000}, {"afterMs": 1000, "queueId": "tier2", "x": 1}, {"afterMs": 0, "queueId": "tier2"},
        {"afterMs": "1000", "queueId": "tier2"}, {"afterMs": 1000, "queueId": "a:b"},
        {"afterMs": 1000, "queueId": "{t}"}, {"afterMs": 1000, "queueId": "sales"}, "tier2", 5)],
    *[("put_mrd", {"blocks": v}) for v in ("chat", ["a:b"], ["{x}"], [""], [1], ["voice"], [f"m{i}" for i in range(65)])],
    *[("set_task_priority", {"priority": v}) for v in (-1, 101, True, "5", 1.5, None)],
]


async def keyspace(engine: Engine) -> dict[str, object]:
    out: dict[str, object] = {}
    for k in await engine.redis.keys("*"):
        out[k] = (await engine.redis.type(k), await engine.redis.dump(k))
    return out


@pytest.mark.parametrize(("op", "kw"), BAD_CALLS, ids=[f"{op}-{kw!r:.40}" for op, kw in BAD_CALLS])
async def test_hostile_values_of_the_new_fields_are_refused_and_change_nothing(engine: Engine, op: str, kw: dict):
    await overflow_center(engine)
    await engine.put_mrd("voice")
    t = await engine.push_task("c1", "sales")
    before = await keyspace(engine)
    with pytest.raises(ValidationError):
        if op == "put_queue":
            await engine.put_queue("sales", mrd_id="chat", **kw)
        elif op == "put_mrd":
            await engine.put_mrd("voice", **kw)
        else:
            await engine.set_task_priority(t.id, **kw)
    assert await keyspace(engine) == before


async def test_invariants_see_a_waiting_task_without_its_overflow_deadline(engine: Engine):
    await overflow_center(engine)
    t = await engine.push_task("c1", "sales")
    await engine.redis.zrem(engine.keys.timers, f"ovf|{t.id}")
    report = await check(engine, events=False)
    assert any("without its overflow deadline" in v for v in report.violations)
    await engine.redis.zadd(engine.keys.timers, {f"ovf|{t.id}": t.enqueue_time + 2 * MINUTE})


async def test_invariants_see_an_agent_offered_a_task_of_an_mrd_it_is_blocked_on(engine: Engine):
    await blocking_center(engine)
    chat = await engine.push_task("chat", "sales")  # offered before the call: allowed
    await engine.advance_clock(10)
    await engine.push_task("call", "calls")
    assert (await check(engine, events=False)).ok
    raw = json.loads(await engine.redis.get(engine.keys.task(chat.id)))
    stamp = raw["rsv"]
    raw["rsv"] = str(int(stamp) + 60_000)  # as if offered while the call was open
    await engine.redis.set(engine.keys.task(chat.id), json.dumps(raw))
    report = await check(engine, events=False)
    assert any("which blocks it" in v for v in report.violations)
    raw["rsv"] = stamp
    await engine.redis.set(engine.keys.task(chat.id), json.dumps(raw))


# Deletion


async def test_a_queue_others_overflow_to_cannot_be_deleted(engine: Engine):
    await overflow_center(engine)
    await engine.put_agent("a2", queues=[])
    with pytest.raises(InvalidTransition, match="overflow queue of queues sales"):
        await engine.delete_queue("tier2")
    await engine.put_queue("sales", mrd_id="chat")
    await engine.delete_queue("tier2")


async def test_an_mrd_another_blocks_cannot_be_deleted_and_a_deleted_one_stops_blocking(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_mrd("voice", blocks=["chat"])
    with pytest.raises(InvalidTransition, match="blocked by mrds voice"):
        await engine.delete_mrd("chat")
    await engine.delete_mrd("voice")
    assert "voice" not in [m.mrd_id for m in (await engine.put_agent("a1")).mrd_states]
    await engine.delete_mrd("chat")


async def test_put_scripts_called_with_the_v1_arguments_only_set_no_policies(engine: Engine):
    # (Benchmarks and older callers send the v1 arguments alone.)
    await engine.call("put_mrd", "chat", 1, 0, 0, 60_000)
    await engine.call("put_queue", "sales", "chat", 300_000, 30_000, "LONGEST_AVAILABLE", 20_000)
    assert (await engine.get_mrd("chat")).blocks is None
    q = await engine.get_queue("sales")
    assert (q.priority_unit_ms, q.max_waiting, q.overflow) == (None, None, None)


async def test_removing_blocks_offers_a_task_waiting_for_its_preferred_agent_at_once(engine: Engine):
    await blocking_center(engine)
    await engine.put_mrd("voice")
    call = await engine.push_task("call", "calls")
    await engine.accept(call.id, call.media.id, "a1")
    await engine.put_mrd("voice", blocks=["chat"])
    chat = await engine.push_task("chat", "sales", preferred_agent_id="a1", preferred_agent_timeout_ms=MINUTE)
    assert chat.media.state == "QUEUED"
    await engine.put_mrd("voice")
    assert (await engine.get_task(chat.id)).assigned_to == "a1"
