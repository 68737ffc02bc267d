"""Every endpoint of docs/api.md over a real server, real sockets and real Redis:
status codes, shapes, content types, tenancy and MessagePack."""

from __future__ import annotations

import aiohttp
import msgpack
import pytest

from redroute.errors import InvalidTransition, NotFound
from redroute.keys import HEARTBEAT, TenantKeys
from tests.support.http import Server, assert_invariants, server_fixture  # noqa: F401

JSON = {"Content-Type": "application/json"}


async def call(srv: Server, method: str, path: str, body: object = None,
               headers: dict[str, str] | None = None) -> tuple[int, str, object]:
    async with aiohttp.ClientSession() as s, s.request(
            method, srv.url + path, json=body, headers=headers) as r:
        ctype = r.content_type
        data = await r.json(content_type=None) if "json" in ctype else await r.text()
        return r.status, ctype, data


async def setup(srv: Server, *, max_requests: int = 1, auto_join: bool = False,
                wrap_up: bool = False, agents: tuple[str, ...] = ("a1",)) -> None:
    c = srv.client
    await c.put_mrd("chat", max_requests=max_requests, auto_join=auto_join,
                    wrap_up_enabled=wrap_up, wrap_up_timeout_ms=5000)
    await c.put_queue("sales", mrd_id="chat", agent_sla_ms=10_000, agent_request_ttl_ms=60_000)
    for a in agents:
        await c.put_agent(a, queues=["sales"])


async def test_config_put_and_get(server: Server) -> None:
    st, ctype, mrd = await call(server, "PUT", "/v1/mrds/chat",
                                {"maxRequests": 3, "autoJoin": True,
                                 "wrapUp": {"enabled": True, "timeoutMs": 1000}})
    assert (st, ctype) == (200, "application/json")
    assert mrd == {"id": "chat", "maxRequests": 3, "autoJoin": True,
                   "wrapUp": {"enabled": True, "timeoutMs": 1000}}
    assert (await call(server, "GET", "/v1/mrds/chat"))[2] == mrd

    st, _, q = await call(server, "PUT", "/v1/queues/sales-chat", {
        "mrdId": "chat", "agentRequestTtlMs": 300000, "agentSlaMs": 30000,
        "agentSelectionPolicy": "LEAST_ACTIVE", "serviceLevelThresholdMs": 20000})
    assert st == 200
    assert q == {"id": "sales-chat", "mrdId": "chat", "agentRequestTtlMs": 300000,
                 "agentSlaMs": 30000, "agentSelectionPolicy": "LEAST_ACTIVE",
                 "serviceLevelThresholdMs": 20000}

    st, _, a = await call(server, "PUT", "/v1/agents/agent-7",
                          {"queues": ["sales-chat"], "attributes": {"lang": "en"},
                           "maxRequests": {"chat": 2}})
    assert st == 200
    assert a["id"] == "agent-7" and a["queues"] == ["sales-chat"]
    assert a["attributes"] == {"lang": "en"}
    assert a["state"] == {"name": "LOGOUT", "reasonCode": None}
    assert a["mrdStates"][0]["mrdId"] == "chat" and a["mrdStates"][0]["maxRequests"] == 2
    assert (await call(server, "GET", "/v1/agents/agent-7"))[2] == a

    st, _, q = await call(server, "GET", "/v1/queues/sales-chat")
    assert st == 200
    assert q["waiting"] == 0 and q["oldestWaitMs"] is None and q["agents"] == {"LOGOUT": 1}

    for path in ("/v1/mrds/nope", "/v1/queues/nope", "/v1/agents/nope"):
        st, ctype, p = await call(server, "GET", path)
        assert (st, ctype, p["code"]) == (404, "application/problem+json", "NOT_FOUND")
    # A queue on an unknown MRD
    st, _, p = await call(server, "PUT", "/v1/queues/q2", {"mrdId": "nope"})
    assert (st, p["code"]) == (404, "NOT_FOUND")


async def test_agent_state(server: Server) -> None:
    await setup(server, max_requests=2)
    st, _, a = await call(server, "POST", "/v1/agents/a1/state", {"state": "LOGIN"})
    assert st == 200 and a["state"]["name"] == "LOGIN"
    assert a["mrdStates"][0]["state"] == "NOT_READY"
    _, _, a = await call(server, "POST", "/v1/agents/a1/state",
                         {"state": "READY", "mrdId": "chat", "reasonCode": None})
    assert a["mrdStates"][0]["state"] == "READY"
    _, _, a = await call(server, "POST", "/v1/agents/a1/state",
                         {"state": "NOT_READY", "reasonCode": "BREAK"})
    assert a["state"] == {"name": "NOT_READY", "reasonCode": "BREAK"}
    st, _, p = await call(server, "POST", "/v1/agents/a1/state", {"state": "LOGOUT"})
    assert st == 200
    # NOT_READY while logged out is not a valid transition
    st, _, p = await call(server, "POST", "/v1/agents/a1/state", {"state": "NOT_READY"})
    assert (st, p["code"]) == (409, "INVALID_TRANSITION")
    st, _, p = await call(server, "POST", "/v1/agents/ghost/state", {"state": "READY"})
    assert (st, p["code"]) == (404, "NOT_FOUND")
    st, _, p = await call(server, "POST", "/v1/agents/a1/state", {"state": "LOGIN", "mrdId": "chat"})
    assert (st, p["code"]) == (422, "VALIDATION_ERROR")


async def test_push_with_an_idempotency_key_is_safe_to_retry(server: Server) -> None:
    await setup(server)
    body = {"conversationId": "c-42", "queueId": "sales"}
    key = {"Idempotency-Key": "order-77.retry"}
    st, _, first = await call(server, "POST", "/v1/tasks", body, key)
    assert st == 201
    st, _, again = await call(server, "POST", "/v1/tasks", body, key)
    assert st == 200 and again == first
    _, _, tasks = await call(server, "GET", "/v1/conversations/c-42/tasks")
    assert [t["id"] for t in tasks["tasks"]] == [first["id"]]

    st, _, p = await call(server, "POST", "/v1/tasks", {**body, "conversationId": "c-43"}, key)
    assert (st, p["code"]) == (422, "VALIDATION_ERROR")
    st, _, p = await call(server, "POST", "/v1/tasks", body, {"Idempotency-Key": "no spaces"})
    assert (st, p["code"]) == (422, "VALIDATION_ERROR")
    st, _, other = await call(server, "POST", "/v1/tasks", body)  # no key: a new task
    assert st == 201 and other["id"] != first["id"]
    # The Python client, through the same header:
    t, created = await server.client.push_task_idempotent("order-78", "c-44", "sales")
    assert created
    assert await server.client.push_task_idempotent("order-78", "c-44", "sales") == (t, False)
    await assert_invariants(server.engine)


async def test_push_accept_close_and_reads(server: Server) -> None:
    await setup(server)
    st, _, t = await call(server, "POST", "/v1/tasks",
                          {"conversationId": "c-42", "queueId": "sales", "priority": 1,
                           "requestSession": {"channel": "web"}, "metadata": {"k": "v"}})
    assert st == 201
    assert t["type"] == {"direction": "INBOUND", "mode": "QUEUE"}
    assert t["state"] == {"name": "ACTIVE", "reasonCode": None}
    assert t["activeMedia"][0]["state"] == "QUEUED" and t["assignedTo"] is None
    assert t["activeMedia"][0]["requestSession"] == {"channel": "web"}
    assert t["metadata"] == {"k": "v"}
    assert t["ttlDeadline"] == t["enqueueTime"] + 60_000
    assert set(t) >= {"id", "requestId", "conversationId", "queueId", "mrdId", "priority",
                      "createdAt", "updatedAt"}

    _, _, q = await call(server, "GET", "/v1/queues/sales")
    assert q["waiting"] == 1 and q["oldestWaitMs"] >= 0

    # The agent becoming ready takes it at once
    await call(server, "POST", "/v1/agents/a1/state", {"state": "READY"})
    _, _, t = await call(server, "GET", f"/v1/tasks/{t['id']}")
    assert t["activeMedia"][0]["state"] == "RESERVED" and t["assignedTo"] == "a1"
    mid = t["activeMedia"][0]["id"]

    st, _, p = await call(server, "PUT", f"/v1/tasks/{t['id']}/media/{mid}/state",
                          {"state": "ACTIVE", "agentId": "someone-else"})
    assert (st, p["code"]) == (409, "INVALID_TRANSITION")
    st, _, t = await call(server, "PUT", f"/v1/tasks/{t['id']}/media/{mid}/state",
                          {"state": "ACTIVE", "agentId": "a1"})
    assert st == 200 and t["activeMedia"][0]["state"] == "ACTIVE"
    assert t["activeMedia"][0]["answerTime"] is not None

    _, _, lst = await call(server, "GET", "/v1/agents/a1/tasks")
    assert [x["id"] for x in lst["tasks"]] == [t["id"]]
    _, _, lst = await call(server, "GET", "/v1/conversations/c-42/tasks")
    assert [x["id"] for x in lst["tasks"]] == [t["id"]]

    st, _, t = await call(server, "PUT", f"/v1/tasks/{t['id']}/media/{mid}/state",
                          {"state": "CLOSED"})
    assert st == 200 and t["state"] == {"name": "CLOSED", "reasonCode": "DONE"}
    st, _, p = await call(server, "PUT", f"/v1/tasks/{t['id']}/media/{mid}/state",
                          {"state": "CLOSED"})
    assert (st, p["code"]) == (409, "INVALID_TRANSITION")
    # Closed tasks stay readable; the agent holds none
    assert (await call(server, "GET", f"/v1/tasks/{t['id']}"))[0] == 200
    assert (await call(server, "GET", "/v1/agents/a1/tasks"))[2] == {"tasks": []}
    assert (await call(server, "GET", "/v1/conversations/unknown/tasks"))[2] == {"tasks": []}
    st, _, p = await call(server, "GET", "/v1/agents/ghost/tasks")
    assert (st, p["code"]) == (404, "NOT_FOUND")
    st, _, p = await call(server, "GET", "/v1/tasks/t-999999")
    assert (st, p["code"]) == (404, "NOT_FOUND")
    st, _, p = await call(server, "POST", "/v1/tasks", {"conversationId": "c", "queueId": "nope"})
    assert (st, p["code"]) == (404, "NOT_FOUND")
    await assert_invariants(server.engine)


async def test_task_state_wrap_up_and_close(server: Server) -> None:
    await setup(server, wrap_up=True)
    c = server.client
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    t = await c.accept(t.id, t.media.id, "a1")
    st, _, d = await call(server, "PUT", f"/v1/tasks/{t.id}/state", {"name": "WRAP_UP"})
    assert st == 200 and d["state"] == {"name": "WRAP_UP", "reasonCode": "DONE"}
    st, _, d = await call(server, "PUT", f"/v1/tasks/{t.id}/state",
                          {"name": "CLOSED", "reasonCode": "WRAP_UP_APPLIED"})
    assert st == 200 and d["state"] == {"name": "CLOSED", "reasonCode": "WRAP_UP_APPLIED"}
    st, _, p = await call(server, "PUT", f"/v1/tasks/{t.id}/state", {"name": "CLOSED"})
    assert (st, p["code"]) == (409, "INVALID_TRANSITION")
    st, _, p = await call(server, "PUT", "/v1/tasks/t-404/state", {"name": "CLOSED"})
    assert (st, p["code"]) == (404, "NOT_FOUND")
    await assert_invariants(server.engine)


async def test_pull_new_and_existing(server: Server) -> None:
    c = server.client
    await setup(server, max_requests=3, auto_join=False)
    await c.set_agent_state("a1", "LOGIN")
    st, _, t = await call(server, "POST", "/v1/agents/a1/tasks",
                          {"conversationId": "c9", "mrdId": "chat", "direction": "OUTBOUND"})
    assert st == 201
    assert t["type"] == {"direction": "OUTBOUND", "mode": "AGENT"}
    assert t["assignedTo"] == "a1" and t["activeMedia"][0]["state"] == "ACTIVE"
    # Not autoJoin: a new ACTIVE media on the same task, 200
    st, _, t2 = await call(server, "POST", "/v1/agents/a1/tasks",
                           {"conversationId": "c9", "mrdId": "chat"})
    assert st == 200 and t2["id"] == t["id"] and len(t2["activeMedia"]) == 2
    # autoJoin: the same task as it is, 200
    await c.put_mrd("chat", max_requests=3, auto_join=True)
    st, _, t3 = await call(server, "POST", "/v1/agents/a1/tasks",
                           {"conversationId": "c9", "mrdId": "chat"})
    assert st == 200 and t3["id"] == t["id"] and len(t3["activeMedia"]) == 2
    st, _, p = await call(server, "POST", "/v1/agents/ghost/tasks",
                          {"conversationId": "c9", "mrdId": "chat"})
    assert (st, p["code"]) == (404, "NOT_FOUND")
    await assert_invariants(server.engine)


async def test_conference_and_transfer(server: Server) -> None:
    c = server.client
    await setup(server, agents=("a1", "a2", "a3", "a4"))
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    await c.accept(t.id, t.media.id)
    await c.set_agent_state("a2", "READY")
    st, _, conf = await call(server, "POST", "/v1/conversations/c1/conference", {"queueId": "sales"})
    assert st == 201
    assert conf["type"] == {"direction": "DIRECT_CONFERENCE", "mode": "QUEUE"}
    assert conf["assignedTo"] == "a2"
    await c.set_agent_state("a3", "READY")
    st, _, conf2 = await call(server, "POST", "/v1/conversations/c1/conference",
                              {"agentId": "a3"})
    assert st == 201
    assert conf2["type"] == {"direction": "DIRECT_CONFERENCE", "mode": "AGENT"}
    assert conf2["assignedTo"] == "a3" and conf2["activeMedia"][0]["state"] == "RESERVED"
    st, _, p = await call(server, "POST", "/v1/conversations/c1/conference",
                          {"agentId": "a3", "queueId": "sales"})
    assert (st, p["code"]) == (422, "VALIDATION_ERROR")

    await c.set_agent_state("a4", "READY")
    st, _, tr = await call(server, "POST", "/v1/conversations/c1/transfer",
                           {"fromAgentId": "a1", "agentId": "a4"})
    assert st == 201, tr
    assert tr["type"] == {"direction": "DIRECT_TRANSFER", "mode": "AGENT"}
    assert tr["assignedTo"] == "a4" and tr["activeMedia"][0]["state"] == "RESERVED"
    old = await c.get_task(t.id)
    assert (old.state, old.reason_code) == ("CLOSED", "TRANSFERRED")
    st, _, p = await call(server, "POST", "/v1/conversations/c1/transfer",
                          {"fromAgentId": "a1", "queueId": "sales"})
    assert (st, p["code"]) == (409, "INVALID_TRANSITION")
    with pytest.raises(InvalidTransition):
        await c.transfer("c1", "a1", queue_id="sales")
    with pytest.raises(NotFound):
        await c.transfer("c1", "ghost", queue_id="sales")
    await assert_invariants(server.engine)


async def test_msgpack_bodies_and_responses(server: Server) -> None:
    body = msgpack.packb({"maxRequests": 2})
    async with aiohttp.ClientSession() as s:
        async with s.put(server.url + "/v1/mrds/voice", data=body,
                         headers={"Content-Type": "application/msgpack",
                                  "Accept": "application/msgpack"}) as r:
            assert r.status == 200 and r.content_type == "application/msgpack"
            assert msgpack.unpackb(await r.read())["maxRequests"] == 2
        async with s.get(server.url + "/v1/mrds/voice",
                         headers={"Accept": "application/json;q=0.5, application/msgpack"}) as r:
            assert r.content_type == "application/msgpack"
        async with s.get(server.url + "/v1/mrds/voice", headers={"Accept": "*/*"}) as r:
            assert r.content_type == "application/json"
    mc = server.client.__class__(server.url, use_msgpack=True)
    async with mc:
        await mc.put_queue("vq", mrd_id="voice")
        await mc.put_agent("va", queues=["vq"])
        await mc.set_agent_state("va", "READY")
        t = await mc.push_task("cv", "vq", metadata={"n": 1, "nested": {"x": [1, 2]}})
        assert t.assigned_to == "va" and t.metadata == {"n": 1, "nested": {"x": [1, 2]}}
        assert (await mc.get_task(t.id)).id == t.id
        with pytest.raises(NotFound):
            await mc.get_task("t-0")


async def test_tenants_are_isolated(server: Server) -> None:
    acme = server.client.for_tenant("acme")
    await acme.put_mrd("chat")
    st, _, _ = await call(server, "GET", "/v1/mrds/chat", headers={"X-Tenant": "acme"})
    assert st == 200
    st, _, _ = await call(server, "GET", "/v1/mrds/chat")
    assert st == 404
    assert await server.redis.exists(TenantKeys.of("acme").mrd("chat"))
    for bad in ("a{b}", "a:b", "", "-x"):
        st, ctype, p = await call(server, "GET", "/v1/mrds/chat", headers={"X-Tenant": bad})
        assert st == 422 and ctype == "application/problem+json"
        assert p["code"] == "VALIDATION_ERROR"


async def test_healthz_metrics_openapi(server: Server) -> None:
    st, _, h = await call(server, "GET", "/healthz")
    # No worker heartbeat yet, but this server does not require one
    assert st == 200 and h == {"status": "ok", "redis": True, "scripts": True,
                               "timerWorker": False}
    server.state.settings.require_timer_worker = True
    st, _, h = await call(server, "GET", "/healthz")
    assert st == 503 and h["status"] == "unavailable" and h["timerWorker"] is False
    await server.redis.set(HEARTBEAT, "w 1", px=5000)
    st, _, h = await call(server, "GET", "/healthz")
    assert st == 200 and h["timerWorker"] is True
    # Scripts flushed (a restarted Redis): healthz reloads them
    await server.redis.script_flush()
    st, _, h = await call(server, "GET", "/healthz")
    assert st == 200 and h["scripts"] is True

    await setup(server)
    await server.client.set_agent_state("a1", "READY")
    await server.client.push_task("c1", "sales")
    await server.client.push_task("c2", "sales")
    st, ctype, text = await call(server, "GET", "/metrics")
    assert st == 200 and ctype == "text/plain"
    assert 'redroute_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/tasks"}' in text
    assert 'redroute_http_responses_total{method="POST",route="/v1/tasks",status="201"} 2.0' in text
    assert 'redroute_queue_waiting{queue="sales",tenant="default"} 1.0' in text
    assert 'redroute_tasks{state="live",tenant="default"} 2.0' in text
    assert 'redroute_queue_agents{queue="sales",state="BUSY",tenant="default"} 1.0' in text
    assert "redroute_timer_lag_seconds_bucket" in text
    assert "redroute_redis_errors_total" in text or "redroute_redis_errors" in text

    st, ctype, doc = await call(server, "GET", "/openapi.json")
    assert st == 200 and doc["openapi"].startswith("3.1")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    for expected in [("PUT", "/v1/mrds/{mrdId}"), ("GET", "/v1/mrds/{mrdId}"),
                     ("PUT", "/v1/queues/{queueId}"), ("GET", "/v1/queues/{queueId}"),
                     ("PUT", "/v1/agents/{agentId}"), ("GET", "/v1/agents/{agentId}"),
                     ("POST", "/v1/agents/{agentId}/state"), ("POST", "/v1/tasks"),
                     ("POST", "/v1/agents/{agentId}/tasks"), ("GET", "/v1/agents/{agentId}/tasks"),
                     ("POST", "/v1/conversations/{conversationId}/conference"),
                     ("POST", "/v1/conversations/{conversationId}/transfer"),
                     ("GET", "/v1/conversations/{conversationId}/tasks"),
                     ("PUT", "/v1/tasks/{taskId}/media/{mediaId}/state"),
                     ("PUT", "/v1/tasks/{taskId}/state"), ("GET", "/v1/tasks/{taskId}"),
                     ("GET", "/v1/events"), ("GET", "/healthz"), ("GET", "/metrics"),
                     ("GET", "/openapi.json")]:
        assert expected in ops, expected


async def test_openapi_is_valid_openapi_31(server: Server) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    _, _, doc = await call(server, "GET", "/openapi.json")
    validator.validate(doc)


async def test_unknown_route_and_method(server: Server) -> None:
    st, ctype, p = await call(server, "GET", "/v1/nothing")
    assert (st, ctype, p["code"]) == (404, "application/problem+json", "NOT_FOUND")
    st, ctype, p = await call(server, "DELETE", "/v1/tasks/t-1")
    assert (st, ctype, p["code"]) == (405, "application/problem+json", "VALIDATION_ERROR")
