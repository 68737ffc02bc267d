"""Redis stops under a running server: requests answer 503 problem+json;
once Redis is back they succeed again, with no server restart (redis-py
reconnects, scripts reload on NOSCRIPT, the SSE reader resumes)."""

from __future__ import annotations

import asyncio
import shutil

import aiohttp

from redroute.backend import connect_service
from redroute.http import Settings
from tests.support.http import record, start_server
from tests.support.redis_server import free_port, start_redis


async def test_redis_outage_and_recovery() -> None:
    # A private Redis (not the session one) with AOF, so its data survives the restart
    rp = start_redis("--appendonly", "yes")
    redis = connect_service(rp.url)  # as `redroute serve` makes it
    srv = await start_server(redis, settings=Settings(sse_keepalive=0.3,
                                                      require_timer_worker=False))
    try:
        c = srv.client
        await c.put_mrd("chat")
        await c.put_queue("sales", mrd_id="chat")
        await c.put_agent("a1", queues=["sales"])
        rec = await record(srv)

        rp.stop()
        async with aiohttp.ClientSession() as s:
            for method, path, body in [
                ("GET", "/v1/mrds/chat", None),
                ("PUT", "/v1/mrds/voice", {"maxRequests": 2}),
                ("POST", "/v1/tasks", {"conversationId": "c1", "queueId": "sales"}),
                ("POST", "/v1/agents/a1/state", {"state": "READY"}),
                ("GET", "/v1/conversations/c1/tasks", None),
                ("GET", "/v1/events", None),
                ("GET", "/metrics", None),
            ]:
                async with s.request(method, srv.url + path, json=body) as r:
                    assert r.status == 503, (method, path, r.status)
                    assert r.content_type == "application/problem+json"
                    p = await r.json()
                    assert p["code"] == "REDIS_UNAVAILABLE" and p["status"] == 503
                    assert set(p) >= {"type", "title", "status", "detail", "code"}
            async with s.get(srv.url + "/healthz") as r:
                assert r.status == 503
                assert (await r.json())["redis"] is False
        # The SSE client is still connected (keep-alives), waiting
        assert not rec.task.done()

        rp.start()  # same port, same data directory: a fresh process, empty script cache
        for _ in range(50):
            async with aiohttp.ClientSession() as s, s.get(srv.url + "/healthz") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert (await c.get_mrd("chat")).id == "chat"  # data kept (AOF)
        await c.set_agent_state("a1", "READY")
        t = await c.push_task("c1", "sales")
        assert t.assigned_to == "a1"
        # The same SSE connection receives the new events
        stream = await srv.engine.events(rec.kwargs["after"])
        ev = await rec.wait_count(len(stream), timeout=10)
        assert [e.id for e in ev] == [e.id for e in stream]
        assert "AGENT_RESERVED" in [e.type for e in ev]
        text = await c.metrics()
        assert 'redroute_redis_errors_total{source="http"}' in text
        await rec.stop()
    finally:
        await srv.stop()
        await redis.aclose()
        rp.stop()
        shutil.rmtree(rp.dir, ignore_errors=True)


async def test_the_503_detail_says_redis_is_unavailable_once() -> None:
    redis = connect_service(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    srv = await start_server(redis, settings=Settings(require_timer_worker=False))
    try:
        async with aiohttp.ClientSession() as s:
            for method, path, body in [
                ("PUT", "/v1/mrds/chat", {}),  # the engine's RedisUnavailable
                ("GET", "/v1/events", None),  # a client ConnectionError
            ]:
                async with s.request(method, srv.url + path, json=body) as r:
                    assert r.status == 503
                    p = await r.json()
                assert p["title"] == "Redis unavailable"
                assert p["detail"].startswith("Redis is unavailable: "), p
                assert p["detail"].count("unavailable") == 1, p
    finally:
        await srv.stop()
        await redis.aclose()
