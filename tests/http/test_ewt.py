"""A waiting task's position and expected wait over HTTP."""

from __future__ import annotations

import pytest

from redroute.errors import InvalidTransition, NotFound
from tests.support.http import Server, assert_invariants, call, server_fixture  # noqa: F401


async def test_position_of_waiting_tasks_and_409_once_reserved(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    first = await c.push_task("c1", "sales")
    second = await c.push_task("c2", "sales", priority=5)
    st, body = await call(server, "GET", f"/v1/tasks/{second.id}/position")
    assert (st, body) == (200, {"position": 1, "ewtMs": None, "method": "POSITION_RATE"})
    assert (await c.task_position(first.id)).position == 2
    await c.set_agent_state("a1", "READY")
    st, problem = await call(server, "GET", f"/v1/tasks/{second.id}/position")
    assert st == 409 and problem["code"] == "INVALID_TRANSITION"
    with pytest.raises(InvalidTransition):
        await c.task_position(second.id)
    assert (await c.task_position(first.id)).position == 1
    await assert_invariants(server.engine)


async def test_position_of_an_unknown_task_is_404(server: Server) -> None:
    with pytest.raises(NotFound):
        await server.client.task_position("t-404")
    st, _ = await call(server, "GET", "/v1/tasks/bad:id/position")
    assert st == 422


async def test_metrics_export_the_estimated_wait_and_its_error(server: Server) -> None:
    c, engine = server.client, server.engine
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    await c.set_agent_state("a1", "READY")
    for i in range(11):  # a take every 10 s: 10 takes seen after the first
        t = await c.push_task(f"h{i}", "sales")
        await engine.advance_clock(2000)
        if t.assigned_to:
            await c.accept(t.id, t.media.id)
    for _ in range(10):
        await engine.advance_clock(10_000)
        [t] = await c.agent_tasks("a1")
        await c.set_task_state(t.id, "CLOSED", "CANCELLED")
        [nxt] = await c.agent_tasks("a1")
        await c.accept(nxt.id, nxt.media.id)
    text = await c.metrics()
    assert 'redroute_queue_estimated_wait_seconds{queue="sales",tenant="default"}' in text
    assert 'redroute_queue_estimated_wait_abs_error_seconds{quantile="0.5",queue="sales",tenant="default"}' in text
