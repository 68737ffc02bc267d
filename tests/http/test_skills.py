"""Skills, preferred agent and the routing explanation over HTTP."""

from __future__ import annotations

import pytest

from redroute.errors import NotFound, ValidationError
from tests.support.http import Server, assert_invariants, call, server_fixture  # noqa: F401

STEPS = [{"expression": "english AND broadband >= 7", "timeoutMs": 20000},
         {"expression": "english AND broadband >= 4", "timeoutMs": 40000},
         {"expression": "english"}]


async def test_queue_with_steps_routes_by_skill_and_shows_routing(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    st, q = await call(server, "PUT", "/v1/queues/sales", {
        "mrdId": "chat", "agentSelectionPolicy": "MOST_SKILLED", "steps": STEPS,
        "routeToLastAgent": {"timeoutMs": 20000}})
    assert st == 200
    assert q["steps"] == STEPS and q["routeToLastAgent"] == {"timeoutMs": 20000}
    assert (await c.get_queue("sales")).to_dict()["steps"] == STEPS
    await c.put_agent("mid", queues=["sales"], attributes={"english": True, "broadband": 5})
    await c.set_agent_state("mid", "READY")
    st, t = await call(server, "POST", "/v1/tasks", {"conversationId": "c1", "queueId": "sales"})
    assert st == 201
    assert t["routing"] == {"step": 1, "steps": 3, "nextStepAt": t["enqueueTime"] + 20000,
                            "preferredAgentId": None, "preferredUntil": None}
    st, why = await call(server, "GET", f"/v1/tasks/{t['id']}/routing")
    assert st == 200
    assert why == {"taskId": t["id"], "state": "ACTIVE", "mediaState": "QUEUED", "queueId": "sales",
                   "step": 1, "nextStepAt": t["enqueueTime"] + 20000, "position": 1,
                   "candidates": [{"agentId": "mid", "firstStep": 2, "eligibleNow": False,
                                   "available": True, "reason": "STEP_NOT_REACHED"}]}
    await server.engine.advance_clock(20000)
    await server.engine.fire_due()
    assert (await c.get_task(t["id"])).assigned_to == "mid"
    await assert_invariants(server.engine)


@pytest.mark.parametrize(("expression", "position"), [
    ("english AND (broadband >= 7", 28), ("english AND", 12), ("a @ b", 3),
    ("(" * 40 + "a" + ")" * 40, 17), ("a OR " * 20000 + "a", 1025)])
async def test_malformed_expression_is_422_naming_the_position(
        server: Server, expression: str, position: int) -> None:
    await server.client.put_mrd("chat")
    st, p = await call(server, "PUT", "/v1/queues/sales",
                       {"mrdId": "chat", "steps": [{"expression": expression}]})
    assert st == 422 and p["code"] == "VALIDATION_ERROR"
    assert "steps[1].expression: " in p["detail"] and f"at position {position}" in p["detail"]
    st, _ = await call(server, "GET", "/v1/queues/sales")
    assert st == 404


async def test_steps_are_checked_by_the_client_too(server: Server) -> None:
    await server.client.put_mrd("chat")
    with pytest.raises(ValidationError, match="at position 6"):
        await server.client.put_queue("sales", mrd_id="chat", steps=[{"expression": "a == "}])


async def test_push_with_an_unknown_preferred_agent_is_404(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    st, p = await call(server, "POST", "/v1/tasks", {"conversationId": "c1", "queueId": "sales",
                                                     "preferredAgentId": "ghost"})
    assert st == 404 and p["code"] == "NOT_FOUND"
    assert await c.conversation_tasks("c1") == []


async def test_push_with_a_preferred_agent_waits_for_it(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    await c.put_agent("a2", queues=["sales"])
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales", preferred_agent_id="a2", preferred_agent_timeout_ms=5000)
    assert t.media.state == "QUEUED"
    assert t.routing.preferred_until == t.enqueue_time + 5000
    why = await c.task_routing(t.id)
    assert why.candidate("a1").reason == "PREFERRED_AGENT_ONLY"
    await c.set_agent_state("a2", "READY")
    assert (await c.get_task(t.id)).assigned_to == "a2"


async def test_routing_of_an_unknown_task_is_404(server: Server) -> None:
    with pytest.raises(NotFound):
        await server.client.task_routing("t-404")


async def test_skill_policies_are_accepted(server: Server) -> None:
    await server.client.put_mrd("chat")
    for policy in ("MOST_SKILLED", "LEAST_SKILLED", "LEAST_LOADED", "LEAST_ACTIVE"):
        q = await server.client.put_queue("sales", mrd_id="chat", agent_selection_policy=policy)
        assert q.agent_selection_policy == policy
