"""Bad input answers 4xx application/problem+json and changes nothing:
malformed JSON and MessagePack, unknown enum values and fields, wrong
types, ids with the key separator or hash-tag braces or newlines, bodies too
large or of another media type."""

from __future__ import annotations

import json

import aiohttp
import msgpack
import pytest
from yarl import URL

from tests.support.http import Server, server_fixture  # noqa: F401

J = "application/json"
M = "application/msgpack"


async def snapshot(srv: Server) -> dict[str, bytes | None]:
    keys = sorted(await srv.redis.keys("*"))
    out = {}
    for k in keys:
        # DUMP's serialized value is binary: read it undecoded
        out[k] = await srv.redis.execute_command("DUMP", k, NEVER_DECODE=True)
    return out


async def setup(srv: Server) -> None:
    c = srv.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    srv.task_id, srv.media_id = t.id, t.media.id  # type: ignore[attr-defined]


def body(value: object, ctype: str = J) -> tuple[bytes, str]:
    if ctype == M:
        return msgpack.packb(value), M
    return json.dumps(value).encode(), J


CASES: list[tuple[str, str, str, bytes | None, str | None, int]] = [
    # malformed bodies -> 400
    ("malformed JSON", "PUT", "/v1/mrds/chat", b'{"maxRequests": 1', J, 400),
    ("JSON array", "PUT", "/v1/mrds/chat", b"[1, 2]", J, 400),
    ("JSON string", "POST", "/v1/tasks", b'"x"', J, 400),
    ("empty body", "POST", "/v1/tasks", b"", J, 400),
    ("NaN", "PUT", "/v1/mrds/chat", b'{"maxRequests": NaN}', J, 400),
    ("invalid UTF-8", "POST", "/v1/tasks", b'{"conversationId": "\xff"}', J, 400),
    ("malformed msgpack", "PUT", "/v1/mrds/chat", b"\xc1", M, 400),
    ("truncated msgpack", "PUT", "/v1/mrds/chat", msgpack.packb({"maxRequests": 2})[:-1], M, 400),
    ("msgpack trailing bytes", "PUT", "/v1/mrds/chat", msgpack.packb({}) + b"\x01", M, 400),
    ("msgpack list", "PUT", "/v1/mrds/chat", msgpack.packb([1]), M, 400),
    # unknown enum values -> 422
    ("agent state", "POST", "/v1/agents/a1/state", *body({"state": "SLEEPING"}), 422),
    ("selection policy", "PUT", "/v1/queues/sales",
     *body({"mrdId": "chat", "agentSelectionPolicy": "RANDOM"}), 422),
    ("direction", "POST", "/v1/agents/a1/tasks",
     *body({"conversationId": "c2", "mrdId": "chat", "direction": "DIRECT_TRANSFER"}), 422),
    ("task state", "PUT", "/v1/tasks/{task}/state", *body({"name": "OPEN"}), 422),
    ("reason code", "PUT", "/v1/tasks/{task}/state",
     *body({"name": "CLOSED", "reasonCode": "BECAUSE"}), 422),
    ("media state", "PUT", "/v1/tasks/{task}/media/{media}/state",
     *body({"state": "RESERVED"}), 422),
    ("msgpack enum", "POST", "/v1/agents/a1/state", *body({"state": "NOPE"}, M), 422),
    # unknown fields, wrong types, out of range -> 422
    ("unknown field", "PUT", "/v1/mrds/chat", *body({"maxRequests": 2, "colour": "red"}), 422),
    ("nested unknown", "PUT", "/v1/mrds/chat", *body({"wrapUp": {"enabled": True, "x": 1}}), 422),
    ("string number", "POST", "/v1/tasks",
     *body({"conversationId": "c2", "queueId": "sales", "priority": "1"}), 422),
    ("float", "PUT", "/v1/mrds/chat", *body({"maxRequests": 1.5}), 422),
    ("bool as string", "PUT", "/v1/mrds/chat", *body({"autoJoin": "yes"}), 422),
    ("maxRequests 0", "PUT", "/v1/mrds/chat", *body({"maxRequests": 0}), 422),
    ("maxRequests 1001", "PUT", "/v1/mrds/chat", *body({"maxRequests": 1001}), 422),
    ("priority 101", "POST", "/v1/tasks",
     *body({"conversationId": "c2", "queueId": "sales", "priority": 101}), 422),
    ("metadata list", "POST", "/v1/tasks",
     *body({"conversationId": "c2", "queueId": "sales", "metadata": [1]}), 422),
    ("metadata too big", "POST", "/v1/tasks",
     *body({"conversationId": "c2", "queueId": "sales", "metadata": {"x": "y" * 70_000}}), 422),
    ("msgpack binary", "POST", "/v1/tasks",
     *body({"conversationId": "c2", "queueId": "sales", "metadata": {"b": b"\x00"}}, M), 422),
    ("msgpack int key", "POST", "/v1/tasks",
     *body({"conversationId": "c2", "queueId": "sales", "metadata": {1: 2}}, M), 422),
    ("missing field", "POST", "/v1/tasks", *body({"queueId": "sales"}), 422),
    ("both targets", "POST", "/v1/conversations/c1/transfer",
     *body({"fromAgentId": "a1", "queueId": "sales", "agentId": "a1"}), 422),
    ("no target", "POST", "/v1/conversations/c1/conference", *body({}), 422),
    # ids with the key separator, hash-tag braces, newlines, spaces
    ("id with {", "POST", "/v1/tasks", *body({"conversationId": "c{1", "queueId": "sales"}), 422),
    ("id with }", "POST", "/v1/tasks", *body({"conversationId": "c}1", "queueId": "sales"}), 422),
    ("id with :", "POST", "/v1/tasks", *body({"conversationId": "c:1", "queueId": "sales"}), 422),
    ("id with newline", "POST", "/v1/tasks",
     *body({"conversationId": "c1\n", "queueId": "sales"}), 422),
    ("id with space", "PUT", "/v1/agents/a1", *body({"queues": ["sa les"]}), 422),
    ("queue list id", "PUT", "/v1/agents/a1", *body({"queues": ["rr:{x}"]}), 422),
    ("maxRequests key", "PUT", "/v1/agents/a1", *body({"maxRequests": {"a:b": 1}}), 422),
    ("path {", "PUT", "/v1/mrds/a%7Bb", *body({"maxRequests": 2}), 422),
    ("path }", "PUT", "/v1/mrds/a%7Db", *body({"maxRequests": 2}), 422),
    ("path :", "PUT", "/v1/mrds/a:b", *body({"maxRequests": 2}), 422),
    ("path newline", "PUT", "/v1/agents/a%0A", *body({"queues": []}), 422),
    ("path trailing newline", "GET", "/v1/tasks/t-1%0A", None, None, 422),
    ("path tab", "POST", "/v1/agents/a%09/state", *body({"state": "READY"}), 422),
    ("path unicode", "GET", "/v1/mrds/%C3%A9", None, None, 422),
    # media types and sizes
    ("form body", "PUT", "/v1/mrds/chat", b"maxRequests=2", "application/x-www-form-urlencoded", 415),
    ("xml body", "PUT", "/v1/mrds/chat", b"<mrd/>", "text/xml", 415),
    ("too large", "POST", "/v1/tasks", b'{"x": "' + b"y" * 300_000 + b'"}', J, 413),
]


@pytest.mark.parametrize("name,method,path,data,ctype,status", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_changes_nothing(
    server: Server, name: str, method: str, path: str, data: bytes | None, ctype: str | None,
    status: int,
) -> None:
    await setup(server)
    path = path.format(task=server.task_id, media=server.media_id)  # type: ignore[attr-defined]
    before = await snapshot(server)
    headers = {"Content-Type": ctype} if ctype else {}
    async with aiohttp.ClientSession() as s, s.request(
            method, URL(server.url + path, encoded=True), data=data, headers=headers) as r:
        assert r.status == status, await r.text()
        assert r.content_type == "application/problem+json"
        p = await r.json()
    assert p["status"] == status and p["code"] == "VALIDATION_ERROR"
    assert set(p) >= {"type", "title", "status", "detail", "code"}
    assert isinstance(p["detail"], str) and p["detail"]
    assert await snapshot(server) == before, "bad input changed state"
