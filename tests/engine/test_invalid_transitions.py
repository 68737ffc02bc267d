"""Invalid transitions: each is refused with InvalidTransition (409
INVALID_TRANSITION) and changes nothing: every key of the tenant, and the
event stream, are exactly as they were before the call."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from redroute import Engine
from redroute.errors import InvalidTransition
from redroute.model import Task
from tests.support.center import setup_center


async def snapshot(engine: Engine) -> dict[str, Any]:
    """Every key under the tenant's prefix: its type, its whole value and
    whether it has an expiry; and the stream's length and last entry id."""
    r = engine.redis
    pattern = engine.prefix.replace("{", "\\{").replace("}", "\\}") + "*"
    keys = sorted([k async for k in r.scan_iter(match=pattern, count=1000)])
    out: dict[str, Any] = {}
    for k in keys:
        kind = await r.type(k)
        if kind == "string":
            value: Any = await r.get(k)
        elif kind == "hash":
            value = await r.hgetall(k)
        elif kind == "set":
            value = sorted(await r.smembers(k))
        elif kind == "zset":
            value = await r.zrange(k, 0, -1, withscores=True)
        elif kind == "stream":
            value = await r.xrange(k)
        elif kind == "list":
            value = await r.lrange(k, 0, -1)
        else:
            raise AssertionError(f"unexpected key type {kind} for {k}")
        out[k] = (kind, value, await r.pttl(k) >= 0)
    last = await r.xrevrange(engine.events_key, count=1)
    out["<stream>"] = (await r.xlen(engine.events_key), last[0][0] if last else None)
    return out


async def assert_refused(engine: Engine, call: Awaitable[Any]) -> None:
    before = await snapshot(engine)
    with pytest.raises(InvalidTransition) as err:
        await call
    assert (err.value.code, err.value.status) == ("INVALID_TRANSITION", 409)
    assert await snapshot(engine) == before


async def _reserved(engine: Engine, cid: str = "c-1") -> Task:
    t = await engine.push_task(cid, "sales")
    assert t.media.state == "RESERVED" and t.assigned_to == "a1"
    return t


async def _active(engine: Engine, cid: str = "c-1") -> Task:
    t = await _reserved(engine, cid)
    return await engine.accept(t.id, t.media.id, "a1")


# accept


async def test_accept_of_a_task_reserved_to_someone_else(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    t = await _reserved(engine)
    await assert_refused(engine, engine.accept(t.id, t.media.id, "a2"))


async def test_accept_of_a_media_already_active(engine: Engine):
    await setup_center(engine, ready=True)
    t = await _active(engine)
    await assert_refused(engine, engine.accept(t.id, t.media.id, "a1"))


async def test_accept_of_a_media_still_queued(engine: Engine):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")
    await assert_refused(engine, engine.accept(t.id, t.media.id, "a1"))


async def test_accept_of_a_media_of_a_closed_task(engine: Engine):
    await setup_center(engine, ready=True)
    t = await _reserved(engine)
    await engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")
    await assert_refused(engine, engine.accept(t.id, t.media.id, "a1"))


# transfer


async def test_transfer_from_an_agent_with_no_task_for_the_conversation(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await _active(engine)
    await assert_refused(engine, engine.transfer("c-1", "a2", queue_id="sales"))
    await assert_refused(engine, engine.transfer("c-1", "a2", agent_id="a1"))
    await assert_refused(engine, engine.transfer("c-404", "a1", queue_id="sales"))


async def test_transfer_of_a_conversation_the_agent_has_not_accepted(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True)
    await _reserved(engine)
    await assert_refused(engine, engine.transfer("c-1", "a1", agent_id="a2"))


async def test_transfer_of_a_conversation_in_wrap_up(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True, wrap_up=True)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    await assert_refused(engine, engine.transfer("c-1", "a1", queue_id="sales"))


async def test_transfer_to_oneself(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    await _active(engine)
    await assert_refused(engine, engine.transfer("c-1", "a1", agent_id="a1"))


async def test_named_transfer_to_an_agent_already_in_the_conversation(engine: Engine):
    # Chosen: like a conference, a transfer adds another agent; handing the
    # conversation to one already in it would give that agent two tasks of it.
    await setup_center(engine, agents=("a1", "a2"), max_requests=2)
    await engine.set_agent_state("a1", "READY")
    await _active(engine)
    await engine.set_agent_state("a2", "READY")
    conf = await engine.conference("c-1", agent_id="a2")
    assert conf.media.state == "RESERVED"
    await assert_refused(engine, engine.transfer("c-1", "a1", agent_id="a2"))
    await engine.accept(conf.id, conf.media.id, "a2")
    await assert_refused(engine, engine.transfer("c-1", "a1", agent_id="a2"))


# wrap-up


async def test_wrap_up_on_a_closed_task(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    await engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED")
    await assert_refused(engine, engine.set_task_state(t.id, "WRAP_UP"))


async def test_wrap_up_when_the_mrd_does_not_enable_it(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=False)
    t = await _active(engine)
    await assert_refused(engine, engine.set_task_state(t.id, "WRAP_UP"))


async def test_wrap_up_of_a_task_already_in_wrap_up(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    await assert_refused(engine, engine.set_task_state(t.id, "WRAP_UP"))


async def test_wrap_up_of_a_task_no_agent_joined(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _reserved(engine)
    await assert_refused(engine, engine.set_task_state(t.id, "WRAP_UP"))


# close


async def test_close_of_an_already_closed_media(engine: Engine):
    await setup_center(engine, ready=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    t = await engine.close_media(t.id, t.active_media[0].id)
    assert t.state == "ACTIVE"
    await assert_refused(engine, engine.close_media(t.id, t.active_media[0].id))


async def test_close_of_a_media_of_a_closed_task(engine: Engine):
    await setup_center(engine, ready=True)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    await assert_refused(engine, engine.close_media(t.id, t.media.id))


async def test_close_of_a_media_of_a_task_in_wrap_up(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    await assert_refused(engine, engine.close_media(t.id, t.media.id))


async def test_close_of_an_already_closed_task(engine: Engine):
    await setup_center(engine, ready=True)
    t = await _active(engine)
    await engine.set_task_state(t.id, "CLOSED")
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED"))
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED", "FORCE_CLOSED"))


# pull


async def test_pull_while_logged_out(engine: Engine):
    await setup_center(engine)  # a1 is LOGOUT
    await assert_refused(engine, engine.pull_task("a1", "c-1", "chat"))
    await assert_refused(engine, engine.pull_task("a1", "c-1", "chat", direction="OUTBOUND"))


async def test_pull_at_capacity(engine: Engine):
    await setup_center(engine, ready=True, max_requests=1)
    await engine.pull_task("a1", "c-1", "chat")
    await assert_refused(engine, engine.pull_task("a1", "c-2", "chat"))
    # Not autoJoin: another media on the held conversation needs a slot too.
    await assert_refused(engine, engine.pull_task("a1", "c-1", "chat"))


async def test_pull_of_a_conversation_the_agent_holds_in_wrap_up(engine: Engine):
    # Chosen: there is nothing to join, and a second task would give the
    # agent two live tasks of one conversation; it closes the wrap-up first.
    await setup_center(engine, ready=True, wrap_up=True, max_requests=2)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    await engine.close_media(t.id, t.media.id)
    await assert_refused(engine, engine.pull_task("a1", "c-1", "chat"))


# agent states


async def test_mrd_state_while_logged_out(engine: Engine):
    await setup_center(engine)
    await assert_refused(engine, engine.set_agent_state("a1", "READY", mrd_id="chat"))
    await assert_refused(engine, engine.set_agent_state("a1", "NOT_READY", mrd_id="chat"))


async def test_not_ready_while_logged_out(engine: Engine):
    await setup_center(engine)
    await assert_refused(engine, engine.set_agent_state("a1", "NOT_READY"))
    await engine.set_agent_state("a1", "READY")
    await engine.set_agent_state("a1", "LOGOUT")
    await assert_refused(engine, engine.set_agent_state("a1", "NOT_READY", reason_code="BREAK"))


# conference


async def test_conference_to_an_agent_already_in_the_conversation(engine: Engine):
    await setup_center(engine, agents=("a1", "a2"), ready=True, max_requests=2)
    await _active(engine)
    await assert_refused(engine, engine.conference("c-1", agent_id="a1"))
    conf = await engine.conference("c-1", agent_id="a2")
    assert conf.media.state == "RESERVED"
    await assert_refused(engine, engine.conference("c-1", agent_id="a2"))


# decline


async def test_decline_of_an_accepted_task(engine: Engine):
    await setup_center(engine, ready=True)
    t = await _active(engine)
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED", "RONA"))


async def test_decline_of_a_queued_task(engine: Engine):
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED", "RONA"))


async def test_decline_of_a_pulled_task(engine: Engine):
    await setup_center(engine, ready=True)
    t, _ = await engine.pull_task("a1", "c-1", "chat")
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED", "RONA"))


async def test_decline_of_a_task_in_wrap_up(engine: Engine):
    await setup_center(engine, ready=True, wrap_up=True)
    t = await _active(engine)
    await engine.close_media(t.id, t.media.id)
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED", "RONA"))


async def test_decline_of_a_closed_task(engine: Engine):
    await setup_center(engine, ready=True)
    t = await _reserved(engine)
    await engine.set_task_state(t.id, "CLOSED", "RONA")
    await assert_refused(engine, engine.set_task_state(t.id, "CLOSED", "RONA"))
