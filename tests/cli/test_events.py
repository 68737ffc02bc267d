"""`redroute events tail` and `redroute events replay` on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from redroute import Engine
from redroute.cli import main
from tests.support.center import setup_center

TENANT = "cli"


def on_redis(url: str, step: Callable[[Engine], Awaitable[object]]) -> None:
    async def go() -> None:
        client = aioredis.from_url(url, decode_responses=True)
        try:
            await step(Engine(client, TENANT))
        finally:
            await client.aclose()

    asyncio.run(go())


async def a_reservation(engine: Engine) -> None:
    await engine.redis.flushall()
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await engine.push_task("c-1", "sales")


def events_cli(url: str, *args: str) -> int:
    return main(["events", *args, "--redis-url", url, "--tenant", TENANT])


def test_tail_prints_one_line_per_event(redis_server, capsys: pytest.CaptureFixture[str]) -> None:
    on_redis(redis_server.url, a_reservation)
    assert events_cli(redis_server.url, "tail", "--from", "0", "--count", "8") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].split()[2:] == ["TASK_STATE_CHANGED", "task", "t-1", "conv", "c-1", "queue", "sales",
                                     "ACTIVE", "media", "RESERVED", "agent", "a1", "changed", "m-1"]
    assert lines[-2].split()[2:] == ["AGENT_RESERVED", "task", "t-1", "->", "agent", "a1", "(conv",
                                     "c-1", "queue", "sales)"]
    assert lines[-1].split()[2:] == ["AGENT_STATE_CHANGED", "agent", "a1", "READY", "chat=BUSY", "1/1"]


def test_tail_filters_by_type_agent_queue_and_conversation(
    redis_server, capsys: pytest.CaptureFixture[str],
) -> None:
    on_redis(redis_server.url, a_reservation)
    events_cli(redis_server.url, "tail", "--from", "0", "--count", "1", "--type", "AGENT_RESERVED")
    events_cli(redis_server.url, "tail", "--from", "0", "--count", "2", "--agent", "a2")
    events_cli(redis_server.url, "tail", "--from", "0", "--count", "2", "--conversation", "c-1")
    lines = [line.split()[2:5] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["AGENT_RESERVED", "task", "t-1"],
        ["AGENT_STATE_CHANGED", "agent", "a2"], ["AGENT_STATE_CHANGED", "agent", "a2"],
        ["TASK_STATE_CHANGED", "task", "t-1"], ["TASK_STATE_CHANGED", "task", "t-1"],
    ]


def test_tail_says_when_retention_trimmed_events_it_did_not_print(
    redis_server, capsys: pytest.CaptureFixture[str],
) -> None:
    async def old_id_then_trim(engine: Engine) -> None:
        await a_reservation(engine)
        small = Engine(engine.redis, TENANT, events_maxlen=10)
        for i in range(300):
            await small.set_agent_state("a2", "NOT_READY" if i % 2 else "READY")

    on_redis(redis_server.url, old_id_then_trim)
    assert events_cli(redis_server.url, "tail", "--from", "1-0", "--count", "1") == 0
    out = capsys.readouterr()
    assert "were trimmed (MAXLEN)" in out.err
    assert len(out.out.splitlines()) == 1


def test_replay_exits_0_when_the_stream_rebuilds_the_state(
    redis_server, capsys: pytest.CaptureFixture[str],
) -> None:
    on_redis(redis_server.url, a_reservation)
    assert events_cli(redis_server.url, "replay") == 0
    assert capsys.readouterr().out.strip().endswith("0 differences with Redis")


def test_replay_exits_1_and_prints_each_difference(redis_server, capsys: pytest.CaptureFixture[str]) -> None:
    async def drift(engine: Engine) -> None:
        await a_reservation(engine)
        await engine.redis.srem(engine.prefix + "live", "t-1")  # behind the engine's back

    on_redis(redis_server.url, drift)
    assert events_cli(redis_server.url, "replay") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "task t-1: live in the stream, not in Redis' live set"
    assert out[-1].endswith("1 difference with Redis")


def test_replay_recomputes_the_statistics_and_prints_a_minute_that_differs(
    redis_server, capsys: pytest.CaptureFixture[str],
) -> None:
    minute = []

    async def drift(engine: Engine) -> None:
        await a_reservation(engine)  # entered 1: counted in the step, and in the stream
        minute.append((await engine.fire_due(0)).now // 60_000)
        await engine.redis.hincrby(engine.keys.st("sales", minute[0]), "a", 1)  # behind its back

    on_redis(redis_server.url, drift)
    assert events_cli(redis_server.url, "replay") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"statistics of queue sales, minute {minute[0]}: stored/stream differ: a=1/0"
    assert out[-1].endswith("1 difference with Redis")


def test_replay_exits_2_when_retention_trimmed_the_stream(
    redis_server, capsys: pytest.CaptureFixture[str],
) -> None:
    async def trim(engine: Engine) -> None:
        await a_reservation(engine)
        small = Engine(engine.redis, TENANT, events_maxlen=10)
        for i in range(300):
            await small.set_agent_state("a2", "NOT_READY" if i % 2 else "READY")

    on_redis(redis_server.url, trim)
    assert events_cli(redis_server.url, "replay") == 2
    assert "cannot rebuild the state from the stream" in capsys.readouterr().err


def test_tail_prints_deletions(redis_server, capsys: pytest.CaptureFixture[str]) -> None:
    async def deletions(engine: Engine) -> None:
        await engine.redis.flushall()
        await setup_center(engine, agents=("a1",))
        await engine.put_mrd("voice")
        await engine.delete_agent("a1")
        await engine.delete_queue("sales")
        await engine.delete_mrd("voice")

    on_redis(redis_server.url, deletions)
    assert events_cli(redis_server.url, "tail", "--from", "0", "--count", "3",
                      "--type", "AGENT_DELETED", "--type", "QUEUE_DELETED",
                      "--type", "MRD_DELETED") == 0
    lines = [line.split()[2:] for line in capsys.readouterr().out.splitlines()]
    assert lines == [["AGENT_DELETED", "agent", "a1", "deleted"],
                     ["QUEUE_DELETED", "queue", "sales", "deleted"],
                     ["MRD_DELETED", "mrd", "voice", "deleted"]]
