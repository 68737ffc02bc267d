"""The timer worker: fires the deadlines Redis holds (request TTL, RONA,
wrap-up) through the atomic fire_due script.

Redis is the only truth. The worker keeps no deadline of its own: each pass
asks Redis for what is due, and sleeps until the earliest deadline it was
told of, or until it is woken by a keyspace `expired` notification (a real
server) or a message on `rr:wake` (a script added a new earliest deadline).
Notifications are fire-and-forget, so nothing depends on one arriving; a
crashed worker loses nothing, and any number of workers can run: a deadline
is removed in the same script that fires it.

A full pass sweeps every registered tenant, at least every max_sleep. In
between, a pass sweeps only the tenants a notification named (both kinds
carry the tenant) and those whose next deadline, as their last sweep told,
has come: waking up costs one script call per tenant concerned, not one per
tenant.

On a Redis Cluster:
- Keyspace notifications are per node, so the worker subscribes on every
  master, each through its own connection, and re-reads the topology
  (CLUSTER SLOTS) every few seconds and whenever a subscription fails, to
  follow failovers, added nodes and resharding. `rr:wake` is an ordinary
  PUBLISH: a cluster broadcasts it to every node, so any subscription hears
  it (each master's subscription does: duplicates only set a flag).
- A pass sweeps every registered tenant, whatever shard serves it: each
  tenant's fire_due goes to its own slot's master, several at a time, and a
  tenant whose shard is down is skipped for that pass (and retried soon)
  without holding up the others.
- The registry `rr:tenants` is one key, so it lives on one shard. The worker
  keeps the last registry it read, adds the tenants its notifications name,
  and sweeps those while that shard is down; once it answers again, tenants
  missing from it are added back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from .backend import close_quietly, is_cluster
from .engine import Engine
from .errors import REDIS_DOWN, RedisUnavailable
from .keys import HEARTBEAT, TENANTS, WAKE_CHANNEL, tenant_of_timer_key
from .scripts import ScriptRunner

log = logging.getLogger("redroute.timers")

EXPIRED_PATTERN = "__keyevent@*__:expired"


class TimerWorker:
    def __init__(
        self,
        redis: Any,
        *,
        runner: ScriptRunner | None = None,
        batch: int = 50,  # one fire_due call blocks Redis: keep each short
        max_sleep: float = 1.0,
        listen: bool = True,
        engine_factory: Callable[[str], Engine] | None = None,
        pubsub_redis: Any = None,
        concurrency: int = 16,
        rediscover_every: float = 5.0,
        retry_after: float = 0.5,
    ) -> None:
        self.redis = redis
        self.batch = batch
        self.max_sleep = max_sleep
        self.listen = listen
        self.pubsub_redis = pubsub_redis or redis
        self.concurrency = max(1, concurrency)
        self.rediscover_every = rediscover_every
        self.retry_after = retry_after
        self._engine_factory = engine_factory or (lambda t: Engine(redis, t, runner=runner))
        self._engines: dict[str, Engine] = {}
        self._wake = asyncio.Event()
        self._rediscover = asyncio.Event()
        self._stopping = False
        self._known: set[str] = set()  # the last registry read, plus tenants heard of
        self._dirty: set[str] = set()  # tenants a notification named since the last pass
        self._due: dict[str, float] = {}  # tenant -> when its next deadline is (monotonic)
        self._next_full = 0.0  # when the next pass over every tenant is due (monotonic)
        self._warned: dict[str, float] = {}
        self.id = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.fired_total = 0
        self.passes = 0
        self.tenant_failures = 0  # tenant sweeps skipped because their shard was down
        self.lags_ms: deque[int] = deque(maxlen=10_000)
        self.listening: list[str] = []  # cluster: the masters subscribed to

    @property
    def known_tenants(self) -> frozenset[str]:
        """The tenants this worker sweeps (registry and notifications)."""
        return frozenset(self._known)

    def _engine(self, tenant: str) -> Engine:
        e = self._engines.get(tenant)
        if e is None:
            e = self._engines[tenant] = self._engine_factory(tenant)
        return e

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._rediscover.set()

    def wake(self) -> None:
        """A pass over every tenant, now."""
        self._next_full = 0.0
        self._wake.set()

    def _warn(self, what: str, msg: str, *args: Any, every: float = 10.0) -> None:
        """A warning at most once per `every` seconds per subject."""
        now = time.monotonic()
        if now - self._warned.get(what, -every) >= every:
            self._warned[what] = now
            log.warning(msg, *args)

    def _heard_of(self, tenant: str) -> bool:
        """Notes a tenant a notification named; False for a malformed name."""
        if not tenant:
            return False
        if tenant not in self._known:
            try:
                self._engine(tenant)  # validates the name
            except Exception:
                return False
            self._known.add(tenant)
        return True

    async def tenants(self) -> set[str]:
        """The tenants to sweep: the registry, or the last one read (plus the
        tenants notifications named) while it cannot be read."""
        try:
            registered = set(await self.redis.smembers(TENANTS))
        except REDIS_DOWN + (RedisError,) as e:
            if not self._known:
                raise RedisUnavailable(f"tenant registry unreadable: {e}") from None
            self._warn("registry", "tenant registry unreadable (%s); sweeping the %d tenants "
                       "known", e, len(self._known))
            return set(self._known)
        missing = self._known - registered
        self._known |= registered
        if missing:
            # Lost with its shard's data, say: put back what this worker knows.
            with contextlib.suppress(*REDIS_DOWN, RedisError):
                await self.redis.sadd(TENANTS, *sorted(missing))
        return set(self._known)

    async def _sweep_tenant(self, tenant: str) -> float | None:
        """Fires the tenant's due deadlines; the seconds until its next one
        (None when its shard is unavailable)."""
        engine = self._engine(tenant)
        try:
            while True:
                r = await engine.fire_due(self.batch)
                self.fired_total += r.fired
                self.lags_ms.extend(r.lags_ms)
                if r.processed < self.batch:
                    break
        except REDIS_DOWN as e:
            self.tenant_failures += 1
            self._warn(f"tenant:{tenant}", "timers of tenant %r not swept: %s", tenant, e)
            return None
        except Exception:
            # Not Redis being down: a bug, or a client library surprise. Logged,
            # and this tenant retried soon; the other tenants' timers go on.
            self.tenant_failures += 1
            now = time.monotonic()
            if now - self._warned.get(f"error:{tenant}", -60.0) >= 60.0:
                self._warned[f"error:{tenant}"] = now
                log.exception("timers of tenant %r not swept", tenant)
            return None
        if r.next_deadline >= 0:
            return max(0.0, (r.next_deadline - r.now) / 1000)
        return float("inf")

    async def _sweep_tenants(self, tenants: list[str]) -> int:
        """Sweeps these tenants, several at a time, and notes when each one's
        next deadline is; returns how many could not be swept."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(tenant: str) -> bool:
            async with gate:
                wait = await self._sweep_tenant(tenant)
            now = time.monotonic()
            if wait is None:
                self._due[tenant] = now + self.retry_after  # its shard is down: soon again
            elif wait == float("inf"):
                self._due.pop(tenant, None)
            else:
                self._due[tenant] = now + wait
            return wait is not None

        done = await asyncio.gather(*(one(t) for t in tenants))
        self.passes += 1
        return done.count(False)

    def _wait(self) -> float:
        """Seconds until the next pass: a known deadline, or the next full pass."""
        return max(0.0, min([self._next_full, *self._due.values()]) - time.monotonic())

    async def sweep(self) -> float:
        """A full pass: fires every due deadline of every tenant; returns the
        seconds until the earliest deadline left (at most max_sleep). Raises
        RedisUnavailable when no tenant could be swept."""
        tenants = sorted(await self.tenants())
        self._dirty.clear()  # all of them are swept now
        failed = await self._sweep_tenants(tenants)
        self._next_full = time.monotonic() + self.max_sleep
        if tenants and failed == len(tenants):
            raise RedisUnavailable("no tenant's timers could be swept")
        return self._wait()

    async def sweep_due(self) -> float:
        """A pass over the tenants a notification named, and those whose next
        deadline has come; returns the seconds until the next pass."""
        now = time.monotonic()
        dirty, self._dirty = self._dirty, set()
        tenants = sorted(dirty.union(t for t, at in self._due.items() if at <= now))
        if tenants:
            await self._sweep_tenants(tenants)
        return self._wait()

    async def _heartbeat(self) -> None:
        await self.redis.set(HEARTBEAT, f"{self.id} {int(time.time() * 1000)}",
                             px=int(max(3.0, self.max_sleep * 3) * 1000))

    def _on_message(self, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        if msg.get("channel") == WAKE_CHANNEL:
            tenant = data if isinstance(data, str) else None
        else:
            tenant = tenant_of_timer_key(data)
            if tenant is None:
                return  # an expiry that is not a deadline
        if tenant is not None and self._heard_of(tenant):
            self._dirty.add(tenant)
        else:
            self._next_full = 0.0  # a wake-up naming no tenant: look at all
        self._wake.set()

    async def _listen_on(self, client: Any, where: str,
                         on_subscribed: Callable[[], None] | None = None) -> None:
        """Subscribes on one server and sets the wake flag on its expiries and
        rr:wake messages until an error (raised) or stop()."""
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(WAKE_CHANNEL)
            await pubsub.psubscribe(EXPIRED_PATTERN)
            log.debug("timer wake-ups: listening on %s", where)
            if on_subscribed is not None:
                on_subscribed()
            while not self._stopping:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None:
                    self._on_message(msg)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _listen(self) -> None:
        """Sets the wake flag on keyspace expiries and rr:wake messages;
        reconnects after errors."""
        if is_cluster(self.pubsub_redis):
            await self._listen_cluster()
            return
        lost_since: float | None = None

        def subscribed() -> None:
            nonlocal lost_since
            if lost_since is not None:
                log.info("timer wake-up listener connected again after %.1f s",
                         time.monotonic() - lost_since)
                lost_since = None

        while not self._stopping:
            try:
                await self._listen_on(self.pubsub_redis, "redis", subscribed)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                # Once per outage: it retries every retry_after until Redis is back.
                if lost_since is None:
                    lost_since = time.monotonic()
                    log.warning("timer wake-up listener lost its connection, retrying until "
                                "it is back: %s", e)
                await asyncio.sleep(self.retry_after)

    # Redis Cluster: one subscription per master

    async def masters(self) -> dict[str, tuple[str, int]]:
        """The cluster's masters now, from CLUSTER SLOTS: {"host:port": (host, port)}."""
        slots = await self.pubsub_redis.cluster_slots()
        default = self.pubsub_redis.get_default_node()
        out: dict[str, tuple[str, int]] = {}
        for info in slots.values():
            host, port = info["primary"][0], int(info["primary"][1])
            # A node that never met another does not know its address: ""
            host = host or (default.host if default is not None else "127.0.0.1")
            out[f"{host}:{port}"] = (host, port)
        return out

    async def _listen_node(self, host: str, port: int) -> None:
        """One master's subscription, reconnecting with a growing back-off
        while the node is part of the topology."""
        from .backend import node_client

        backoff = 0.25
        name = f"{host}:{port}"
        while not self._stopping:
            client = node_client(self.pubsub_redis, host, port)
            try:
                await self._listen_on(client, name)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                self._warn(f"listen:{name}", "timer wake-ups from %s lost: %s", name, e)
                self._rediscover.set()  # a failover, perhaps: look again now
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.25
            finally:
                await close_quietly(client)

    async def _listen_cluster(self) -> None:
        listeners: dict[str, asyncio.Task[None]] = {}
        try:
            while not self._stopping:
                self._rediscover.clear()
                try:
                    masters = await self.masters()
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError) as e:
                    self._warn("topology", "cluster topology unreadable: %s", e)
                    masters = None
                if masters is not None:
                    for name in [n for n in listeners if n not in masters]:
                        listeners.pop(name).cancel()  # no longer a master
                    for name, (host, port) in masters.items():
                        if name not in listeners or listeners[name].done():
                            listeners[name] = asyncio.create_task(
                                self._listen_node(host, port), name=f"timer-wake {name}")
                    self.listening = sorted(listeners)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rediscover.wait(),
                                           self.rediscover_every if masters else 0.5)
                if not self._stopping:
                    await asyncio.sleep(0.05)  # a burst of errors: one look
        finally:
            for t in listeners.values():
                t.cancel()
            for t in listeners.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen()) if self.listen else None
        try:
            while not self._stopping:
                self._wake.clear()
                full = time.monotonic() >= self._next_full
                try:
                    wait = await (self.sweep() if full else self.sweep_due())
                except REDIS_DOWN as e:
                    self._warn("sweep", "timer sweep failed, retrying: %s", e, every=5.0)
                    self._next_full = time.monotonic() + self.retry_after
                    wait = self.retry_after
                if full:
                    try:
                        await self._heartbeat()
                    except REDIS_DOWN + (RedisError,) as e:
                        self._warn("heartbeat", "timer worker heartbeat not written: %s", e)
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        # The extra half millisecond keeps a pass from landing
                        # just before a deadline and finding nothing due.
                        await asyncio.wait_for(self._wake.wait(), wait + 0.0005)
        finally:
            if listener:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
