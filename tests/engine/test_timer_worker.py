"""The timer worker: deadlines live in Redis, fire once, survive the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis

from redroute import Engine
from redroute.keys import HEARTBEAT
from redroute.timers import TimerWorker
from tests.support.center import setup_center
from tests.support.redis_server import RedisProcess


async def wait_for(predicate, timeout: float = 15.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(every)
    return False


async def no_agent_counts(engine: Engine) -> Counter[str]:
    return Counter(e.task["id"] for e in await engine.events() if e.type == "NO_AGENT_AVAILABLE")


def spawn_worker(url: str) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": url, "REDROUTE_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "redroute", "worker"], env=env)


async def test_worker_fires_ttl_and_rona_deadlines(engine: Engine):
    await setup_center(engine, agents=("a1",), sla_ms=50, ttl_ms=150, ready=True)
    await engine.put_queue("later", mrd_id="chat", agent_request_ttl_ms=100)
    rona = await engine.push_task("c-1", "sales")
    ttl = await engine.push_task("c-2", "later")
    worker = TimerWorker(engine.redis, max_sleep=0.05)
    run = asyncio.create_task(worker.run())
    try:
        async def done():
            a = await engine.get_task(rona.id)
            b = await engine.get_task(ttl.id)
            return a.reason_code == "RONA" and b.reason_code == "NO_AGENT_AVAILABLE"
        assert await wait_for(done)
    finally:
        worker.stop()
        await run
    assert worker.fired_total >= 2 and len(worker.lags_ms) == worker.fired_total


async def test_worker_fires_the_wrap_up_deadline(engine: Engine):
    await setup_center(engine, wrap_up=True, wrap_up_timeout_ms=50, ready=True)
    t = await engine.push_task("c-1", "sales")
    await engine.accept(t.id, t.media.id)
    assert (await engine.close_media(t.id, t.media.id)).state == "WRAP_UP"
    worker = TimerWorker(engine.redis, max_sleep=0.05)
    run = asyncio.create_task(worker.run())
    try:
        async def expired():
            return (await engine.get_task(t.id)).reason_code == "WRAP_UP_EXPIRED"
        assert await wait_for(expired)
    finally:
        worker.stop()
        await run
    assert (await engine.get_agent("a1")).mrd("chat").active_tasks == 0


async def test_a_new_earliest_deadline_wakes_a_sleeping_worker(engine: Engine):
    await setup_center(engine, ttl_ms=100)
    worker = TimerWorker(engine.redis, max_sleep=30.0)
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.2)  # the worker is asleep with nothing due
        t = await engine.push_task("c-1", "sales")
        async def closed():
            return (await engine.get_task(t.id)).state == "CLOSED"
        # Far less than max_sleep: the rr:wake message woke it.
        assert await wait_for(closed, timeout=10.0)
    finally:
        worker.stop()
        await run


async def test_one_wake_key_expires_at_the_earliest_deadline_and_is_rearmed(
        redis_server: RedisProcess):
    # Keyspace notifications wake the workers when a deadline is due: one
    # key per tenant expires at the earliest deadline, and fire_due arms it
    # for the next. No key per deadline.
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    engine = Engine(redis, "wake")
    wake = f"{engine.prefix}tmr:wake"
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        await redis.flushall()
        await setup_center(engine, ttl_ms=5_000)
        await engine.put_queue("soon", mrd_id="chat", agent_request_ttl_ms=300)
        late = await engine.push_task("c-1", "sales")
        assert 4_000 < await redis.pttl(wake) <= 5_000
        await pubsub.psubscribe("__keyevent@*__:expired")
        soon = await engine.push_task("c-2", "soon")  # the new earliest deadline
        assert 0 < await redis.pttl(wake) <= 300
        assert await redis.keys(f"{engine.prefix}tmr:*") == [wake]

        started = time.monotonic()
        heard = None
        while heard != wake and time.monotonic() - started < 5:
            msg = await pubsub.get_message(timeout=1.0)
            heard = msg and msg["data"]
        assert heard == wake
        assert await engine.fire_due() is not None
        assert (await engine.get_task(soon.id)).reason_code == "NO_AGENT_AVAILABLE"
        assert (await engine.get_task(late.id)).media.state == "QUEUED"
        assert 3_000 < await redis.pttl(wake) <= 5_000  # armed for the next one
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_a_deadline_after_the_armed_wake_up_neither_rearms_nor_wakes_a_worker(
        redis_server: RedisProcess):
    # The armed wake-up comes first and its fire_due re-arms for the head, so
    # a later deadline (a reservation's RONA, most of all) changes nothing;
    # an earlier one re-arms the key and publishes on rr:wake.
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    engine = Engine(redis, "later")
    wake = f"{engine.prefix}tmr:wake"
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        await redis.flushall()
        await setup_center(engine, ttl_ms=5_000)
        await engine.put_queue("later", mrd_id="chat", agent_request_ttl_ms=60_000)
        await engine.put_queue("soon", mrd_id="chat", agent_request_ttl_ms=300)
        first = await engine.push_task("c-1", "sales")
        armed = await redis.get(wake)
        assert armed == str(first.ttl_deadline)
        await pubsub.subscribe("rr:wake")
        await pubsub.get_message(timeout=0.1)
        await engine.push_task("c-2", "later")
        assert await pubsub.get_message(timeout=0.3) is None
        assert await redis.get(wake) == armed and 4_000 < await redis.pttl(wake) <= 5_000
        soon = await engine.push_task("c-3", "soon")
        msg = await pubsub.get_message(timeout=2.0)
        assert msg is not None and msg["data"] == "later"
        assert await redis.get(wake) == str(soon.ttl_deadline) and 0 < await redis.pttl(wake) <= 300
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_stale_deadline_of_an_accepted_task_does_nothing(engine: Engine):
    await setup_center(engine, sla_ms=1_000, ready=True)
    t = await engine.push_task("c-1", "sales")
    await engine.accept(t.id, t.media.id)
    await engine.advance_clock(5_000)
    r = await engine.fire_due()
    assert r.fired == 0
    assert (await engine.get_task(t.id)).media.state == "ACTIVE"


@pytest.mark.slow
async def test_killed_worker_loses_no_deadline_and_fires_each_once(redis_server):
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    engine = Engine(redis, "kill")
    await setup_center(engine, agents=(), ttl_ms=1_000)
    first = spawn_worker(redis_server.url)
    try:
        # Started (a first full pass made) before the deadlines come due.
        assert await wait_for(lambda: redis.exists(HEARTBEAT), timeout=15)
        ids = []
        for i in range(300):
            ids.append((await engine.push_task(f"c-{i}", "sales",
                                               agent_request_ttl_ms=300 + 5 * i)).id)
        # Let some deadlines fire, then kill the worker mid-run.
        assert await wait_for(lambda: _some_fired(engine), timeout=15)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        fired_before_restart = sum((await no_agent_counts(engine)).values())
        assert fired_before_restart < len(ids)
        second = spawn_worker(redis_server.url)
        try:
            async def all_fired():
                return sum((await no_agent_counts(engine)).values()) >= len(ids)
            assert await wait_for(all_fired, timeout=30)
            await asyncio.sleep(0.3)
        finally:
            second.terminate()
            second.wait(10)
        counts = await no_agent_counts(engine)
        assert set(counts) == set(ids)
        assert set(counts.values()) == {1}
        assert await redis.zcard(engine.prefix + "timers") == 0
    finally:
        if first.poll() is None:
            first.kill()
        await redis.aclose()


async def _some_fired(engine: Engine) -> bool:
    return sum((await no_agent_counts(engine)).values()) > 20


@pytest.mark.slow
async def test_two_workers_never_fire_one_deadline_twice(redis_server):
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    engine = Engine(redis, "twice")
    await setup_center(engine, agents=("a1", "a2", "a3"), max_requests=5, sla_ms=200, ttl_ms=800)
    for a in ("a1", "a2", "a3"):
        await engine.set_agent_state(a, "READY")
    workers = [spawn_worker(redis_server.url) for _ in range(2)]
    try:
        ids = [(await engine.push_task(f"c-{i}", "sales")).id for i in range(400)]
        requests = {(await engine.get_task(i)).request_id for i in ids}
        async def all_ended():
            ended = {e.task["requestId"] for e in await engine.events() if e.type == "NO_AGENT_AVAILABLE"}
            return ended >= requests
        assert await wait_for(all_ended, timeout=30)
        await asyncio.sleep(0.3)
    finally:
        for w in workers:
            w.terminate()
            w.wait(10)
    events = await engine.events()
    closes = Counter(e.task["id"] for e in events
                     if e.type == "TASK_STATE_CHANGED" and e.task["state"]["name"] == "CLOSED")
    assert set(closes.values()) == {1}, "a task closed twice"
    ended = Counter(e.task["requestId"] for e in events if e.type == "NO_AGENT_AVAILABLE")
    assert set(ended) == requests and set(ended.values()) == {1}
    ronas = sum(1 for e in events if e.type == "TASK_STATE_CHANGED"
                and e.task["state"]["reasonCode"] == "RONA")
    assert ronas >= 15  # reserved tasks nobody accepted went the RONA path
    await redis.aclose()


async def test_a_lost_listener_connection_is_logged_once_per_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import shutil

    from redroute.backend import connect_service
    from tests.support.redis_server import start_redis

    rp = start_redis()
    redis = connect_service(rp.url)
    worker = TimerWorker(redis, max_sleep=0.2, retry_after=0.05)

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    caplog.set_level(logging.INFO, logger="redroute.timers")
    run = asyncio.create_task(worker.run())
    try:
        for outage in (1, 2):
            rp.stop()
            await asyncio.sleep(1.5)  # about 30 reconnection attempts
            assert said("listener lost its connection") == outage
            rp.start()
            assert await wait_for(
                lambda n=outage: asyncio.sleep(0, said("listener connected again") == n), 10)
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)
        await redis.aclose()
        rp.stop()
        shutil.rmtree(rp.dir, ignore_errors=True)
