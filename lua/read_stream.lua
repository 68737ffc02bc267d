--[[
  read_stream: every read of an event stream that must not cross a gap,
  each one atomic step: the check that nothing after the reader's position
  was trimmed (MAXLEN), then the read or the consumer group change (see
  src/redroute/events/stream.py). Not a tenant operation: it does not
  include base, and its key is the stream itself.

  Input:
    KEYS[1]  the stream (a tenant's rr:{t}:events)
    ARGV[1]  mode, and the mode's arguments:
             range   a plain reader: ARGV[2] position ('$' for the end),
                     ARGV[3] entries read up to it or '' when unknown,
                     ARGV[4] the most entries to return
             group   XREADGROUP '>': ARGV[2] group, ARGV[3] consumer,
                     ARGV[4] the most entries to return
             create  a group: ARGV[2] group, ARGV[3] start ('0' or '$')
             skip    past a gap: ARGV[2] group, ARGV[3] the position the
                     gap was seen at (a late skip never moves a group back)
             leave   ARGV[2] group, ARGV[3] consumer, deleted when nothing
                     is pending for it
  Output:
    range, group  {'OK', position, entries-read or -1, last-generated-id,
                   entries-added or -1, entries}, or at a gap
                  {'GAP', position, missed or -1, first retained id or '',
                   trimmed or -1, last-generated-id}
    create 1 when created, 0 when the group exists; skip 1 when moved;
    leave 0 when something is pending, else 1 + the consumers deleted;
    NOGROUP error for a group read of a missing group
  Events: none
]]
--- @include "includes/reply"
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lt(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am < bm or (am == bm and as < bs)
end
local function info()
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {len = 0, added = 0, lastgen = '0-0', valid = true}
  end
  local s = hash_table(redis.call('XINFO', 'STREAM', KEYS[1]))
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
    local g = hash_table(raw)
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
