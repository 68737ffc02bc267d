"""Routing policies over HTTP: queue priorityUnitMs, maxWaiting (409
QUEUE_FULL) and overflow, PUT /v1/tasks/{taskId}/priority, MRD blocks and
blockedBy; hostile values of every new field are 422 and change nothing."""

from __future__ import annotations

import pytest

from redroute.errors import InvalidTransition, QueueFull
from tests.support.http import (  # noqa: F401
    Server,
    assert_invariants,
    call,
    full_snapshot,
    server_fixture,
)


async def test_queue_policies_round_trip_and_overflow_on_a_full_queue(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("tier2", mrd_id="chat")
    st, q = await call(server, "PUT", "/v1/queues/sales", {
        "mrdId": "chat", "priorityUnitMs": 60000, "maxWaiting": 1,
        "overflow": {"afterMs": 120000, "queueId": "tier2"}})
    assert st == 200
    assert (q["priorityUnitMs"], q["maxWaiting"], q["overflow"]) == (
        60000, 1, {"afterMs": 120000, "queueId": "tier2"})
    got = await c.get_queue("sales")
    assert (got.priority_unit_ms, got.max_waiting, got.overflow.to_dict()) == (
        60000, 1, {"afterMs": 120000, "queueId": "tier2"})
    first = await c.push_task("c1", "sales")
    second = await c.push_task("c2", "sales")
    assert (first.queue_id, second.queue_id) == ("sales", "tier2")
    await server.engine.advance_clock(120_000)
    await server.engine.fire_due()
    moved = await c.get_task(first.id)
    assert (moved.queue_id, moved.request_id, moved.enqueue_time) == ("tier2", first.request_id,
                                                                      first.enqueue_time)
    await assert_invariants(server.engine)


async def test_push_to_a_full_queue_is_409_queue_full_problem(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat", max_waiting=1)
    await c.push_task("c1", "sales")
    before = await full_snapshot(server)
    st, p = await call(server, "POST", "/v1/tasks", {"conversationId": "c2", "queueId": "sales"})
    assert st == 409
    assert (p["code"], p["title"], p["type"]) == ("QUEUE_FULL", "Queue full",
                                                  "https://redroute.dev/problems/queue-full")
    assert await full_snapshot(server) == before
    with pytest.raises(QueueFull):
        await c.push_task("c3", "sales")


async def test_put_task_priority_reorders_and_is_409_for_a_task_not_waiting(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    t1 = await c.push_task("c1", "sales")
    t2 = await c.push_task("c2", "sales")
    st, t = await call(server, "PUT", f"/v1/tasks/{t2.id}/priority", {"priority": 9})
    assert st == 200 and t["priority"] == 9
    assert (await c.task_routing(t2.id)).position == 1
    await c.set_agent_state("a1", "READY")
    assert (await c.get_task(t2.id)).assigned_to == "a1"
    with pytest.raises(InvalidTransition):
        await c.set_task_priority(t2.id, 3)
    assert (await c.set_task_priority(t1.id, 3)).priority == 3
    st, p = await call(server, "PUT", "/v1/tasks/t-999/priority", {"priority": 1})
    assert st == 404
    await assert_invariants(server.engine)


async def test_mrd_blocks_show_blocked_by_and_lift_when_the_call_ends(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat", max_requests=2)
    st, m = await call(server, "PUT", "/v1/mrds/voice", {"maxRequests": 1, "blocks": ["chat"]})
    assert st == 200 and m["blocks"] == ["chat"]
    await c.put_queue("calls", mrd_id="voice")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["calls", "sales"])
    await c.set_agent_state("a1", "READY")
    call_task = await c.push_task("v1", "calls")
    chat = await c.push_task("c1", "sales")
    assert chat.assigned_to is None
    st, a = await call(server, "GET", "/v1/agents/a1")
    states = {s["mrdId"]: s["blockedBy"] for s in a["mrdStates"]}
    assert states == {"chat": ["voice"], "voice": []}
    assert (await c.task_routing(chat.id)).candidate("a1").reason == "BLOCKED"
    await c.set_task_state(call_task.id, "CLOSED", "CANCELLED")
    assert (await c.get_task(chat.id)).assigned_to == "a1"
    assert (await c.get_agent("a1")).mrd("chat").blocked_by == []
    await assert_invariants(server.engine)


async def test_openapi_documents_the_policies(server: Server) -> None:
    doc = await server.client.openapi()
    assert "/v1/tasks/{taskId}/priority" in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert {"priorityUnitMs", "maxWaiting", "overflow"} <= set(schemas["QueueBody"]["properties"])
    assert "blocks" in schemas["MrdBody"]["properties"]
    assert "blockedBy" in schemas["MrdStatus"]["properties"]
    assert "409" in doc["paths"]["/v1/tasks"]["post"]["responses"]


HOSTILE = [
    ("PUT", "/v1/queues/sales", {"mrdId": "chat", "priorityUnitMs": v})
    for v in (0, -1, 10**10 + 1, 1.5, "60000", True, "x", [], {}, 2**64)
] + [
    ("PUT", "/v1/queues/sales", {"mrdId": "chat", "maxWaiting": v})
    for v in (-1, 1_000_001, 0.5, "5", False, [], {}, 2**63)
] + [
    ("PUT", "/v1/queues/sales", {"mrdId": "chat", "overflow": v})
    for v in ({}, {"afterMs": 1000}, {"queueId": "tier2"}, {"afterMs": 0, "queueId": "tier2"},
              {"afterMs": -5, "queueId": "tier2"}, {"afterMs": 7 * 86_400_000 + 1, "queueId": "tier2"},
              {"afterMs": "1000", "queueId": "tier2"}, {"afterMs": 1000, "queueId": "a:b"},
              {"afterMs": 1000, "queueId": "{default}"}, {"afterMs": 1000, "queueId": ""},
              {"afterMs": 1000, "queueId": "tier2", "x": 1}, {"afterMs": 1000, "queueId": "sales"},
              {"afterMs": 1000, "queueId": "calls"}, {"afterMs": 1000, "queueId": 7},
              [], "tier2", 5)
] + [
    ("PUT", "/v1/mrds/voice", {"maxRequests": 1, "blocks": v})
    for v in ("chat", ["voice"], ["a:b"], ["{x}"], [""], [1], [None], [["chat"]], {"chat": 1},
              ["chat"] * 65, [f"m{i}" for i in range(65)], 1, True)
] + [
    ("PUT", "/v1/tasks/{task}/priority", v)
    for v in ({}, {"priority": -1}, {"priority": 101}, {"priority": "5"}, {"priority": 1.5},
              {"priority": True}, {"priority": None}, {"priority": 5, "x": 1}, {"priority": 2**64})
]


async def test_hostile_values_of_every_new_field_are_422_and_change_nothing(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_mrd("voice")
    await c.put_queue("tier2", mrd_id="chat")
    await c.put_queue("calls", mrd_id="voice")
    await c.put_queue("sales", mrd_id="chat", overflow={"afterMs": 1000, "queueId": "tier2"})
    # a loop through a later PUT: tier2 -> sales -> tier2
    t = await c.push_task("c1", "sales")
    before = await full_snapshot(server)
    bad = []
    requests = HOSTILE + [("PUT", "/v1/queues/tier2",
                           {"mrdId": "chat", "overflow": {"afterMs": 1, "queueId": "sales"}})]
    for method, path, body in requests:
        st, p = await call(server, method, path.replace("{task}", t.id), body)
        if st != 422 or p.get("code") != "VALIDATION_ERROR":
            bad.append(f"{path} {body!r:.80}: {st} {p}")
    assert not bad, "\n".join(bad)
    assert await full_snapshot(server) == before
