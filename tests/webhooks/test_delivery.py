"""Webhook delivery to a real HTTP receiver on 127.0.0.1 (the operator
flag allows private addresses here): signed bodies, filters, retries after
5xx and timeouts, FAILED deliveries listed and retried, DELETE, isolation
of a slow receiver, gaps recorded, secrets never logged."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator

import pytest

from redroute import Engine
from redroute.checks.invariants import check
from redroute.errors import InvalidTransition
from redroute.webhooks.model import DeliveryStatus
from tests.support.receiver import Receiver
from tests.support.webhooks import FAST, contact_center, dispatching

SECRET = "whsec-7d1f0c9e-very-secret"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def hook(engine: Engine, receiver: Receiver, name: str = "wh-1", **kw) -> None:
    await engine.put_webhook(name, url=f"{receiver.base}/{name}", secret=SECRET,
                             allow_private=True, **kw)


async def test_every_event_is_posted_signed_with_its_stream_id(engine: Engine, receiver: Receiver):
    await hook(engine, receiver)
    async with dispatching(engine):
        await contact_center(engine)
        task = await engine.push_task("c-1", "sales")
        events = await engine.events()
        await receiver.wait_for(lambda: len(receiver.received) >= len(events))
    assert sorted(r.json["id"] for r in receiver.received) == [e.id for e in events]
    for r in receiver.received:
        ts, sig = r.headers["X-Redroute-Timestamp"], r.headers["X-Redroute-Signature"]
        # The documented recipe: hex HMAC-SHA256(secret, timestamp + "." + body).
        mac = hmac.new(SECRET.encode(), ts.encode() + b"." + r.body, hashlib.sha256).hexdigest()
        assert sig == f"v1={mac}"
        assert r.headers["X-Redroute-Event-Id"] == r.json["id"]
        assert r.headers["Content-Type"] == "application/json"
    body = next(r.json for r in receiver.received if r.json["type"] == "TASK_STATE_CHANGED")
    event = next(e for e in events if e.id == body["id"])
    assert body == {"id": event.id, "type": "TASK_STATE_CHANGED", "data": event.data,
                    "tenant": "test", "time": int(event.id.split("-")[0])}
    assert body["data"]["task"]["id"] == task.id


async def test_filters_select_by_type_and_queue(engine: Engine, receiver: Receiver):
    await hook(engine, receiver, "tasks", types=["TASK_STATE_CHANGED"])
    await hook(engine, receiver, "sales", queue_ids=["sales"])
    await hook(engine, receiver, "agents", types=["AGENT_STATE_CHANGED"], queue_ids=["support"])
    async with dispatching(engine):
        await contact_center(engine)
        await engine.put_agent("a-1", queues=["support"])
        await engine.set_agent_state("a-1", "LOGIN")
        await engine.push_task("c-1", "sales")
        await engine.push_task("c-2", "support")
        events = await engine.events()
        expect = {
            "tasks": [e.id for e in events if e.type == "TASK_STATE_CHANGED"],
            "sales": [e.id for e in events if "sales" in e.queue_ids],
            "agents": [e.id for e in events
                       if e.type == "AGENT_STATE_CHANGED" and "support" in e.queue_ids],
        }
        await receiver.wait_for(lambda: len(receiver.received) >= sum(map(len, expect.values())))
        await asyncio.sleep(0.2)  # nothing else comes
    assert all(expect.values())
    for name, ids in expect.items():
        assert sorted(r.json["id"] for r in receiver.at(f"/{name}")) == ids, name


async def test_a_5xx_is_retried_with_back_off_until_a_2xx(engine: Engine, receiver: Receiver):
    receiver.answer = lambda n, path: 503 if n < 3 else 204
    await hook(engine, receiver)
    async with dispatching(engine):
        await contact_center(engine)
        await engine.push_task("c-1", "sales")
        await receiver.wait_for(lambda: len(receiver.received) >= 4)
        await asyncio.sleep(0.3)
    assert len(receiver.received) == 4
    assert len({r.json["id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1  # the same body every attempt
    times = [int(r.headers["X-Redroute-Timestamp"]) for r in receiver.received]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # 50, 100, 200 ms back-off (less a ms of rounding; the polling adds)
    assert all(g >= want - 2 for g, want in zip(gaps, (50, 100, 200), strict=True)), gaps
    assert (await engine.get_webhook("wh-1")).pending == 0


async def test_no_answer_within_the_timeout_is_retried(engine: Engine, receiver: Receiver):
    receiver.delay = lambda path: 2.0 if not receiver.received[1:] else 0.0
    await hook(engine, receiver)
    async with dispatching(engine):
        await contact_center(engine)
        await engine.push_task("c-1", "sales")
        await receiver.wait_for(lambda: len(receiver.received) >= 2)
        await asyncio.sleep(0.3)
        assert (await engine.get_webhook("wh-1")).pending == 0
    first, second = receiver.received[:2]
    assert first.json["id"] == second.json["id"]


async def test_a_delivery_that_keeps_failing_is_kept_failed_listed_and_retried(
        engine: Engine, receiver: Receiver):
    receiver.answer = lambda n, path: 500
    settings = dataclasses.replace(FAST, give_up_ms=300)
    await hook(engine, receiver)
    async with dispatching(engine, settings):
        await contact_center(engine)
        await engine.push_task("c-1", "sales")
        event = (await engine.events())[-1]
        for _ in range(100):
            if (await engine.get_webhook("wh-1")).failed:
                break
            await asyncio.sleep(0.05)
        page = await engine.list_deliveries("wh-1", status="FAILED")
        assert [d.id for d in page.items] == [event.id]
        dead = page.items[0]
        assert (dead.status, dead.event_id, dead.type, dead.last_status, dead.last_error) == (
            DeliveryStatus.FAILED, event.id, "TASK_STATE_CHANGED", 500, "HTTP 500")
        assert dead.attempts >= 3 and dead.next_attempt_at is None
        tried = len(receiver.received)
        receiver.answer = lambda n, path: 200
        again = await engine.retry_delivery("wh-1", event.id)
        assert again.status is DeliveryStatus.PENDING
        with pytest.raises(InvalidTransition):
            await engine.retry_delivery("wh-1", event.id)
        await receiver.wait_for(lambda: len(receiver.received) > tried)
        await asyncio.sleep(0.2)
    assert receiver.received[-1].json["id"] == event.id
    assert (await engine.list_deliveries("wh-1")).items == []
    w = await engine.get_webhook("wh-1")
    assert (w.pending, w.failed) == (0, 0)


async def test_delete_stops_deliveries_pending_and_new(engine: Engine, receiver: Receiver):
    receiver.answer = lambda n, path: 500 if path == "/gone" else 200
    await hook(engine, receiver, "gone")
    await hook(engine, receiver, "kept")
    async with dispatching(engine):
        await contact_center(engine)
        await engine.push_task("c-1", "sales")
        await receiver.wait_for(lambda: receiver.at("/gone") and receiver.at("/kept"))
        await engine.delete_webhook("gone")
        await asyncio.sleep(0.1)  # an attempt already in flight may still land
        seen = len(receiver.at("/gone"))
        await engine.push_task("c-2", "sales")
        await receiver.wait_for(lambda: len(receiver.at("/kept")) >= 2)
        await asyncio.sleep(0.5)  # back-off 50..200 ms: several retries would have come
    assert len(receiver.at("/gone")) == seen


async def test_a_slow_receiver_does_not_slow_the_others(engine: Engine, receiver: Receiver):
    receiver.delay = lambda path: 3.0 if path == "/slow" else 0.0
    settings = dataclasses.replace(FAST, attempt_timeout=10.0, per_webhook=2)
    await hook(engine, receiver, "slow")
    await hook(engine, receiver, "fast")
    async with dispatching(engine, settings) as d:
        await contact_center(engine)
        for i in range(20):
            await engine.push_task(f"c-{i}", "sales")
        n = len(await engine.events())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await receiver.wait_for(lambda: len(receiver.at("/fast")) >= n, timeout=4)
        took = loop.time() - started
        assert len(receiver.at("/slow")) == 2  # its two slots, still waiting for an answer
        td = d.tenants["test"]
        while (await engine.get_webhook("fast")).pending or "fast" in td.in_flight:
            await asyncio.sleep(0.02)
        assert td.in_flight == {"slow": 2}
        assert (await engine.get_webhook("slow")).pending == n  # the rest wait their turn
    assert took < 2.5


async def test_events_trimmed_before_delivery_are_recorded_as_failed(redis, receiver: Receiver):
    # Not the `engine` fixture: its invariant 3 reads the stream, trimmed here on purpose.
    engine = Engine(redis, "test")
    small = Engine(redis, "test", events_maxlen=5)
    await hook(engine, receiver)
    await contact_center(small)
    for i in range(300):  # far past MAXLEN ~5, with no dispatcher running
        await small.push_task(f"c-{i}", "sales")
    async with dispatching(engine):
        for _ in range(100):
            if (await engine.get_webhook("wh-1")).failed:
                break
            await asyncio.sleep(0.05)
        await receiver.wait_for(lambda: len(receiver.received) > 0)
    page = await engine.list_deliveries("wh-1")
    assert len(page.items) == 1
    gap = page.items[0]
    assert gap.id.startswith("gap-") and gap.event_id is None and gap.status is DeliveryStatus.FAILED
    assert "trimmed" in gap.last_error
    with pytest.raises(InvalidTransition):
        await engine.retry_delivery("wh-1", gap.id)
    # what was still retained was delivered
    first_retained = (await engine.events())[0].id
    assert first_retained in {r.json["id"] for r in receiver.received}
    assert (await check(engine, events=False)).ok


async def test_secrets_are_never_logged(engine: Engine, receiver: Receiver,
                                        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    receiver.answer = lambda n, path: 500 if n % 2 == 0 else 200
    settings = dataclasses.replace(FAST, give_up_ms=100)
    await hook(engine, receiver)
    async with dispatching(engine, settings):
        await contact_center(engine)
        for i in range(5):
            await engine.push_task(f"c-{i}", "sales")
        await receiver.wait_for(lambda: len(receiver.received) >= 5)
        for _ in range(200):  # every delivery delivered or FAILED (logged)
            if (await engine.get_webhook("wh-1")).pending == 0:
                break
            await asyncio.sleep(0.05)
    assert (await engine.get_webhook("wh-1")).failed > 0
    text = "\n".join(r.getMessage() + str(r.args) + str(vars(r)) for r in caplog.records)
    assert "redroute.webhooks" in text  # the dispatcher did log
    assert SECRET not in text
    assert SECRET not in json.dumps([w.to_dict() for w in (await engine.list_webhooks()).items])
