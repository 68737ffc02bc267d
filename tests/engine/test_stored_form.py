"""The task document as stored: integer fields are kept as decimal strings,
and a document stored with JSON numbers (before that form) still reads and
routes the same."""

from __future__ import annotations

import json

from redroute import Engine
from tests.support.center import pass_time, setup_center

NUMBER_FIELDS = ("priority", "enqueueTime", "ttlDeadline", "createdAt", "updatedAt")


async def stored(engine: Engine, task_id: str) -> dict:
    return json.loads(await engine.redis.get(f"{engine.prefix}task:{task_id}"))


async def test_a_task_is_stored_with_its_integer_fields_as_strings(engine: Engine):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales", priority=7)

    doc = await stored(engine, t.id)

    assert [doc[f] for f in NUMBER_FIELDS] == [
        str(v) for v in (7, t.enqueue_time, t.ttl_deadline, t.created_at, t.updated_at)]
    assert doc["media"][0]["enqueueTime"] == str(t.media.enqueue_time)
    assert isinstance(t.priority, int) and isinstance(t.ttl_deadline, int)  # the API has numbers


async def test_a_task_stored_with_json_numbers_is_read_routed_and_expires_as_before(engine: Engine):
    await setup_center(engine, ttl_ms=60_000)
    waiting = await engine.push_task("c-1", "sales", priority=7)
    expiring = await engine.push_task("c-2", "sales")
    for t in (waiting, expiring):  # rewrite both in the old form
        doc = await stored(engine, t.id)
        for f in NUMBER_FIELDS:
            doc[f] = int(doc[f])
        doc["media"][0]["enqueueTime"] = int(doc["media"][0]["enqueueTime"])
        await engine.redis.set(f"{engine.prefix}task:{t.id}", json.dumps(doc))

    assert await engine.get_task(waiting.id) == waiting
    await engine.set_agent_state("a1", "READY")  # takes the best waiting task: priority 7
    got = await engine.get_task(waiting.id)
    assert (got.media.state, got.assigned_to, got.priority) == ("RESERVED", "a1", 7)
    assert got.enqueue_time == waiting.enqueue_time
    assert isinstance((await stored(engine, waiting.id))["priority"], str)  # saved in the new form

    await pass_time(engine, 60_000)  # the other one's TTL, read from an old-form deadline
    gone = await engine.get_task(expiring.id)
    assert (gone.state, gone.reason_code) == ("CLOSED", "NO_AGENT_AVAILABLE")
