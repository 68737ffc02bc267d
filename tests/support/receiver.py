"""A real HTTP receiver for webhook tests: an aiohttp server on 127.0.0.1
that records every request and answers as the test tells it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # what it was answered, once answered

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """answer(request number, path) -> status; delay(path) -> seconds."""

    answer: Callable[[int, str], int] = lambda n, path: 200
    delay: Callable[[str], float] = lambda path: 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        n = len(self.received)
        self.received.append(Received(request.path, dict(request.headers), body))
        self._arrived.set()
        wait = self.delay(request.path)
        if wait:
            await asyncio.sleep(wait)
        status = self.answer(n, request.path)
        self.received[n].status = status
        if 300 <= status < 400:
            raise web.HTTPFound(location=f"{self.base}/redirected")
        return web.Response(status=status, text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def delivered(self, path: str) -> Counter[str]:
        """Event id -> how many times the receiver accepted it (answered 2xx)."""
        return Counter(r.json["id"] for r in self.at(path)
                       if r.status is not None and 200 <= r.status < 300)

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until cond() holds (checked at each arrival and every 50 ms)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not cond():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError("timed out waiting for the receiver")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.05))


def failing_fraction(fraction: float, seed: int = 7) -> Callable[[int, str], int]:
    """Answers 500 to about `fraction` of requests, 200 to the rest."""
    rnd = random.Random(seed)
    return lambda n, path: 500 if rnd.random() < fraction else 200
