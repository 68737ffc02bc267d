"""Redis Cluster: tenants spread over the shards of a real local cluster of
three masters (localredis/cluster.py starts it once per session).

- Every operation (every Lua script) runs on the cluster for tenants whose
  hash tags land on different masters, with a guard that fails any script
  touching a key not built from KEYS[1]; every key of a tenant is found on
  its tenant's master and nowhere else.
- The scenarios (PUSH, RONA, TTL, PULL, conference, transfer, wrap-up,
  logout) run at once for the three tenants, with a TimerWorker that
  subscribes on every master and fires the deadlines; then over HTTP against
  `redroute serve` with a cluster REDIS_URL.
- A master is killed: the tenants of the other shards keep routing (timers
  included) without an error; the tenant of the dead shard gets
  RedisUnavailable (503 over HTTP) until the same node process is back.
- A tenant's slot moves to a new master while it is in use: the engine
  follows the redirect and the worker subscribes on the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localredis import free_port
from localredis.cluster import (
    LocalCluster,
    add_master,
    migrate_slot,
    remove_master,
    start_cluster,
    tools_available,
)
from redroute import Engine
from redroute.backend import (
    ClusterClient,
    connect,
    is_cluster,
    parse_cluster_url,
)
from redroute.checks.invariants import check
from redroute.errors import RedisUnavailable
from redroute.events.consumer import GroupConsumer
from redroute.events.stream import StreamReader
from redroute.keys import HEARTBEAT, TENANTS, TenantKeys, tenant_of_timer_key, tenant_prefix
from redroute.scripts import Script, ScriptRunner, load_scripts
from redroute.timers import TimerWorker
from tests.support.http import serve_process
from tests.support.receiver import Receiver
from tests.support.webhooks import FAST, dispatching

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SLA_MS = 300  # RONA timeout of queue "slow" (the others' is 10 s: no RONA there)
TTL_MS = 500  # request TTL of queue "later"
WRAP_MS = 300  # wrap-up timeout of MRD "email"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """Three masters, no replicas, on free loopback ports; torn down after
    the session."""
    if not tools_available():
        msg = "redis-server and redis-cli are not on PATH"
        if IN_CI:
            pytest.fail(f"{msg}: CI must test the Redis Cluster mode", pytrace=False)
        pytest.skip(msg)
    cluster = start_cluster(3)
    print("\nRedis Cluster slot map:", ", ".join(
        f"{s}-{e} on 127.0.0.1:{p}" for s, e, p in cluster.slot_map()))
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    redis_cluster.wait_ok()  # a test before may have restarted a node
    return redis_cluster


@pytest.fixture
async def rc(cluster: LocalCluster) -> Any:
    client = connect(cluster.url)
    yield client
    await client.aclose()


def shard_tenants(cluster: LocalCluster, prefix: str) -> list[tuple[str, int]]:
    """One tenant per master, as (tenant, master port); prints where each
    lands: CLUSTER KEYSLOT of its prefix, and the master of that slot."""
    picked = cluster.tenants_per_node(1, prefix)
    out = [(names[0], port) for port, names in sorted(picked.items())]
    for tenant, port in out:
        slot = cluster.keyslot(tenant_prefix(tenant))
        assert cluster.port_for_slot(slot) == port
        print(f"tenant {tenant!r}: CLUSTER KEYSLOT {tenant_prefix(tenant)} = {slot}, "
              f"served by master 127.0.0.1:{port}")
    assert len({p for _, p in out}) == 3, "one tenant on each of the three masters"
    return out


async def until(fetch: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool],
                timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s; last value: {value!r}")
        await asyncio.sleep(every)


# A slot guard for the scripts: prepended to every script, it shadows the
# `redis` table so that each call checks its keys before it runs. Any key not
# starting with KEYS[1] (the tenant prefix) is an error, and so is a command
# this table does not know (a new one must be audited and added here).

SLOT_GUARD = r"""
local redis = (function(real)
  local prefix = KEYS[1]
  local first_key = {}
  for _, c in ipairs({'GET', 'SET', 'INCR', 'INCRBY', 'HGET', 'HSET', 'HSETNX', 'HDEL', 'HGETALL', 'HMGET', 'HEXISTS',
      'HINCRBY', 'SADD', 'SREM', 'SMEMBERS', 'SISMEMBER', 'SCARD', 'ZADD', 'ZREM', 'ZRANGE',
      'ZRANGEBYSCORE', 'ZRANGEBYLEX', 'ZREVRANGE', 'ZRANK', 'ZREVRANK', 'ZSCORE', 'ZCARD', 'ZCOUNT', 'ZINCRBY', 'PEXPIRE', 'EXPIRE',
      'PERSIST', 'PTTL', 'TTL', 'XADD', 'XLEN', 'XRANGE', 'XREVRANGE', 'XTRIM', 'TYPE'}) do
    first_key[c] = true
  end
  local all_keys = {DEL = true, EXISTS = true, UNLINK = true, MGET = true}
  local function guard(cmd, ...)
    local c = string.upper(cmd)
    local args = {...}
    if c == 'TIME' then return end
    if c == 'PUBLISH' then
      if args[1] ~= 'rr:wake' then error('SLOT_GUARD publish on ' .. tostring(args[1])) end
      return
    end
    local n
    if all_keys[c] then n = #args elseif first_key[c] then n = 1 else
      error('SLOT_GUARD unaudited command ' .. c)
    end
    for i = 1, n do
      local k = args[i]
      if type(k) ~= 'string' or string.sub(k, 1, #prefix) ~= prefix then
        error('SLOT_GUARD ' .. c .. ' on key ' .. tostring(k) .. ' outside ' .. prefix)
      end
    end
  end
  return setmetatable({
    call = function(cmd, ...) guard(cmd, ...) return real.call(cmd, ...) end,
    pcall = function(cmd, ...) guard(cmd, ...) return real.pcall(cmd, ...) end,
  }, {__index = real})
end)(redis)
"""


class GuardedRunner(ScriptRunner):
    """Runs every script with SLOT_GUARD in front and records which ran
    (by EVALSHA: the guarded sources are scripts, not library blocks)."""

    def __init__(self) -> None:
        guarded = {}
        for name, s in load_scripts().items():
            source = SLOT_GUARD + s.source
            guarded[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
        super().__init__(guarded)
        self.ran: set[str] = set()

    async def call(self, redis: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        self.use_eval(redis)
        result = await super().call(redis, name, keys, args)
        self.ran.add(name)
        return result


class RecordingWorker(TimerWorker):
    """Notes the tenants whose expired deadline keys it heard of."""

    heard: set[str]

    def _on_message(self, msg: dict[str, Any]) -> None:
        tenant = tenant_of_timer_key(msg.get("data"))
        if tenant is not None:
            self.heard.add(tenant)
        super()._on_message(msg)


def recording_worker(redis: Any, runner: ScriptRunner | None = None, **kw: Any) -> RecordingWorker:
    w = RecordingWorker(redis, runner=runner, max_sleep=kw.pop("max_sleep", 0.5),
                        rediscover_every=kw.pop("rediscover_every", 1.0), **kw)
    w.heard = set()
    return w


async def hears_expiries_from(worker: RecordingWorker, rc: Any, tenants: list[str],
                              timeout: float = 5.0) -> None:
    """Makes a deadline key of each tenant expire on its own master and waits
    until the worker has heard every one (it subscribes on every master)."""
    deadline = time.monotonic() + timeout
    while True:
        worker.heard.clear()
        keys = [TenantKeys.of(t).prefix + "tmr:probe" for t in tenants]
        for k in keys:
            await rc.set(k, "1", px=20)
        # Redis's active expiry samples keys, and these nodes hold many with a
        # TTL (closed tasks): touching the keys expires them now.
        await asyncio.sleep(0.05)
        for k in keys:
            await rc.exists(k)
        with contextlib.suppress(AssertionError):
            await until(lambda: asyncio.sleep(0, set(worker.heard)),
                        lambda h: h >= set(tenants), timeout=1.0)
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"worker heard expiries of {worker.heard}, not of all {tenants}")


# The scenarios, on anything with Engine's methods (an Engine, or the HTTP
# client): every lifecycle of docs/lifecycle.md, with real deadlines fired by a worker.


async def configure(api: Any) -> None:
    await api.put_mrd("chat", max_requests=1)
    await api.put_mrd("email", max_requests=2, wrap_up_enabled=True, wrap_up_timeout_ms=WRAP_MS)
    await api.put_queue("sales", mrd_id="chat", agent_sla_ms=10_000, agent_request_ttl_ms=60_000)
    await api.put_queue("slow", mrd_id="chat", agent_sla_ms=SLA_MS, agent_request_ttl_ms=60_000)
    await api.put_queue("later", mrd_id="chat", agent_request_ttl_ms=TTL_MS)
    await api.put_queue("mail", mrd_id="email")
    for a in ("a1", "a2", "a3", "a4"):
        await api.put_agent(a, queues=["sales", "slow", "later"])
    await api.put_agent("m1", queues=["mail"])


def mrd_state(agent: Any, mrd: str) -> tuple[str, str | None]:
    m = next(m for m in agent.mrd_states if m.mrd_id == mrd)
    return m.state, m.reason_code


async def scenario(api: Any) -> dict[str, int]:
    """A day of one tenant; returns how many deadlines the worker fired for it."""
    await configure(api)
    assert (await api.get_mrd("email")).wrap_up_enabled

    # PUSH: a1 is offered c-1 and accepts it
    await api.set_agent_state("a1", "READY")
    t1 = await api.push_task("c-1", "sales")
    assert (t1.assigned_to, t1.media.state) == ("a1", "RESERVED")
    t1 = await api.accept(t1.id, t1.media.id, "a1")
    assert t1.media.state == "ACTIVE"

    # RONA: a2 is offered c-2 and never answers. TTL: nobody is free for c-3.
    await api.set_agent_state("a2", "READY")
    t2 = await api.push_task("c-2", "slow")
    assert t2.assigned_to == "a2"
    t3 = await api.push_task("c-3", "later")
    assert t3.media.state == "QUEUED"
    assert (await api.set_task_priority(t3.id, 5)).priority == 5  # still waits, for its TTL
    assert (await api.task_position(t3.id)).position == 1
    assert (await api.queue_statistics("later"))["realtime"]["waiting"] == 1
    assert (await api.queue_statistics("later"))["ewt"]["method"]
    assert (await api.statistics())["queues"]
    t2 = await until(lambda: api.get_task(t2.id), lambda t: t.state == "CLOSED")
    assert t2.reason_code == "RONA"
    assert mrd_state(await api.get_agent("a2"), "chat") == ("NOT_READY", "RONA")
    (again,) = [t for t in await api.conversation_tasks("c-2") if t.id != t2.id]
    assert (again.request_id, again.media.state) == (t2.request_id, "QUEUED")
    assert again.enqueue_time == t2.enqueue_time  # it keeps its place
    t3 = await until(lambda: api.get_task(t3.id), lambda t: t.state == "CLOSED")
    assert t3.reason_code == "NO_AGENT_AVAILABLE"

    # An agent becoming READY takes the waiting request at once; done
    await api.set_agent_state("a3", "READY")
    again = await api.get_task(again.id)
    assert (again.assigned_to, again.media.state) == ("a3", "RESERVED")
    again = await api.accept(again.id, again.media.id, "a3")
    again = await api.close_media(again.id, again.media.id)
    assert (again.state, again.reason_code) == ("CLOSED", "DONE")

    # Named transfer: a1 hands c-1 to a3, who accepts
    tr = await api.transfer("c-1", "a1", agent_id="a3")
    assert (tr.direction, tr.assigned_to) == ("DIRECT_TRANSFER", "a3")
    old = await api.get_task(t1.id)
    assert (old.state, old.reason_code) == ("CLOSED", "TRANSFERRED")
    tr = await api.accept(tr.id, tr.media.id, "a3")
    assert (await api.task_routing(tr.id)).media_state == "ACTIVE"

    # Named conference to a4, declined (the RONA path at once)
    await api.set_agent_state("a4", "READY")
    conf = await api.conference("c-1", agent_id="a4")
    assert (conf.direction, conf.mode, conf.assigned_to) == ("DIRECT_CONFERENCE", "AGENT", "a4")
    conf = await api.set_task_state(conf.id, "CLOSED", "RONA")
    assert (conf.state, conf.reason_code) == ("CLOSED", "RONA")
    # Queue conference: a1 (free again) is offered it and accepts
    qconf = await api.conference("c-1", queue_id="sales")
    assert (qconf.direction, qconf.mode, qconf.assigned_to) == ("DIRECT_CONFERENCE", "QUEUE", "a1")
    await api.accept(qconf.id, qconf.media.id, "a1")

    # PULL (outbound e-mail), closed into WRAP_UP, which expires
    await api.set_agent_state("m1", "LOGIN")
    out, created = await api.pull_task("m1", "c-9", "email", direction="OUTBOUND")
    assert created and (out.mode, out.media.state) == ("AGENT", "ACTIVE")
    out = await api.close_media(out.id, out.media.id)
    assert out.state == "WRAP_UP"
    out = await until(lambda: api.get_task(out.id), lambda t: t.state == "CLOSED")
    assert out.reason_code == "WRAP_UP_EXPIRED"

    # Logout: a3's active transfer closes AGENT_LOGOUT
    await api.set_agent_state("a3", "LOGOUT")
    tr = await api.get_task(tr.id)
    assert (tr.state, tr.reason_code) == ("CLOSED", "AGENT_LOGOUT")

    # Reads
    assert [t.id for t in await api.agent_tasks("a1")] == [qconf.id]
    q = await api.get_queue("later")
    assert q.waiting == 0

    # Lists, and deletion of what no longer holds anything
    first = await api.list_agents(limit=2)
    assert [a.id for a in first.items] == ["a1", "a2"]
    assert [a.id for a in (await api.list_agents(cursor=first.next)).items] == ["a3", "a4", "m1"]
    assert [x.id for x in (await api.list_queues()).items] == ["later", "mail", "sales", "slow"]
    await api.put_agent("m1", queues=[])
    await api.delete_queue("mail")
    await api.delete_agent("m1")
    await api.delete_mrd("email")
    assert [m.id for m in (await api.list_mrds()).items] == ["chat"]
    return {"rona": 1, "ttl": 1, "wrap": 1}


async def webhook_scenario(e: Engine) -> None:
    """Every webhook script on the tenant's shard: deliveries (one receiver
    answering, one failing until FAILED), a retry, a gap, list and delete."""
    receiver = await Receiver(answer=lambda n, path: 500 if path == "/dead" else 200).start()
    try:
        for name in ("live", "dead", "gone"):
            await e.put_webhook(name, url=f"{receiver.base}/{name}", secret="s",
                                allow_private=True)
        async with dispatching(e, dataclasses.replace(FAST, give_up_ms=200)):
            await e.put_agent("webhook-probe")
            await until(lambda: e.get_webhook("dead"), lambda w: w.failed == 1)
            assert receiver.at("/live")
        dead = (await e.list_deliveries("dead")).items[0]
        assert (await e.retry_delivery("dead", dead.id)).status == "PENDING"
        assert await e.record_lost_events("gap-0-0-1-0", None, 2**62, "a test gap") == 3
        await e.delete_webhook("gone")
        assert [w.id for w in (await e.list_webhooks()).items] == ["dead", "live"]
    finally:
        await receiver.stop()


async def tenant_keys_by_node(cluster: LocalCluster) -> dict[int, set[str]]:
    """The tenants whose keys each master holds ({port: {tenant…}})."""
    out: dict[int, set[str]] = {}
    for n in cluster.nodes:
        tenants = set()
        for k in n.client().scan_iter(match="rr:{*", count=1000):
            tenants.add(k[4:k.index("}")])
        out[n.port] = tenants
    return out


# Configuration


def test_cluster_urls() -> None:
    assert parse_cluster_url("redis://127.0.0.1:6390/0") is None
    assert parse_cluster_url("redis://h:1/0?cluster=false") is None
    u = parse_cluster_url("redis+cluster://127.0.0.1:7000")
    assert u is not None and u.url == "redis://127.0.0.1:7000" and u.startup_nodes == [("127.0.0.1", 7000)]
    u = parse_cluster_url("redis://:pw@10.0.0.1:7001/0?cluster=true&socket_timeout=3")
    assert u is not None and u.url == "redis://:pw@10.0.0.1:7001/0?socket_timeout=3"
    u = parse_cluster_url("rediss+cluster://user:pw@a:7000,b:7001,c")
    assert u is not None and u.url == "rediss://user:pw@a:7000"
    assert u.startup_nodes == [("a", 7000), ("b", 7001), ("c", 6379)]
    with pytest.raises(ValueError):
        parse_cluster_url("redis+cluster://a:1?cluster=no")
    # A client object is made without connecting
    assert isinstance(connect("redis+cluster://127.0.0.1:1"), ClusterClient)
    assert isinstance(connect("redis://127.0.0.1:1/0?cluster=1"), ClusterClient)
    assert not is_cluster(connect("redis://127.0.0.1:1/0"))
    assert not is_cluster(connect(None))


async def test_a_url_may_list_several_nodes(cluster: LocalCluster) -> None:
    """Any one listed node that answers is enough to find the cluster."""
    dead = free_port()
    ports = ",".join(f"127.0.0.1:{p}" for p in (dead, cluster.nodes[1].port))
    client = connect(f"redis+cluster://{ports}")
    try:
        await client.set("rr:{urls}:x", "1")
        assert sorted(n.port for n in client.get_primaries()) == sorted(n.port for n in cluster.nodes)
    finally:
        await client.aclose()


# Every operation, every script, on three shards


async def test_every_operation_on_three_shards(cluster: LocalCluster, rc: Any) -> None:
    tenants = shard_tenants(cluster, "ops")
    runner = GuardedRunner()
    engines = {t: Engine(rc, t, runner=runner) for t, _ in tenants}
    worker = recording_worker(rc, runner)
    run = asyncio.create_task(worker.run())
    try:
        fired = await asyncio.gather(*(scenario(e) for e in engines.values()))
        assert all(f == {"rona": 1, "ttl": 1, "wrap": 1} for f in fired)
        # The worker subscribes on every master, and hears each one's expiries
        assert len(worker.listening) == 3
        await hears_expiries_from(worker, rc, list(engines))
        assert worker.fired_total >= 3 * 3
        await asyncio.gather(*(webhook_scenario(e) for e in engines.values()))
    finally:
        worker.stop()
        await run
    for t, e in engines.items():
        assert await runner.call(rc, "noop", [e.prefix], [1000, 1000]) == 1
        # Stream readers: a plain reader and a consumer group, on the tenant's shard
        events = await e.events()
        assert [x.id for x in await StreamReader(rc, t, after="0", count=10_000).read()] == \
            [x.id for x in events]
        seen: list[str] = []

        async def handle(event: Any, seen: list[str] = seen) -> None:
            seen.append(event.id)

        consumer = GroupConsumer(rc, handle, tenant=t, group="audit", batch=10_000)
        await consumer.poll()
        assert seen == [x.id for x in events]
        report = await check(e)
        assert report.ok, f"{t}: " + "\n".join(report.violations)
        assert (await e.queue_ewt("later")).method
        now = await e.clock()
        assert await e.set_clock(now + 1) == now + 1  # a virtual clock, on the tenant's shard
    # Every tenant script ran, under the guard (no key outside its tenant's
    # prefix). read_stream is no tenant operation: its one key is KEYS[1],
    # the stream, read above on the tenant's shard through the readers.
    tenant_scripts = set(runner.scripts) - {"read_stream"}
    assert runner.ran == tenant_scripts, f"never ran: {tenant_scripts - runner.ran}"
    # Every key of a tenant is on its tenant's master, and nowhere else
    held = await tenant_keys_by_node(cluster)
    for t, port in tenants:
        assert [p for p, ts in held.items() if t in ts] == [port], (t, held)
    assert cluster.port_for_key(TENANTS) in {p for _, p in tenants}
    assert set(await rc.smembers(TENANTS)) >= set(engines)


async def test_slot_guard_catches_a_foreign_key(cluster: LocalCluster, rc: Any) -> None:
    """The guard of the test above does fail a script that reaches outside
    its tenant, even to a key on the same master."""
    (t, _), *_ = shard_tenants(cluster, "guard")
    src = SLOT_GUARD + "return redis.call('GET', 'rr:{elsewhere}:x')"
    with pytest.raises(Exception, match="SLOT_GUARD GET on key rr:{elsewhere}:x"):
        await rc.eval(src, 1, tenant_prefix(t))
    src = SLOT_GUARD + "return redis.call('EVAL', 'return 1', 0)"
    with pytest.raises(Exception, match="unaudited command EVAL"):
        await rc.eval(src, 1, tenant_prefix(t))


async def test_the_function_library_loads_on_the_node_of_the_slot(cluster: LocalCluster, rc: Any) -> None:
    """A node without the function library (restarted, failed over) gets it
    on first use, through the tenant's slot, whatever the others have."""
    tenants = shard_tenants(cluster, "nofunction")
    for n in cluster.nodes:
        n.client().function_flush()
    runner = ScriptRunner()
    for t, port in tenants:
        e = Engine(rc, t, runner=runner)
        await e.put_mrd("chat")
        assert (await e.get_mrd("chat")).id == "chat"
        assert runner.library.name in str(cluster.node(port).client().function_list())
    # Server start and /healthz load on every primary that answers
    await runner.load_all(rc)
    assert all(n.client().function_list() for n in cluster.nodes)


async def test_noscript_loads_on_the_node_of_the_slot(cluster: LocalCluster, rc: Any) -> None:
    """Called by EVALSHA (a Redis before 7.0, or a library that would not
    load), a node with an empty script cache (restarted, failed over) gets
    the script on first use, through the tenant's slot."""
    tenants = shard_tenants(cluster, "noscript")
    for n in cluster.nodes:
        n.client().script_flush()
    runner = ScriptRunner()
    runner.use_eval(rc)
    sha = runner.scripts["get_mrd"].sha
    for t, port in tenants:
        e = Engine(rc, t, runner=runner)
        await e.put_mrd("chat")
        assert (await e.get_mrd("chat")).id == "chat"
        assert cluster.node(port).client().script_exists(sha) == [True]
    # SCRIPT LOAD (server start, /healthz) loads on every primary that answers
    await runner.load_all(rc)
    assert all(n.client().script_exists(sha) == [True] for n in cluster.nodes)


# The scenarios with a TimerWorker, three tenants on three shards at once


async def test_scenarios_on_three_shards_with_a_timer_worker(cluster: LocalCluster, rc: Any) -> None:
    tenants = shard_tenants(cluster, "day")
    engines = [Engine(rc, t) for t, _ in tenants]
    # A long max_sleep: only a notification (per master) or the deadlines it
    # knows of wake this worker.
    worker = recording_worker(rc, max_sleep=30.0)
    run = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.2)  # the worker is asleep, with no tenant known
        started = time.monotonic()
        await asyncio.gather(*(scenario(e) for e in engines))
        elapsed = time.monotonic() - started
        assert worker.fired_total >= 9
        assert elapsed < 15, elapsed
    finally:
        worker.stop()
        await run
    for e in engines:
        report = await check(e)
        assert report.ok, "\n".join(report.violations)


# HTTP: `redroute serve` with a cluster REDIS_URL


def http_layer_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("redroute.cli.serve") is not None and \
        importlib.util.find_spec("redroute.client") is not None


class Served:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log


@contextlib.contextmanager
def serve(redis_url: str, *args: str) -> Iterator[Served]:
    """`python -m redroute.cli serve` on a free port, until /healthz is 200."""
    with serve_process("--log-format", "text", *args, redis_url=redis_url,
                       env={"REDROUTE_TIMER_MAX_SLEEP": "0.5"}) as (url, proc, log):
        yield Served(url, proc, log)


@pytest.mark.skipif(not http_layer_present(), reason="the HTTP layer is not there yet")
async def test_http_scenarios_against_redroute_serve_on_the_cluster(
    cluster: LocalCluster, rc: Any
) -> None:
    from redroute.client import Client

    tenants = shard_tenants(cluster, "http")
    with serve(cluster.flag_url) as srv:
        async with Client(srv.url) as base:
            clients = [base.for_tenant(t) for t, _ in tenants]
            health = await base.healthz()
            assert health["status"] == "ok" and health["timerWorker"] is True
            # Each tenant's SSE stream is read from its own shard
            streams = [c.events(types=["AGENT_RESERVED"]) for c in clients]
            firsts = [asyncio.create_task(anext(s)) for s in streams]
            await asyncio.sleep(0.5)
            await asyncio.gather(*(scenario(c) for c in clients))
            for (t, _), f in zip(tenants, firsts, strict=True):
                ev = await asyncio.wait_for(f, 10)
                assert ev.type == "AGENT_RESERVED" and ev.data["agentId"] == "a1", t
            for s in streams:
                await s.aclose()
            metrics = await base.metrics()
    for t, _ in tenants:
        assert f'redroute_tasks{{state="live",tenant="{t}"}}' in metrics
        report = await check(Engine(rc, t))
        assert report.ok, "\n".join(report.violations)


# A master dies, and comes back


async def routing_round(api: Any, i: int) -> None:
    """One call handled end to end: offered, accepted, closed."""
    t = await api.push_task(f"live-{i}", "sales")
    assert t.assigned_to == "a1", t
    t = await api.accept(t.id, t.media.id, "a1")
    t = await api.close_media(t.id, t.media.id)
    assert (t.state, t.reason_code) == ("CLOSED", "DONE")


async def prepare(api: Any) -> None:
    await api.put_mrd("chat", max_requests=1)
    await api.put_queue("sales", mrd_id="chat", agent_sla_ms=10_000)  # a1 answers it
    await api.put_queue("slow", mrd_id="chat", agent_sla_ms=SLA_MS)  # a2 does not, a3 does
    await api.put_queue("parked", mrd_id="chat")  # no agent: its tasks wait
    await api.put_agent("a1", queues=["sales"])
    await api.put_agent("a2", queues=["slow"])
    await api.put_agent("a3", queues=["slow"])
    await api.set_agent_state("a1", "READY")


async def a_rona(api: Any, conversation: str) -> None:
    """a2 is offered a call it never answers; the timer worker fires RONA and
    the call goes to a3."""
    await api.put_agent("a2", queues=["slow"])  # configuration, too, keeps working
    await api.set_agent_state("a2", "READY")
    t = await api.push_task(conversation, "slow")
    assert t.assigned_to == "a2"
    t = await until(lambda: api.get_task(t.id), lambda t: t.state == "CLOSED", timeout=8)
    assert t.reason_code == "RONA"
    await api.set_agent_state("a3", "READY")
    (again,) = [x for x in await api.conversation_tasks(conversation) if x.state == "ACTIVE"]
    assert again.assigned_to == "a3"
    again = await api.accept(again.id, again.media.id, "a3")
    await api.close_media(again.id, again.media.id)
    await api.set_agent_state("a3", "NOT_READY")


async def test_a_master_dies_the_other_shards_route_on(cluster: LocalCluster, rc: Any) -> None:
    """The master killed is the one holding the tenant registry too."""
    victim_port = cluster.port_for_key(TENANTS)
    victim = cluster.node(victim_port)
    tenants = shard_tenants(cluster, "down")
    lost = next(t for t, p in tenants if p == victim_port)
    healthy = [t for t, p in tenants if p != victim_port]
    print(f"killing master 127.0.0.1:{victim_port}: it serves tenant {lost!r} and {TENANTS}")
    # Every write the victim acknowledges is on disk before the reply (with
    # everysec, a slow fsync lets Redis reply before it writes the AOF).
    victim.client().config_set("appendfsync", "always")
    engines = {t: Engine(rc, t) for t, _ in tenants}
    for e in engines.values():
        await prepare(e)
    before = await engines[lost].push_task("before", "parked")

    # The only timer worker is this one (the server runs none), so what it
    # fires below it fired with the registry's shard down.
    worker = recording_worker(rc, max_sleep=0.5)
    run = asyncio.create_task(worker.run())
    stack = contextlib.ExitStack()
    base = None
    try:
        await until(lambda: rc.exists(HEARTBEAT), bool)
        # Started in a thread: waiting for /healthz here would block the loop
        # that runs the worker, whose heartbeat /healthz wants, and on a slow
        # machine the heartbeat would expire before the server answered.
        srv = await asyncio.to_thread(stack.enter_context, serve(cluster.url, "--no-timers")) \
            if http_layer_present() else None
        clients = {}
        if srv is not None:
            from redroute.client import Client

            base = Client(srv.url)
            clients = {t: base.for_tenant(t) for t, _ in tenants}
            await routing_round(clients[lost], 0)  # the server knows every tenant
            for t in healthy:
                await routing_round(clients[t], 0)
        await until(lambda: asyncio.sleep(0, worker.known_tenants), lambda k: k >= set(engines))

        victim.kill()
        killed = time.monotonic()
        errors: list[BaseException] = []
        rounds = 0

        async def keep_routing(t: str) -> None:
            nonlocal rounds
            i = 1
            while time.monotonic() - killed < 3.0:
                try:
                    await routing_round(engines[t], i)
                    if clients:
                        await routing_round(clients[t], 1000 + i)
                    rounds += 1
                except BaseException as e:  # noqa: BLE001 - any error fails the test
                    errors.append(e)
                    return
                i += 1
                await asyncio.sleep(0.01)

        async def the_lost_tenant_is_unavailable() -> int:
            refused = 0
            while time.monotonic() - killed < 3.0:
                t0 = time.monotonic()
                with pytest.raises(RedisUnavailable):
                    await engines[lost].push_task(f"during-{refused}", "sales")
                with pytest.raises(RedisUnavailable):
                    await engines[lost].get_task(before.id)
                # Fast: no waiting on timeouts (the per-node circuit breaker)
                assert time.monotonic() - t0 < 2.0, "a down shard answers fast"
                if clients:
                    with pytest.raises(RedisUnavailable) as e:
                        await clients[lost].push_task(f"during-{refused}", "sales")
                    assert e.value.http_status == 503  # type: ignore[attr-defined]
                    assert e.value.problem["code"] == "REDIS_UNAVAILABLE"  # type: ignore[attr-defined]
                refused += 1
                await asyncio.sleep(0.05)
            return refused

        async def timers_fire_on_the_healthy_shards() -> None:
            for t in healthy:
                await a_rona(engines[t], "rona-during")

        results = await asyncio.gather(*(keep_routing(t) for t in healthy),
                                       the_lost_tenant_is_unavailable(),
                                       timers_fire_on_the_healthy_shards())
        assert not errors, errors
        assert rounds > 4 and results[len(healthy)] > 2, (rounds, results)
        # The registry's shard is down: the worker sweeps the tenants it knew
        assert worker.fired_total >= len(healthy)

        # The same node process comes back (same port, dir, nodes.conf, AOF)
        victim.start()
        back = await until(lambda: _try(engines[lost].get_task(before.id)),
                           lambda r: r is not None, timeout=20, every=0.1)
        assert back.id == before.id  # its data is back
        print(f"tenant {lost!r} served again {time.monotonic() - killed:.1f} s after the kill")
        await a_rona(engines[lost], "rona-after")  # routing and timers again
        await routing_round(engines[lost], 9000)
        if clients:
            await until(lambda: _try(clients[lost].get_task(before.id)), lambda r: r is not None,
                        timeout=10, every=0.1)
            await routing_round(clients[lost], 9001)
        await hears_expiries_from(worker, rc, list(engines))  # resubscribed on the node
    finally:
        worker.stop()
        await run
        if base is not None:
            await base.close()
        stack.close()
        if not victim.alive():
            victim.start()
    cluster.wait_ok()
    for e in engines.values():
        report = await check(e)
        assert report.ok, "\n".join(report.violations)


async def _try(aw: Awaitable[Any]) -> Any:
    try:
        return await aw
    except RedisUnavailable:
        return None


# The topology changes: a tenant's slot moves to a new master


async def test_a_tenant_moves_to_a_new_master(cluster: LocalCluster, rc: Any) -> None:
    """A fourth master joins and the slot of a tenant in use moves to it:
    the engine follows the redirect, and the worker subscribes on the new
    master (it re-reads the topology) and fires the tenant's deadlines there."""
    (tenant, src_port), *_ = shard_tenants(cluster, "moving")
    engine = Engine(rc, tenant)
    await prepare(engine)
    worker = recording_worker(rc, max_sleep=0.5, rediscover_every=0.5)
    run = asyncio.create_task(worker.run())
    # (Without replica migration, it stays an empty master when the slot goes back.)
    new = add_master(cluster, "--cluster-allow-replica-migration", "no")
    try:
        await routing_round(engine, 1)
        slot = cluster.keyslot(tenant_prefix(tenant))
        migrate_slot(cluster, slot, src_port, new.port)
        assert cluster.port_for_slot(slot) == new.port
        print(f"tenant {tenant!r} (slot {slot}) moved from 127.0.0.1:{src_port} "
              f"to 127.0.0.1:{new.port}")
        await routing_round(engine, 2)  # MOVED, followed
        await a_rona(engine, "rona-moved")
        await until(lambda: asyncio.sleep(0, list(worker.listening)),
                    lambda ls: f"127.0.0.1:{new.port}" in ls, timeout=10)
        await hears_expiries_from(worker, rc, [tenant])
        count = "CLUSTER", "COUNTKEYSINSLOT", slot
        assert new.client().execute_command(*count) > 0
        assert cluster.node(src_port).client().execute_command(*count) == 0
        report = await check(engine)
        assert report.ok, "\n".join(report.violations)
        # And back, so the session's cluster is three masters again
        migrate_slot(cluster, slot, new.port, src_port)
        await routing_round(engine, 3)
    finally:
        worker.stop()
        await run
        remove_master(cluster, new)
