"""backend.connect: the client every redroute process uses."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from redroute.backend import connect
from tests.support.redis_server import RedisProcess


async def test_a_burst_of_concurrent_calls_beyond_a_hundred_waits_for_connections(
        redis_server: RedisProcess) -> None:
    # redis-py's default pool fails every call past 100 in flight ("Too many
    # connections"): over HTTP, each would be a 503. 300 blocking calls at
    # once must all be served.
    client = connect(redis_server.url)
    try:
        results = await asyncio.gather(
            *[client.blpop([f"rr-test-burst-{i}"], timeout=0.2) for i in range(300)],
            return_exceptions=True)
    finally:
        await client.aclose()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results == [None] * 300


async def test_calls_beyond_the_pool_size_queue_until_a_connection_is_free(
        redis_server: RedisProcess) -> None:
    client = connect(redis_server.url, max_connections=4)
    try:
        results = await asyncio.gather(
            *[client.blpop([f"rr-test-queue-{i}"], timeout=0.1) for i in range(12)])
        pool = client.connection_pool
        made = len(pool._available_connections) + len(pool._in_use_connections)
    finally:
        await client.aclose()
    assert results == [None] * 12
    assert made <= 4


async def test_a_call_that_finds_no_free_connection_in_time_fails_as_redis_unavailable(
        redis_server: RedisProcess) -> None:
    # The wait is bounded: past pool_timeout the call fails like any lost
    # connection (a 503 over HTTP), it does not hang.
    client = connect(redis_server.url, max_connections=1, pool_timeout=0.2)
    try:
        holder = asyncio.ensure_future(client.blpop(["rr-test-hold"], timeout=1))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()
        assert 0.15 < time.monotonic() - started < 0.9
        assert await holder is None
        assert await client.ping()  # free again
    finally:
        await client.aclose()


async def test_commands_are_packed_by_hiredis_into_the_bytes_redis_py_sends(
        redis_server: RedisProcess) -> None:
    from redis.asyncio.connection import Connection

    client = connect(redis_server.url)
    try:
        conn = client.connection_pool.make_connection()
        args = ("EVALSHA", "a" * 40, 1, "rr:{t}:", 1_000_000, 86_400_000, "sales", "c-é", 1, "",
                "{}", 2.5, b"raw", memoryview(b"view"))
        assert type(conn).__name__ == "HiredisConnection"
        assert b"".join(conn.pack_command(*args)) == b"".join(Connection().pack_command(*args))
        assert b"".join(conn.pack_command("CONFIG GET", "maxclients")) == b"".join(
            Connection().pack_command("CONFIG GET", "maxclients"))
        p = client.pipeline(transaction=True)
        p.set("rr-test-packed", "é").get("rr-test-packed")
        assert await p.execute() == [True, "é"]
    finally:
        await client.aclose()
