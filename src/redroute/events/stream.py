"""Reading a tenant's event stream without ever skipping what retention cut.

The stream `rr:{<tenant>}:events` is capped with an approximate MAXLEN
(Engine(events_maxlen=...)): once a reader falls further behind than the
retained window, the entries it has not read yet are gone. Redis itself
would then silently carry on from the oldest entry left: XREAD and
XREADGROUP return what is there. Every read in this module checks first, in
the same Lua script (so no trim can slip in between), that nothing after the
reader's position was trimmed, and raises StreamGap when it was.

How a gap is seen. Redis 7 counts the entries ever added to a stream
(XINFO STREAM `entries-added`) and, per consumer group, the entries the group
has read (XINFO GROUPS `entries-read`). MAXLEN trims from the head only, so
`entries-added - length` entries were trimmed, and a reader that has read
fewer than that, while its position precedes the first retained entry, has
lost `trimmed - read` entries: an exact count. A plain reader keeps that
counter itself. When no counter is known (a reader started from an explicit
id that has since been trimmed, a group created outside this module, or
entries deleted with XDEL) the check is conservative: a position before the
first retained entry is reported as a gap of unknown size (`missed is None`).

A gap is never skipped implicitly: the reader stays where it was, and every
read raises again, until the caller decides (rebuild from a snapshot, alert,
...) and calls `skip_gap(gap)`, which moves it to the oldest retained entry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from ..keys import TenantKeys
from ..scripts import default_runner
from .model import Event, decode_entry


async def _script(redis: Any, stream: str, *args: Any) -> Any:
    """lua/read_stream.lua: the position check and the read, one atomic step."""
    return await default_runner().call(redis, "read_stream", [stream], list(args))


def events_key(tenant: str) -> str:
    return TenantKeys.of(tenant).events


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable (ms, seq) pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def id_before(entry_id: str) -> str:
    """The greatest id that sorts before entry_id."""
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq - 1}" if seq > 0 else f"{ms - 1}-18446744073709551615"


class StreamGap(Exception):
    """Events the reader had not processed were trimmed by the stream's MAXLEN.

    Either the read position fell behind the retained window (`missed`
    entries after `after` are gone; None when the count is unknown; the
    oldest entry left is `first_retained`), or entries delivered to a group
    but not yet acknowledged were trimmed before a consumer could process
    them (`lost_ids`). The reader does not move past a gap by itself.
    """

    def __init__(
        self, stream: str, *, after: str | None = None, missed: int | None = None,
        first_retained: str | None = None, trimmed: int | None = None,
        last_generated: str | None = None, lost_ids: tuple[str, ...] = (),
    ) -> None:
        self.stream = stream
        self.after = after
        self.missed = missed
        self.first_retained = first_retained
        self.trimmed = trimmed
        self.last_generated = last_generated
        self.lost_ids = lost_ids
        super().__init__(self._message())

    def _message(self) -> str:
        if self.lost_ids:
            ids = ", ".join(self.lost_ids[:5]) + (" …" if len(self.lost_ids) > 5 else "")
            return (f"{self.stream}: {len(self.lost_ids)} delivered but unacknowledged events were "
                    f"trimmed (MAXLEN) before they were processed: {ids}")
        count = "some events" if self.missed is None else f"{self.missed} events"
        oldest = self.first_retained or "none (the stream is empty)"
        return (f"{self.stream}: {count} after {self.after} were trimmed (MAXLEN) before this reader "
                f"read them; the oldest retained entry is {oldest}")

    @property
    def resume_after(self) -> str:
        """The position that skipping the gap moves the reader to."""
        if self.first_retained:
            return id_before(self.first_retained)
        return self.last_generated or "0-0"


@dataclass(frozen=True, slots=True)
class Batch:
    """One checked read: entries after `position`, and where the stream was."""

    position: str  # the reader's position the read started from
    entries_read: int | None  # entries read up to position (None: unknown)
    last_generated: str  # the stream's newest id when read
    entries_added: int | None  # entries ever added (None: unknown)
    entries: list[tuple[str, dict[str, str]]]


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _batch(stream: str, reply: list[Any]) -> Batch:
    if reply[0] == "GAP":
        _, pos, missed, first, trimmed, lastgen = reply
        raise StreamGap(stream, after=pos, missed=None if int(missed) < 0 else int(missed),
                        first_retained=first or None, trimmed=None if int(trimmed) < 0 else int(trimmed),
                        last_generated=lastgen)
    _, pos, read, lastgen, added, raw = reply
    entries = [(e[0], _pairs(e[1] or [])) for e in raw]
    return Batch(pos, None if int(read) < 0 else int(read), lastgen,
                 None if int(added) < 0 else int(added), entries)


async def read_range(redis: Any, stream: str, after: str, entries_read: int | None,
                     count: int) -> Batch:
    """Up to count entries after `after` ('$': the end), raising StreamGap
    when entries after it were trimmed."""
    reply = await _script(redis, stream, "range", after, "" if entries_read is None else entries_read,
                          count)
    return _batch(stream, reply)


async def read_group(redis: Any, stream: str, group: str, consumer: str, count: int) -> Batch:
    """XREADGROUP '>' for consumer, unless the group's position fell behind
    the retained window (StreamGap; nothing is delivered then)."""
    return _batch(stream, await _script(redis, stream, "group", group, consumer, count))


async def create_group(redis: Any, stream: str, group: str, start: str = "0") -> bool:
    """Creates the group (and the stream) unless it exists: from the first
    entry ever added ('0') or from now on ('$'). True when created."""
    if start not in ("0", "$"):
        raise ValueError("start must be '0' or '$'")
    return bool(await _script(redis, stream, "create", group, start))


async def skip_group_gap(redis: Any, gap: StreamGap, group: str) -> bool:
    """Moves the group to the oldest retained entry, if it is still where
    the gap was seen. True when it moved."""
    if gap.after is None:
        return False
    return bool(await _script(redis, gap.stream, "skip", group, gap.after))


async def leave_group(redis: Any, stream: str, group: str, consumer: str) -> bool:
    """Deletes the consumer from the group if nothing is pending for it."""
    return bool(await _script(redis, stream, "leave", group, consumer))


async def wait_for_entries(redis: Any, stream: str, after: str, block_ms: int) -> None:
    """Returns when an entry after `after` exists, or after block_ms. A plain
    XREAD: it delivers nothing to any group."""
    with contextlib.suppress(RedisTimeoutError):
        await redis.xread({stream: after}, count=1, block=max(1, block_ms))


class StreamReader:
    """A plain reader of one tenant's events, in stream order, from a
    position: no group and no acknowledgements (tails, replays, SSE).

    `after` is '$' (only events appended from now on), '0' (every event ever
    added: a trimmed stream raises StreamGap at once) or a stream id. The
    reader counts the entries it has read when it can (from '$', from '0',
    and from any id once it has caught up with the stream), which makes its
    gap check exact.
    """

    def __init__(self, redis: Any, tenant: str = "default", *, after: str = "$",
                 count: int = 500, stream: str | None = None,
                 entries_read: int | None = None) -> None:
        self.redis = redis
        self.stream = stream or events_key(tenant)
        self.position = "0-0" if after in ("0", "-") else after
        self.entries_read = 0 if self.position == "0-0" else entries_read
        self.count = count
        self.last_generated = "0-0"

    async def read(self, block_ms: int | None = None) -> list[Event]:
        """The next events (at most `count`); with block_ms, waits up to that
        long when there are none. Raises StreamGap."""
        events = await self._read_once()
        if not events and block_ms:
            await wait_for_entries(self.redis, self.stream, self.last_generated, block_ms)
            events = await self._read_once()
        return events

    async def _read_once(self) -> list[Event]:
        b = await read_range(self.redis, self.stream, self.position, self.entries_read, self.count)
        self.position, self.entries_read, self.last_generated = b.position, b.entries_read, b.last_generated
        if b.entries:
            self.position = b.entries[-1][0]
            if self.entries_read is not None:
                self.entries_read += len(b.entries)
        if self.position == b.last_generated and b.entries_added is not None:
            self.entries_read = b.entries_added  # caught up: the count is now exact
        return [decode_entry(i, f) for i, f in b.entries]

    def skip_gap(self, gap: StreamGap) -> None:
        """Moves past a gap to the oldest retained entry (explicitly)."""
        self.position = gap.resume_after
        self.entries_read = gap.trimmed

    async def follow(self, block_ms: int = 1000) -> AsyncIterator[Event]:
        """Every event from the position on, waiting for new ones forever."""
        while True:
            for event in await self.read(block_ms):
                yield event
            await asyncio.sleep(0)
