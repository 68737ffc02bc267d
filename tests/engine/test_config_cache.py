"""The configuration the function library keeps between calls (config.lua):
every call sees the MRDs and queues as they are now, whichever script or
tenant wrote them, and whatever happened to the keys in between."""

from __future__ import annotations

import pytest

from redroute import Engine, NotFound
from tests.support.center import setup_center


async def ttl_of_push(engine: Engine, conversation: str, queue: str = "sales") -> int:
    """The agentRequestTtlMs a new task of queue gets (its queue's, read by
    push_task), the task closed again."""
    t = await engine.push_task(conversation, queue)
    await engine.set_task_state(t.id, "CLOSED", "DONE")
    return t.ttl_deadline - t.enqueue_time


async def max_requests_seen(engine: Engine, mrd: str = "chat") -> int:
    return (await engine.get_agent("a1")).mrd(mrd).max_requests


async def test_a_queue_changed_by_put_queue_is_seen_by_the_next_push(engine: Engine):
    await setup_center(engine, ttl_ms=300_000)
    assert await ttl_of_push(engine, "c-1") == 300_000  # (the queue is kept now)

    await engine.put_queue("sales", mrd_id="chat", agent_request_ttl_ms=120_000)

    assert await ttl_of_push(engine, "c-2") == 120_000


async def test_an_mrd_changed_by_put_mrd_is_seen_by_the_next_call(engine: Engine):
    await setup_center(engine, max_requests=1)
    assert await max_requests_seen(engine) == 1

    await engine.put_mrd("chat", max_requests=3)

    assert await max_requests_seen(engine) == 3


async def test_a_queue_deleted_and_made_again_is_seen_as_made_again(engine: Engine):
    await setup_center(engine, agents=())
    await engine.put_mrd("voice")
    assert await ttl_of_push(engine, "c-1") == 300_000

    await engine.delete_queue("sales")
    await engine.put_queue("sales", mrd_id="voice", agent_request_ttl_ms=60_000)

    t = await engine.push_task("c-2", "sales")
    assert (t.mrd_id, t.ttl_deadline - t.enqueue_time) == ("voice", 60_000)


async def test_a_deleted_queue_is_not_found_by_the_next_call(engine: Engine):
    await setup_center(engine, agents=())
    assert await ttl_of_push(engine, "c-1") == 300_000

    await engine.delete_queue("sales")

    with pytest.raises(NotFound):
        await engine.push_task("c-2", "sales")


async def test_an_mrd_deleted_and_made_again_is_seen_as_made_again(engine: Engine):
    await setup_center(engine, mrd="chat", queues=(), max_requests=1)
    assert await max_requests_seen(engine) == 1

    await engine.delete_mrd("chat")
    assert [m.mrd_id for m in (await engine.get_agent("a1")).mrd_states] == []
    await engine.put_mrd("chat", max_requests=4)

    assert await max_requests_seen(engine) == 4


async def test_configuration_made_again_after_a_flush_is_seen_as_made_again(engine: Engine):
    await setup_center(engine, ttl_ms=300_000)
    assert await ttl_of_push(engine, "c-1") == 300_000
    token = await engine.redis.get(engine.keys.config_token)

    await engine.redis.flushall()
    await setup_center(engine, ttl_ms=90_000)

    assert await engine.redis.get(engine.keys.config_token) != token
    assert await ttl_of_push(engine, "c-2") == 90_000


async def test_configuration_made_again_after_its_keys_were_deleted_by_hand_is_seen(engine: Engine):
    await setup_center(engine, ttl_ms=300_000, max_requests=1)
    assert await ttl_of_push(engine, "c-1") == 300_000 and await max_requests_seen(engine) == 1

    await engine.redis.delete(*await engine.redis.keys(engine.keys.prefix.replace("{", "[{]") + "*"))
    await setup_center(engine, ttl_ms=45_000, max_requests=2)

    assert await ttl_of_push(engine, "c-2") == 45_000 and await max_requests_seen(engine) == 2


async def test_two_tenants_with_the_same_ids_see_their_own_configuration(engine: Engine):
    other = Engine(engine.redis, "other")
    await setup_center(engine, ttl_ms=300_000, max_requests=1)
    await setup_center(other, ttl_ms=30_000, max_requests=5)

    for _ in range(2):  # the second time from what is kept
        assert await ttl_of_push(engine, "c-1") == 300_000 and await max_requests_seen(engine) == 1
        assert await ttl_of_push(other, "c-1") == 30_000 and await max_requests_seen(other) == 5


async def test_a_tenant_with_no_token_gets_one_from_a_call_that_changes_state(engine: Engine):
    # (A tenant configured before the token existed: read afresh until then.)
    await setup_center(engine)
    await engine.redis.delete(engine.keys.config_token)
    await engine.get_queue("sales")
    assert await engine.redis.get(engine.keys.config_token) is None  # a read writes nothing

    await engine.push_task("c-1", "sales")

    assert await engine.redis.get(engine.keys.config_token) is not None


async def test_a_hand_edit_is_seen_once_the_token_is_deleted(engine: Engine):
    # What an operator who edits configuration keys by hand must do.
    await setup_center(engine, ttl_ms=300_000)
    assert await ttl_of_push(engine, "c-1") == 300_000

    await engine.redis.hset(engine.keys.queue("sales"), "agentRequestTtlMs", "70000")
    assert await ttl_of_push(engine, "c-2") == 300_000  # the queue kept: the edit unseen
    await engine.redis.delete(engine.keys.config_token)

    assert await ttl_of_push(engine, "c-3") == 70_000


async def test_more_tenants_than_are_kept_each_see_their_own_configuration(engine: Engine):
    # (64 tenants are kept at most: the 65th drops them all.)
    tenants = [Engine(engine.redis, f"t{i}") for i in range(70)]
    for i, t in enumerate(tenants):
        await t.put_mrd("chat")
        await t.put_queue("sales", mrd_id="chat", agent_request_ttl_ms=1000 * (i + 1))
    for _ in range(2):
        for i, t in enumerate(tenants):
            assert await ttl_of_push(t, "c-1") == 1000 * (i + 1)


async def test_more_queues_than_are_kept_are_each_seen_as_they_are(engine: Engine):
    # (256 MRDs and queues of a tenant are kept at most: one more drops them.)
    await engine.put_mrd("chat")
    n = 260
    for i in range(n):
        await engine.put_queue(f"q{i}", mrd_id="chat", agent_request_ttl_ms=1000 * (i + 1))
    for _ in range(2):
        for i in range(0, n, 7):
            assert await ttl_of_push(engine, "c-1", f"q{i}") == 1000 * (i + 1)
    await engine.put_queue("q0", mrd_id="chat", agent_request_ttl_ms=5)
    assert await ttl_of_push(engine, "c-1", "q0") == 5
