"""The routing explanation (GET /v1/tasks/{taskId}/routing): every reason."""

from __future__ import annotations

import pytest

from redroute import Engine, NotFound
from tests.support.center import pass_time, setup_center

STEPS = [{"expression": "level >= 5", "timeoutMs": 20_000}, {"expression": "level >= 1"}]


async def center(engine: Engine, agents: dict[str, int]) -> None:
    await engine.put_mrd("chat", max_requests=1)
    await engine.put_queue("sales", mrd_id="chat", steps=STEPS)
    for a, level in agents.items():
        await engine.put_agent(a, queues=["sales"], attributes={"level": level})


async def reasons(engine: Engine, task_id: str) -> dict[str, str]:
    return {c.agent_id: c.reason.value for c in (await engine.task_routing(task_id)).candidates}


async def test_explanation_of_a_waiting_task(engine: Engine):
    await center(engine, {"top": 9, "low": 2, "none": 0})
    await engine.set_agent_state("low", "READY")
    first = await engine.push_task("c0", "sales")
    t = await engine.push_task("c1", "sales")
    e = await engine.task_routing(t.id)
    assert e.to_dict() == {
        "taskId": t.id, "state": "ACTIVE", "mediaState": "QUEUED", "queueId": "sales", "step": 1,
        "nextStepAt": t.enqueue_time + 20_000, "position": 2,
        "candidates": [
            {"agentId": "low", "firstStep": 2, "eligibleNow": False, "available": True,
             "reason": "STEP_NOT_REACHED"},
            {"agentId": "none", "firstStep": None, "eligibleNow": False, "available": False,
             "reason": "LOGGED_OUT"},
            {"agentId": "top", "firstStep": 1, "eligibleNow": True, "available": False,
             "reason": "LOGGED_OUT"},
        ]}
    assert (await engine.task_routing(first.id)).position == 1


async def test_reason_available(engine: Engine):
    await center(engine, {"top": 9})
    await engine.set_agent_state("top", "READY")
    t = await engine.push_task("c1", "sales")
    # It went to top: top is the candidate that was available (now at capacity).
    e = await engine.task_routing(t.id)
    assert (e.media_state.value, e.position) == ("RESERVED", None)
    assert e.candidate("top").reason.value == "AT_CAPACITY"
    await engine.put_mrd("chat", max_requests=2)
    assert (await reasons(engine, t.id))["top"] == "AVAILABLE"


async def test_reason_no_matching_step(engine: Engine):
    await center(engine, {"none": 0})
    await engine.set_agent_state("none", "READY")
    t = await engine.push_task("c1", "sales")
    assert (await reasons(engine, t.id)) == {"none": "NO_MATCHING_STEP"}


async def test_reason_step_not_reached_until_the_step_is(engine: Engine):
    await center(engine, {"low": 2})
    await engine.put_agent("low", queues=["sales"], attributes={"level": 2})
    t = await engine.push_task("c1", "sales")
    await engine.set_agent_state("low", "LOGIN")
    assert (await reasons(engine, t.id)) == {"low": "STEP_NOT_REACHED"}
    await pass_time(engine, 20_000)
    assert (await reasons(engine, t.id)) == {"low": "NOT_READY"}
    c = (await engine.task_routing(t.id)).candidate("low")
    assert (c.first_step, c.eligible_now, c.available) == (2, True, False)


async def test_reason_not_ready(engine: Engine):
    await center(engine, {"top": 9})
    await engine.set_agent_state("top", "LOGIN")
    t = await engine.push_task("c1", "sales")
    assert (await reasons(engine, t.id)) == {"top": "NOT_READY"}


async def test_reason_at_capacity(engine: Engine):
    await center(engine, {"top": 9})
    await engine.set_agent_state("top", "READY")
    await engine.push_task("c0", "sales")
    t = await engine.push_task("c1", "sales")
    assert (await reasons(engine, t.id)) == {"top": "AT_CAPACITY"}


async def test_reason_holds_conversation(engine: Engine):
    await setup_center(engine, max_requests=2, ready=True)
    await engine.pull_task("a1", "c1", "chat")
    await engine.set_agent_state("a1", "NOT_READY")
    t = await engine.conference("c1", queue_id="sales")
    await engine.set_agent_state("a1", "READY")
    assert t.media.state == "QUEUED"
    assert (await reasons(engine, t.id)) == {"a1": "HOLDS_CONVERSATION"}


async def test_reason_made_the_transfer(engine: Engine):
    await setup_center(engine, agents=("a1",), max_requests=2, ready=True)
    await engine.pull_task("a1", "c1", "chat")
    t = await engine.transfer("c1", "a1", queue_id="sales")
    assert t.media.state == "QUEUED"
    assert (await reasons(engine, t.id)) == {"a1": "MADE_THE_TRANSFER"}


async def test_reason_logged_out(engine: Engine):
    await center(engine, {"top": 9})
    t = await engine.push_task("c1", "sales")
    assert (await reasons(engine, t.id)) == {"top": "LOGGED_OUT"}


async def test_reason_preferred_agent_only(engine: Engine):
    await center(engine, {"top": 9})
    await engine.put_agent("pp", queues=[])
    await engine.set_agent_state("top", "READY")
    await engine.set_agent_state("pp", "LOGIN")
    t = await engine.push_task("c1", "sales", preferred_agent_id="pp")
    e = await engine.task_routing(t.id)
    assert [(c.agent_id, c.eligible_now, c.reason.value) for c in e.candidates] == [
        ("pp", True, "NOT_READY"), ("top", False, "PREFERRED_AGENT_ONLY")]
    assert e.position == 1


async def test_explanation_of_an_unknown_task_is_not_found(engine: Engine):
    with pytest.raises(NotFound):
        await engine.task_routing("t-99")


async def test_explanation_of_a_queue_without_steps(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"))
    await engine.set_agent_state("a2", "LOGIN")
    t = await engine.push_task("c1", "sales")
    e = await engine.task_routing(t.id)
    assert (e.step, e.next_step_at, e.position) == (None, None, 1)
    assert [(c.agent_id, c.first_step, c.eligible_now, c.reason.value) for c in e.candidates] == [
        ("a1", None, True, "LOGGED_OUT"), ("a2", None, True, "NOT_READY")]
