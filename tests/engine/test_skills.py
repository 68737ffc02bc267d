"""Skills: queue steps, attribute expressions, first steps, steps by age,
and the skill-aware selection policies."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from redroute import Engine, NotFound, ValidationError
from redroute.checks.invariants import check
from tests.support.center import EventLog, pass_time

STEPS = [
    {"expression": "english AND broadband >= 7", "timeoutMs": 20_000},
    {"expression": "english AND broadband >= 4", "timeoutMs": 40_000},
    {"expression": "english"},
]
_n = count()


async def stepped_center(engine: Engine, agents: dict[str, dict[str, Any]], *, steps: list | None = None,
                         policy: str = "LONGEST_AVAILABLE", max_requests: int = 1,
                         ready: bool = True, sla_ms: int = 30_000) -> None:
    """One MRD (chat), queue "sales" with steps, agents in it with attributes."""
    await engine.put_mrd("chat", max_requests=max_requests)
    await engine.put_queue("sales", mrd_id="chat", steps=STEPS if steps is None else steps,
                           agent_selection_policy=policy, agent_sla_ms=sla_ms)
    for aid, attrs in agents.items():
        await engine.put_agent(aid, queues=["sales"], attributes=attrs)
        if ready:
            await engine.set_agent_state(aid, "READY")
            await engine.advance_clock(10)


async def matches(engine: Engine, expression: str, attrs: dict[str, Any]) -> bool:
    """Whether an agent with attrs is eligible for a one-step queue with
    this expression: a task pushed to it is reserved to the agent at once."""
    i = next(_n)
    await engine.put_mrd("chat", max_requests=1)
    await engine.put_queue(f"q{i}", mrd_id="chat", steps=[{"expression": expression}])
    await engine.put_agent(f"a{i}", queues=[f"q{i}"], attributes=attrs)
    await engine.set_agent_state(f"a{i}", "READY")
    t = await engine.push_task(f"c{i}", f"q{i}")
    return t.assigned_to == f"a{i}"


# Grammar, as evaluated by the engine


async def test_and_binds_tighter_than_or(engine: Engine):
    # a OR (b AND c), not (a OR b) AND c
    assert await matches(engine, "a OR b AND c", {"a": True, "b": False, "c": False})
    assert not await matches(engine, "a AND b OR c", {"a": True, "b": False, "c": False})


async def test_not_negates_the_term_that_follows(engine: Engine):
    assert await matches(engine, "NOT vip", {"vip": False})
    assert not await matches(engine, "NOT vip", {"vip": True})
    assert await matches(engine, "NOT vip AND english", {"vip": False, "english": True})
    assert await matches(engine, "NOT NOT english", {"english": True})


async def test_parentheses_group_before_precedence(engine: Engine):
    assert not await matches(engine, "(a OR b) AND c", {"a": True, "b": False, "c": False})
    assert await matches(engine, "(a OR b) AND c", {"a": False, "b": True, "c": True})
    assert await matches(engine, "NOT (a AND b)", {"a": True, "b": False})


async def test_in_matches_any_listed_value_of_the_same_type(engine: Engine):
    assert await matches(engine, 'lang IN ["en", "fr"]', {"lang": "fr"})
    assert not await matches(engine, 'lang IN ["en", "fr"]', {"lang": "de"})
    assert await matches(engine, "tier IN [1, 2]", {"tier": 2})
    assert not await matches(engine, 'tier IN ["2"]', {"tier": 2})
    assert not await matches(engine, "tier IN [1, 2]", {})


async def test_bare_name_is_true_for_true_a_positive_number_or_a_non_empty_string(engine: Engine):
    assert await matches(engine, "x", {"x": True})
    assert await matches(engine, "x", {"x": 3})
    assert await matches(engine, "x", {"x": "yes"})
    for falsy in (False, 0, -1, "", None, [1], {"a": 1}):
        assert not await matches(engine, "x", {"x": falsy}), falsy
    assert not await matches(engine, "x", {})


async def test_comparison_on_a_missing_attribute_is_false(engine: Engine):
    for expr in ("x == 1", "x != 1", "x >= 0", "x < 10", 'x == "a"'):
        assert not await matches(engine, expr, {"y": 1}), expr
    assert await matches(engine, "NOT x >= 5", {}), "NOT of a false comparison"


async def test_ordering_comparison_on_a_non_number_is_false(engine: Engine):
    assert not await matches(engine, "level >= 1", {"level": "9"})
    assert not await matches(engine, "level > 0", {"level": True})
    assert not await matches(engine, 'level < "z"', {"level": "a"})
    assert await matches(engine, "level >= 7", {"level": 7.5})
    assert await matches(engine, "level <= -2", {"level": -3})


async def test_equality_compares_values_of_the_same_type_only(engine: Engine):
    assert await matches(engine, 'team == "blue"', {"team": "blue"})
    assert await matches(engine, "remote == true", {"remote": True})
    assert not await matches(engine, "remote == 1", {"remote": True})
    assert await matches(engine, 'tier != "2"', {"tier": 2})
    assert await matches(engine, "tier != 3", {"tier": 2})


async def test_attribute_names_are_case_sensitive(engine: Engine):
    assert not await matches(engine, "English", {"english": True})
    assert await matches(engine, "skill.chat-en_2", {"skill.chat-en_2": 1})


async def test_empty_expression_matches_every_member(engine: Engine):
    assert await matches(engine, "", {})
    assert await matches(engine, "   ", {"x": 0})


async def test_malformed_expression_is_a_validation_error_naming_the_position(engine: Engine):
    await engine.put_mrd("chat")
    with pytest.raises(ValidationError, match=r"steps\[2\]\.expression: .* at position 9"):
        await engine.put_queue("sales", mrd_id="chat", steps=[
            {"expression": "a", "timeoutMs": 1000}, {"expression": "a AND (b"}])
    with pytest.raises(ValidationError, match="at position 3"):
        await engine.put_queue("sales", mrd_id="chat", steps=[{"expression": "a $ b"}])
    with pytest.raises(NotFound):
        await engine.get_queue("sales")


async def test_every_step_but_the_last_has_a_timeout(engine: Engine):
    await engine.put_mrd("chat")
    with pytest.raises(ValidationError, match="timeoutMs"):
        await engine.put_queue("sales", mrd_id="chat", steps=[{"expression": "a"}, {"expression": "b"}])
    with pytest.raises(ValidationError, match="last step has no timeout"):
        await engine.put_queue("sales", mrd_id="chat", steps=[{"expression": "a", "timeoutMs": 5}])
    with pytest.raises(ValidationError, match="1 to 10"):
        await engine.put_queue("sales", mrd_id="chat",
                               steps=[{"expression": "a", "timeoutMs": 1}] * 10 + [{"expression": ""}])


HOSTILE = [
    "(" * 200 + "a" + ")" * 200,  # deep nesting
    "NOT " * 100 + "a",
    "a OR " * 20_000 + "a",  # 100 KB
    'a == "x") redis.call("FLUSHALL") --',  # into Lua
    "a']; redis.call('DEL', KEYS[1]); --",
    "rr:{other}:task:t-1",  # into keys
    "a == 1; DROP",
    "a == 0x10",
    "a == 1e9",
    "a === 1",
    "a AND",
    "OR a",
    "a IN []",
    "a IN [1,]",
    "a == [1]",
    '"unterminated',
    "a\x00b",
    "ä == 1",
]


@pytest.mark.parametrize("expression", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_expression_is_refused_and_changes_nothing(engine: Engine, expression: str):
    await stepped_center(engine, {"a1": {"english": True, "broadband": 9}})
    before = {k: await engine.redis.type(k) for k in await engine.redis.keys("*")}
    queue = (await engine.get_queue("sales")).to_dict()
    with pytest.raises(ValidationError, match="position"):
        await engine.put_queue("sales", mrd_id="chat", steps=[{"expression": expression}])
    assert {k: await engine.redis.type(k) for k in await engine.redis.keys("*")} == before
    assert (await engine.get_queue("sales")).to_dict() == queue


# Steps: first-step eligibility and steps by age


async def test_task_at_step_1_is_offered_only_to_agents_whose_first_step_is_1(engine: Engine):
    await stepped_center(engine, {"mid": {"english": True, "broadband": 5},
                                  "top": {"english": True, "broadband": 8}})
    t = await engine.push_task("c1", "sales")
    assert t.assigned_to == "top"
    t2 = await engine.push_task("c2", "sales")
    assert t2.media.state == "QUEUED"
    assert t2.routing.to_dict() == {"step": 1, "steps": 3, "nextStepAt": t2.enqueue_time + 20_000,
                                    "preferredAgentId": None, "preferredUntil": None}


async def test_first_step_is_the_smallest_step_the_attributes_satisfy(engine: Engine):
    await stepped_center(engine, {"top": {"english": True, "broadband": 9},
                                  "mid": {"english": True, "broadband": 5},
                                  "low": {"english": True}, "none": {"broadband": 9}}, ready=False)
    t = await engine.push_task("c1", "sales")
    firsts = {c.agent_id: c.first_step for c in (await engine.task_routing(t.id)).candidates}
    assert firsts == {"low": 3, "mid": 2, "none": None, "top": 1}


async def test_task_reaching_a_step_is_routed_at_once_with_transition_step_changed(engine: Engine):
    await stepped_center(engine, {"mid": {"english": True, "broadband": 5}})
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"
    log = EventLog(engine)
    await log.skip()

    assert await pass_time(engine, 19_000) == 0
    assert (await engine.get_task(t.id)).media.state == "QUEUED"
    assert await pass_time(engine, 1000) == 1

    events = await log.take()
    assert [e.type.value for e in events] == ["TASK_STATE_CHANGED", "TASK_STATE_CHANGED",
                                              "AGENT_RESERVED", "AGENT_STATE_CHANGED"]
    assert events[0].data["transition"] == "STEP_CHANGED"
    assert events[0].task["routing"]["step"] == 2
    assert events[0].task["activeMedia"][0]["state"] == "QUEUED"
    got = await engine.get_task(t.id)
    assert (got.assigned_to, got.media.state) == ("mid", "RESERVED")
    assert got.routing.step == 2 and got.routing.next_step_at is None


async def test_waiting_task_goes_through_each_step_to_the_last(engine: Engine):
    await stepped_center(engine, {})
    t = await engine.push_task("c1", "sales")
    await pass_time(engine, 20_000)
    r = (await engine.get_task(t.id)).routing
    assert (r.step, r.next_step_at) == (2, t.enqueue_time + 60_000)
    await pass_time(engine, 40_000)
    r = (await engine.get_task(t.id)).routing
    assert (r.step, r.steps, r.next_step_at) == (3, 3, None)
    transitions = [e.data.get("transition") for e in await engine.events() if e.task and e.task["id"] == t.id]
    assert transitions == ["CREATED", "STEP_CHANGED", "STEP_CHANGED"]


async def test_a_late_step_deadline_takes_the_step_the_age_has_reached(engine: Engine):
    await stepped_center(engine, {})
    t = await engine.push_task("c1", "sales")
    await pass_time(engine, 100_000)
    assert (await engine.get_task(t.id)).routing.step == 3


async def test_step_deadline_fires_exactly_once(engine: Engine):
    await stepped_center(engine, {})
    await engine.push_task("c1", "sales")
    await engine.advance_clock(20_000)
    first, second = await engine.fire_due(), await engine.fire_due()
    assert (first.fired, second.fired) == (1, 0)


async def test_step_by_age_survives_rona(engine: Engine):
    await stepped_center(engine, {"top": {"english": True, "broadband": 9}}, sla_ms=30_000)
    t = await engine.push_task("c1", "sales")
    assert t.routing.step == 1 and t.assigned_to == "top"
    await pass_time(engine, 30_000)  # RONA: re-queued with its enqueueTime, 30 s old
    nt = (await engine.conversation_tasks("c1"))[-1]
    assert nt.enqueue_time == t.enqueue_time
    assert (nt.media.state, nt.routing.step, nt.routing.next_step_at) == (
        "QUEUED", 2, t.enqueue_time + 60_000)


async def test_step_by_age_survives_reroute(engine: Engine):
    await stepped_center(engine, {"top": {"english": True, "broadband": 9}}, sla_ms=120_000)
    t = await engine.push_task("c1", "sales")
    await engine.advance_clock(65_000)
    await engine.set_agent_state("top", "LOGOUT")
    nt = (await engine.conversation_tasks("c1"))[-1]
    assert (nt.state.value, nt.media.state.value, nt.routing.step) == ("ACTIVE", "QUEUED", 3)
    assert nt.enqueue_time == t.enqueue_time


async def test_agent_freeing_up_takes_only_tasks_at_or_past_its_first_step(engine: Engine):
    await stepped_center(engine, {"low": {"english": True}}, ready=False)
    young = await engine.push_task("c1", "sales")
    await engine.advance_clock(1)
    await engine.set_agent_state("low", "READY")
    assert (await engine.get_task(young.id)).media.state == "QUEUED"
    await engine.set_agent_state("low", "NOT_READY")
    await pass_time(engine, 60_000)  # step 3
    await engine.set_agent_state("low", "READY")
    assert (await engine.get_task(young.id)).assigned_to == "low"


async def test_agent_takes_the_best_task_across_the_steps_it_may_serve(engine: Engine):
    await stepped_center(engine, {"top": {"english": True, "broadband": 9}}, ready=False)
    old = await engine.push_task("c1", "sales")
    await pass_time(engine, 20_000)  # old at step 2
    await engine.push_task("c2", "sales", priority=1)
    urgent = await engine.push_task("c3", "sales", priority=5)
    await engine.set_agent_state("top", "READY")
    assert (await engine.get_task(urgent.id)).assigned_to == "top"
    await engine.put_mrd("chat", max_requests=2)
    assert (await engine.get_task(old.id)).assigned_to == "top"


# Re-evaluation when agents or queues change


async def test_changing_an_agents_attributes_reevaluates_it_and_routes(engine: Engine):
    await stepped_center(engine, {"a1": {"english": True, "broadband": 2}})
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"
    await engine.put_agent("a1", queues=["sales"], attributes={"english": True, "broadband": 7})
    assert (await engine.get_task(t.id)).assigned_to == "a1"


async def test_losing_a_skill_takes_the_agent_out_of_the_index(engine: Engine):
    await stepped_center(engine, {"a1": {"english": True, "broadband": 9}})
    await engine.put_agent("a1", queues=["sales"], attributes={"english": True, "broadband": 1})
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"
    assert (await engine.task_routing(t.id)).candidate("a1").reason == "STEP_NOT_REACHED"


async def test_joining_a_queue_reevaluates_the_agent_and_routes(engine: Engine):
    await stepped_center(engine, {})
    await engine.put_agent("a1", attributes={"english": True, "broadband": 9})
    await engine.set_agent_state("a1", "READY")
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"
    await engine.put_agent("a1", queues=["sales"], attributes={"english": True, "broadband": 9})
    assert (await engine.get_task(t.id)).assigned_to == "a1"


async def test_leaving_a_queue_takes_the_agent_out_of_its_step_index(engine: Engine):
    await stepped_center(engine, {"a1": {"english": True, "broadband": 9}})
    await engine.put_agent("a1", queues=[], attributes={"english": True, "broadband": 9})
    assert await engine.redis.keys(engine.prefix + "q:sales:avail*") == []
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"


async def test_changing_steps_reevaluates_members_and_routes(engine: Engine):
    await stepped_center(engine, {"mid": {"english": True, "broadband": 5}})
    t = await engine.push_task("c1", "sales")
    assert t.media.state == "QUEUED"
    await engine.put_queue("sales", mrd_id="chat", steps=[{"expression": "broadband >= 5"}])
    got = await engine.get_task(t.id)
    assert got.assigned_to == "mid"
    assert (got.routing.step, got.routing.steps) == (1, 1)


async def test_changing_steps_recomputes_each_waiting_tasks_step_from_its_age(engine: Engine):
    await stepped_center(engine, {})
    t = await engine.push_task("c1", "sales")
    await engine.advance_clock(15_000)
    await engine.put_queue("sales", mrd_id="chat", steps=[
        {"expression": "x", "timeoutMs": 10_000}, {"expression": "y", "timeoutMs": 10_000},
        {"expression": "z"}])
    got = await engine.get_task(t.id)
    assert (got.routing.step, got.routing.steps, got.routing.next_step_at) == (
        2, 3, t.enqueue_time + 20_000)
    last = [e for e in await engine.events() if e.task and e.task["id"] == t.id][-1]
    assert last.data["transition"] == "STEP_CHANGED"
    await engine.put_queue("sales", mrd_id="chat")  # steps removed
    got = await engine.get_task(t.id)
    assert got.routing.to_dict()["step"] is None and got.media.state == "QUEUED"


async def test_queue_without_steps_shows_null_steps(engine: Engine):
    await engine.put_mrd("chat")
    q = await engine.put_queue("plain", mrd_id="chat")
    assert q.steps is None and "steps" not in q.to_dict()
    t = await engine.push_task("c1", "plain")
    assert t.routing.to_dict() == {"step": None, "steps": None, "nextStepAt": None,
                                   "preferredAgentId": None, "preferredUntil": None}


async def test_queue_shows_its_steps(engine: Engine):
    await stepped_center(engine, {})
    q = (await engine.get_queue("sales")).to_dict()
    assert q["steps"] == STEPS


# Selection policies


async def test_most_skilled_takes_the_highest_skill_score_then_longest_available(engine: Engine):
    steps = [{"expression": "english AND broadband >= 1"}]
    await stepped_center(engine, {"b": {"english": True, "broadband": 5},
                                  "a": {"english": True, "broadband": 9, "other": 100},
                                  "c": {"english": True, "broadband": 9}, "d": {"english": 1, "broadband": 1}},
                         steps=steps, policy="MOST_SKILLED")
    # scores: a 10 (english=1 + 9; "other" is not named), c 10, b 6, d 2
    picked = [(await engine.push_task(f"c{i}", "sales")).assigned_to for i in range(4)]
    assert picked == ["a", "c", "b", "d"]


async def test_least_skilled_takes_the_lowest_skill_score_then_longest_available(engine: Engine):
    steps = [{"expression": "broadband >= 1", "timeoutMs": 1000}, {"expression": "vip OR broadband"}]
    await stepped_center(engine, {"x": {"broadband": 9}, "y": {"broadband": 3, "vip": True},
                                  "z": {"broadband": 3, "vip": True}},
                         steps=steps, policy="LEAST_SKILLED")
    picked = [(await engine.push_task(f"c{i}", "sales")).assigned_to for i in range(3)]
    assert picked == ["y", "z", "x"]


async def test_least_loaded_takes_the_lowest_load_then_longest_available(engine: Engine):
    await engine.put_mrd("chat", max_requests=4)
    await engine.put_queue("sales", mrd_id="chat", agent_selection_policy="LEAST_LOADED")
    await engine.put_agent("big", queues=["sales"], max_requests={"chat": 4})
    await engine.put_agent("small", queues=["sales"], max_requests={"chat": 2})
    await engine.set_agent_state("big", "READY")
    await engine.advance_clock(10)
    await engine.set_agent_state("small", "READY")
    picked = []
    for i in range(6):
        picked.append((await engine.push_task(f"c{i}", "sales")).assigned_to)
        await engine.advance_clock(1)
    # loads: big 0/4 small 0/2 -> big (longer); big 1/4 small 0/2 -> small;
    # big 1/4 small 1/2 -> big; big 2/4 = small 1/2 -> small (longer since
    # its last task); big 2/4 small 2/2 -> big; big 3/4 -> big.
    assert picked == ["big", "small", "big", "small", "big", "big"]


@pytest.mark.parametrize(("policy", "winner"), [("LEAST_SKILLED", "two"), ("MOST_SKILLED", "five")])
async def test_skill_policies_compare_agents_across_the_step_indexes_reached(
        engine: Engine, policy: str, winner: str):
    steps = [{"expression": "level >= 5", "timeoutMs": 1000}, {"expression": "level >= 1"}]
    await stepped_center(engine, {"five": {"level": 5}, "two": {"level": 2}}, steps=steps, policy=policy)
    await engine.put_agent("pp", queues=[])
    # Waits for its preferred agent until past step 1's timeout, then is
    # routed at step 2, where both indexes hold a candidate.
    t = await engine.push_task("c1", "sales", preferred_agent_id="pp", preferred_agent_timeout_ms=1500)
    assert t.media.state == "QUEUED"
    await pass_time(engine, 1500)
    got = await engine.get_task(t.id)
    assert (got.assigned_to, got.routing.step) == (winner, 2)


# The checker knows the rules of steps and preferred agents


async def test_checker_reports_a_task_waiting_at_a_step_beside_an_eligible_available_agent(engine: Engine):
    await stepped_center(engine, {"mid": {"english": True, "broadband": 5}})
    t = await engine.push_task("c1", "sales")
    # What a step change that did not route would leave behind.
    await engine.redis.set(engine.keys.task(t.id), (await engine.redis.get(engine.keys.task(t.id))).replace(
        '"step":"1"', '"step":"2"'))
    report = await check(engine, events=False)
    assert f"task {t.id} waits in queue sales at step 2 while ['mid'] could take it" in report.violations
    assert f"task {t.id} at step 2 is in the waiting sets of steps [1]" in report.violations
    await engine.redis.set(engine.keys.task(t.id), (await engine.redis.get(engine.keys.task(t.id))).replace(
        '"step":"2"', '"step":"1"'))


async def test_checker_reports_a_step_index_that_lists_an_agent_of_another_first_step(engine: Engine):
    await stepped_center(engine, {"mid": {"english": True, "broadband": 5}})
    await engine.redis.zadd(engine.keys.q_avail_step("sales", 1), {"mid": 0})
    report = await check(engine, events=False)
    assert "queue sales: step 1 index ['mid'], available agents []" in report.violations
    await engine.redis.zrem(engine.keys.q_avail_step("sales", 1), "mid")


async def test_checker_reports_a_waiting_task_without_its_step_or_window_deadline(engine: Engine):
    await stepped_center(engine, {}, ready=False)
    await engine.put_agent("pp")
    t = await engine.push_task("c1", "sales")
    p = await engine.push_task("c2", "sales", preferred_agent_id="pp")
    timers = await engine.redis.zrange(engine.keys.timers, 0, -1, withscores=True)
    await engine.redis.zrem(engine.keys.timers, f"step|{t.id}", f"pref|{p.id}")
    report = await check(engine, events=False)
    assert f"task {t.id} has a later step at {t.routing.next_step_at} without its step deadline" in report.violations
    assert f"task {p.id} waits for its preferred agent without its window deadline" in report.violations
    await engine.redis.zadd(engine.keys.timers, dict(timers))
