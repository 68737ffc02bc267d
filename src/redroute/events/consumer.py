"""Consumer groups on a tenant's event stream: at-least-once delivery.

    async def handle(event: Event) -> None: ...      # any async callable
    consumer = GroupConsumer(redis, handle, tenant="acme", group="billing", name="billing-1")
    await consumer.run()                              # until consumer.stop()

Contract
- At least once. An entry is acknowledged (XACK) only after the handler
  returned for it. A handler that raises leaves its entry pending; this
  consumer retries it after `retry_after_ms` (re-reading its own pending
  list), for as long as it fails. A consumer that dies (crash, kill,
  cancelled task) leaves its unacknowledged entries pending; any other
  consumer of the group takes them over (XAUTOCLAIM) once they have been
  idle for `claim_idle_ms`, and a consumer restarted under the same `name`
  re-handles its own pending entries first. So every event reaches a
  handler at least once, and sometimes more than once.
- Idempotency key: `event.id`, the stream entry id. A redelivered event has
  the same id and the same content; two different events never share one.
  Ids are unique within the tenant's stream, so across tenants the key is
  (tenant, event.id). Handlers make duplicates harmless by remembering the
  ids they applied, or, as the events carry full task and agent snapshots,
  by keeping per task/agent the highest id applied and ignoring older ones
  (which also absorbs the reordering that retries and take-overs cause:
  see redroute.checks.projection.Projection).
- Order. One consumer handles new entries in stream order, one at a time.
  Retried and taken-over entries arrive later than their successors, and
  several consumers of a group run in parallel: there is no order across them.
- Retention. Before every read the consumer checks that the group did not
  fall behind the stream's retained window (MAXLEN): if it did, `run` and
  `poll` raise StreamGap and deliver nothing, every time, until the
  application calls `skip_gap(gap)`. Pending entries trimmed before they were
  acknowledged are reported the same way (StreamGap.lost_ids). Nothing is
  skipped silently (see redroute.events.stream).
- Shutdown. `stop()` lets the handler call in progress finish, hands the
  entries of the current batch it did not reach back to the group (their
  idle time is set so any consumer can take them over at once), and leaves
  the group if nothing is pending for it. Cancelling `run()` is a crash:
  nothing is acknowledged or handed back, and the entries wait for
  `claim_idle_ms`.
- `claim_idle_ms` must exceed the time a consumer takes to handle one batch
  (`batch` entries), or a slow consumer's entries are taken over (and
  handled twice) while it is still on them.
- Lost connections to Redis are retried with a short back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError

from ..errors import REDIS_DOWN
from .model import Event, decode_entry
from .stream import (
    StreamGap,
    create_group,
    events_key,
    leave_group,
    read_group,
    skip_group_gap,
    wait_for_entries,
)

log = logging.getLogger("redroute.events.consumer")

Handler = Callable[[Event], Awaitable[None]]
Entry = tuple[str, dict[str, str]]


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class GroupConsumer:
    """One consumer of a consumer group on a tenant's event stream."""

    def __init__(
        self,
        redis: Any,
        handler: Handler,
        *,
        tenant: str = "default",
        group: str,
        name: str | None = None,
        start: str = "0",
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        retry_after_ms: int = 1000,
        stream: str | None = None,
    ) -> None:
        """start: where a group created here begins, '0' (the first event
        ever added) or '$' (events from now on). block_ms: the longest wait
        for new entries (keep it under the client's socket timeout)."""
        self.redis = redis
        self.handler = handler
        self.stream = stream or events_key(tenant)
        self.group = group
        self.name = name or default_name()
        self.start = start
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.retry_after_ms = retry_after_ms
        # Counters, for tests and metrics.
        self.handled = 0  # handler calls that returned (each then acknowledged)
        self.failures = 0  # handler calls that raised (the entry stayed pending)
        self.claimed = 0  # idle entries taken over (XAUTOCLAIM)
        self._ready = False
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._retry_at: float | None = 0.0  # at start: re-handle our own pending entries
        self._claim_at = 0.0
        self._claim_cursor = "0-0"
        self._last_generated = "0-0"
        self._more = True  # the last pass may have left entries to read

    # Life cycle

    async def ensure_group(self) -> None:
        if not self._ready:
            if await create_group(self.redis, self.stream, self.group, self.start):
                log.info("created consumer group %s on %s from %s", self.group, self.stream, self.start)
            self._ready = True

    def stop(self) -> None:
        """Asks run() to return after the handler call in progress."""
        self._stopping = True
        self._stop_event.set()

    async def run(self) -> None:
        """Handles events until stop(). Raises StreamGap."""
        backoff = 0.1
        try:
            while not self._stopping:
                try:
                    await self.poll()
                    if not self._more and not self._stopping:
                        await self._wait()
                    backoff = 0.1
                except REDIS_DOWN as e:
                    log.warning("consumer %s lost Redis, retrying in %.1fs: %s", self.name, backoff, e)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                except ResponseError as e:
                    if "NOGROUP" not in str(e):
                        raise
                    log.warning("consumer group %s is gone (Redis restarted?), recreating", self.group)
                    self._ready = False
        finally:
            if self._stopping:
                with contextlib.suppress(Exception):
                    await leave_group(self.redis, self.stream, self.group, self.name)

    async def poll(self) -> int:
        """One pass without waiting: retries this consumer's failed entries
        when due, takes over entries idle past claim_idle_ms, then reads new
        ones. Returns how many events were handled. Raises StreamGap."""
        await self.ensure_group()
        handled = self.handled
        now = time.monotonic()
        if self._retry_at is not None and now >= self._retry_at:
            await self._retry_own()
        claimed_all = True
        if now >= self._claim_at and not self._stopping:
            claimed_all = await self._claim()
        read_all = True
        if not self._stopping:
            read_all = await self._read_new()
        self._more = not (claimed_all and read_all)
        return self.handled - handled

    async def skip_gap(self, gap: StreamGap) -> bool:
        """Moves the group past a gap to the oldest retained entry: the
        application's explicit decision after a StreamGap."""
        if gap.lost_ids:
            return False  # already gone from the pending list; nothing to move
        return await skip_group_gap(self.redis, gap, self.group)

    # The three sources of entries

    async def _retry_own(self) -> None:
        """Re-reads this consumer's pending list (entries whose handler
        failed, or left by an earlier run under the same name)."""
        self._retry_at = None
        cursor = "0-0"
        while not self._stopping:
            reply = await self.redis.xreadgroup(self.group, self.name, {self.stream: cursor},
                                                count=self.batch)
            entries: list[Entry] = reply[0][1] if reply else []
            if not entries:
                return
            await self._handle(entries)
            cursor = entries[-1][0]

    async def _claim(self) -> bool:
        """Takes over one page of entries idle past claim_idle_ms. True when
        the scan of the group's pending list is complete."""
        nxt, entries, *rest = await self.redis.xautoclaim(
            self.stream, self.group, self.name, self.claim_idle_ms, self._claim_cursor,
            count=self.batch)
        deleted = rest[0] if rest else []  # Redis 7 lists the trimmed ones
        self._claim_cursor = nxt
        done = nxt == "0-0"
        if done:
            self._claim_at = time.monotonic() + min(self.claim_idle_ms / 2000, 5.0)
        if entries:
            self.claimed += len(entries)
            log.info("consumer %s took over %d idle entries", self.name, len(entries))
            await self._handle(entries)
        if deleted:
            # XAUTOCLAIM has dropped them from the pending list already.
            raise StreamGap(self.stream, lost_ids=tuple(deleted))
        return done

    async def _read_new(self) -> bool:
        """Reads new entries unless the group fell behind retention. True
        when fewer than a batch came (nothing more to read now)."""
        b = await read_group(self.redis, self.stream, self.group, self.name, self.batch)
        self._last_generated = b.last_generated
        if b.entries:
            await self._handle(b.entries)
        return len(b.entries) < self.batch

    # Handling

    async def _handle(self, entries: list[Entry]) -> None:
        lost: list[str] = []
        for i, (entry_id, fields) in enumerate(entries):
            if self._stopping:
                await self._hand_back([e[0] for e in entries[i:]])
                break
            if not fields:  # the entry was trimmed while pending
                lost.append(entry_id)
                continue
            try:
                await self.handler(decode_entry(entry_id, fields))
            except Exception:
                self.failures += 1
                log.exception("handler failed on %s (it stays pending and is retried)", entry_id)
                retry = time.monotonic() + self.retry_after_ms / 1000
                self._retry_at = retry if self._retry_at is None else min(self._retry_at, retry)
                continue
            await self.redis.xack(self.stream, self.group, entry_id)
            self.handled += 1
        if lost:
            await self.redis.xack(self.stream, self.group, *lost)
            raise StreamGap(self.stream, lost_ids=tuple(lost))

    async def _hand_back(self, ids: list[str]) -> None:
        """Makes entries this consumer will not handle claimable at once."""
        with contextlib.suppress(ResponseError):
            await self.redis.xclaim(self.stream, self.group, self.name, 0, ids,
                                    idle=self.claim_idle_ms, justid=True)

    # Waiting

    async def _wait(self) -> None:
        """Until a new entry, stop(), the next retry or claim pass, or block_ms."""
        now = time.monotonic()
        until = min(x for x in (self._claim_at, self._retry_at, now + self.block_ms / 1000)
                    if x is not None)
        ms = int((until - now) * 1000)
        if ms <= 0:
            return
        waiter = asyncio.ensure_future(
            wait_for_entries(self.redis, self.stream, self._last_generated, ms))
        stopper = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (waiter, stopper):
                f.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await f

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
