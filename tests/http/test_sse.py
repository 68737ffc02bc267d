"""GET /v1/events: resume after Last-Event-ID with no gap and no duplicate,
one Redis reader per tenant, slow clients dropped, keep-alives, filters."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
import pytest
import redis.asyncio as aioredis

from redroute.client import Client, parse_sse
from redroute.http import Settings
from tests.support.http import Server, record, server_fixture, start_server, tail  # noqa: F401
from tests.support.redis_server import RedisProcess


async def setup(c: Client, agents: int = 1) -> None:
    await c.put_mrd("chat", max_requests=1000)
    await c.put_queue("sales", mrd_id="chat")
    for i in range(agents):
        await c.put_agent(f"a{i}", queues=["sales"])


async def churn(c: Client, n: int, delay: float = 0.0) -> None:
    """n pushes (each a few events) while an agent takes them."""
    for i in range(n):
        await c.push_task(f"c{i}", "sales")
        if delay:
            await asyncio.sleep(delay)


async def test_disconnect_and_resume_exactly_once_in_order(server: Server) -> None:
    c = server.client
    await setup(c)
    await c.set_agent_state("a0", "READY")
    start = await tail(server.engine)
    producer = asyncio.create_task(churn(c, 150, 0.002))
    received: list[str] = []
    after = start
    # Read a few events, drop the connection mid-stream, resume; five times.
    for _ in range(5):
        got = 0
        async for e in c.events(after=after):
            received.append(e.id)
            after = e.id
            got += 1
            if got == 40:
                break  # closes the connection with events still flowing
    await producer
    async for e in c.events(after=after):
        received.append(e.id)
        if e.id == await tail(server.engine):
            break
    expected = [e.id for e in await server.engine.events(start)]
    assert len(received) == len(set(received)), "an event came twice"
    assert received == expected


async def test_resume_by_query_parameter_and_header_wins(server: Server) -> None:
    c = server.client
    await setup(c, agents=3)
    ids = [e.id for e in await server.engine.events()]
    assert len(ids) >= 2
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + "/v1/events", params={"lastEventId": ids[0]}) as r:
            got = []
            async for eid, _etype, _data in parse_sse(r.content):
                got.append(eid)
                if len(got) == len(ids) - 1:
                    break
        assert got == ids[1:]
        async with s.get(server.url + "/v1/events", params={"lastEventId": "0"},
                         headers={"Last-Event-ID": ids[-2]}) as r:
            async for eid, _etype, _data in parse_sse(r.content):
                assert eid == ids[-1]
                break


async def test_without_last_event_id_only_new_events(server: Server) -> None:
    c = server.client
    await setup(c)
    async with aiohttp.ClientSession() as s, s.get(server.url + "/v1/events") as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        await asyncio.sleep(0.2)
        await c.put_agent("late", queues=["sales"])
        async for eid, etype, data in parse_sse(r.content):
            assert etype == "AGENT_STATE_CHANGED" and '"id":"late"' in data
            assert eid == await tail(server.engine)
            break


async def test_one_redis_reader_per_tenant(server: Server) -> None:
    c = server.client
    await setup(c)
    await c.set_agent_state("a0", "READY")
    recs = [await record(server) for _ in range(6)]
    other = c.for_tenant("other")
    recs.append(await record(server, other))
    await churn(c, 10)
    n = len(await server.engine.events(recs[0].kwargs["after"]))
    for r in recs[:6]:
        assert [e.id for e in await r.wait_count(n)] == [e.id for e in recs[0].events]
    hub = server.state.hub
    assert set(hub.feeds) == {"default", "other"}
    assert len(hub.feeds["default"].subscribers) == 6
    # Redis sees one blocked XREAD per tenant, not one per client
    clients = await server.redis.client_list()
    xreads = [cl for cl in clients if cl.get("cmd") == "xread"]
    assert len(xreads) <= 2
    for r in recs:
        await r.stop()


async def test_keepalive_comments(server: Server) -> None:
    async with aiohttp.ClientSession() as s, s.get(server.url + "/v1/events") as r:
        lines = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                async for line in r.content:
                    lines.append(line)
                    if line.startswith(b": keep-alive"):
                        break
        assert b": keep-alive\n" in lines
        assert lines[0] == b"retry: 1000\n"


async def test_filters(server: Server) -> None:
    c = server.client
    await setup(c, agents=2)
    await c.put_queue("support", mrd_id="chat")
    await c.put_agent("s1", queues=["support"])
    by_type = await record(server, types=["AGENT_RESERVED"])
    by_agent = await record(server, agent_id="a1")
    by_queue = await record(server, queue_id="support")
    by_conv = await record(server, conversation_id="c-x")
    await c.set_agent_state("a0", "READY")
    await c.set_agent_state("a1", "READY")
    await c.set_agent_state("s1", "READY")
    t1 = await c.push_task("c-x", "sales")
    t2 = await c.push_task("c-y", "sales")
    t3 = await c.push_task("c-z", "support")
    ev = await by_type.wait_count(3)
    assert [(e.type, e.task["id"]) for e in ev] == [
        ("AGENT_RESERVED", t1.id), ("AGENT_RESERVED", t2.id), ("AGENT_RESERVED", t3.id)]
    ev = await by_agent.wait(lambda ev: any(e.type == "AGENT_RESERVED" for e in ev))
    assert all(e.agent_id == "a1" for e in ev)
    ev = await by_queue.wait(lambda ev: any(e.type == "AGENT_RESERVED" for e in ev))
    assert all("support" in e.queue_ids for e in ev)
    assert {e.type.value for e in ev} >= {"AGENT_STATE_CHANGED", "TASK_STATE_CHANGED"}
    ev = await by_conv.wait(lambda ev: any(e.type == "AGENT_RESERVED" for e in ev))
    assert {e.conversation_id for e in ev} == {"c-x"}
    for r in (by_type, by_agent, by_queue, by_conv):
        await r.stop()


@pytest.mark.parametrize("params,headers", [
    ({"type": "NOPE"}, {}),
    ({"agentId": "a{b}"}, {}),
    ({"conversationId": "a:b"}, {}),
    ({"lastEventId": "abc"}, {}),
    ({}, {"Last-Event-ID": "1-2-3"}),
    ({}, {"X-Tenant": "bad{tenant}"}),
])
async def test_bad_parameters(server: Server, params: dict, headers: dict) -> None:
    async with aiohttp.ClientSession() as s, s.get(server.url + "/v1/events", params=params,
                                                   headers=headers) as r:
        assert r.status == 422 and r.content_type == "application/problem+json"
        assert (await r.json())["code"] == "VALIDATION_ERROR"


async def test_slow_client_is_dropped(redis_server: RedisProcess) -> None:
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    srv = await start_server(redis, settings=Settings(
        sse_keepalive=0.5, sse_queue_size=8, require_timer_worker=False))
    try:
        c = srv.client
        await setup(c)
        port = int(srv.url.rsplit(":", 1)[1])
        # A client that connects and never reads
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        fast = await record(srv)
        for _ in range(100):
            if srv.state.hub.clients >= 2:
                break
            await asyncio.sleep(0.02)
        assert srv.state.hub.clients == 2
        big = {"blob": "x" * 60_000}
        dropped = False
        for i in range(300):
            await c.push_task(f"c{i}", "sales", metadata=big)
            if srv.state.hub.clients == 1:
                dropped = True
                break
        assert dropped, "the slow client was never dropped"
        # The fast client is still served, and sees everything
        n = len(await srv.engine.events(fast.kwargs["after"]))
        await fast.wait_count(n, timeout=10)
        text = await c.metrics()
        assert "redroute_sse_dropped_clients_total 1.0" in text
        # Its handler is gone too (the connection was closed under it)
        for _ in range(100):
            if "redroute_sse_clients 1.0" in await c.metrics():
                break
            await asyncio.sleep(0.05)
        assert "redroute_sse_clients 1.0" in await c.metrics()
        await fast.stop()
        sock.close()
    finally:
        await srv.stop()
        await redis.aclose()


async def test_resume_from_a_trimmed_id_is_told_of_the_gap(redis_server: RedisProcess) -> None:
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    srv = await start_server(redis, settings=Settings(sse_keepalive=0.5, require_timer_worker=False,
                                                      events_maxlen=10))
    try:
        await setup(srv.client, agents=0)
        await churn(srv.client, 1)
        old = (await srv.engine.events())[0].id
        await churn(srv.client, 300)  # far past the stream's MAXLEN ~ 10
        await redis.xtrim(srv.engine.events_key, maxlen=10, approximate=False)
        async with aiohttp.ClientSession() as s, s.get(
            srv.url + "/v1/events", headers={"Last-Event-ID": old}
        ) as r:
            head = b""
            async with asyncio.timeout(5):
                async for line in r.content:
                    head += line
                    if b"STREAM_GAP" in head and head.endswith(b"\n\n"):
                        break
        assert b"event: STREAM_GAP\n" in head
        assert old.encode() in head
    finally:
        await srv.stop()
        await redis.aclose()


async def test_resume_within_retention_has_no_gap_event(server: Server) -> None:
    await setup(server.client, agents=0)
    await churn(server.client, 1)
    first = (await server.engine.events())[0].id
    await churn(server.client, 3)
    async with aiohttp.ClientSession() as s, s.get(
        server.url + "/v1/events", headers={"Last-Event-ID": first}
    ) as r:
        lines = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                async for line in r.content:
                    lines.append(line)
    assert not any(b"STREAM_GAP" in x for x in lines)
    assert any(x.startswith(b"event: TASK_STATE_CHANGED") for x in lines)


@pytest.mark.parametrize("params,headers,named", [
    ({"lastEventId": "banana"}, {}, "query.lastEventId"),
    ({}, {"Last-Event-ID": "banana"}, "header Last-Event-ID"),
    ({"agentId": "a{b}"}, {}, "query.agentId"),
])
async def test_a_bad_parameter_is_named_in_the_problem(server: Server, params: dict,
                                                       headers: dict, named: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(server.url + "/v1/events", params=params,
                                                   headers=headers) as r:
        assert r.status == 422
        problem = await r.json()
    assert problem["detail"].startswith(f"{named}: ")
    assert [e["loc"] for e in problem["errors"]] == [named]


async def sse_clients(c: Client) -> float:
    line = next(x for x in (await c.metrics()).splitlines()
                if x.startswith("redroute_sse_clients "))
    return float(line.split()[1])


async def test_the_client_gauge_drops_when_the_client_leaves_not_at_the_next_keepalive(
        redis_server: RedisProcess) -> None:
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    srv = await start_server(redis, settings=Settings(sse_keepalive=60,
                                                      require_timer_worker=False))
    try:
        async with aiohttp.ClientSession() as s:
            r = await s.get(srv.url + "/v1/events")
            assert await r.content.readline() == b"retry: 1000\n"
            for _ in range(100):
                if srv.state.hub.clients == 1:
                    break
                await asyncio.sleep(0.01)
            assert await sse_clients(srv.client) == 1
            r.close()  # the client goes away, with no event and no keep-alive due
        left = asyncio.get_running_loop().time()
        while await sse_clients(srv.client) != 0:
            assert asyncio.get_running_loop().time() - left < 2, "the gauge did not drop"
            await asyncio.sleep(0.05)
        assert srv.state.hub.clients == 0
    finally:
        await srv.stop()
        await redis.aclose()
