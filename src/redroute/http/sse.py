"""Server-Sent Events for GET /v1/events.

One reader per tenant per process (XREAD BLOCK on rr:{tenant}:events) fans
entries out to every SSE client of that tenant through a bounded queue per
client. A client too slow to keep its queue from filling is dropped (it
reconnects with Last-Event-ID and catches up from Redis), so memory stays
bounded whatever the clients do.

A client that resumes from an old id catches up with XRANGE first, joins the
fan-out, then reads XRANGE once more from the last id it was sent; entries
that then also arrive through the fan-out are skipped by id, so there is no
gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError, ResponseError

from ..events.model import Event, decode_entry

log = logging.getLogger("redroute.sse")

NO_FILTER: frozenset[str] | None = None


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Entry:
    """One stream entry, decoded only when a filter needs its data."""

    __slots__ = ("id", "key", "type", "raw", "_event")

    def __init__(self, entry_id: str, fields: dict[str, str]) -> None:
        self.id = entry_id
        self.key = parse_id(entry_id)
        self.type = fields.get("type", "")
        self.raw = fields.get("data", "{}")
        self._event: Event | None = None

    @property
    def event(self) -> Event:
        if self._event is None:
            self._event = decode_entry(self.id, {"type": self.type, "data": self.raw})
        return self._event

    def sse(self) -> bytes:
        data = self.raw
        if "\n" in data or "\r" in data:  # an SSE data line must be one line
            data = json.dumps(json.loads(data), separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.type}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Filter:
    types: frozenset[str] | None = None
    agent_id: str | None = None
    queue_id: str | None = None
    conversation_id: str | None = None

    def __call__(self, e: Entry) -> bool:
        if self.types is not None and e.type not in self.types:
            return False
        if self.agent_id is None and self.queue_id is None and self.conversation_id is None:
            return True
        try:
            return e.event.matches(None, self.agent_id, self.queue_id, self.conversation_id)
        except (ValueError, KeyError, TypeError):
            return False  # an entry not of the events' shape (docs/api.md, Events) concerns no one


@dataclass(eq=False)
class Subscriber:
    wants: Callable[[Entry], bool]
    queue: asyncio.Queue[Entry | None]
    on_drop: Callable[[], None] | None = None  # e.g. closes its connection
    gone: Callable[[], bool] | None = None  # True once its client has disconnected
    ended: bool = False
    reason: str = ""

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended, self.reason = True, reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)  # wakes a reader waiting on an empty queue


@dataclass(eq=False)
class TenantFeed:
    """The one stream reader of a tenant in this process."""

    redis: Any
    key: str
    block_ms: int = 1000
    batch: int = 500
    on_redis_error: Callable[[Exception], None] | None = None
    on_drop: Callable[[], None] | None = None
    subscribers: set[Subscriber] = field(default_factory=set)
    position: str = "0-0"
    task: asyncio.Task[None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closed: bool = False

    async def tail(self) -> str:
        """The id of the stream's last entry ("0-0" when it is empty)."""
        last = await self.redis.xrevrange(self.key, "+", "-", count=1)
        return last[0][0] if last else "0-0"

    async def range_after(self, after: str, count: int) -> list[Entry]:
        entries = await self.redis.xrange(self.key, f"({after}", "+", count=count)
        return [Entry(i, f) for i, f in entries]

    async def ensure_running(self) -> None:
        # The start position is read before any subscriber can rely on the
        # fan-out, so a subscriber's catch-up (read after this) covers every
        # entry up to where the reader starts.
        async with self._lock:
            if self.task is None or self.task.done():
                self.position = await self.tail()
                self.task = asyncio.create_task(self._run(), name=f"sse-feed {self.key}")

    async def subscribe(self, wants: Callable[[Entry], bool], maxsize: int,
                        on_drop: Callable[[], None] | None = None,
                        gone: Callable[[], bool] | None = None) -> Subscriber:
        sub = Subscriber(wants, asyncio.Queue(maxsize), on_drop, gone)
        await self.ensure_running()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def end_departed(self) -> None:
        """Ends the subscribers whose clients have disconnected. A client
        waiting for events writes nothing until the next event or keep-alive,
        so only this notices it leave in between."""
        for sub in list(self.subscribers):
            if sub.gone is not None and sub.gone():
                self.subscribers.discard(sub)
                sub.end("client left")

    def _fan_out(self, entries: list[Entry]) -> None:
        for e in entries:
            self.position = e.id
            for sub in list(self.subscribers):
                if sub.ended or not sub.wants(e):
                    continue
                try:
                    sub.queue.put_nowait(e)
                except asyncio.QueueFull:
                    # Too slow: drop it rather than let its queue grow.
                    self.subscribers.discard(sub)
                    sub.end("slow")
                    if self.on_drop:
                        self.on_drop()
                    if sub.on_drop:
                        # Its handler may be blocked writing to a client that
                        # does not read: closing the connection frees it.
                        sub.on_drop()

    async def _run(self) -> None:
        try:
            await self._read()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not Redis: end the clients so they reconnect to a new reader.
            log.exception("event stream %s: reader failed", self.key)
            for sub in list(self.subscribers):
                sub.end("error")
            self.subscribers.clear()

    async def _read(self) -> None:
        backoff = 0.1
        while not self._closed and self.subscribers:
            try:
                reply = await self.redis.xread({self.key: self.position}, count=self.batch,
                                               block=self.block_ms)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                # Clients stay connected (keep-alives go on); reading resumes
                # from the same position once Redis is back.
                if self.on_redis_error:
                    self.on_redis_error(e)
                log.warning("event stream %s: read failed, retrying: %s", self.key, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            for _stream, entries in reply or ():
                self._fan_out([Entry(i, f) for i, f in entries])

    async def close(self) -> None:
        self._closed = True
        for sub in list(self.subscribers):
            sub.end("shutdown")
        self.subscribers.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


class EventHub:
    """The feeds of every tenant this process streams."""

    def __init__(self, redis: Any, *, block_ms: int = 1000, queue_size: int = 1024,
                 on_redis_error: Callable[[Exception], None] | None = None,
                 on_drop: Callable[[], None] | None = None,
                 departed_every: float = 0.25) -> None:
        self.redis = redis
        self.block_ms = block_ms
        self.queue_size = queue_size
        self.on_redis_error = on_redis_error
        self.on_drop = on_drop
        self.departed_every = departed_every
        self.feeds: dict[str, TenantFeed] = {}
        self._watcher: asyncio.Task[None] | None = None

    async def _watch_departures(self) -> None:
        # One task for every client of the process, a few times a second.
        while True:
            await asyncio.sleep(self.departed_every)
            for f in list(self.feeds.values()):
                f.end_departed()

    def feed(self, tenant: str, key: str) -> TenantFeed:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch_departures(), name="sse-departures")
        f = self.feeds.get(tenant)
        if f is None:
            f = self.feeds[tenant] = TenantFeed(
                self.redis, key, block_ms=self.block_ms,
                on_redis_error=self.on_redis_error, on_drop=self.on_drop)
        return f

    @property
    def clients(self) -> int:
        return sum(len(f.subscribers) for f in self.feeds.values())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.gather(*(f.close() for f in self.feeds.values()))


async def trimmed_after(redis: Any, key: str, after: str) -> str | None:
    """The first retained entry id when entries after `after` may have been
    trimmed from the stream (a resuming client fell behind retention), else
    None. Trimming removes the oldest entries, so that is the case when
    some were trimmed and the oldest kept one is newer than `after`."""
    try:
        info = await redis.xinfo_stream(key)
    except ResponseError:
        return None  # no stream yet: nothing was trimmed
    first = info.get("first-entry")
    if not first or int(info.get("entries-added") or 0) <= int(info.get("length") or 0):
        return None
    return first[0] if parse_id(first[0]) > parse_id(after) else None


def gap_event(after: str, first_retained: str) -> bytes:
    """STREAM_GAP: sent, with no id, before the stream resumes at the first
    retained entry, so a client that fell behind retention is told so."""
    data = json.dumps({"lastEventId": after, "firstRetainedId": first_retained,
                       "detail": "events after lastEventId were trimmed by stream retention; "
                                 "rebuild state from the API, then follow from here"})
    return f"event: STREAM_GAP\ndata: {data}\n\n".encode()


async def stream(
    feed: TenantFeed, wants: Filter, after: str | None, write: Callable[[bytes], Any],
    *, queue_size: int, keepalive: float, page: int = 500,
    first_page: list[Entry] | None = None, on_drop: Callable[[], None] | None = None,
    gone: Callable[[], bool] | None = None,
) -> str:
    """Writes the SSE stream after `after` (None: from now on) until the
    client goes or is dropped; returns why it ended."""
    sent = after if after is not None else await feed.tail()
    sent_key = parse_id(sent)
    pending = first_page if first_page is not None else (
        await feed.range_after(sent, page) if after is not None else [])
    sub: Subscriber | None = None
    try:
        # Catch-up: XRANGE pages; join the fan-out once near the tail, then
        # one more page closes the window between the two.
        while True:
            for e in pending:
                if wants(e):
                    await write(e.sse())
                sent, sent_key = e.id, e.key
            if len(pending) < page:
                if sub is not None:
                    break
                sub = await feed.subscribe(wants, queue_size, on_drop, gone)
            pending = await feed.range_after(sent, page)
        while True:
            if sub.ended:
                return sub.reason
            try:
                e = await asyncio.wait_for(sub.queue.get(), keepalive)
            except TimeoutError:
                await write(b": keep-alive\n\n")
                continue
            if e is None or sub.ended:
                return sub.reason
            if e.key <= sent_key:
                continue  # already sent during the catch-up
            await write(e.sse())
            sent, sent_key = e.id, e.key
    finally:
        if sub is not None:
            feed.unsubscribe(sub)
