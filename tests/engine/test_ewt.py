"""Estimated wait: a waiting task's position in its queue's order, the
expected wait from the queue's take rate (method POSITION_RATE), and each
request's prediction compared with its actual wait when answered."""

from __future__ import annotations

import json

import pytest

from redroute import Engine, InvalidTransition, NotFound
from redroute.checks.invariants import check
from tests.support.center import setup_center

SECOND = 1_000
GAP = 10 * SECOND  # the time between takes the scripted histories make
STEPS = [{"expression": "expert", "timeoutMs": 60_000}, {"expression": "english"}]


async def take_all(engine: Engine, agent: str) -> list[str]:
    """The order in which agent (max 1 task) takes every waiting task: it is
    made ready, accepts, closes, takes the next…"""
    await engine.set_agent_state(agent, "READY")
    order = []
    while tasks := await engine.agent_tasks(agent):
        [t] = tasks
        order.append(t.conversation_id)
        await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    return order


async def positions(engine: Engine, conversations: list[str]) -> list[str]:
    """The conversations of waiting tasks, sorted by their reported position."""
    by_position = {}
    for c in conversations:
        [t] = await engine.conversation_tasks(c)
        by_position[(await engine.task_position(t.id)).position] = c
    assert sorted(by_position) == list(range(1, len(conversations) + 1))
    return [by_position[p] for p in sorted(by_position)]


async def serve_every(engine: Engine, agent: str, gap_ms: int, times: int) -> None:
    """The agent's current task closes every gap_ms, and it accepts the next
    at once: `times` takes of a queue that keeps tasks waiting."""
    for _ in range(times):
        await engine.advance_clock(gap_ms)
        [t] = await engine.agent_tasks(agent)
        await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
        for nxt in await engine.agent_tasks(agent):
            await engine.accept(nxt.id, nxt.media.id)


async def busy_history(engine: Engine, takes: int = 10, waiting: int = 3) -> None:
    """Agent a1 in queue sales takes `takes` waiting tasks GAP apart, and
    `waiting` more still wait after."""
    await setup_center(engine, agents=("a1",), ready=True, ttl_ms=3_600_000)
    first = await engine.push_task("h-0", "sales")
    await engine.accept(first.id, first.media.id)
    for i in range(takes + waiting):
        await engine.push_task(f"h-{i + 1}", "sales")
    await serve_every(engine, "a1", GAP, takes)


def near(ms: int | None, expected: int) -> bool:
    """ms within 250 ms or 7% of expected: Redis' own clock runs on under
    the test clock's offset for the few ms the calls take, and errors are
    read from histogram bins (within 1/16 or 32 ms)."""
    return ms is not None and abs(ms - expected) <= max(250, expected * 0.07)


# Position: the queue's routing order


async def test_position_follows_priority_then_arrival_in_a_strict_queue(engine: Engine):
    await setup_center(engine, agents=("a1",))
    for c, p in [("c-low", 1), ("c-high", 5), ("c-mid", 3), ("c-high-2", 5)]:
        await engine.push_task(c, "sales", priority=p)
        await engine.advance_clock(SECOND)
    listed = await positions(engine, ["c-low", "c-high", "c-mid", "c-high-2"])
    assert listed == ["c-high", "c-high-2", "c-mid", "c-low"]
    assert await take_all(engine, "a1") == listed


async def test_position_follows_aging_scores(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.put_queue("sales", mrd_id="chat", priority_unit_ms=60 * SECOND)
    await engine.push_task("old-p0", "sales", priority=0)
    await engine.advance_clock(90 * SECOND)
    await engine.push_task("new-p2", "sales", priority=2)     # 120 s head start: ahead of old-p0
    await engine.push_task("new-p1", "sales", priority=1)     # 60 s: behind old-p0 (90 s older)
    listed = await positions(engine, ["old-p0", "new-p2", "new-p1"])
    assert listed == ["new-p2", "old-p0", "new-p1"]
    assert await take_all(engine, "a1") == listed


async def test_position_counts_tasks_at_every_step_in_the_queues_order(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_queue("sales", mrd_id="chat", steps=STEPS)
    await engine.put_agent("a1", queues=["sales"], attributes={"expert": True, "english": True})
    await engine.push_task("first", "sales")
    await engine.advance_clock(61 * SECOND)
    await engine.fire_due()
    await engine.push_task("second", "sales", priority=5)
    [t1] = await engine.conversation_tasks("first")
    [t2] = await engine.conversation_tasks("second")
    assert (t1.routing.step, t2.routing.step) == (2, 1)
    listed = await positions(engine, ["first", "second"])
    assert listed == ["second", "first"]
    assert await take_all(engine, "a1") == listed


async def test_position_of_a_reserved_task_is_refused(engine: Engine):
    await setup_center(engine, agents=("a1",), ready=True)
    t = await engine.push_task("c-1", "sales")
    with pytest.raises(InvalidTransition, match="not waiting"):
        await engine.task_position(t.id)


async def test_position_of_an_unknown_task_is_not_found(engine: Engine):
    with pytest.raises(NotFound):
        await engine.task_position("t-404")


# The estimate


async def test_ewt_is_null_with_too_little_history(engine: Engine):
    await busy_history(engine, takes=9)
    [t] = await engine.conversation_tasks("h-10")
    pos = await engine.task_position(t.id)
    assert (pos.position, pos.ewt_ms, pos.method) == (1, None, "POSITION_RATE")
    assert (await engine.queue_ewt("sales")).ms is None


async def test_ewt_is_position_times_the_time_between_takes(engine: Engine):
    await busy_history(engine, takes=10, waiting=3)
    for i, position in [(11, 1), (12, 2), (13, 3)]:
        [t] = await engine.conversation_tasks(f"h-{i}")
        pos = await engine.task_position(t.id)
        assert pos.position == position
        assert near(pos.ewt_ms, position * GAP)
    # A request pushed now goes behind the three.
    assert near((await engine.queue_ewt("sales")).ms, 4 * GAP)


async def test_ewt_of_a_request_pushed_while_an_agent_is_free_is_its_time_to_accept(engine: Engine):
    await setup_center(engine, agents=("a1",), ready=True)
    for i in range(3):
        t = await engine.push_task(f"c-{i}", "sales")
        await engine.advance_clock(4 * SECOND)
        await engine.accept(t.id, t.media.id)
        await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    assert near((await engine.queue_ewt("sales")).ms, 4 * SECOND)


# Predictions and their accuracy


async def test_an_answered_request_counts_its_prediction_error(engine: Engine):
    await busy_history(engine, takes=10, waiting=0)
    await engine.advance_clock(3 * 60 * SECOND)  # (the history's own samples fall out of the window)
    [current] = await engine.agent_tasks("a1")
    t = await engine.push_task("late", "sales")  # position 1: predicted GAP
    await engine.advance_clock(GAP + 5 * SECOND)
    await engine.set_task_state(current.id, "CLOSED", "CANCELLED")
    await engine.accept(t.id, t.media.id)
    acc = (await engine.queue_ewt("sales", window_minutes=2)).accuracy
    assert acc.samples == 1
    assert near(acc.p50_abs_error_ms, 5 * SECOND) and acc.p90_abs_error_ms == acc.p50_abs_error_ms


async def test_a_request_reserved_at_once_is_predicted_its_time_to_accept(engine: Engine):
    await setup_center(engine, agents=("a1",), ready=True)
    t = await engine.push_task("c-1", "sales")
    await engine.advance_clock(3 * SECOND)
    await engine.accept(t.id, t.media.id)
    acc = (await engine.queue_ewt("sales")).accuracy
    assert acc.samples == 1 and near(acc.p50_abs_error_ms, 3 * SECOND)


async def test_a_request_rerouted_after_rona_keeps_its_first_prediction(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True, sla_ms=5 * SECOND)
    t = await engine.push_task("c-1", "sales")  # reserved at once: predicted 0
    await engine.advance_clock(5 * SECOND)
    await engine.fire_due()  # RONA: the same request goes to a2
    [again] = [x for x in await engine.conversation_tasks("c-1") if x.id != t.id]
    assert again.request_id == t.request_id and again.assigned_to == "a2"
    await engine.accept(again.id, again.media.id)
    acc = (await engine.queue_ewt("sales")).accuracy
    assert acc.samples == 1 and near(acc.p50_abs_error_ms, 5 * SECOND)


async def test_the_window_counts_only_its_minutes(engine: Engine):
    await setup_center(engine, agents=("a1",), ready=True)
    t = await engine.push_task("c-1", "sales")
    await engine.accept(t.id, t.media.id)
    assert (await engine.queue_ewt("sales", window_minutes=1)).accuracy.samples == 1
    await engine.advance_clock(60 * SECOND)
    assert (await engine.queue_ewt("sales", window_minutes=1)).accuracy.samples == 0
    assert (await engine.queue_ewt("sales", window_minutes=2)).accuracy.samples == 1


@pytest.mark.parametrize("end", ["cancel", "ttl"])
async def test_a_request_that_ends_unanswered_leaves_no_prediction(engine: Engine, end: str):
    await setup_center(engine, agents=("a1",), ttl_ms=60 * SECOND)
    t = await engine.push_task("c-1", "sales")
    assert json.loads(await engine.redis.get(engine.keys.task(t.id)))["ewt"] == ""
    if end == "cancel":
        await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    else:
        await engine.advance_clock(60 * SECOND)
        await engine.fire_due()
    assert "ewt" not in json.loads(await engine.redis.get(engine.keys.task(t.id)))
    assert (await engine.queue_ewt("sales")).accuracy.samples == 0


async def test_deleting_a_queue_deletes_its_take_rate_and_accuracy(engine: Engine):
    await busy_history(engine, takes=2, waiting=0)
    assert await engine.redis.exists(engine.keys.q_ewt("sales"))
    assert (await engine.queue_ewt("sales")).accuracy.samples == 1  # h-0, reserved at once
    [t] = await engine.agent_tasks("a1")
    await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    await engine.put_agent("a1", queues=[])
    await engine.delete_queue("sales")
    assert not await engine.redis.exists(engine.keys.q_ewt("sales"))
    await setup_center(engine, agents=("a1",))  # the same id again: nothing of the old one
    assert (await engine.queue_ewt("sales")).accuracy.samples == 0


async def test_the_checker_sees_a_prediction_left_on_an_answered_task(engine: Engine):
    await setup_center(engine, agents=("a1",), ready=True)
    t = await engine.push_task("c-1", "sales")
    await engine.accept(t.id, t.media.id)
    k = engine.keys.task(t.id)
    doc = json.loads(await engine.redis.get(k))
    await engine.redis.set(k, json.dumps({**doc, "ewt": "0"}))
    report = await check(engine, events=False)
    assert [v for v in report.violations if "wait prediction" in v] == [
        f"task {t.id} (ACTIVE) still carries its wait prediction '0'"]
    await engine.redis.set(k, json.dumps(doc))


async def test_the_checker_sees_a_queue_busy_mark_without_waiting_tasks(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.redis.hset(engine.keys.q_ewt("sales"), "mark", "1")
    report = await check(engine, events=False)
    assert report.violations == ["queue sales: take-rate mark '1' with 0 tasks in its waiting set"]
    await engine.redis.hset(engine.keys.q_ewt("sales"), "mark", "")


def stored_prediction(raw: str | None) -> str | None:
    return json.loads(raw).get("ewt") if raw else None


async def test_a_transfer_to_a_queue_is_a_new_request_with_its_own_prediction(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), queues=("sales", "support"), ready=True)
    await engine.put_agent("a2", queues=["support"])
    t = await engine.push_task("c-1", "sales")
    await engine.accept(t.id, t.media.id)
    moved = await engine.transfer("c-1", "a1", queue_id="support")
    assert moved.assigned_to == "a2"  # reserved at once: predicted its time to accept (0 so far)
    assert stored_prediction(await engine.redis.get(engine.keys.task(moved.id))) == "0"
    await engine.advance_clock(2 * SECOND)
    await engine.accept(moved.id, moved.media.id)
    acc = (await engine.queue_ewt("support")).accuracy
    assert acc.samples == 1 and near(acc.p50_abs_error_ms, 2 * SECOND)


async def test_an_overflowed_request_is_predicted_again_in_its_new_queue(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), queues=("sales", "tier2"), ttl_ms=3_600_000)
    await engine.put_agent("a1", queues=["sales"])
    await engine.put_agent("a2", queues=["tier2"])
    await engine.put_queue("sales", mrd_id="chat", agent_request_ttl_ms=3_600_000,
                           overflow={"afterMs": 30 * SECOND, "queueId": "tier2"})
    t = await engine.push_task("c-1", "sales")
    assert stored_prediction(await engine.redis.get(engine.keys.task(t.id))) == ""  # no history
    await engine.set_agent_state("a2", "READY")
    await engine.advance_clock(30 * SECOND)
    await engine.fire_due()  # overflows to tier2, where a2 is free: predicted the 30 s so far
    moved = await engine.get_task(t.id)
    assert (moved.queue_id, moved.assigned_to) == ("tier2", "a2")
    assert near(int(stored_prediction(await engine.redis.get(engine.keys.task(t.id)))), 30 * SECOND)
    await engine.advance_clock(SECOND)
    await engine.accept(t.id, moved.media.id)
    assert (await engine.queue_ewt("tier2")).accuracy.samples == 1
    assert (await engine.queue_ewt("sales")).accuracy.samples == 0


async def test_a_task_waiting_for_its_preferred_agent_has_a_position_and_no_estimate(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.push_task("first", "sales")
    t = await engine.push_task("vip", "sales", priority=5, preferred_agent_id="a2",
                               preferred_agent_timeout_ms=60 * SECOND)
    pos = await engine.task_position(t.id)
    assert (pos.position, pos.ewt_ms, pos.method) == (1, None, "PREFERRED_AGENT")
    [first] = await engine.conversation_tasks("first")
    assert (await engine.task_position(first.id)).position == 2


# Queues with steps: each step's waiting set has its own take rate


async def stepped_history(engine: Engine, waiting: int = 1) -> None:
    """Queue sales with steps (experts for 60 s, then anyone); one
    generalist, g1, takes 11 tasks that reached step 2, GAP apart, and
    `waiting` more wait at step 2 after."""
    await engine.put_mrd("chat")
    await engine.put_queue("sales", mrd_id="chat", steps=STEPS, agent_request_ttl_ms=3_600_000)
    await engine.put_agent("g1", queues=["sales"], attributes={"english": True})
    for i in range(11 + waiting):
        await engine.push_task(f"h-{i}", "sales")
    await engine.advance_clock(61 * SECOND)
    await engine.fire_due()  # all at step 2
    await engine.advance_clock(GAP)
    await engine.set_agent_state("g1", "READY")
    [first] = await engine.agent_tasks("g1")
    await engine.accept(first.id, first.media.id)
    await serve_every(engine, "g1", GAP, 10)


async def test_a_task_at_its_last_step_is_estimated_from_that_steps_takes(engine: Engine):
    await stepped_history(engine)
    [t] = await engine.conversation_tasks("h-11")
    assert t.routing.step == 2
    pos = await engine.task_position(t.id)
    assert pos.position == 1 and near(pos.ewt_ms, GAP)


async def test_a_task_no_agent_takes_at_its_step_is_estimated_to_wait_for_the_next(engine: Engine):
    await stepped_history(engine)
    [last] = await engine.conversation_tasks("h-11")
    await engine.set_task_state(last.id, "CLOSED", "CANCELLED")  # nothing waits at step 2
    t = await engine.push_task("new", "sales")  # step 1: no expert has ever taken one
    assert t.routing.step == 1
    assert near((await engine.task_position(t.id)).ewt_ms, 60 * SECOND)
    assert near((await engine.queue_ewt("sales")).ms, 60 * SECOND)


async def test_a_task_behind_others_at_the_next_step_adds_their_takes(engine: Engine):
    await stepped_history(engine, waiting=8)  # 8 wait at step 2, taken every GAP
    t = await engine.push_task("new", "sales")  # reaches step 2 in 60 s, behind the 8
    # 60 s to step 2, by when 6 of the 8 are taken: then 2 takes more.
    assert near((await engine.task_position(t.id)).ewt_ms, 60 * SECOND + 2 * GAP)
