"""Preferred agent: a PUSH naming preferredAgentId, and a queue's
routeToLastAgent."""

from __future__ import annotations

import pytest

from redroute import Engine, NotFound
from tests.support.center import pass_time, setup_center


async def test_preferred_agent_that_is_available_gets_the_task_at_once(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2")
    assert t.assigned_to == "a2"
    assert t.routing.preferred_agent_id == "a2"
    assert t.routing.preferred_until == t.enqueue_time + 30_000


async def test_preferred_agent_need_not_be_a_queue_member(engine: Engine):
    await setup_center(engine, agents=("a1",))
    await engine.put_agent("outsider", queues=[])
    await engine.set_agent_state("outsider", "READY")
    t = await engine.push_task("c1", "sales", preferred_agent_id="outsider")
    assert t.assigned_to == "outsider"


async def test_within_the_window_the_task_is_offered_to_the_preferred_agent_only(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.set_agent_state("a1", "READY")
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2", preferred_agent_timeout_ms=10_000)
    assert (t.media.state, t.assigned_to) == ("QUEUED", None)
    assert t.routing.preferred_until == t.enqueue_time + 10_000
    await engine.set_agent_state("a1", "NOT_READY")
    await engine.set_agent_state("a1", "READY")  # a1 frees up again: not offered
    assert (await engine.get_task(t.id)).media.state == "QUEUED"
    assert (await engine.get_queue("sales")).waiting == 1


async def test_preferred_agent_becoming_available_takes_its_task_first(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    older = await engine.push_task("c0", "sales")
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2")
    await engine.set_agent_state("a2", "READY")
    assert (await engine.get_task(t.id)).assigned_to == "a2"
    assert (await engine.get_task(older.id)).media.state == "QUEUED"


async def test_after_the_window_the_task_is_routed_like_any_other(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.set_agent_state("a1", "READY")
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2", preferred_agent_timeout_ms=5_000)
    assert await pass_time(engine, 5_000) == 1
    got = await engine.get_task(t.id)
    assert got.assigned_to == "a1"
    changed = [e for e in await engine.events() if e.task and e.task["id"] == t.id
               and e.data.get("transition") == "STEP_CHANGED"]
    assert len(changed) == 1


async def test_after_the_window_the_task_routes_at_the_step_its_age_reached(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_queue("sales", mrd_id="chat", steps=[
        {"expression": "level >= 9", "timeoutMs": 10_000}, {"expression": "level >= 1"}])
    await engine.put_agent("low", queues=["sales"], attributes={"level": 2})
    await engine.put_agent("pp", queues=[])
    await engine.set_agent_state("low", "READY")
    t = await engine.push_task("c1", "sales", preferred_agent_id="pp", preferred_agent_timeout_ms=15_000)
    assert (t.routing.step, t.routing.next_step_at) == (1, None)
    await pass_time(engine, 15_000)
    got = await engine.get_task(t.id)
    assert (got.assigned_to, got.routing.step) == ("low", 2)


async def test_window_end_with_no_agent_parks_the_task_in_its_queue(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2", preferred_agent_timeout_ms=5_000)
    await pass_time(engine, 5_000)
    await engine.set_agent_state("a1", "READY")
    assert (await engine.get_task(t.id)).assigned_to == "a1"


async def test_unknown_preferred_agent_is_not_found_and_changes_nothing(engine: Engine):
    await setup_center(engine, ready=True)
    before = await engine.redis.get(engine.prefix + "seq")
    with pytest.raises(NotFound, match="ghost"):
        await engine.push_task("c1", "sales", preferred_agent_id="ghost")
    assert await engine.redis.get(engine.prefix + "seq") == before
    assert await engine.conversation_tasks("c1") == []


async def test_preferred_agent_that_lets_the_task_go_ends_the_window(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), sla_ms=5_000)
    await engine.set_agent_state("a2", "READY")
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2")
    assert t.assigned_to == "a2"
    await engine.set_agent_state("a1", "READY")
    await pass_time(engine, 5_000)  # RONA by a2
    nt = (await engine.conversation_tasks("c1"))[-1]
    assert nt.assigned_to == "a1"
    assert nt.routing.preferred_agent_id == "a2"


async def test_preferred_only_task_still_closes_at_its_ttl(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ttl_ms=5_000)
    t = await engine.push_task("c1", "sales", preferred_agent_id="a2", preferred_agent_timeout_ms=60_000)
    await pass_time(engine, 5_000)
    got = await engine.get_task(t.id)
    assert (got.state.value, got.reason_code.value) == ("CLOSED", "NO_AGENT_AVAILABLE")


async def test_route_to_last_agent_prefers_the_agent_that_last_accepted(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), max_requests=2)
    await engine.put_queue("sales", mrd_id="chat", route_to_last_agent_ms=20_000)
    await engine.set_agent_state("a2", "READY")
    first = await engine.push_task("c1", "sales")
    assert first.assigned_to == "a2"
    await engine.accept(first.id, first.media.id)
    await engine.close_media(first.id, first.media.id)
    await engine.set_agent_state("a2", "NOT_READY")
    await engine.set_agent_state("a1", "READY")

    again = await engine.push_task("c1", "sales")
    assert (again.media.state, again.routing.preferred_agent_id) == ("QUEUED", "a2")
    assert again.routing.preferred_until == again.enqueue_time + 20_000
    await engine.set_agent_state("a2", "READY")
    assert (await engine.get_task(again.id)).assigned_to == "a2"


async def test_route_to_last_agent_gives_way_to_a_named_preferred_agent(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), max_requests=2)
    await engine.put_queue("sales", mrd_id="chat", route_to_last_agent_ms=20_000)
    await engine.set_agent_state("a2", "READY")
    first = await engine.push_task("c1", "sales")
    await engine.accept(first.id, first.media.id)
    await engine.close_media(first.id, first.media.id)
    again = await engine.push_task("c1", "sales", preferred_agent_id="a1")
    assert again.routing.preferred_agent_id == "a1"


async def test_route_to_last_agent_ignores_an_unanswered_reservation(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.put_queue("sales", mrd_id="chat", route_to_last_agent_ms=20_000)
    await engine.set_agent_state("a2", "READY")
    first = await engine.push_task("c1", "sales")
    await engine.set_task_state(first.id, "CLOSED", "CANCELLED")
    again = await engine.push_task("c1", "sales")
    assert again.routing.preferred_agent_id is None and again.assigned_to == "a2"


async def test_queue_shows_route_to_last_agent(engine: Engine):
    await setup_center(engine)
    q = await engine.put_queue("sales", mrd_id="chat", route_to_last_agent_ms=20_000)
    assert q.to_dict()["routeToLastAgent"] == {"timeoutMs": 20_000}
    assert (await engine.get_queue("sales")).route_to_last_agent_ms == 20_000
