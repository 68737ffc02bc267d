"""`redroute check`: the invariants of one tenant, or of every tenant in
rr:tenants, verified on a live Redis; exit 1 on a violation, 2 when the
check cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis.asyncio as aioredis

from localredis import free_port
from redroute import Engine
from redroute.keys import TenantKeys, timer_member
from tests.support.center import setup_center
from tests.support.redis_server import RedisProcess


def run_check(url: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if url:
        env["REDIS_URL"] = url
    return subprocess.run([sys.executable, "-m", "redroute", "check", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
async def live(redis_server: RedisProcess):
    """Two tenants with work in progress on the suite's own redis-server."""
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    await redis.flushall()
    for tenant in ("acme", "globex"):
        engine = Engine(redis, tenant)
        await setup_center(engine, agents=("a1", "a2"), max_requests=2, ready=True)
        t = await engine.push_task("c-1", "sales")
        await engine.accept(t.id, t.media.id, "a1")
        await engine.push_task("c-2", "sales")
    yield redis
    await redis.aclose()


async def test_check_of_healthy_tenants_exits_0(live, redis_server: RedisProcess):
    done = run_check(redis_server.url, "--tenant", "acme")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "tenant acme: OK (2 live tasks, 0 closed, 2 agents)\n"


async def test_check_reports_each_violation_and_exits_1(live, redis_server: RedisProcess):
    held = (await Engine(live, "acme").get_agent("a1")).mrd("chat").active_tasks
    # A slot count gone wrong, on the same side of maxRequests (2), so that
    # a1's availability (and the queue's index) stays what it was: a1 holds
    # one or both tasks, depending on whether the setup ran in one ms.
    wrong = 0 if held < 2 else 3
    await live.hset(TenantKeys.of("acme").agent("a1"), "chat|n", wrong)

    done = run_check(redis_server.url, "--tenant", "acme", "--settle", "0.1")

    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "tenant acme: 2 violation(s) (2 live tasks, 0 closed, 2 agents)",
        f"  - agent a1 mrd chat: stored count {wrong}, open medias {held}",
        "  - agent a1: last event differs from state "
        + str((await Engine(live, "acme").get_agent("a1")).to_dict()),
    ]


async def test_check_reports_a_statistics_minute_that_disagrees_with_the_stream(
    live, redis_server: RedisProcess,
):
    engine = Engine(live, "acme")
    [key] = await live.keys(engine.keys.st("sales", "*"))  # the minute of the setup
    minute = key.rsplit(":", 1)[1]
    stored = await live.hgetall(key)
    await live.hincrby(key, "e", 5)

    done = run_check(redis_server.url, "--tenant", "acme", "--settle", "0.1")

    assert done.returncode == 1
    e = int(stored["e"])
    assert done.stdout.splitlines()[1:] == [
        f"  - statistics of queue sales, minute {minute}: stored/stream differ: e={e + 5}/{e}"]


async def test_check_without_a_tenant_checks_every_tenant_of_the_registry(
    live, redis_server: RedisProcess,
):
    await live.sadd(TenantKeys.of("globex").live, "t-404")  # a live task with no document

    done = run_check(redis_server.url, "--settle", "0.1", "--no-events")

    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "tenant acme: OK (2 live tasks, 0 closed, 2 agents)",
        "tenant globex: 1 violation(s) (2 live tasks, 0 closed, 2 agents)",
        "  - live task t-404 has no document",
    ]


async def test_check_prints_json_on_request(live, redis_server: RedisProcess):
    await live.zadd(TenantKeys.of("acme").timers, {timer_member("ttl", "t-404"): 1})

    done = run_check(redis_server.url, "--json", "--settle", "0")

    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["ok"] is False and out["violations"] == 1
    assert out["tenants"]["acme"]["violations"] == ["deadline ttl|t-404 for a task that does not exist"]
    assert out["tenants"]["globex"] == {"ok": True, "violations": [], "tasksLive": 2,
                                        "tasksClosed": 0, "agents": 2}


async def test_check_reports_deadlines_overdue_when_asked(live, redis_server: RedisProcess):
    engine = Engine(live, "acme")
    await engine.advance_clock(400_000)  # past the RONA deadline of c-2; no worker runs

    done = run_check(redis_server.url, "--tenant", "acme", "--overdue-ms", "60000", "--settle", "0")

    assert done.returncode == 1
    assert done.stdout.splitlines()[1].startswith("  - task t-2: deadline rona|t-2|m-2 overdue by ")
    assert run_check(redis_server.url, "--tenant", "acme").returncode == 0  # not asked: OK


async def test_check_with_redis_down_exits_2():
    done = run_check(f"redis://127.0.0.1:{free_port()}/0", "--tenant", "acme")
    assert done.returncode == 2
    assert done.stderr.startswith("redroute check: Redis is unavailable")


async def test_check_without_a_redis_url_exits_2():
    done = run_check(None)
    assert done.returncode == 2
    assert "needs a live Redis" in done.stderr


async def test_check_of_an_invalid_tenant_name_exits_2(redis_server: RedisProcess):
    done = run_check(redis_server.url, "--tenant", "a{b}")
    assert done.returncode == 2
    assert "tenant must be" in done.stderr


async def test_check_of_a_tenant_that_is_not_registered_exits_1_and_says_so(
        live, redis_server: RedisProcess):
    done = run_check(redis_server.url, "--tenant", "acme", "--tenant", "acmee")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "tenant acmee: not registered (not in rr:tenants): nothing to check",
        "tenant acme: OK (2 live tasks, 0 closed, 2 agents)",
    ]
    done = run_check(redis_server.url, "--tenant", "acmee", "--json")
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["ok"] is False and out["tenants"] == {"acmee": {"ok": False, "registered": False}}
    assert not await live.exists("rr:{acmee}:agents")  # looking registered nothing
    assert "acmee" not in await live.smembers("rr:tenants")
