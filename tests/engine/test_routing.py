"""Routing: which waiting task an agent gets, and which agent a task gets."""

from __future__ import annotations

import json

import pytest

from redroute import Engine, NotFound, ValidationError
from redroute.checks.invariants import check
from tests.support.center import EventLog, setup_center


async def test_higher_priority_waits_less_then_first_come_first_served(engine: Engine):
    await setup_center(engine)
    low1 = await engine.push_task("c-1", "sales", priority=1)
    low2 = await engine.push_task("c-2", "sales", priority=1)
    high = await engine.push_task("c-3", "sales", priority=5)
    await engine.put_mrd("chat", max_requests=3)

    await engine.set_agent_state("a1", "READY")

    got = [(await engine.get_task(t.id)).media.state for t in (high, low1, low2)]
    assert got == ["RESERVED", "RESERVED", "RESERVED"]
    order = [e.task["id"] for e in await engine.events() if e.type == "AGENT_RESERVED"]
    assert order == [high.id, low1.id, low2.id]


async def test_same_millisecond_requests_are_served_in_arrival_order(engine: Engine):
    await setup_center(engine)
    ids = [(await engine.push_task(f"c-{i}", "sales")).id for i in range(12)]
    await engine.put_mrd("chat", max_requests=12)
    await engine.set_agent_state("a1", "READY")
    order = [e.task["id"] for e in await engine.events() if e.type == "AGENT_RESERVED"]
    assert order == ids


async def test_longest_available_agent_gets_the_task(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"))
    for a in ("a2", "a3", "a1"):
        await engine.set_agent_state(a, "READY")
        await engine.advance_clock(10)
    picked = [(await engine.push_task(f"c-{i}", "sales")).assigned_to for i in range(3)]
    assert picked == ["a2", "a3", "a1"]


async def test_least_active_agent_gets_the_task(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), max_requests=3, policy="LEAST_ACTIVE")
    await engine.set_agent_state("a1", "READY")
    await engine.advance_clock(10)
    await engine.set_agent_state("a2", "READY")
    picked = [(await engine.push_task(f"c-{i}", "sales")).assigned_to for i in range(4)]
    # a1 is free longest; then each goes to whoever has fewer tasks.
    assert picked == ["a1", "a2", "a1", "a2"]


async def test_agent_is_active_below_max_requests_and_busy_at_it(engine: Engine):
    await setup_center(engine, max_requests=2, ready=True)
    await engine.push_task("c-1", "sales")
    assert (await engine.get_agent("a1")).mrd("chat").state == "ACTIVE"
    await engine.push_task("c-2", "sales")
    assert (await engine.get_agent("a1")).mrd("chat").state == "BUSY"
    third = await engine.push_task("c-3", "sales")
    assert third.media.state == "QUEUED"


async def test_agent_max_requests_overrides_the_mrd(engine: Engine):
    await setup_center(engine, max_requests=1)
    await engine.put_agent("a1", queues=["sales"], max_requests={"chat": 2})
    await engine.set_agent_state("a1", "READY")
    tasks = [await engine.push_task(f"c-{i}", "sales") for i in range(3)]
    assert [t.media.state for t in tasks] == ["RESERVED", "RESERVED", "QUEUED"]
    assert (await engine.get_agent("a1")).mrd("chat").max_requests == 2


async def test_freed_agent_takes_the_best_task_across_its_queues(engine: Engine):
    await setup_center(engine, queues=("sales", "support"))
    await engine.push_task("c-1", "sales", priority=1)
    await engine.advance_clock(5)
    urgent = await engine.push_task("c-2", "support", priority=9)
    await engine.set_agent_state("a1", "READY")
    assert (await engine.get_task(urgent.id)).assigned_to == "a1"


async def test_older_request_wins_across_queues_at_equal_priority(engine: Engine):
    await setup_center(engine, queues=("sales", "support"))
    old = await engine.push_task("c-1", "support")
    await engine.advance_clock(5)
    await engine.push_task("c-2", "sales")
    await engine.set_agent_state("a1", "READY")
    assert (await engine.get_task(old.id)).assigned_to == "a1"


async def test_agent_is_offered_only_tasks_of_its_queues(engine: Engine):
    await setup_center(engine, queues=("sales", "support"))
    await engine.put_agent("a2", queues=["support"])
    await engine.set_agent_state("a2", "READY")
    t = await engine.push_task("c-1", "sales")
    assert t.media.state == "QUEUED"


async def test_rona_agent_is_not_offered_the_task_again_until_ready(engine: Engine):
    await setup_center(engine, sla_ms=1_000, ready=True)
    t = await engine.push_task("c-1", "sales")
    await engine.set_task_state(t.id, "CLOSED", "RONA")
    retried = (await engine.conversation_tasks("c-1"))[-1]
    assert retried.media.state == "QUEUED"

    await engine.set_agent_state("a1", "READY")

    assert (await engine.get_task(retried.id)).assigned_to == "a1"


async def test_mrd_ready_alone_routes_only_that_mrd(engine: Engine):
    await setup_center(engine)
    await engine.put_mrd("voice", max_requests=1)
    await engine.put_queue("calls", mrd_id="voice")
    await engine.put_agent("a1", queues=["sales", "calls"])
    await engine.set_agent_state("a1", "LOGIN")
    chat = await engine.push_task("c-1", "sales")
    call = await engine.push_task("c-2", "calls")

    agent = await engine.set_agent_state("a1", "READY", mrd_id="voice")

    assert agent.state == "READY"
    assert {m.mrd_id: m.state for m in agent.mrd_states} == {"chat": "NOT_READY", "voice": "BUSY"}
    assert (await engine.get_task(call.id)).media.state == "RESERVED"
    assert (await engine.get_task(chat.id)).media.state == "QUEUED"


async def test_login_puts_every_mrd_not_ready(engine: Engine):
    await setup_center(engine)
    await engine.put_mrd("voice", max_requests=1)
    log = EventLog(engine)
    await log.skip()
    agent = await engine.set_agent_state("a1", "LOGIN")
    assert agent.state == "LOGIN"
    assert [m.state for m in agent.mrd_states] == ["NOT_READY", "NOT_READY"]
    assert await log.types() == ["AGENT_STATE_CHANGED"]


async def test_queue_stats_count_agents_by_mrd_state(engine: Engine):
    await setup_center(engine, agents=("a1", "a2", "a3"), max_requests=1)
    await engine.set_agent_state("a1", "READY")
    await engine.set_agent_state("a2", "READY")
    await engine.push_task("c-1", "sales")
    q = await engine.get_queue("sales")
    assert q.agents == {"BUSY": 1, "READY": 1, "LOGOUT": 1}
    assert q.waiting == 0 and q.oldest_wait_ms is None


async def test_queue_policy_change_reorders_available_agents(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), max_requests=3)
    await engine.set_agent_state("a1", "READY")
    await engine.advance_clock(10)
    await engine.set_agent_state("a2", "READY")
    await engine.push_task("c-1", "sales")  # a1 (longest available)
    await engine.put_queue("sales", mrd_id="chat", agent_selection_policy="LEAST_ACTIVE")
    assert (await engine.push_task("c-2", "sales")).assigned_to == "a2"


async def test_unknown_queue_is_not_found_and_changes_nothing(engine: Engine):
    await setup_center(engine)
    before = await engine.redis.xlen(engine.events_key)
    with pytest.raises(NotFound):
        await engine.push_task("c-1", "nope")
    assert await engine.redis.xlen(engine.events_key) == before


@pytest.mark.parametrize("bad", ["a:b", "{x}", "a b", "", "x\n", "é" * 3, "a" * 129])
async def test_ids_that_could_reach_other_keys_are_rejected(engine: Engine, bad: str):
    await setup_center(engine)
    with pytest.raises(ValidationError):
        await engine.push_task(bad, "sales")
    with pytest.raises(ValidationError):
        await engine.put_agent(bad)
    with pytest.raises(ValidationError):
        engine.for_tenant(bad)
    assert (await engine.get_queue("sales")).waiting == 0


@pytest.mark.parametrize("priority", [-1, 101, 1.5, "1", True])
async def test_priority_out_of_range_is_rejected(engine: Engine, priority):
    await setup_center(engine)
    with pytest.raises(ValidationError):
        await engine.push_task("c-1", "sales", priority=priority)


async def test_capacity_raised_by_config_hands_waiting_tasks_out_by_selection_policy(engine: Engine):
    await setup_center(engine, agents=("a3", "a1", "a2"), max_requests=1)
    for a in ("a2", "a3", "a1"):  # a2 is ready longest
        await engine.set_agent_state(a, "READY")
        await engine.advance_clock(10)
    for i in range(3):  # a2, a3, a1 in turn, each at a later millisecond
        await engine.push_task(f"c-{i}", "sales")
        await engine.advance_clock(10)
    waiting = await engine.push_task("c-3", "sales")
    assert waiting.media.state == "QUEUED"

    await engine.put_mrd("chat", max_requests=2)

    assert (await engine.get_task(waiting.id)).assigned_to == "a2"


async def test_capacity_lowered_under_what_an_agent_holds_keeps_its_tasks_and_offers_no_more(
    engine: Engine,
):
    await setup_center(engine, max_requests=3, ready=True)
    held = [await engine.push_task(f"c-{i}", "sales") for i in range(3)]

    await engine.put_mrd("chat", max_requests=1)

    assert (await engine.get_agent("a1")).mrd("chat").state == "BUSY"
    assert [(await engine.get_task(t.id)).media.state for t in held] == ["RESERVED"] * 3
    waiting = await engine.push_task("c-9", "sales")
    assert waiting.media.state == "QUEUED"
    assert (await check(engine)).ok  # over the limit by configuration, not by routing
    await engine.close_media(held[0].id, held[0].media.id)
    assert (await engine.get_task(waiting.id)).media.state == "QUEUED"  # 2 held, limit 1
    assert (await check(engine)).ok
    await engine.close_media(held[1].id, held[1].media.id)
    await engine.close_media(held[2].id, held[2].media.id)
    assert (await engine.get_task(waiting.id)).assigned_to == "a1"  # back under it


async def test_an_agent_override_lowered_under_what_it_holds_is_held_over_too(engine: Engine):
    await setup_center(engine, max_requests=3, ready=True)
    for i in range(3):
        await engine.push_task(f"c-{i}", "sales")

    await engine.put_agent("a1", queues=["sales"], max_requests={"chat": 2})

    assert (await engine.get_agent("a1")).mrd("chat").state == "BUSY"
    assert (await check(engine)).ok


async def test_invariant_checker_still_reports_an_agent_over_capacity_by_routing(engine: Engine):
    await setup_center(engine, max_requests=1, ready=True)
    t = await engine.push_task("c-1", "sales")
    # A second open media a buggy step would have given a1 past maxRequests.
    key = f"{engine.prefix}task:{t.id}"
    stored = await engine.redis.get(key)
    doc = json.loads(stored)
    doc["media"].append({**doc["media"][0], "id": "m-x", "state": "ACTIVE"})
    await engine.redis.set(key, json.dumps(doc))
    await engine.redis.hset(f"{engine.prefix}agent:a1", "chat|n", 2)

    report = await check(engine, events=False)

    assert "agent a1 mrd chat: 2 open medias over maxRequests" in report.violations
    await engine.redis.set(key, stored)
    await engine.redis.hset(f"{engine.prefix}agent:a1", "chat|n", 1)
    assert (await check(engine)).ok


async def test_config_change_of_what_an_agent_shows_stamps_its_state_change_time(engine: Engine):
    await setup_center(engine, max_requests=2, ready=True)
    await engine.push_task("c-1", "sales")
    before = (await engine.get_agent("a1")).mrd("chat")
    assert before.state == "ACTIVE"
    await engine.advance_clock(60_000)

    after = (await engine.put_mrd("chat", max_requests=1)) and (await engine.get_agent("a1")).mrd("chat")

    assert after.state == "BUSY"
    assert after.state_change_time >= before.state_change_time + 60_000
    agent = await engine.put_agent("a1", queues=["sales"], max_requests={"chat": 3})
    assert agent.mrd("chat").state == "ACTIVE"


# The checker's liveness rule (invariant 5): routing never leaves work
# waiting beside an agent that could take it.


async def test_invariant_checker_reports_a_task_waiting_beside_an_agent_that_could_take_it(
    engine: Engine,
):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")  # nobody is ready: it waits
    # What a script that made a1 READY without routing would leave behind.
    agent = f"{engine.prefix}agent:a1"
    saved = await engine.redis.hgetall(agent)
    await engine.redis.hset(agent, mapping={"st": "READY", "chat|st": "READY", "chat|sh": "READY"})
    await engine.redis.zadd(f"{engine.prefix}q:sales:avail", {"a1": 0})

    report = await check(engine, events=False)

    assert report.violations == [f"task {t.id} waits in queue sales while ['a1'] could take it"]
    await engine.redis.delete(agent)
    await engine.redis.hset(agent, mapping=saved)
    await engine.redis.zrem(f"{engine.prefix}q:sales:avail", "a1")
    assert (await check(engine)).ok


async def test_invariant_checker_reports_an_availability_index_out_of_step(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    avail = f"{engine.prefix}q:sales:avail"
    score = await engine.redis.zscore(avail, "a2")
    await engine.redis.zrem(avail, "a2")

    report = await check(engine, events=False)

    assert report.violations == [
        "queue sales: availability index ['a1'], available agents ['a1', 'a2']"]
    await engine.redis.zadd(avail, {"a2": score})
    assert (await check(engine)).ok


async def test_a_task_of_a_conversation_its_only_ready_agent_holds_waits_legitimately(
    engine: Engine,
):
    # a1 has room but serves the customer already: the queued request of
    # the same conversation is not for a1, so waiting is right.
    await setup_center(engine, max_requests=2, ready=True)
    await engine.pull_task("a1", "c-1", "chat")
    t = await engine.push_task("c-1", "sales")

    assert t.media.state == "QUEUED"
    assert (await check(engine)).ok
