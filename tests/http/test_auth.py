"""Bearer API keys: 401 without or with a wrong key, a key of tenant A never
reads or changes tenant B (403, Redis untouched), ops endpoints open or
protected by configuration, constant-time comparison of keys."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from redroute.client import Client
from redroute.errors import RedrouteError
from redroute.http import Settings
from redroute.http import auth as auth_mod
from redroute.http.auth import ApiKeyError, KeyRing, load_api_keys, parse_env_keys, parse_keys_file
from tests.support.http import Server, server_fixture, start_server  # noqa: F401
from tests.support.redis_server import RedisProcess

KEYS = {"key-a-0123456789": "tenantA", "key-b-9876543210": "tenantB"}
A = {"Authorization": "Bearer key-a-0123456789"}
B = {"Authorization": "Bearer key-b-9876543210"}


async def _server(redis_server: RedisProcess, **kw: Any) -> AsyncIterator[Server]:
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    srv = await start_server(redis, settings=Settings(
        sse_keepalive=0.5, require_timer_worker=False, api_keys=dict(KEYS), **kw))
    yield srv
    await srv.stop()
    await redis.aclose()


@pytest.fixture(name="secured")
async def secured_fixture(redis_server: RedisProcess) -> AsyncIterator[Server]:
    async for s in _server(redis_server):
        yield s


@pytest.fixture(name="protected")
async def protected_fixture(redis_server: RedisProcess) -> AsyncIterator[Server]:
    async for s in _server(redis_server, protect_ops=True):
        yield s


async def call(srv: Server, method: str, path: str, headers: dict[str, str] | None = None,
               body: Any = None) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.request(
            method, srv.url + path, headers=headers or {},
            json=body if body is not None else None) as r:
        ctype = r.content_type
        data = await r.json(content_type=None) if "json" in ctype else await r.text()
        return r.status, dict(r.headers), data


async def setup_b(srv: Server) -> dict[str, Any]:
    """Tenant B's configuration and a task, through B's own key."""
    async with Client(srv.url, tenant="tenantB", api_key="key-b-9876543210") as c:
        await c.put_mrd("chat")
        await c.put_queue("sales", mrd_id="chat")
        await c.put_agent("a1", queues=["sales"])
        await c.set_agent_state("a1", "READY")
        t = await c.push_task("c1", "sales")
    return {"task": t.id, "media": t.media.id}


async def snapshot(redis: aioredis.Redis, pattern: str) -> dict[str, Any]:
    out = {}
    async for k in redis.scan_iter(match=pattern, count=1000):
        out[k] = await redis.execute_command("DUMP", k, NEVER_DECODE=True)
    return out


async def test_no_key_is_401(secured: Server) -> None:
    status, headers, p = await call(secured, "GET", "/v1/mrds/chat")
    assert status == 401 and p["code"] == "UNAUTHORIZED"
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    # the same for writes and the event stream
    for method, path in (("PUT", "/v1/mrds/chat"), ("POST", "/v1/tasks"), ("GET", "/v1/events"),
                         ("GET", "/v1/nowhere")):
        status, _, p = await call(secured, method, path, body={"maxRequests": 1})
        assert status == 401 and p["code"] == "UNAUTHORIZED", (method, path)
    assert await secured.redis.dbsize() == 0


@pytest.mark.parametrize("auth", [
    "Bearer wrong", "Bearer key-a-012345678", "Bearer key-a-0123456789x", "Basic a2V5LWE=",
    "Bearer", "Bearer ", "key-a-0123456789", "Token key-a-0123456789", "Bearer \u00e9",
])
async def test_wrong_key_is_401(secured: Server, auth: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(
            secured.url + "/v1/mrds/chat",
            headers={"Authorization": auth.encode().decode("latin-1")}) as r:
        assert r.status == 401
        assert r.content_type == "application/problem+json"
        assert (await r.json())["code"] == "UNAUTHORIZED"
        assert "WWW-Authenticate" in r.headers


async def test_key_of_a_reads_and_writes_a(secured: Server) -> None:
    status, _, body = await call(secured, "PUT", "/v1/mrds/chat", A, {"maxRequests": 2})
    assert status == 200 and body["maxRequests"] == 2
    status, _, body = await call(secured, "GET", "/v1/mrds/chat", {**A, "X-Tenant": "tenantA"})
    assert status == 200 and body["id"] == "chat"
    assert any("{tenantA}" in k for k in await secured.redis.keys("*"))
    assert not [k for k in await secured.redis.keys("*") if "{default}" in k]
    # B cannot see A's MRD: it lives in A's keys only
    status, _, p = await call(secured, "GET", "/v1/mrds/chat", B)
    assert status == 404 and p["code"] == "NOT_FOUND"
    # the bearer scheme is case-insensitive
    status, _, _ = await call(secured, "GET", "/v1/mrds/chat",
                              {"Authorization": "bearer key-a-0123456789"})
    assert status == 200


async def test_key_of_a_never_touches_b(secured: Server) -> None:
    ids = await setup_b(secured)
    t, m = ids["task"], ids["media"]
    before = await snapshot(secured.redis, "*")
    events_key = secured.engine.for_tenant("tenantB").events_key
    stream_len = await secured.redis.xlen(events_key)
    assert stream_len > 0
    b_keys = [k for k in before if "{tenantB}" in k]
    assert b_keys
    requests: list[tuple[str, str, Any]] = [
        ("GET", "/v1/mrds/chat", None),
        ("PUT", "/v1/mrds/chat", {"maxRequests": 5}),
        ("GET", "/v1/queues/sales", None),
        ("PUT", "/v1/queues/sales", {"mrdId": "chat"}),
        ("GET", "/v1/agents/a1", None),
        ("PUT", "/v1/agents/a1", {"queues": []}),
        ("POST", "/v1/agents/a1/state", {"state": "NOT_READY"}),
        ("GET", "/v1/agents/a1/tasks", None),
        ("POST", "/v1/tasks", {"conversationId": "c9", "queueId": "sales"}),
        ("POST", "/v1/agents/a1/tasks", {"conversationId": "c8", "mrdId": "chat"}),
        ("POST", "/v1/conversations/c1/conference", {"queueId": "sales"}),
        ("POST", "/v1/conversations/c1/transfer", {"fromAgentId": "a1", "queueId": "sales"}),
        ("GET", "/v1/conversations/c1/tasks", None),
        ("PUT", f"/v1/tasks/{t}/media/{m}/state", {"state": "ACTIVE", "agentId": "a1"}),
        ("PUT", f"/v1/tasks/{t}/state", {"name": "CLOSED"}),
        ("GET", f"/v1/tasks/{t}", None),
        ("GET", "/v1/events", None),
    ]
    for tenant_header in ("tenantB", "tenantb", "TenantB", "default", "tenantB ", "{tenantB}"):
        for method, path, body in requests:
            status, _, p = await call(secured, method, path, {**A, "X-Tenant": tenant_header},
                                      body)
            assert status == 403, (tenant_header, method, path, status, p)
            assert p["code"] == "FORBIDDEN"
    # A's key without X-Tenant works on A's (empty) tenant: B's ids are not found
    for method, path, _body in requests:
        if method == "GET" and path != "/v1/events":
            status, _, p = await call(secured, method, path, A)
            assert status in (200, 404), (method, path, status)
            if status == 200:  # list endpoints: empty for A
                assert p == {"tasks": []}
    after = await snapshot(secured.redis, "*")
    assert {k: v for k, v in after.items() if "{tenantB}" in k} == \
        {k: v for k, v in before.items() if "{tenantB}" in k}
    assert await secured.redis.xlen(events_key) == stream_len
    # and B's own key still reads its task
    status, _, body = await call(secured, "GET", f"/v1/tasks/{t}", B)
    assert status == 200 and body["id"] == t


async def test_ops_open_by_default(secured: Server) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json"):
        status, _, _ = await call(secured, "GET", path)
        assert status == 200, path
    _, _, doc = await call(secured, "GET", "/openapi.json")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []


async def test_ops_protected_when_configured(protected: Server) -> None:
    for path in ("/healthz", "/metrics"):
        status, headers, p = await call(protected, "GET", path)
        assert status == 401 and p["code"] == "UNAUTHORIZED", path
        assert "WWW-Authenticate" in headers
        status, _, _ = await call(protected, "GET", path, {"Authorization": "Bearer nope"})
        assert status == 401
        for key in (A, B):  # any valid key
            status, _, _ = await call(protected, "GET", path, key)
            assert status == 200, path
    status, _, doc = await call(protected, "GET", "/openapi.json")
    assert status == 200 and "security" not in doc["paths"]["/healthz"]["get"]


async def test_no_keys_no_auth(server: Server) -> None:
    status, _, _ = await call(server, "PUT", "/v1/mrds/chat", {"X-Tenant": "t1"},
                              {"maxRequests": 1})
    assert status == 200
    _, _, doc = await call(server, "GET", "/openapi.json")
    assert "security" not in doc and "securitySchemes" not in doc["components"]


# The comparison itself

def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing.from_map({f"k{i}": f"t{i}" for i in range(5)})
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    for presented, tenant in (("k0", "t0"), ("k4", "t4"), ("nope", None), ("", None)):
        calls.clear()
        assert ring.tenant_for(presented) == tenant
        assert len(calls) == 5  # every key, wherever the match is: no early exit
        # digests of equal length are compared, never the raw keys
        assert all(len(a) == len(b) == 32 for a, b in calls)
    assert "k0" not in repr(ring)  # only digests are kept


def test_key_formats(tmp_path: Path) -> None:
    assert parse_env_keys("tenantA:key1, tenantB:key:2,") == {"key1": "tenantA",
                                                              "key:2": "tenantB"}
    assert parse_keys_file('{"k1": "a", "k2": "b"}') == {"k1": "a", "k2": "b"}
    for bad in ("nokey", "ten{ant}:k", "a:", "a:k k", ":k"):
        with pytest.raises(ApiKeyError):
            parse_env_keys(bad)
    for bad in ("[]", "{", '{"k": 1}', '{"": "a"}', '{"k": "a:b"}'):
        with pytest.raises(ApiKeyError):
            parse_keys_file(bad)
    with pytest.raises(ApiKeyError):
        parse_env_keys("a:k,b:k")  # one key, two tenants
    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"fk": "filetenant"}))
    assert load_api_keys(None, {"REDROUTE_API_KEYS_FILE": str(f),
                                "REDROUTE_API_KEYS": "envtenant:ek"}) == {
        "fk": "filetenant", "ek": "envtenant"}
    assert load_api_keys(str(f), {}) == {"fk": "filetenant"}
    assert load_api_keys(None, {}) == {}


def test_serve_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from redroute.cli.serve import add_arguments, settings_from_args

    f = tmp_path / "keys.json"
    f.write_text(json.dumps({"fk": "filetenant"}))
    monkeypatch.delenv("REDROUTE_API_KEYS", raising=False)
    monkeypatch.delenv("REDROUTE_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("REDROUTE_PROTECT_OPS", raising=False)
    p = argparse.ArgumentParser()
    add_arguments(p)
    p.add_argument("--redis-url", default=None)
    p.add_argument("--log-level", default="INFO")
    cfg = settings_from_args(p.parse_args(["--api-keys-file", str(f), "--protect-ops"]))
    assert cfg.api_keys == {"fk": "filetenant"} and cfg.protect_ops
    cfg = settings_from_args(p.parse_args([]))
    assert cfg.api_keys is None and not cfg.protect_ops
    monkeypatch.setenv("REDROUTE_API_KEYS", "t1:k1")
    monkeypatch.setenv("REDROUTE_PROTECT_OPS", "1")
    p = argparse.ArgumentParser()
    add_arguments(p)
    p.add_argument("--redis-url", default=None)
    p.add_argument("--log-level", default="INFO")
    cfg = settings_from_args(p.parse_args([]))
    assert cfg.api_keys == {"k1": "t1"} and cfg.protect_ops


async def test_client_api_key_authenticates_calls_and_the_event_stream(secured: Server) -> None:
    async with Client(secured.url, tenant="tenantA", api_key="key-a-0123456789") as c:
        stream = c.events(types=["AGENT_STATE_CHANGED"])
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)  # the stream is open before the change
        await c.put_mrd("chat")
        await c.put_queue("sales", mrd_id="chat")
        await c.put_agent("a1", queues=["sales"])
        await c.set_agent_state("a1", "READY")
        event = await asyncio.wait_for(first, 5)
        await stream.aclose()
        assert event.type == "AGENT_STATE_CHANGED" and event.agent["id"] == "a1"
        assert (await c.get_mrd("chat")).id == "chat"
    async with Client(secured.url, tenant="tenantA", api_key="not-a-key-0000000") as wrong:
        with pytest.raises(RedrouteError) as e:
            await wrong.get_mrd("chat")
        assert e.value.http_status == 401  # type: ignore[attr-defined]
