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
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..keys import TenantKeys
from .model import Event, decode_entry

# One script for every read that must not cross a gap, so the position check
# and the read (or the group change) are one atomic step. Modes: range (a
# plain reader), group (XREADGROUP '>'), create, skip and leave (a group's
# life cycle). Reply of 'range' and 'group':
#   {'OK', position, entries-read or -1, last-generated-id, entries-added or -1, entries}
#   {'GAP', position, missed or -1, first retained id or '', trimmed or -1, last-generated-id}
_LUA = r"""
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lt(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am < bm or (am == bm and as < bs)
end
local function map(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local function info()
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {len = 0, added = 0, lastgen = '0-0', valid = true}
  end
  local s = map(redis.call('XINFO', 'STREAM', KEYS[1]))
  local first = nil
  if type(s['first-entry']) == 'table' then first = s['first-entry'][1] end
  local added = tonumber(s['entries-added'])
  local maxdel = s['max-deleted-entry-id']
  -- entries-added - length counts the trimmed head only while no entry past
  -- the first retained one was deleted (XDEL); MAXLEN alone never does that.
  local valid = added ~= nil and (maxdel == nil or maxdel == '0-0' or (first ~= nil and lt(maxdel, first)))
  return {len = tonumber(s['length']), added = added, lastgen = s['last-generated-id'], first = first,
    valid = valid}
end
-- How many entries after pos (read = entries read up to it, nil if unknown)
-- were trimmed: nil for none, -1 when some may have been.
local function gap(s, pos, read)
  if s.first then
    if not lt(pos, s.first) then return nil end
  elseif not lt(pos, s.lastgen) then
    return nil
  end
  if s.valid then
    if read == nil and pos == '0-0' then read = 0 end
    if read ~= nil then
      if s.added - s.len > read then return s.added - s.len - read end
      return nil
    end
  end
  return -1
end
local function group_info(name)
  for _, raw in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local g = map(raw)
    if g['name'] == name then return g end
  end
  return nil
end
local function gap_reply(s, pos, missed)
  local trimmed = -1
  if s.valid then trimmed = s.added - s.len end
  return {'GAP', pos, missed, s.first or '', trimmed, s.lastgen}
end
local function counter(n)
  if n == nil then return -1 end
  return n
end

local mode = ARGV[1]
if mode == 'range' then
  local s = info()
  local pos, read = ARGV[2], tonumber(ARGV[3])
  if pos == '$' then
    pos = s.lastgen
    read = nil
    if s.valid then read = s.added end
  end
  local missed = gap(s, pos, read)
  if missed then return gap_reply(s, pos, missed) end
  local entries = {}
  if s.first then entries = redis.call('XRANGE', KEYS[1], '(' .. pos, '+', 'COUNT', ARGV[4]) end
  local added = nil
  if s.valid then added = s.added end
  return {'OK', pos, counter(read), s.lastgen, counter(added), entries}
elseif mode == 'group' then
  local s = info()
  local g = redis.call('EXISTS', KEYS[1]) == 1 and group_info(ARGV[2])
  if not g then return redis.error_reply('NOGROUP no consumer group ' .. ARGV[2] .. ' on ' .. KEYS[1]) end
  local pos, read = g['last-delivered-id'], g['entries-read']
  if type(read) ~= 'number' then read = nil end
  local missed = gap(s, pos, read)
  if missed then return gap_reply(s, pos, missed) end
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
  local entries = {}
  -- {{stream, entries}}; the embedded backend leaves out the outer level
  if type(r) == 'table' and type(r[1]) == 'table' then entries = r[1][2] or {} end
  if type(r) == 'table' and type(r[1]) == 'string' then entries = r[2] or {} end
  local added = nil
  if s.valid then added = s.added end
  return {'OK', pos, counter(read), s.lastgen, counter(added), entries}
elseif mode == 'create' then
  -- The group starts with an exact entries-read, so its first read is checked.
  if redis.call('EXISTS', KEYS[1]) == 1 and group_info(ARGV[2]) then return 0 end
  local s = info()
  local id, read = '0-0', 0
  if ARGV[3] == '$' then id, read = s.lastgen, s.added end
  if s.added == nil then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], id, 'MKSTREAM')
  else
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], id, 'MKSTREAM', 'ENTRIESREAD', read)
  end
  return 1
elseif mode == 'skip' then
  -- Only from where the gap was seen: a late skip must not move a group back.
  local g = group_info(ARGV[2])
  if not g or g['last-delivered-id'] ~= ARGV[3] then return 0 end
  local s = info()
  local id, read = s.lastgen, s.added
  if s.first then
    local ms, seq = split(s.first)
    if seq > 0 then
      id = string.format('%d-%d', ms, seq - 1)
    else
      id = string.format('%d', ms - 1) .. '-18446744073709551615'
    end
    if s.valid then read = s.added - s.len end
  end
  if s.valid and read ~= nil then
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[2], id, 'ENTRIESREAD', read)
  else
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[2], id)
  end
  return 1
elseif mode == 'leave' then
  -- A consumer that stops with nothing pending leaves the group.
  local p = redis.call('XPENDING', KEYS[1], ARGV[2], '-', '+', 1, ARGV[3])
  if #p > 0 then return 0 end
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[2], ARGV[3]) + 1
end
return redis.error_reply('ERR unknown mode ' .. tostring(mode))
"""
_SHA = hashlib.sha1(_LUA.encode()).hexdigest()


async def _script(redis: Any, stream: str, *args: Any) -> Any:
    # By SHA, loading it on NOSCRIPT (a restarted Redis has an empty cache).
    try:
        return await redis.evalsha(_SHA, 1, stream, *args)
    except NoScriptError:
        return await redis.eval(_LUA, 1, stream, *args)


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
