"""A tenant's virtual clock (set_clock): every script of that tenant reads
it, it stands still between calls and never runs back, and no other tenant's
clock moves with it."""

from __future__ import annotations

import time

import pytest

from redroute import Engine
from redroute.checks.invariants import check
from redroute.errors import InvalidTransition
from redroute.scripts import lua_folder
from tests.support.center import setup_center

DAY_2000 = 946_684_800_000  # 2000-01-01T00:00:00Z, far from any real clock


async def test_a_tenant_with_a_virtual_clock_stamps_its_tasks_with_that_time(engine: Engine):
    await engine.set_clock(DAY_2000)
    await setup_center(engine)

    t = await engine.push_task("c-1", "sales")

    assert t.enqueue_time == t.created_at == DAY_2000
    assert t.ttl_deadline == DAY_2000 + 300_000
    assert await engine.clock() == DAY_2000


async def test_a_virtual_clock_stands_still_between_calls(engine: Engine):
    await engine.set_clock(DAY_2000)
    await setup_center(engine)
    first = await engine.push_task("c-1", "sales")
    time.sleep(0.02)  # real time passes; the tenant's does not

    second = await engine.push_task("c-2", "sales")

    assert second.enqueue_time == first.enqueue_time == DAY_2000


async def test_deadlines_fire_when_the_virtual_clock_reaches_them_and_not_before(engine: Engine):
    await engine.set_clock(DAY_2000)
    await setup_center(engine, ready=True, sla_ms=30_000)
    t = await engine.push_task("c-1", "sales")
    assert t.media.state == "RESERVED"

    await engine.set_clock(DAY_2000 + 29_999)
    early = await engine.fire_due()
    await engine.set_clock(DAY_2000 + 30_000)
    due = await engine.fire_due()

    assert (early.fired, early.next_deadline) == (0, DAY_2000 + 30_000)
    assert due.fired == 1 and due.lags_ms == [0] and due.now == DAY_2000 + 30_000
    closed = await engine.get_task(t.id)
    assert (closed.state, closed.reason_code, closed.updated_at) == ("CLOSED", "RONA", DAY_2000 + 30_000)


async def test_a_virtual_clock_never_runs_back_and_a_refused_move_changes_nothing(engine: Engine):
    await engine.set_clock(DAY_2000 + 1000)

    with pytest.raises(InvalidTransition, match="never runs back"):
        await engine.set_clock(DAY_2000)

    assert await engine.clock() == DAY_2000 + 1000
    assert await engine.set_clock(DAY_2000 + 1000) == DAY_2000 + 1000  # standing still is allowed


async def test_another_tenants_clock_is_untouched_by_a_virtual_clock(engine: Engine):
    # Tenants whose names share a prefix with the simulated one, and the
    # default tenant: each keeps the Redis clock.
    await engine.set_clock(DAY_2000)
    others = [engine.for_tenant(name) for name in ("test-1", "tes", "test.x", "default")]
    sec, _ = await engine.redis.time()
    for other in others:
        await setup_center(other)
        t = await other.push_task("c-1", "sales")
        assert abs(t.enqueue_time - int(sec) * 1000) < 60_000, other.tenant
        assert await other.redis.get(other.keys.clock_virtual) is None
    assert await engine.clock() == DAY_2000


async def test_an_offset_does_not_move_a_virtual_clock(engine: Engine):
    await engine.set_clock(DAY_2000)
    await engine.advance_clock(5000)
    assert await engine.clock() == DAY_2000


def test_only_the_clock_fragment_and_set_clock_name_the_virtual_clock():
    # Production scripts cannot tell a simulated tenant from a real one: none
    # reads the virtual clock but base's now_ms, which every script uses.
    naming = sorted(str(p.relative_to(lua_folder())) for p in lua_folder().rglob("*.lua")
                    if "'virtual'" in p.read_text())
    assert naming == ["includes/base.lua", "set_clock.lua"]


async def test_invariants_see_a_clock_that_ran_back(engine: Engine):
    await engine.set_clock(DAY_2000 + 60_000)
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")
    assert (await check(engine)).ok
    await engine.redis.set(engine.keys.clock_virtual, DAY_2000)  # by hand: set_clock refuses it

    report = await check(engine)

    assert any(f"task {t.id}: createdAt" in v and "ran back" in v for v in report.violations)
    await engine.set_clock(DAY_2000 + 60_000)  # (the suite checks the invariants after each test)


async def test_invariants_see_a_redis_clock_that_ran_back(engine: Engine):
    await engine.advance_clock(3_600_000)
    await setup_center(engine)
    t = await engine.push_task("c-1", "sales")
    await engine.advance_clock(-3_600_000)

    report = await check(engine)

    assert any(f"task {t.id}: updatedAt" in v for v in report.violations)
    await engine.advance_clock(3_600_000)
