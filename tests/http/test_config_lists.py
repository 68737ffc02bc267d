"""Configuration lists and deletion over HTTP (docs/api.md, Configuration
lists and deletion): pages with limit and cursor, 204 on deletion, 404 when
absent, 409 naming what holds it, and bad input that changes nothing."""

from __future__ import annotations

import aiohttp
import pytest

from redroute.client import Client
from tests.support.http import Server, assert_invariants, server_fixture  # noqa: F401


async def call(srv: Server, method: str, path: str, body: object = None) -> tuple[int, str, object]:
    async with aiohttp.ClientSession() as s, s.request(method, srv.url + path, json=body) as r:
        text = await r.text()
        data = await r.json(content_type=None) if "json" in r.content_type and text else text
        return r.status, r.content_type, data


async def setup(c: Client) -> None:
    await c.put_mrd("chat")
    await c.put_mrd("voice")
    for q in ("support", "sales"):
        await c.put_queue(q, mrd_id="chat")
    for a in ("a3", "a1", "a2"):
        await c.put_agent(a, queues=["sales"])


async def test_lists_return_every_item_in_id_order_with_next_null(server: Server) -> None:
    await setup(server.client)

    st, ctype, mrds = await call(server, "GET", "/v1/mrds")
    assert (st, ctype) == (200, "application/json")
    assert mrds == {"mrds": [(await call(server, "GET", f"/v1/mrds/{m}"))[2] for m in ("chat", "voice")],
                    "next": None}
    _, _, queues = await call(server, "GET", "/v1/queues")
    assert queues == {"queues": [(await call(server, "GET", f"/v1/queues/{q}"))[2]
                                 for q in ("sales", "support")], "next": None}
    assert queues["queues"][0]["agents"] == {"LOGOUT": 3}  # with live statistics
    _, _, agents = await call(server, "GET", "/v1/agents")
    assert [a["id"] for a in agents["agents"]] == ["a1", "a2", "a3"] and agents["next"] is None
    assert agents["agents"][0] == (await call(server, "GET", "/v1/agents/a1"))[2]


async def test_a_list_pages_with_limit_and_cursor(server: Server) -> None:
    await setup(server.client)

    _, _, first = await call(server, "GET", "/v1/agents?limit=2")
    assert [a["id"] for a in first["agents"]] == ["a1", "a2"] and isinstance(first["next"], str)
    _, _, second = await call(server, "GET", f"/v1/agents?limit=2&cursor={first['next']}")
    assert [a["id"] for a in second["agents"]] == ["a3"] and second["next"] is None


async def test_the_client_pages_through_a_list(server: Server) -> None:
    await setup(server.client)
    c = server.client

    first = await c.list_agents(limit=1)
    rest = await c.list_agents(cursor=first.next)

    assert [a.id for a in first.items + rest.items] == ["a1", "a2", "a3"]
    assert (await c.list_queues()).items[0] == await c.get_queue("sales")
    assert [m.id for m in (await c.list_mrds()).items] == ["chat", "voice"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "limit=1.5", "cursor=!!",
                                   "cursor=YTo", "limt=5"])
async def test_a_bad_limit_or_cursor_is_a_422_naming_the_parameter(server: Server, query: str) -> None:
    await setup(server.client)

    st, ctype, p = await call(server, "GET", f"/v1/queues?{query}")

    assert (st, ctype) == (422, "application/problem+json")
    assert p["code"] == "VALIDATION_ERROR" and query.split("=")[0] in p["detail"]


async def test_limit_1000_is_allowed(server: Server) -> None:
    assert (await call(server, "GET", "/v1/mrds?limit=1000"))[0] == 200


async def test_delete_answers_204_and_the_resource_is_gone(server: Server) -> None:
    await setup(server.client)

    for path in ("/v1/agents/a1", "/v1/agents/a2", "/v1/agents/a3", "/v1/queues/sales",
                 "/v1/mrds/voice"):
        st, _, body = await call(server, "DELETE", path)
        assert (st, body) == (204, "")
        assert (await call(server, "GET", path))[0] == 404
    assert [m["id"] for m in (await call(server, "GET", "/v1/mrds"))[2]["mrds"]] == ["chat"]
    await assert_invariants(server.engine)


@pytest.mark.parametrize("path", ["/v1/mrds/nope", "/v1/queues/nope", "/v1/agents/nope"])
async def test_deleting_what_does_not_exist_is_404(server: Server, path: str) -> None:
    st, ctype, p = await call(server, "DELETE", path)
    assert (st, ctype, p["code"]) == (404, "application/problem+json", "NOT_FOUND")


async def test_deleting_what_is_still_held_is_409_naming_the_holder(server: Server) -> None:
    c = server.client
    await setup(c)
    await c.set_agent_state("a1", "READY")
    task = await c.push_task("c1", "sales")
    before = await call(server, "GET", "/v1/agents")

    for path, holder in [("/v1/mrds/chat", "queues sales, support"),
                         ("/v1/queues/sales", "agents a1, a2, a3"),
                         ("/v1/agents/a1", f"tasks {task.id}")]:
        st, ctype, p = await call(server, "DELETE", path)
        assert (st, ctype, p["code"]) == (409, "application/problem+json", "INVALID_TRANSITION")
        assert holder in p["detail"]
    assert await call(server, "GET", "/v1/agents") == before
    await assert_invariants(server.engine)


async def test_a_bad_id_in_a_delete_is_422_and_changes_nothing(server: Server) -> None:
    await setup(server.client)
    before = await call(server, "GET", "/v1/queues")

    st, _, p = await call(server, "DELETE", "/v1/queues/sa:les")

    assert (st, p["code"]) == (422, "VALIDATION_ERROR")
    assert await call(server, "GET", "/v1/queues") == before


async def test_an_agent_naming_an_unknown_queue_is_404(server: Server) -> None:
    await setup(server.client)

    st, _, p = await call(server, "PUT", "/v1/agents/a9", {"queues": ["sales", "nope"]})

    assert (st, p["code"]) == (404, "NOT_FOUND") and "queue nope" in p["detail"]
    assert (await call(server, "GET", "/v1/agents/a9"))[0] == 404


async def test_the_client_deletes(server: Server) -> None:
    c = server.client
    await setup(c)
    for a in ("a1", "a2", "a3"):
        await c.delete_agent(a)
    await c.delete_queue("sales")
    await c.delete_mrd("voice")
    assert [q.id for q in (await c.list_queues()).items] == ["support"]


async def test_openapi_lists_the_list_and_delete_operations(server: Server) -> None:
    _, _, doc = await call(server, "GET", "/openapi.json")
    for kind in ("mrds", "queues", "agents"):
        params = {p["name"] for p in doc["paths"][f"/v1/{kind}"]["get"]["parameters"]}
        assert {"limit", "cursor"} <= params
        one = next(p for p in doc["paths"] if p.startswith(f"/v1/{kind}/{{") and p.count("/") == 3)
        responses = doc["paths"][one]["delete"]["responses"]
        assert {"204", "404", "409"} <= responses.keys() and "content" not in responses["204"]
