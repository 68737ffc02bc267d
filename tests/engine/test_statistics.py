"""Queue statistics: each definition of the window counted from a scripted
history on the test clock, the window's boundaries, and the realtime
block. (After every test the checker replays the stream and compares it
with the stored minutes: invariant 13.)"""

from __future__ import annotations

import pytest

from redroute import Engine, ValidationError
from redroute.checks.invariants import check
from tests.support.center import pass_time, setup_center

SECOND, MINUTE = 1000, 60_000


async def fresh_minute(engine: Engine) -> None:
    """Moves the clock to one second into a minute, so a test's few real
    seconds stay within it."""
    now = (await engine.fire_due(0)).now
    await engine.advance_clock(MINUTE - now % MINUTE + SECOND)


async def window(engine: Engine, minutes: int = 15, queue: str = "sales") -> dict:
    return (await engine.queue_statistics(queue, minutes))["window"]


async def center(engine: Engine, **kw) -> None:
    await setup_center(engine, **kw)
    await fresh_minute(engine)


async def accept_next(engine: Engine, agent: str = "a1") -> None:
    [t] = [t for t in await engine.agent_tasks(agent) if t.media.state == "RESERVED"][:1]
    await engine.accept(t.id, t.media.id)


# entered


async def test_entered_counts_pushes_queue_conferences_and_queue_transfers(engine: Engine):
    await center(engine, agents=("a1", "a2"), ready=True)
    t = await engine.push_task("c1", "sales")
    await engine.accept(t.id, t.media.id)
    await engine.conference("c1", queue_id="sales")
    await engine.push_task("c2", "sales")
    await engine.transfer("c1", "a1", queue_id="sales")
    assert (await window(engine))["entered"] == 4


async def test_a_rona_requeue_is_the_same_request_and_not_entered_again(engine: Engine):
    await center(engine, agents=("a1", "a2"), ready=True, sla_ms=10 * SECOND)
    await engine.push_task("c1", "sales")
    await pass_time(engine, 11 * SECOND)  # a1 lets it go; a2 gets it
    w = await window(engine)
    assert (w["entered"], w["ronas"]) == (1, 1)


async def test_pull_and_named_agent_tasks_enter_no_queue(engine: Engine):
    await center(engine, agents=("a1", "a2"), ready=True, max_requests=2)
    await engine.pull_task("a1", "c1", "chat")
    await engine.conference("c1", agent_id="a2")
    assert (await window(engine))["entered"] == 0


# answered, waits and service level


async def test_answered_counts_accepts_with_their_waits_and_sl(engine: Engine):
    await center(engine, max_requests=3)  # a1 logged out: the three wait
    for c in ("c1", "c2", "c3"):
        await engine.push_task(c, "sales")
    await engine.advance_clock(5 * SECOND)
    await engine.set_agent_state("a1", "READY")
    for step in (0, 10 * SECOND, 15 * SECOND):  # answered after 5 s, 15 s, 30 s
        await engine.advance_clock(step)
        await accept_next(engine)
    w = await window(engine)
    sl = w["serviceLevel"]
    assert w["answered"] == 3
    assert (sl["thresholdMs"], sl["answered"], sl["answeredWithin"], sl["sl"]) == (20_000, 3, 2, 0.6667)
    waits = w["waitUntilAnswered"]
    assert 50_000 / 3 <= waits["avgMs"] < 50_000 / 3 + 1000
    assert 30_000 <= waits["maxMs"] < 31_000
    assert abs(waits["p50Ms"] - 15_000) <= 1_500 and abs(waits["p90Ms"] - 30_000) <= 3_000


async def test_a_wait_at_the_threshold_is_within_it(engine: Engine):
    await center(engine)
    await engine.put_queue("sales", mrd_id="chat", service_level_threshold_ms=0)
    await engine.set_agent_state("a1", "READY")
    t = await engine.push_task("c1", "sales")  # reserved at once
    await engine.accept(t.id, t.media.id)
    w = await window(engine)
    # (a wait of a few real ms passes a threshold of 0)
    assert w["serviceLevel"]["answered"] == 1
    assert w["waitUntilAnswered"]["maxMs"] == w["waitUntilAnswered"]["avgMs"]


# abandoned = expired + cancelled; sl2


async def test_expired_counts_requests_closed_by_their_ttl(engine: Engine):
    await center(engine, ttl_ms=30 * SECOND)
    await engine.push_task("c1", "sales")
    await engine.push_task("c2", "sales")
    await pass_time(engine, 31 * SECOND)
    w = await window(engine)
    sl = w["serviceLevel"]
    assert (w["expired"], w["cancelled"], w["abandoned"]) == (2, 0, 2)
    assert (sl["abandoned"], sl["abandonedWithin"], sl["sl"], sl["sl2"]) == (2, 0, None, 0.0)


async def test_cancelled_counts_client_closes_of_waiting_and_reserved_requests(engine: Engine):
    await center(engine, ready=True)
    reserved = await engine.push_task("c1", "sales")
    waiting = await engine.push_task("c2", "sales")
    await engine.advance_clock(25 * SECOND)
    await engine.set_task_state(waiting.id, "CLOSED", "CANCELLED")
    await engine.close_media(reserved.id, reserved.media.id)
    w = await window(engine)
    assert (w["cancelled"], w["expired"], w["abandoned"]) == (2, 0, 2)
    assert w["serviceLevel"]["abandonedWithin"] == 0  # both waited 25 s


async def test_sl2_counts_abandoned_within_the_threshold_as_met(engine: Engine):
    await center(engine, ready=True)
    answered = await engine.push_task("c1", "sales")
    gone = await engine.push_task("c2", "sales")
    await engine.advance_clock(5 * SECOND)
    await engine.set_task_state(gone.id, "CLOSED", "CANCELLED")  # left after 5 s
    await engine.advance_clock(25 * SECOND)
    await engine.accept(answered.id, answered.media.id)  # answered after 30 s
    sl = (await window(engine))["serviceLevel"]
    assert (sl["answered"], sl["answeredWithin"], sl["abandoned"], sl["abandonedWithin"]) == (1, 0, 1, 1)
    assert (sl["sl"], sl["sl2"]) == (0.0, 0.5)


async def test_sl_and_sl2_are_null_when_nothing_was_answered_or_abandoned(engine: Engine):
    await center(engine)
    await engine.push_task("c1", "sales")
    w = await window(engine)
    assert (w["entered"], w["serviceLevel"]["sl"], w["serviceLevel"]["sl2"]) == (1, None, None)
    assert w["waitUntilAnswered"] == {"avgMs": None, "p50Ms": None, "p90Ms": None, "maxMs": None}
    assert w["handleTime"] == {"avgMs": None, "p50Ms": None, "p90Ms": None}


async def test_a_reservation_whose_ttl_passed_ends_expired_after_its_rona(engine: Engine):
    await center(engine, ready=True, sla_ms=40 * SECOND, ttl_ms=30 * SECOND)
    await engine.push_task("c1", "sales")
    await pass_time(engine, 41 * SECOND)  # RONA past its TTL: NO_AGENT_AVAILABLE
    w = await window(engine)
    assert (w["ronas"], w["expired"], w["cancelled"]) == (1, 1, 0)


# RONAs


async def test_ronas_count_unanswered_and_declined_reservations(engine: Engine):
    await center(engine, agents=("a1", "a2"), ready=True, sla_ms=10 * SECOND)
    t = await engine.push_task("c1", "sales")
    await engine.set_task_state(t.id, "CLOSED", "RONA")  # declined: a2 gets it
    await pass_time(engine, 11 * SECOND)  # a2 does not answer
    w = await window(engine)
    assert (w["ronas"], w["entered"], w["abandoned"]) == (2, 1, 0)


# overflow


async def test_overflow_counts_out_of_one_queue_and_into_the_other(engine: Engine):
    await center(engine, queues=("sales", "tier2"))
    await engine.put_queue("sales", mrd_id="chat", overflow={"afterMs": 30 * SECOND, "queueId": "tier2"})
    await engine.push_task("c1", "sales")
    await pass_time(engine, 31 * SECOND)
    sales, tier2 = await window(engine), await window(engine, queue="tier2")
    assert (sales["entered"], sales["overflowedOut"], sales["overflowedIn"]) == (1, 1, 0)
    assert (tier2["entered"], tier2["overflowedIn"], tier2["overflowedOut"]) == (1, 1, 0)


# handle time


async def test_handle_time_runs_from_accept_to_wrap_up(engine: Engine):
    await center(engine, ready=True, wrap_up=True)
    t = await engine.push_task("c1", "sales")
    await engine.accept(t.id, t.media.id)
    await engine.advance_clock(90 * SECOND)
    await engine.set_task_state(t.id, "WRAP_UP")
    await engine.advance_clock(30 * SECOND)
    await engine.set_task_state(t.id, "CLOSED")  # the wrap-up is not handle time
    h = (await window(engine))["handleTime"]
    assert 90_000 <= h["avgMs"] < 91_000
    assert abs(h["p50Ms"] - 90_000) <= 9_000 and h["p50Ms"] == h["p90Ms"]


async def test_handle_time_runs_from_accept_to_close(engine: Engine):
    await center(engine, ready=True, max_requests=2)
    for c, ms in (("c1", 10 * SECOND), ("c2", 50 * SECOND)):
        t = await engine.push_task(c, "sales")
        await engine.accept(t.id, t.media.id)
        await engine.advance_clock(ms)
        await engine.close_media(t.id, t.media.id)
    h = (await window(engine))["handleTime"]
    assert 30_000 <= h["avgMs"] < 31_000
    assert abs(h["p50Ms"] - 10_000) <= 1_000 and abs(h["p90Ms"] - 50_000) <= 5_000


# window boundaries


async def test_a_count_falls_out_of_the_window_when_its_minute_does(engine: Engine):
    await center(engine)
    await engine.push_task("c1", "sales")
    await engine.advance_clock(MINUTE)
    await engine.push_task("c2", "sales")
    assert [(await window(engine, m))["entered"] for m in (1, 2, 15)] == [1, 2, 2]
    await engine.advance_clock(MINUTE)
    assert [(await window(engine, m))["entered"] for m in (1, 2, 3)] == [0, 1, 2]


async def test_the_longest_window_holds_a_day_of_minutes(engine: Engine):
    await center(engine, ttl_ms=7 * 24 * 60 * MINUTE)
    await engine.push_task("c1", "sales")
    await engine.advance_clock(1439 * MINUTE)
    assert (await window(engine, 1440))["entered"] == 1
    await engine.advance_clock(MINUTE)
    assert (await window(engine, 1440))["entered"] == 0


@pytest.mark.parametrize("minutes", [0, 1441, -5])
async def test_a_window_out_of_1_to_1440_minutes_is_refused(engine: Engine, minutes: int):
    await center(engine)
    with pytest.raises(ValidationError):
        await engine.queue_statistics("sales", minutes)


# the realtime block


async def test_realtime_counts_waiting_by_priority_reserved_and_active(engine: Engine):
    await center(engine, agents=("a1", "a2", "a3"), max_requests=1)
    await engine.set_agent_state("a1", "READY")
    await engine.set_agent_state("a2", "READY")
    await engine.set_agent_state("a3", "READY")
    await engine.set_agent_state("a3", "NOT_READY")
    active = await engine.push_task("c1", "sales")
    await engine.accept(active.id, active.media.id)
    await engine.push_task("c2", "sales")  # reserved to a2
    await engine.push_task("c3", "sales", priority=5)
    await engine.push_task("c4", "sales", priority=1)
    await engine.advance_clock(7 * SECOND)
    await engine.push_task("c5", "sales", priority=1)
    stats = await engine.queue_statistics("sales")
    rt = stats["realtime"]
    [oldest] = [t for t in await engine.conversation_tasks("c3")]
    assert rt["waiting"] == 3 and rt["waitingByPriority"] == {"1": 2, "5": 1}
    assert (rt["reserved"], rt["active"], rt["waitingByStep"]) == (1, 1, {})
    assert (rt["oldestTaskId"], rt["oldestWaitMs"]) == (oldest.id, stats["at"] - oldest.enqueue_time)
    assert rt["agents"] == {"BUSY": 2, "NOT_READY": 1}
    assert (rt["availableAgents"], rt["loggedInAgents"]) == (0, 3)


async def test_realtime_counts_waiting_by_step(engine: Engine):
    await center(engine)
    await engine.put_queue("sales", mrd_id="chat", steps=[
        {"expression": "french", "timeoutMs": 20 * SECOND}, {"expression": "english"}])
    await engine.push_task("c1", "sales")
    await engine.advance_clock(30 * SECOND)
    await engine.fire_due()  # c1 reaches step 2
    await engine.push_task("c2", "sales")
    await engine.push_task("c3", "sales")
    rt = (await engine.queue_statistics("sales"))["realtime"]
    assert rt["waitingByStep"] == {"1": 2, "2": 1}


async def test_realtime_counts_available_and_logged_out_agents(engine: Engine):
    await center(engine, agents=("a1", "a2", "a3"), max_requests=2)
    await engine.set_agent_state("a1", "READY")
    await engine.set_agent_state("a2", "READY")
    await engine.push_task("c1", "sales")  # a1 ACTIVE (1 of 2), still available
    rt = (await engine.queue_statistics("sales"))["realtime"]
    assert rt["agents"] == {"ACTIVE": 1, "LOGOUT": 1, "READY": 1}
    assert (rt["availableAgents"], rt["loggedInAgents"]) == (2, 2)


async def test_an_empty_queue_has_no_oldest_wait(engine: Engine):
    await center(engine)
    rt = (await engine.queue_statistics("sales"))["realtime"]
    assert (rt["waiting"], rt["oldestWaitMs"], rt["oldestTaskId"]) == (0, None, None)


# counting switched off, the tenant's figures, the checker


async def test_a_queue_with_statistics_off_counts_no_window_but_shows_its_realtime(engine: Engine):
    await center(engine)
    q = await engine.put_queue("sales", mrd_id="chat", statistics_enabled=False)
    await engine.push_task("c1", "sales")
    stats = await engine.queue_statistics("sales")
    assert q.statistics_enabled is False and q.to_dict()["statisticsEnabled"] is False
    assert (stats["window"]["entered"], stats["realtime"]["waiting"]) == (0, 1)


async def test_tenant_statistics_list_every_queue_and_agents_by_state(engine: Engine):
    await center(engine, agents=("a1", "a2"), queues=("sales", "support"))
    await engine.set_agent_state("a1", "READY")
    await engine.push_task("c1", "support")
    d = await engine.statistics(5)
    assert [q["queueId"] for q in d["queues"]] == ["sales", "support"]
    assert [q["window"]["entered"] for q in d["queues"]] == [0, 1]
    assert d["agents"] == {"LOGOUT": 1, "READY": 1}


async def test_the_checker_reports_a_minute_that_disagrees_with_the_stream(engine: Engine):
    await center(engine)
    await engine.push_task("c1", "sales")
    minute = (await engine.fire_due(0)).now // MINUTE
    await engine.redis.hincrby(engine.keys.st("sales", minute), "e", 1)
    report = await check(engine)
    assert report.violations == [
        f"statistics of queue sales, minute {minute}: stored/stream differ: e=2/1"]
    await engine.redis.hincrby(engine.keys.st("sales", minute), "e", -1)


async def test_the_checker_reports_a_tally_that_disagrees_with_the_queue(engine: Engine):
    await center(engine)
    await engine.push_task("c1", "sales")
    await engine.redis.hincrby(engine.keys.q_tally("sales"), "r", 1)
    report = await check(engine)
    assert report.violations == ["queue sales: tally {'p1': 1, 'r': 1} differs from what it holds {'p1': 1}"]
    await engine.redis.hincrby(engine.keys.q_tally("sales"), "r", -1)


async def test_deleting_a_queue_deletes_its_statistics(engine: Engine):
    await center(engine, agents=())
    t = await engine.push_task("c1", "sales")
    await engine.set_task_state(t.id, "CLOSED", "CANCELLED")
    await engine.delete_queue("sales")
    await setup_center(engine, agents=())
    assert (await window(engine))["entered"] == 0
    assert await engine.redis.keys(engine.keys.st("sales", "*")) == []


async def test_the_statistics_carry_the_queue_s_estimated_wait(engine: Engine):
    await center(engine)
    await engine.push_task("c1", "sales")
    stats = await engine.queue_statistics("sales", 30)
    assert stats["ewt"] == (await engine.queue_ewt("sales", 30)).to_dict()
    assert stats["ewt"]["method"] == "POSITION_RATE"


async def test_a_long_window_reads_whole_past_hours_as_hour_buckets_with_the_same_counts(engine: Engine):
    await center(engine, ttl_ms=7 * 24 * 60 * MINUTE)
    pushed = []  # the minute of each push
    for step in (0, 30, 45, 70, 100, 130, 170):  # minutes after the first
        await engine.advance_clock((step - (pushed[-1] if pushed else 0)) * MINUTE)
        await engine.push_task(f"c{step}", "sales")
        pushed.append(step)
    now = pushed[-1]
    for minutes in (1, 15, 59, 60, 61, 90, 120, 171, 240, 1440):
        want = sum(1 for p in pushed if now - p < minutes)
        assert (await window(engine, minutes))["entered"] == want, minutes
        assert (await window(engine, minutes))["entered"] == want, f"{minutes}, read again"
    now_min = (await engine.fire_due(0)).now // MINUTE
    assert await engine.redis.exists(engine.keys.st_hour("sales", now_min // 60 - 1))


async def test_the_checker_reports_an_hour_bucket_that_is_not_the_sum_of_its_minutes(engine: Engine):
    await center(engine)
    await engine.push_task("c1", "sales")
    await engine.advance_clock(2 * 60 * MINUTE)
    await window(engine, 180)  # makes the hour bucket of the push
    hour = ((await engine.fire_due(0)).now // MINUTE - 120) // 60
    key = engine.keys.st_hour("sales", hour)
    assert (await engine.redis.hgetall(key))["e"] == "1"
    await engine.redis.hincrby(key, "e", 1)
    report = await check(engine)
    assert report.violations == [
        f"statistics of queue sales, hour {hour}: {{'e': 2}} is not the sum of its minutes {{'e': 1}}"]
    await engine.redis.hincrby(key, "e", -1)


async def test_a_queue_made_again_does_not_count_the_old_one_s_active_tasks(engine: Engine):
    await center(engine, ready=True)
    t = await engine.push_task("c1", "sales")
    await engine.accept(t.id, t.media.id)
    await engine.put_agent("a1", queues=[])
    await engine.delete_queue("sales")  # its ACTIVE task stays with a1
    await engine.put_queue("sales", mrd_id="chat")
    assert (await engine.queue_statistics("sales"))["realtime"]["active"] == 0
    await engine.close_media(t.id, t.media.id)
    assert (await engine.queue_statistics("sales"))["realtime"]["active"] == 0
