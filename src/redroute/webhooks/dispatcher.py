"""The webhook dispatcher: each tenant's events POSTed to its webhooks, at
least once, by any number of dispatchers sharing the work.

Per tenant with webhooks, a dispatcher runs two loops:
- a consumer of the consumer group `webhooks` on the tenant's stream
  (redroute.events.consumer.GroupConsumer). For each event one script,
  add_deliveries, records a PENDING delivery per matching webhook and claims
  for this dispatcher the first attempt of those it has room for; only
  then is the event acknowledged. So an event is in Redis as deliveries
  before it leaves the group, whatever process dies when.
- a claimer: claim_deliveries hands out due attempts (retries, first
  attempts nobody had room for, attempts whose dispatcher died), a few per
  webhook, each under a lease.
Every attempt runs in its own task and ends with finish_delivery: deleted
when a 2xx came, else rescheduled with back-off, or kept FAILED after the
give-up period. A webhook has at most `per_webhook` attempts in flight per
dispatcher: a slow or failing receiver fills its own slots and its
deliveries wait in its own schedule; nothing waits on it.

A group that fell behind the stream's retention raises StreamGap: what was
lost is recorded as FAILED deliveries (record_lost_events) before the group
moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..engine import Claim, Engine
from ..errors import RedisUnavailable, ValidationError
from ..events.consumer import GroupConsumer, default_name
from ..events.model import Event
from ..events.stream import StreamGap, parse_id
from ..keys import WEBHOOK_TENANTS
from . import ssrf
from .model import GROUP, DeliverySettings
from .signing import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger("redroute.webhooks")
_DOWN = (RedisUnavailable, RedisConnectionError, RedisTimeoutError, OSError)


def body_of(event: Event, tenant: str) -> bytes:
    """What is POSTed for an event: the same bytes at every attempt."""
    return json.dumps({"id": event.id, "type": event.type.value, "data": event.data,
                       "tenant": tenant, "time": parse_id(event.id)[0]},
                      separators=(",", ":"), ensure_ascii=False).encode()


class Sender:
    """Makes attempts: a signed POST, no redirects, a bounded read, a
    timeout, and only to addresses the server may call."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=ssrf.connector(self.settings.allow_private),
                headers={"User-Agent": "redroute-webhooks/1"}, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, claim: Claim) -> tuple[bool, int | None, str | None]:
        """(delivered, HTTP status, what went wrong)."""
        try:
            ssrf.check_target(claim.url, self.settings.allow_private)
        except ValidationError as e:
            return False, None, e.detail
        timestamp = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: claim.delivery_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(claim.secret, timestamp, claim.body),
        }
        timeout = self.settings.attempt_timeout
        try:
            async with self.session.post(claim.url, data=claim.body, headers=headers,
                                         allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.content.read(self.settings.max_response_bytes)
                if 200 <= resp.status < 300:
                    return True, resp.status, None
                return False, resp.status, f"HTTP {resp.status}"
        except TimeoutError:
            return False, None, f"no answer within {timeout:g} s"
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, ssrf.RefusedAddress):
                return False, None, f"refused: {e.os_error}"
            return False, None, f"{type(e).__name__}: {e}"[:300]
        except (aiohttp.ClientError, OSError) as e:
            return False, None, f"{type(e).__name__}: {e}"[:300]


class TenantDispatcher:
    """One tenant's deliveries, in this process."""

    def __init__(self, engine: Engine, sender: Sender, settings: DeliverySettings,
                 name: str) -> None:
        self.engine = engine
        self.sender = sender
        self.settings = settings
        self.consumer = GroupConsumer(engine.redis, self._on_event, tenant=engine.tenant,
                                      group=GROUP, name=name, start="$",
                                      claim_idle_ms=settings.claim_idle_ms)
        self.in_flight: dict[str, int] = {}
        self.total = 0
        self.attempts: set[asyncio.Task[None]] = set()
        self.outcomes: dict[str, int] = {}  # DELIVERED, RETRY, FAILED, STALE: counts
        self.gaps = 0
        self._wake = asyncio.Event()
        self._stopping = False

    def busy(self) -> list[str] | None:
        """Webhooks without a free slot here; None when every slot is taken."""
        if self.total >= self.settings.in_flight:
            return None
        return [w for w, n in self.in_flight.items() if n >= self.settings.per_webhook]

    async def _on_event(self, event: Event) -> None:
        busy = self.busy()
        claims = await self.engine.add_deliveries(event, body_of(event, self.engine.tenant),
                                                  self.settings, busy)
        for c in claims:
            self._start(c)
        # What was not claimed waits for a slot of its webhook: the attempt
        # that frees it wakes the claimer.

    def _start(self, claim: Claim) -> None:
        self.in_flight[claim.webhook_id] = self.in_flight.get(claim.webhook_id, 0) + 1
        self.total += 1
        task = asyncio.create_task(self._attempt(claim))
        self.attempts.add(task)
        task.add_done_callback(self.attempts.discard)

    async def _attempt(self, claim: Claim) -> None:
        try:
            ok, status, error = await self.sender.post(claim)
            try:
                outcome = await self.engine.finish_delivery(claim, self.settings, delivered=ok,
                                                            status=status, error=error)
            except _DOWN as e:
                # The lease ends and the attempt is made again: at least once.
                log.warning("webhook %s delivery %s: outcome not recorded (%s)", claim.webhook_id,
                            claim.delivery_id, e)
                return
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if outcome == "FAILED":
                log.warning("webhook %s delivery %s FAILED after %d attempts: %s",
                            claim.webhook_id, claim.delivery_id, claim.attempt, error)
        finally:
            n = self.in_flight.get(claim.webhook_id, 1) - 1
            was_full = n + 1 >= self.settings.per_webhook or self.total >= self.settings.in_flight
            if n:
                self.in_flight[claim.webhook_id] = n
            else:
                self.in_flight.pop(claim.webhook_id, None)
            self.total -= 1
            if was_full:
                self._wake.set()

    async def consume(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                await self.consumer.run()
                backoff = 0.1
            except StreamGap as gap:
                try:
                    await self._record_gap(gap)
                except _DOWN + (RedisError,) as e:
                    log.warning("webhook gap of tenant %r not recorded yet: %s", self.engine.tenant, e)
                    await self._sleep(backoff)
            except _DOWN + (RedisError,) as e:
                log.warning("webhook consumer of tenant %r: %s", self.engine.tenant, e)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _record_gap(self, gap: StreamGap) -> None:
        """What retention cut becomes FAILED deliveries, then the group moves on."""
        self.gaps += 1
        log.error("webhook deliveries lost to retention, recorded as FAILED: %s", gap)
        if gap.lost_ids:
            for eid in gap.lost_ids:
                await self.engine.record_lost_events(
                    eid, eid, parse_id(eid)[0],
                    "the event was trimmed from the stream (MAXLEN) before it was delivered")
            return
        before = parse_id(gap.first_retained)[0] if gap.first_retained else int(time.time() * 1000)
        count = "an unknown number of" if gap.missed is None else str(gap.missed)
        first = gap.first_retained or gap.last_generated or "the end"
        await self.engine.record_lost_events(
            f"gap-{gap.after}-{first}", None, before,
            f"{count} events after {gap.after} and before {first} were trimmed from the stream "
            "(MAXLEN) before they were delivered")
        await self.consumer.skip_gap(gap)

    async def claim_loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            self._wake.clear()
            busy = self.busy()
            wait = self.settings.poll_interval
            if busy is not None:
                free = self.settings.in_flight - self.total
                try:
                    claims, next_ms = await self.engine.claim_deliveries(self.settings, free, busy)
                    backoff = 0.1
                except _DOWN + (RedisError,) as e:
                    log.warning("webhook claims of tenant %r: %s", self.engine.tenant, e)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for c in claims:
                    self._start(c)
                if len(claims) >= free:
                    continue
                # Due now (0) yet not claimed: its webhooks are busy here, and
                # a freed slot wakes this loop; else sleep until the next due.
                if next_ms > 0:
                    wait = min(wait, next_ms / 1000)
            if wait > 0:
                await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def stop(self) -> None:
        self._stopping = True
        self.consumer.stop()
        self._wake.set()

    async def drain(self, timeout: float) -> None:
        """Waits for the attempts in flight (their leases cover the rest)."""
        if self.attempts:
            await asyncio.wait(set(self.attempts), timeout=timeout)


class Dispatcher:
    """Delivers the webhooks of every tenant that has any, until stop()."""

    def __init__(self, redis: Any, *, settings: DeliverySettings | None = None,
                 engine_factory: Callable[[str], Engine] | None = None,
                 name: str | None = None, refresh: float = 2.0) -> None:
        self.redis = redis
        self.settings = settings or DeliverySettings()
        self._engine_factory = engine_factory or (lambda t: Engine(redis, t))
        self.name = name or default_name()
        self.refresh = refresh
        self.sender = Sender(self.settings)
        self.tenants: dict[str, TenantDispatcher] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    for tenant in sorted(await self.redis.smembers(WEBHOOK_TENANTS)):
                        if tenant not in self.tenants:
                            self._start_tenant(tenant)
                except _DOWN + (RedisError,) as e:
                    log.warning("webhook tenants unreadable: %s", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.refresh)
        finally:
            await self._shutdown()

    def _start_tenant(self, tenant: str) -> None:
        try:
            engine = self._engine_factory(tenant)
        except ValidationError:
            return  # not a tenant name: nothing of ours
        td = TenantDispatcher(engine, self.sender, self.settings, self.name)
        self.tenants[tenant] = td
        self._loops.append(asyncio.create_task(td.consume(), name=f"webhooks-consume-{tenant}"))
        self._loops.append(asyncio.create_task(td.claim_loop(), name=f"webhooks-claim-{tenant}"))
        log.info("webhook dispatcher %s serves tenant %r", self.name, tenant)

    async def _shutdown(self) -> None:
        for td in self.tenants.values():
            td.stop()
        for td in self.tenants.values():
            await td.drain(self.settings.attempt_timeout)
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 5)
        self._loops.clear()
        await self.sender.close()

    def outcomes(self) -> dict[str, int]:
        """Attempt outcomes so far, over every tenant (tests and metrics)."""
        out: dict[str, int] = {}
        for td in self.tenants.values():
            for k, n in td.outcomes.items():
                out[k] = out.get(k, 0) + n
        return out
