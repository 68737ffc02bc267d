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
    from redis.exceptions import DataError

    from redroute.model import Direction

    client = connect(redis_server.url)
    try:
        conn = client.connection_pool.make_connection()
        args = ("EVALSHA", "a" * 40, 1, "rr:{t}:", 1_000_000, 86_400_000, "sales", "c-é", 1, "",
                "{}", 2.5, b"raw", memoryview(b"view"))
        assert type(conn).__name__ == "HiredisConnection"
        assert b"".join(conn.pack_command(*args)) == b"".join(Connection().pack_command(*args))
        for odd in (bytearray(b"ba"), memoryview(b"mv"), 1e20, 1 / 3, -0.0, 10**30, Direction.INBOUND):
            assert b"".join(conn.pack_command("EVALSHA", odd)) == b"".join(
                Connection().pack_command("EVALSHA", odd))
        with pytest.raises(DataError):
            conn.pack_command("EVALSHA", None)
        assert b"".join(conn.pack_command("CONFIG GET", "maxclients")) == b"".join(
            Connection().pack_command("CONFIG GET", "maxclients"))
        p = client.pipeline(transaction=True)
        p.set("rr-test-packed", "é").get("rr-test-packed")
        assert await p.execute() == [True, "é"]
    finally:
        await client.aclose()


async def test_script_calls_of_one_tick_share_one_pipeline_and_each_gets_its_own_reply(
        redis_server: RedisProcess) -> None:
    from redis.exceptions import NoScriptError, ResponseError

    client = connect(redis_server.url)
    try:
        echo = "return ARGV[1]"
        sha = await client.script_load(echo)
        await client.ping()  # the pool's one connection, made before the burst
        calls = [client.evalsha(sha, 0, i) for i in range(50)]
        calls.insert(10, client.eval("return redis.error_reply('NOT_FOUND no such task')", 0))
        calls.insert(20, client.evalsha("0" * 40, 0))
        calls.insert(30, client.eval("return {1, 'two', {3}}", 1, "rr-test-k"))
        results = await asyncio.gather(*calls, return_exceptions=True)
        pool = client.connection_pool
        made = len(pool._available_connections) + len(pool._in_use_connections)
    finally:
        await client.aclose()
    assert type(results[10]) is ResponseError and str(results[10]) == "NOT_FOUND no such task"
    assert isinstance(results[20], NoScriptError)
    assert results[30] == [1, "two", [3]]
    del results[30], results[20], results[10]
    assert results == [str(i) for i in range(50)]
    assert made == 1  # one pipeline, not 53 connections


async def test_a_script_call_timing_out_fails_its_whole_batch_and_the_client_recovers(
        redis_server: RedisProcess) -> None:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import TimeoutError as RedisTimeoutError

    busy = ("local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] "
            "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > 300000 return 1")
    client = connect(redis_server.url, socket_timeout=0.1, retry=Retry(NoBackoff(), 0))
    try:
        results = await asyncio.gather(client.eval(busy, 0), client.eval("return 2", 0),
                                       return_exceptions=True)
        assert [type(r) for r in results] == [RedisTimeoutError, RedisTimeoutError]
        await asyncio.sleep(0.4)
        assert await asyncio.gather(*[client.eval("return ARGV[1]", 0, i) for i in range(3)]) == [
            "0", "1", "2"]
    finally:
        await client.aclose()


async def test_a_cancelled_script_call_leaves_the_others_of_its_batch_their_replies(
        redis_server: RedisProcess) -> None:
    client = connect(redis_server.url)
    try:
        calls = [asyncio.ensure_future(client.eval("return ARGV[1]", 0, i)) for i in range(5)]
        await asyncio.sleep(0)  # the batch is on its way
        calls[2].cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[2], asyncio.CancelledError)
        assert [results[i] for i in (0, 1, 3, 4)] == ["0", "1", "3", "4"]
        assert await client.eval("return 'next'", 0) == "next"
    finally:
        await client.aclose()


async def test_the_script_runner_reloads_a_flushed_script_through_the_pipelined_client(
        redis_server: RedisProcess) -> None:
    from redroute.scripts import ScriptRunner, compose

    client = connect(redis_server.url)
    runner = ScriptRunner({"echo": compose("return ARGV[1]", name="echo")})
    try:
        await client.script_flush()
        assert await asyncio.gather(*[runner.call(client, "echo", ["k"], [i]) for i in range(4)]) == [
            "0", "1", "2", "3"]
    finally:
        await client.aclose()


async def test_function_calls_are_pipelined_too_and_a_missing_function_fails_only_its_call(
        redis_server: RedisProcess) -> None:
    from redis.exceptions import ResponseError

    client = connect(redis_server.url)
    library = ("#!lua name=rrtestpipe\n"
               "redis.register_function('rrtest_echo', function(keys, args) return args[1] end)")
    try:
        await client.function_load(library, replace=True)
        await client.ping()
        results = await asyncio.gather(
            client.fcall("rrtest_echo", 1, "rr-test-k", "a"), client.fcall("rrtest_nope", 0),
            client.fcall("rrtest_echo", 0, "b"), return_exceptions=True)
        pool = client.connection_pool
        made = len(pool._available_connections) + len(pool._in_use_connections)
        await client.function_delete("rrtestpipe")
    finally:
        await client.aclose()
    assert results[0] == "a" and results[2] == "b"
    assert type(results[1]) is ResponseError and "Function not found" in str(results[1])
    assert made == 1


async def test_script_calls_survive_their_pooled_connection_being_killed(
        redis_server: RedisProcess) -> None:
    from redroute.backend import connect_service

    client = connect_service(redis_server.url)
    admin = connect(redis_server.url)
    try:
        assert await client.eval("return 1", 0) == 1
        await admin.client_kill_filter(_type="normal", skipme=True)
        assert await asyncio.gather(*[client.eval("return ARGV[1]", 0, i) for i in range(3)]) == [
            "0", "1", "2"]
    finally:
        await client.aclose()
        await admin.aclose()
