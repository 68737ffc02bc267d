"""Test fixtures. The suite starts its own redis-server (from PATH) on a free
port with keyspace notifications on, and runs every engine test on it and on
the embedded fakeredis backend. It never touches a Redis it did not start.
With CI=true a missing redis-server fails the run instead of skipping."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis.asyncio as aioredis

from redroute import Engine
from redroute.backend import connect
from redroute.checks.invariants import check

from .support.redis_server import RedisProcess, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    rp = start_redis()
    yield rp
    rp.stop()
    shutil.rmtree(rp.dir, ignore_errors=True)


@pytest.fixture(params=["redis", "embedded"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def redis(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    if backend == "redis":
        server: RedisProcess = request.getfixturevalue("redis_server")
        # backend.connect: the client redroute's processes use (its script
        # calls pipelined automatically).
        client = connect(server.url)
        await client.flushall()
    else:
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def engine(redis: aioredis.Redis, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    """An engine on a fresh keyspace; the invariants are checked after the test."""
    eng = Engine(redis, "test")
    yield eng
    report = await check(eng)
    assert report.ok, "invariants violated after the test:\n" + "\n".join(report.violations)
