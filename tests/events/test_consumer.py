"""Consumer groups on the event stream: at-least-once delivery with the
stream entry id as idempotency key, take-over of a dead consumer's entries,
retries, clean shutdown, and the explicit signal of a reader that fell
behind the retained window."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from redroute import Engine
from redroute.events import Event
from redroute.events.consumer import GroupConsumer, Handler
from redroute.events.stream import StreamGap, StreamReader
from redroute.model import EventType

TENANT = "cg"


@pytest.fixture
async def real_redis(redis_server) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


async def produce(engine: Engine, n: int) -> None:
    """n more events: an agent going READY and NOT_READY in turn (one
    AGENT_STATE_CHANGED each; the first call also sets the agent up)."""
    if not await engine.redis.sismember(engine.prefix + "agents", "a1"):
        await engine.put_mrd("chat")
        await engine.put_agent("a1")
        n -= 1
    for i in range(n):
        await engine.set_agent_state("a1", "NOT_READY" if i % 2 else "READY")


async def stream_ids(engine: Engine) -> list[str]:
    return [e.id for e in await engine.events()]


async def pending(redis: aioredis.Redis, engine: Engine, group: str = "g") -> int:
    return (await redis.xpending(engine.events_key, group))["pending"]


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


class Deliveries:
    """Every handler call: which consumer got which event."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[tuple[str, Event]]] = defaultdict(list)

    def record(self, who: str, event: Event) -> None:
        self.by_id[event.id].append((who, event))

    def count(self, who: str) -> int:
        return sum(1 for calls in self.by_id.values() for w, _ in calls if w == who)

    def assert_duplicates_share_their_key(self) -> None:
        for entry_id, calls in self.by_id.items():
            first = calls[0][1]
            for _, again in calls[1:]:
                assert (again.id, again.type, again.data) == (first.id, first.type, first.data), entry_id


def recorder(seen: Deliveries, who: str) -> Handler:
    async def handle(event: Event) -> None:
        seen.record(who, event)
        await asyncio.sleep(0)  # lets the other consumer in

    return handle


# Delivery


async def test_events_arrive_decoded_with_the_stream_entry_id(redis: aioredis.Redis) -> None:
    engine = Engine(redis, TENANT)
    await engine.put_mrd("chat")
    await engine.put_queue("sales", mrd_id="chat")
    task = await engine.push_task("c-1", "sales")
    got: list[Event] = []

    async def handle(event: Event) -> None:
        got.append(event)

    await GroupConsumer(redis, handle, tenant=TENANT, group="g").poll()
    assert [(e.id, e.type, e.task["id"]) for e in got] == [
        (i, EventType.TASK_STATE_CHANGED, task.id) for i in await stream_ids(engine)]
    assert await pending(redis, engine) == 0


async def test_two_consumers_of_a_group_share_the_events(redis: aioredis.Redis) -> None:
    engine = Engine(redis, TENANT)
    await produce(engine, 200)
    seen = Deliveries()
    consumers = [GroupConsumer(redis, recorder(seen, n), tenant=TENANT, group="g", name=n, batch=10)
                 for n in ("a", "b")]
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    ids = await stream_ids(engine)
    await wait_until(lambda: len(seen.by_id) == len(ids))
    for c in consumers:
        c.stop()
    await asyncio.gather(*tasks)
    assert sorted(seen.by_id) == sorted(ids)
    assert all(len(calls) == 1 for calls in seen.by_id.values())
    assert seen.count("a") > 0 and seen.count("b") > 0
    assert await pending(redis, engine) == 0


async def test_a_consumer_killed_mid_batch_has_its_entries_taken_over(real_redis: aioredis.Redis) -> None:
    engine = Engine(real_redis, TENANT)
    await produce(engine, 150)
    seen = Deliveries()
    stuck = asyncio.Event()

    async def handle_a(event: Event) -> None:
        seen.record("a", event)
        if seen.count("a") == 15:
            stuck.set()
            await asyncio.Event().wait()  # hangs mid-batch until killed
        await asyncio.sleep(0)

    a = GroupConsumer(real_redis, handle_a, tenant=TENANT, group="g", name="a", batch=20,
                      claim_idle_ms=300)
    b = GroupConsumer(real_redis, recorder(seen, "b"), tenant=TENANT, group="g",
                      name="b", batch=20, claim_idle_ms=300)
    run_a, run_b = asyncio.create_task(a.run()), asyncio.create_task(b.run())
    await asyncio.wait_for(stuck.wait(), 10)
    run_a.cancel()  # killed: what it read and did not acknowledge stays pending to it
    await produce(engine, 150)  # and the stream goes on
    ids = await stream_ids(engine)
    await wait_until(lambda: set(seen.by_id) == set(ids))
    await wait_until(lambda: b.handled >= len(ids) - a.handled)
    b.stop()
    await run_b
    assert b.claimed > 0
    assert a.handled > 0 and b.handled > a.handled
    assert sorted(seen.by_id) == sorted(ids)  # every event at least once
    assert [len(c) for c in seen.by_id.values()].count(2) >= 1  # the one a hung on
    seen.assert_duplicates_share_their_key()
    assert await pending(real_redis, engine) == 0


VICTIM = """
import asyncio, sys
import redis.asyncio as aioredis
from redroute.events.consumer import GroupConsumer, Handler

async def main(url, tenant, out):
    r = aioredis.from_url(url, decode_responses=True)
    n = 0
    async def handle(event):
        nonlocal n
        n += 1
        with open(out, "a") as f:
            f.write(event.id + "\\n")
        if n == 15:
            await asyncio.sleep(3600)  # stuck mid-batch until killed
    await GroupConsumer(r, handle, tenant=tenant, group="g", name="victim", batch=20,
                        claim_idle_ms=300).run()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_killed_consumer_process_has_its_entries_taken_over(
    real_redis: aioredis.Redis, redis_server, tmp_path: Path
) -> None:
    engine = Engine(real_redis, TENANT)
    await produce(engine, 100)
    ids = await stream_ids(engine)
    out = tmp_path / "victim.log"
    proc = subprocess.Popen([sys.executable, "-c", VICTIM, redis_server.url, TENANT, str(out)])
    try:
        await wait_until(lambda: out.exists() and len(out.read_text().split()) >= 15, timeout=30)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    victim_saw = out.read_text().split()
    seen = Deliveries()
    b = GroupConsumer(real_redis, recorder(seen, "b"), tenant=TENANT, group="g",
                      name="b", batch=20, claim_idle_ms=300)
    run_b = asyncio.create_task(b.run())
    await wait_until(lambda: set(seen.by_id) | set(victim_saw) == set(ids))
    await wait_until(lambda: b.claimed >= 6)  # the one it hung on and the rest of its batch
    b.stop()
    await run_b
    assert victim_saw[-1] in seen.by_id  # handled by the victim, never acknowledged: again by b
    assert set(victim_saw[:-1]).isdisjoint(seen.by_id)  # acknowledged ones are not redelivered
    assert await pending(real_redis, engine) == 0


async def test_a_failing_handler_leaves_its_entry_pending_until_a_retry_succeeds(
    redis: aioredis.Redis,
) -> None:
    engine = Engine(redis, TENANT)
    await produce(engine, 5)
    ids = await stream_ids(engine)
    calls: list[str] = []

    async def handle(event: Event) -> None:
        calls.append(event.id)
        if event.id == ids[2] and calls.count(event.id) == 1:
            raise RuntimeError("downstream is down")

    c = GroupConsumer(redis, handle, tenant=TENANT, group="g", retry_after_ms=50)
    await c.poll()
    assert (c.handled, c.failures) == (4, 1)
    assert [p["message_id"] for p in await redis.xpending_range(engine.events_key, "g", "-", "+", 10)] \
        == [ids[2]]
    await asyncio.sleep(0.06)
    await c.poll()
    assert calls == ids + [ids[2]]
    assert await pending(redis, engine) == 0


async def test_a_consumer_restarted_under_its_name_first_handles_what_it_left_pending(
    redis: aioredis.Redis,
) -> None:
    engine = Engine(redis, TENANT)
    await produce(engine, 10)
    ids = await stream_ids(engine)
    first = GroupConsumer(redis, _never_returns, tenant=TENANT, group="g", name="worker-1", batch=4)
    crashed = asyncio.create_task(first.poll())
    await asyncio.sleep(0.1)
    crashed.cancel()  # took 4 entries, acknowledged none
    await asyncio.gather(crashed, return_exceptions=True)
    order: list[str] = []

    async def handle(event: Event) -> None:
        order.append(event.id)

    await GroupConsumer(redis, handle, tenant=TENANT, group="g", name="worker-1", batch=4).poll()
    assert order[:4] == ids[:4]
    assert sorted(order) == ids[:8]  # its pending ones, then one new batch
    assert await pending(redis, engine) == 0


async def _never_returns(event: Event) -> None:
    await asyncio.Event().wait()


async def test_stop_finishes_the_current_event_and_hands_the_rest_of_the_batch_back(
    redis: aioredis.Redis,
) -> None:
    engine = Engine(redis, TENANT)
    await produce(engine, 10)
    ids = await stream_ids(engine)
    handled: list[str] = []

    async def handle(event: Event) -> None:
        handled.append(event.id)
        if len(handled) == 3:
            a.stop()

    a = GroupConsumer(redis, handle, tenant=TENANT, group="g", name="a", batch=10,
                      claim_idle_ms=60_000)
    await asyncio.wait_for(a.run(), 5)
    assert handled == ids[:3] and a.handled == 3
    rest: list[str] = []

    async def take(event: Event) -> None:
        rest.append(event.id)

    b = GroupConsumer(redis, take, tenant=TENANT, group="g", name="b", claim_idle_ms=60_000)
    await b.poll()
    assert rest == ids[3:] and b.claimed == 7  # at once, without waiting 60 s
    assert await pending(redis, engine) == 0


async def test_run_waits_for_new_events_and_returns_on_stop(redis: aioredis.Redis) -> None:
    engine = Engine(redis, TENANT)
    await produce(engine, 2)
    got: list[str] = []

    async def handle(event: Event) -> None:
        got.append(event.id)

    c = GroupConsumer(redis, handle, tenant=TENANT, group="g", block_ms=5000)
    run = asyncio.create_task(c.run())
    await wait_until(lambda: len(got) == 2)
    await produce(engine, 1)
    await wait_until(lambda: len(got) == 3, timeout=2)  # woken by the entry, not the 5 s timeout
    started = time.monotonic()
    c.stop()
    await asyncio.wait_for(run, 2)
    assert time.monotonic() - started < 1
    assert got == await stream_ids(engine)


# Retention


@pytest.fixture
def small(redis: aioredis.Redis) -> Engine:
    """An engine whose stream keeps about 10 entries (at least 10: Redis
    trims whole nodes, of up to 100 entries or 4 kB)."""
    return Engine(redis, TENANT, events_maxlen=10)


async def trimmed(engine: Engine) -> int:
    info = await engine.redis.xinfo_stream(engine.events_key)
    return info["entries-added"] - info["length"]


async def _ignore(event: Event) -> None:
    pass


async def test_a_group_that_fell_behind_retention_is_told_how_many_events_it_lost(small: Engine) -> None:
    c = GroupConsumer(small.redis, _ignore, tenant=TENANT, group="g", batch=5)
    await produce(small, 20)
    await c.poll()  # reads 5
    await produce(small, 400)
    assert await trimmed(small) > 5
    with pytest.raises(StreamGap) as gap:
        await c.poll()
    assert gap.value.missed == await trimmed(small) - 5
    assert gap.value.first_retained == (await stream_ids(small))[0]
    assert c.handled == 5  # nothing was delivered past the gap


async def test_the_gap_is_signalled_on_every_read_until_skipped(small: Engine) -> None:
    c = GroupConsumer(small.redis, _ignore, tenant=TENANT, group="g")
    await c.ensure_group()
    await produce(small, 400)
    for _ in range(3):
        with pytest.raises(StreamGap):
            await c.poll()
    with pytest.raises(StreamGap):
        await GroupConsumer(small.redis, _ignore, tenant=TENANT, group="g", name="other").poll()
    assert c.handled == 0


async def test_skipping_a_gap_resumes_at_the_oldest_retained_event(small: Engine) -> None:
    got: list[str] = []

    async def handle(event: Event) -> None:
        got.append(event.id)

    c = GroupConsumer(small.redis, handle, tenant=TENANT, group="g", batch=1000)
    await c.ensure_group()
    await produce(small, 400)
    with pytest.raises(StreamGap) as gap:
        await c.poll()
    assert await c.skip_gap(gap.value)
    await c.poll()
    assert got == await stream_ids(small)
    await produce(small, 3)
    await c.poll()  # and on without a gap
    assert got[-3:] == (await stream_ids(small))[-3:]


async def test_a_group_created_on_a_trimmed_stream_from_its_start_is_told(small: Engine) -> None:
    await produce(small, 400)
    with pytest.raises(StreamGap) as gap:
        await GroupConsumer(small.redis, _ignore, tenant=TENANT, group="late", start="0").poll()
    assert gap.value.missed == await trimmed(small)
    handled = GroupConsumer(small.redis, _ignore, tenant=TENANT, group="new", start="$")
    await handled.poll()
    assert handled.handled == 0


async def test_a_consumer_that_keeps_up_never_sees_a_gap(small: Engine) -> None:
    c = GroupConsumer(small.redis, _ignore, tenant=TENANT, group="g", batch=50)
    await c.ensure_group()
    for _ in range(50):
        await produce(small, 8)  # fewer than the 10 the stream keeps at least
        await c.poll()
    assert await trimmed(small) > 0
    assert c.handled == (await small.redis.xinfo_stream(small.events_key))["entries-added"]


async def test_pending_events_trimmed_before_they_were_acknowledged_are_reported_lost(
    small: Engine,
) -> None:
    first = GroupConsumer(small.redis, _never_returns, tenant=TENANT, group="g", name="dead", batch=5)
    await produce(small, 10)
    crashed = asyncio.create_task(first.poll())
    await asyncio.sleep(0.1)
    crashed.cancel()  # 5 delivered, none acknowledged
    await asyncio.gather(crashed, return_exceptions=True)
    delivered = [p["message_id"] for p in await small.redis.xpending_range(small.events_key, "g", "-", "+", 10)]
    await produce(small, 400)
    taker = GroupConsumer(small.redis, _ignore, tenant=TENANT, group="g", name="taker", claim_idle_ms=0)
    with pytest.raises(StreamGap) as gap:
        await taker.poll()
    assert list(gap.value.lost_ids) == delivered


async def test_a_plain_reader_that_fell_behind_retention_is_told(small: Engine) -> None:
    await produce(small, 10)
    reader = StreamReader(small.redis, TENANT, after="0", count=4)
    assert len(await reader.read()) == 4
    await produce(small, 400)
    with pytest.raises(StreamGap) as gap:
        await reader.read()
    assert gap.value.missed == await trimmed(small) - 4
    reader.skip_gap(gap.value)
    assert [e.id for e in await reader.read()] == (await stream_ids(small))[:4]


async def test_a_reader_from_a_trimmed_id_is_told_it_may_have_lost_events(small: Engine) -> None:
    await produce(small, 10)
    old = (await stream_ids(small))[3]
    await produce(small, 400)
    with pytest.raises(StreamGap) as gap:
        await StreamReader(small.redis, TENANT, after=old).read()
    assert gap.value.missed is None  # no count known for a bare id: said, not guessed


async def test_a_reader_from_now_on_sees_only_new_events(small: Engine) -> None:
    await produce(small, 400)
    reader = StreamReader(small.redis, TENANT, after="$")
    assert await reader.read() == []
    await produce(small, 2)
    assert [e.id for e in await reader.read()] == (await stream_ids(small))[-2:]
