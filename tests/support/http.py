"""Fixtures and helpers for the HTTP tests: a real server over real sockets
(aiohttp AppRunner + TCPSite on a free port) on the suite's redis-server,
the async client, and an SSE recorder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from localredis import free_port
from redroute import Engine
from redroute.checks.invariants import check
from redroute.client import Client
from redroute.events import Event
from redroute.http import Settings, create_app
from redroute.http.app import STATE, State
from redroute.keys import HEARTBEAT
from redroute.timers import TimerWorker
from redroute.webhooks.dispatcher import Dispatcher

from .redis_server import RedisProcess


@dataclass
class Server:
    url: str
    redis: aioredis.Redis
    engine: Engine  # the "default" tenant, on the server's Redis
    client: Client
    app: web.Application
    runner: web.AppRunner

    @property
    def state(self) -> State:
        return self.app[STATE]

    async def stop(self) -> None:
        await self.client.close()
        await self.runner.cleanup()


async def start_server(redis: aioredis.Redis, *, settings: Settings | None = None,
                       worker: TimerWorker | None = None,
                       dispatcher: Dispatcher | None = None) -> Server:
    settings = settings or Settings(sse_keepalive=0.5, require_timer_worker=False)
    app = create_app(redis, settings=settings, timer_worker=worker, dispatcher=dispatcher)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    return Server(url, redis, Engine(redis, "default"), Client(url), app, runner)


@pytest.fixture(name="server")
async def server_fixture(redis_server: RedisProcess) -> AsyncIterator[Server]:
    """A server on the suite's (flushed) redis-server, no timer worker:
    tests let time pass with engine.advance_clock + fire_due."""
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    srv = await start_server(redis)
    yield srv
    await srv.stop()
    await redis.aclose()


async def assert_invariants(engine: Engine) -> None:
    report = await check(engine)
    assert report.ok, "invariants violated:\n" + "\n".join(report.violations)


@dataclass
class Recorder:
    """Collects the events an SSE client receives, in the background."""

    client: Client
    kwargs: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _run(self) -> None:
        async for e in self.client.events(**self.kwargs):
            self.events.append(e)
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, pred: Callable[[list[Event]], bool], timeout: float = 5.0) -> list[Event]:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: pred(self.events))
        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(f"events not as expected after {timeout}s: "
                                 f"{[e.type.value for e in self.events]}") from None
        return self.events

    async def wait_count(self, n: int, timeout: float = 5.0) -> list[Event]:
        return await self.wait(lambda ev: len(ev) >= n, timeout)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def record(srv: Server, client: Client | None = None, **kwargs: Any) -> Recorder:
    """Starts an SSE client reading from the stream's current end (so no
    event published after this call can be missed, however late the client
    actually connects)."""
    kwargs.setdefault("after", await tail(srv.engine if client is None
                                          else srv.engine.for_tenant(client.tenant)))
    before = srv.state.hub.clients
    rec = Recorder(client or srv.client, kwargs)
    rec.task = asyncio.create_task(rec._run())
    for _ in range(200):  # until the server has subscribed it
        if srv.state.hub.clients > before or rec.task.done():
            break
        await asyncio.sleep(0.01)
    return rec


async def tail(engine: Engine) -> str:
    last = await engine.redis.xrevrange(engine.events_key, "+", "-", count=1)
    return last[0][0] if last else "0-0"


class ThreadServer:
    """The server on its own event loop in a thread, for synchronous clients
    (schemathesis, curl); `with ThreadServer(url) as base_url: ...`."""

    def __init__(self, redis_url: str, settings: Settings | None = None, *,
                 timer_worker: bool = False) -> None:
        import threading

        self.redis_url = redis_url
        self.settings = settings
        self.timer_worker = timer_worker
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to the caller of __enter__
            self.error = e
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        from redroute.backend import connect_service

        redis = connect_service(self.redis_url)
        worker = TimerWorker(redis) if self.timer_worker else None
        srv = await start_server(redis, settings=self.settings, worker=worker)
        self.url = srv.url
        self._stop = asyncio.Event()
        if worker is not None:  # healthy once its first heartbeat is written
            for _ in range(100):
                if await redis.exists(HEARTBEAT):
                    break
                await asyncio.sleep(0.02)
        self._ready.set()
        await self._stop.wait()
        await srv.stop()
        await redis.aclose()

    def __enter__(self) -> str:
        self._thread.start()
        self._ready.wait(10)
        if self.error is not None:
            raise self.error
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextlib.contextmanager
def serve_process(*args: str, redis_url: str | None = None, env: dict[str, str] | None = None,
                  ) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`python -m redroute.cli serve` on a free port until /healthz answers 200;
    SIGTERM (then kill) when the block ends."""
    port = free_port()
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"redroute-serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "redroute.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--sse-keepalive", "0.5", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url, proc):
            raise AssertionError(f"server did not start:\n{log.read_text()}")
        yield url, proc, log
    finally:
        stop_process(proc)
        log.unlink(missing_ok=True)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 20) -> bool:
    """Whether the server at url answers /healthz with 200 before it exits
    or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> bool:
    """SIGTERM, and a kill when that has not stopped it within timeout;
    whether SIGTERM did (or it had already stopped)."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
async def call(srv: Server, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One JSON request to the server: (status, decoded body)."""
    async with aiohttp.ClientSession() as s, s.request(method, srv.url + path, json=body) as r:
        return r.status, await r.json(content_type=None)


async def full_snapshot(srv: Server) -> dict[str, tuple[str, bytes | None]]:
    """Every key: its type and DUMP (the server's own heartbeat excluded:
    none runs in this fixture, but it may change legitimately)."""
    out = {}
    async for k in srv.redis.scan_iter(match="*", count=1000):
        if k == HEARTBEAT:
            continue
        out[k] = (await srv.redis.type(k),
                  await srv.redis.execute_command("DUMP", k, NEVER_DECODE=True))
    return out
