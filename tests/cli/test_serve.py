"""`redroute serve` as a real process: embedded backend (one process, with
its in-process timer worker firing real deadlines), several processes on
real Redis sharing the port, JSON logs, graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import redis as syncredis

from redroute.client import Client
from redroute.keys import TenantKeys
from tests.support.http import serve_process as serve
from tests.support.redis_server import RedisProcess


def log_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


async def test_serve_embedded_with_timer_worker() -> None:
    with serve("--workers", "3") as (url, proc, log):
        async with Client(url) as c:
            assert (await c.healthz())["timerWorker"] is True
            await c.put_mrd("chat")
            await c.put_queue("sales", mrd_id="chat", agent_sla_ms=300)
            await c.put_agent("a1", queues=["sales"])
            await c.set_agent_state("a1", "READY")
            t = await c.push_task("c1", "sales")
            assert t.assigned_to == "a1"
            # The in-process worker fires the RONA deadline on its own
            for _ in range(50):
                t = await c.get_task(t.id)
                if t.state == "CLOSED":
                    break
                await asyncio.sleep(0.1)
            assert (t.state, t.reason_code) == ("CLOSED", "RONA")
            metrics = await c.metrics()
            assert "redroute_timer_fired_total 1.0" in metrics
            assert 'redroute_ronas_total{tenant="default"} 1.0' in metrics
            assert 'redroute_reservations_total{tenant="default"} 1.0' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        lines = log_lines(log)
        assert any("running 1 worker, not 3" in x["msg"] for x in lines)
        assert any(x.get("logger") == "redroute.access" and x.get("status") == 201 for x in lines)
        assert lines[-1]["msg"] == "stopped"


async def test_graceful_shutdown_ends_streams_and_finishes_requests(
    redis_server: RedisProcess,
) -> None:
    syncredis.Redis(port=redis_server.port).flushall()
    with serve(redis_url=redis_server.url) as (url, proc, log):
        async with aiohttp.ClientSession() as s, s.get(url + "/v1/events") as stream:
            assert stream.status == 200
            await stream.content.readline()
            # Requests whose handlers are running when SIGTERM arrives: Redis
            # holds their write scripts for a second (CLIENT PAUSE WRITE).
            syncredis.Redis(port=redis_server.port).execute_command("CLIENT", "PAUSE", 1500,
                                                                     "WRITE")
            pending = [asyncio.create_task(s.put(url + f"/v1/mrds/m{i}", json={}))
                       for i in range(5)]
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            done = await asyncio.gather(*pending, return_exceptions=True)
            assert [getattr(r, "status", r) for r in done] == [200] * 5
            # The SSE stream is ended by the server, not left hanging
            async with asyncio.timeout(10):
                while await stream.content.readline():
                    pass
        assert proc.wait(20) == 0
        assert any(x["msg"].startswith("shutting down") for x in log_lines(log))
        assert syncredis.Redis(port=redis_server.port).exists(TenantKeys.of("default").mrd("m4"))


async def test_serve_several_processes_on_real_redis(redis_server: RedisProcess) -> None:
    syncredis.Redis(port=redis_server.port).flushall()
    with serve("--workers", "2", redis_url=redis_server.url) as (url, proc, log):
        for _ in range(100):  # until both processes listen
            if sum(x["msg"].startswith("listening") for x in log_lines(log)) == 2:
                break
            await asyncio.sleep(0.1)
        # A new connection per request, so the kernel spreads them over the processes
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        async with session, Client(url, session=session) as c:
            await c.put_mrd("chat")
            for i in range(20):
                await c.put_queue(f"q{i}", mrd_id="chat")
            metrics = await c.metrics()
        # Each response counted once, whichever process answered the scrape
        assert 'redroute_http_responses_total{method="PUT",route="/v1/queues/{queueId}",status="200"} 20.0' in metrics
        pids = {x["pid"] for x in log_lines(log) if x.get("logger") == "redroute.access"}
        assert len(pids) == 2, "both processes served requests (SO_REUSEPORT)"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
