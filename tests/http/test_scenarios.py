"""End-to-end scenarios through HTTP on real Redis, asserting the responses
and the events an SSE client receives. Time passes with advance_clock +
fire_due on the server's Redis (the server runs no timer worker here)."""

from __future__ import annotations

from redroute.client import Client
from redroute.events import Event
from tests.support.center import pass_time, summary
from tests.support.http import Recorder, Server, assert_invariants, record, server_fixture  # noqa: F401


async def setup(c: Client, *, agents: tuple[str, ...] = ("a1",), wrap_up: bool = False,
                max_requests: int = 1) -> None:
    await c.put_mrd("chat", max_requests=max_requests, wrap_up_enabled=wrap_up,
                    wrap_up_timeout_ms=5_000)
    await c.put_queue("sales", mrd_id="chat", agent_sla_ms=10_000, agent_request_ttl_ms=60_000)
    for a in agents:
        await c.put_agent(a, queues=["sales"])


async def settled(srv: Server, rec: Recorder) -> list[Event]:
    """Waits until the SSE client has every event the stream holds after its
    start, and checks it got exactly those, in order."""
    k = rec.kwargs
    types = frozenset(k["types"]) if k.get("types") else None
    stream = [e for e in await srv.engine.events(k["after"])
              if e.matches(types, k.get("agent_id"), k.get("queue_id"), k.get("conversation_id"))]
    got = await rec.wait_count(len(stream))
    assert [e.id for e in got] == [e.id for e in stream]
    assert [(e.type, e.data) for e in got] == [(e.type, e.data) for e in stream]
    return got


def kinds(events: list[Event]) -> list[tuple]:
    return [summary(e)[:5] if e.type != "AGENT_STATE_CHANGED" else summary(e) for e in events]


def has_in_order(events: list[Event], *wanted: tuple) -> bool:
    """Each wanted tuple is a prefix of some event's summary, in this order."""
    it = iter(summary(e) for e in events)
    return all(any(s[:len(w)] == w for s in it) for w in wanted)


async def test_push_reserve_accept_close(server: Server) -> None:
    c = server.client
    await setup(c)
    await c.set_agent_state("a1", "READY")
    rec = await record(server)
    t = await c.push_task("c1", "sales")
    assert t.media.state == "RESERVED" and t.assigned_to == "a1"
    t = await c.accept(t.id, t.media.id, "a1")
    t = await c.close_media(t.id, t.media.id)
    assert (t.state, t.reason_code) == ("CLOSED", "DONE")
    ev = await settled(server, rec)
    assert has_in_order(
        ev,
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("QUEUED",)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("RESERVED",)),
        ("AGENT_RESERVED", t.id, "ACTIVE", None, ("RESERVED",), "a1"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "BUSY", None, 1),)),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",)),
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "DONE", ("CLOSED",)),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
    ), kinds(ev)
    await rec.stop()
    await assert_invariants(server.engine)


async def test_rona_reroutes_with_same_request(server: Server) -> None:
    c = server.client
    await setup(c, agents=("a1", "a2"))
    await c.set_agent_state("a1", "READY")
    rec = await record(server)
    t = await c.push_task("c1", "sales")
    assert t.assigned_to == "a1"
    assert await pass_time(server.engine, 10_001) == 1
    old = await c.get_task(t.id)
    assert (old.state, old.reason_code) == ("CLOSED", "RONA")
    tasks = await c.conversation_tasks("c1")
    new = tasks[-1]
    assert new.id != t.id and new.request_id == t.request_id
    assert new.media.state == "QUEUED" and new.enqueue_time == t.enqueue_time
    a1 = await c.get_agent("a1")
    assert (a1.mrd("chat").state, a1.mrd("chat").reason_code) == ("NOT_READY", "RONA")
    # Another agent takes the re-routed request
    await c.set_agent_state("a2", "READY")
    assert (await c.get_task(new.id)).assigned_to == "a2"
    ev = await settled(server, rec)
    assert has_in_order(
        ev,
        ("AGENT_RESERVED", t.id),
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "NOT_READY", "RONA", 0),)),
        ("TASK_STATE_CHANGED", new.id, "ACTIVE", None, ("QUEUED",)),
        ("AGENT_RESERVED", new.id, "ACTIVE", None, ("RESERVED",), "a2"),
    ), kinds(ev)
    await rec.stop()
    await assert_invariants(server.engine)


async def test_decline_takes_the_rona_path(server: Server) -> None:
    c = server.client
    await setup(c)
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    rec = await record(server)
    closed = await c.set_task_state(t.id, "CLOSED", "RONA")
    assert (closed.state, closed.reason_code) == ("CLOSED", "RONA")
    ev = await settled(server, rec)
    assert has_in_order(ev, ("TASK_STATE_CHANGED", t.id, "CLOSED", "RONA"),
                        ("TASK_STATE_CHANGED",)), kinds(ev)
    await rec.stop()
    await assert_invariants(server.engine)


async def test_ttl_closes_no_agent_available(server: Server) -> None:
    c = server.client
    await setup(c)
    rec = await record(server)
    t = await c.push_task("c1", "sales", agent_request_ttl_ms=2_000)
    assert t.media.state == "QUEUED"
    assert await pass_time(server.engine, 2_001) == 1
    t = await c.get_task(t.id)
    assert (t.state, t.reason_code) == ("CLOSED", "NO_AGENT_AVAILABLE")
    assert (await c.get_queue("sales")).waiting == 0
    ev = await settled(server, rec)
    assert [summary(e)[:4] for e in ev] == [
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None),
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "NO_AGENT_AVAILABLE"),
        ("NO_AGENT_AVAILABLE", t.id, "CLOSED", "NO_AGENT_AVAILABLE"),
    ]
    await rec.stop()
    await assert_invariants(server.engine)


async def test_pull(server: Server) -> None:
    c = server.client
    await setup(c, max_requests=2)
    await c.set_agent_state("a1", "LOGIN")
    rec = await record(server)
    t, created = await c.pull_task("a1", "c7", "chat", direction="OUTBOUND")
    assert created and t.mode == "AGENT" and t.media.state == "ACTIVE"
    t2, created = await c.pull_task("a1", "c7", "chat")
    assert not created and t2.id == t.id
    ev = await settled(server, rec)
    assert has_in_order(
        ev,
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE",), True),
        ("AGENT_STATE_CHANGED", "a1"),
        ("TASK_STATE_CHANGED", t.id, "ACTIVE", None, ("ACTIVE", "ACTIVE"), False),
    ), kinds(ev)
    await rec.stop()
    await assert_invariants(server.engine)


async def test_conference_queue_and_named_agent(server: Server) -> None:
    c = server.client
    await setup(c, agents=("a1", "a2", "a3"))
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    await c.accept(t.id, t.media.id)
    rec = await record(server, conversation_id="c1")
    await c.set_agent_state("a2", "READY")
    conf = await c.conference("c1", queue_id="sales")
    assert (conf.direction, conf.mode, conf.assigned_to) == ("DIRECT_CONFERENCE", "QUEUE", "a2")
    # a3 is not available: the named conference closes RONA and publishes NO_AGENT_AVAILABLE
    named = await c.conference("c1", agent_id="a3")
    assert (named.state, named.reason_code) == ("CLOSED", "RONA")
    await c.set_agent_state("a3", "READY")
    named = await c.conference("c1", agent_id="a3")
    assert (named.mode, named.assigned_to, named.media.state) == ("AGENT", "a3", "RESERVED")
    ev = await settled(server, rec)  # conversation filter: only c1's task events
    assert all(e.type != "AGENT_STATE_CHANGED" for e in ev)
    assert has_in_order(
        ev,
        ("AGENT_RESERVED", conf.id),
        ("NO_AGENT_AVAILABLE",),
        ("AGENT_RESERVED", named.id),
    ), kinds(ev)
    await rec.stop()
    await assert_invariants(server.engine)


async def test_transfers(server: Server) -> None:
    c = server.client
    await setup(c, agents=("a1", "a2", "a3"))
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    await c.accept(t.id, t.media.id)
    rec = await record(server)
    # Named agent not available: closed RONA + NO_AGENT_AVAILABLE, not re-queued
    nt = await c.transfer("c1", "a1", agent_id="a2")
    assert (nt.direction, nt.mode, nt.state, nt.reason_code) == (
        "DIRECT_TRANSFER", "AGENT", "CLOSED", "RONA")
    old = await c.get_task(t.id)
    assert (old.state, old.reason_code) == ("CLOSED", "TRANSFERRED")
    ev = await settled(server, rec)
    assert has_in_order(
        ev,
        ("TASK_STATE_CHANGED", nt.id, "CLOSED", "RONA"),
        ("NO_AGENT_AVAILABLE", nt.id),
        ("TASK_STATE_CHANGED", t.id, "WRAP_UP", "TRANSFERRED"),
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "TRANSFERRED"),
    ), kinds(ev)
    await rec.stop()

    # Direct queue transfer: routed like PUSH, never back to the transferring agent
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c2", "sales")
    await c.accept(t.id, t.media.id)
    await c.set_agent_state("a2", "READY")
    rec = await record(server, types=["AGENT_RESERVED", "NO_AGENT_AVAILABLE"])
    qt = await c.transfer("c2", "a1", queue_id="sales")
    assert (qt.direction, qt.mode, qt.assigned_to) == ("DIRECT_TRANSFER", "QUEUE", "a2")
    await c.accept(qt.id, qt.media.id, "a2")
    # A transfer task that is not accepted closes RONA and is not re-queued
    await c.set_agent_state("a3", "READY")
    nt = await c.transfer("c2", "a2", agent_id="a3")
    assert nt.assigned_to == "a3"
    await pass_time(server.engine, 10_001)
    nt = await c.get_task(nt.id)
    assert (nt.state, nt.reason_code) == ("CLOSED", "RONA")
    ev = await rec.wait_count(3)
    assert [summary(e)[:2] for e in ev] == [
        ("AGENT_RESERVED", qt.id), ("AGENT_RESERVED", nt.id), ("NO_AGENT_AVAILABLE", nt.id)]
    await rec.stop()
    await assert_invariants(server.engine)


async def test_wrap_up(server: Server) -> None:
    c = server.client
    await setup(c, wrap_up=True)
    await c.set_agent_state("a1", "READY")
    rec = await record(server, agent_id="a1")
    t = await c.push_task("c1", "sales")
    t = await c.accept(t.id, t.media.id)
    t = await c.close_media(t.id, t.media.id)
    assert (t.state, t.reason_code) == ("WRAP_UP", "DONE")
    a = await c.get_agent("a1")
    assert a.mrd("chat").active_tasks == 1  # wrap-up holds the slot
    assert await pass_time(server.engine, 5_001) == 1
    t = await c.get_task(t.id)
    assert (t.state, t.reason_code) == ("CLOSED", "WRAP_UP_EXPIRED")
    # Applied by the agent before the timeout
    t2 = await c.push_task("c2", "sales")
    t2 = await c.accept(t2.id, t2.media.id)
    t2 = await c.set_task_state(t2.id, "WRAP_UP")
    t2 = await c.set_task_state(t2.id, "CLOSED", "WRAP_UP_APPLIED")
    assert (t2.state, t2.reason_code) == ("CLOSED", "WRAP_UP_APPLIED")
    ev = await rec.wait(lambda ev: any(summary(e)[1:4] == (t2.id, "CLOSED", "WRAP_UP_APPLIED")
                                       for e in ev))
    assert has_in_order(
        ev,
        ("TASK_STATE_CHANGED", t.id, "WRAP_UP", "DONE"),
        ("TASK_STATE_CHANGED", t.id, "CLOSED", "WRAP_UP_EXPIRED"),
        ("AGENT_STATE_CHANGED", "a1", (("chat", "READY", None, 0),)),
        ("TASK_STATE_CHANGED", t2.id, "WRAP_UP", "DONE"),
        ("TASK_STATE_CHANGED", t2.id, "CLOSED", "WRAP_UP_APPLIED"),
    ), kinds(ev)
    assert all(e.agent_id == "a1" for e in ev)
    await rec.stop()
    await assert_invariants(server.engine)


async def test_logout_reroutes_reserved_and_closes_active(server: Server) -> None:
    c = server.client
    await setup(c, agents=("a1",), max_requests=2)
    await c.set_agent_state("a1", "READY")
    t1 = await c.push_task("c1", "sales")
    await c.accept(t1.id, t1.media.id)
    t2 = await c.push_task("c2", "sales")
    assert t2.assigned_to == "a1"
    rec = await record(server)
    await c.set_agent_state("a1", "LOGOUT")
    t1, t2 = await c.get_task(t1.id), await c.get_task(t2.id)
    assert (t1.reason_code, t2.reason_code) == ("AGENT_LOGOUT", "REROUTE")
    new = (await c.conversation_tasks("c2"))[-1]
    assert new.request_id == t2.request_id and new.media.state == "QUEUED"
    await settled(server, rec)
    await rec.stop()
    await assert_invariants(server.engine)
