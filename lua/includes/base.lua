--[[
  base: what every script shares.

  KEYS[1]  the tenant prefix "rr:{<tenant>}:". Every other key is built from it,
           so all keys a script touches carry the tenant's hash tag and live in
           one Redis Cluster slot.
  ARGV[1]  approximate MAXLEN of the tenant's event stream (MAXLEN)
  ARGV[2]  retention of closed tasks, ms (RETENTION)
  ARGV[3…] the script's own arguments, read as A[1…] (A[i] is ARGV[i + 2]):
           each script's header lists them by those numbers

  rr:{t}:seq           string, the tenant's id counter (tasks, requests, medias)
  rr:{t}:clock:offset  string, ms added to the Redis clock (set by tests only)
  rr:{t}:clock:virtual string, the tenant's virtual clock in ms, when it asked
                       for one (set_clock; simulations): read instead of TIME
  rr:{t}:events        stream of the tenant's events (emit), approximate MAXLEN
  rr:{t}:counts        hash of running totals (count)
  rr:{t}:timers        sorted set of every deadline by due time (timer_add)
  rr:{t}:tmr:wake      string, the deadline it is armed for, expiring then (timer_arm)
  rr:wake              pub/sub channel: a tenant with a new earliest deadline

  Domain errors are raised with fail(code, detail) before any write and come
  back as error replies "<CODE> <detail>", CODE one of VALIDATION_ERROR,
  NOT_FOUND, INVALID_TRANSITION, QUEUE_FULL. Ids reaching a script are already checked by
  the Python layer to contain no ':' so they cannot alias another key type.
]]
-- Redis' API and the Lua functions the scripts call most, as locals set
-- at the start of each call: in a Functions library the globals table is
-- empty and a global name is looked up through its metatable's __index
-- (where Redis keeps the real globals) on every use; a local is an upvalue.
-- Read from _G, the real globals table, as a library declares these
-- locals before the functions that use them (lua/README.md).
local G = _G
local redis, cjson, string, table, math = G.redis, G.cjson, G.string, G.table, G.math
local tonumber, tostring, type, ipairs, pairs, unpack, next = G.tonumber, G.tostring, G.type,
  G.ipairs, G.pairs, G.unpack, G.next
local P = KEYS[1]
local TENANT = string.sub(P, 5, -3)
local MAXLEN = ARGV[1]
local RETENTION = ARGV[2]  -- a string, as redis.call takes it (see istr)
-- One constructor: a table filled in a loop grows several times on the way.
local A = {unpack(ARGV, 3)}

-- The tenant's key of up to three parts, e.g. key('q', id, 'waiting'):
-- fixed arity, as it runs a score of times per call (no vararg table).
local function key(a, b, c)
  if c then return P .. a .. ':' .. b .. ':' .. c end
  if b then return P .. a .. ':' .. b end
  return P .. a
end

local function fail(code, detail)
  error({rr = code, detail = detail})
end

-- value, or NOT_FOUND "<kind> <id> does not exist" when there is none.
local function found(kind, id, value)
  if not value then fail('NOT_FOUND', kind .. ' ' .. id .. ' does not exist') end
  return value
end

-- Work a script defers to its end (batched writes), registered by fragments
-- (once: the work reads the call's state, never keeps it).
--- @once
local AT_END = {}

-- Runs a script body, turning fail() into an error reply; other errors pass on.
local function run(body)
  local ok, res = pcall(body)
  if ok then
    for i = 1, #AT_END do AT_END[i]() end
    return res
  end
  if type(res) == 'table' and res.rr then
    return redis.error_reply(res.rr .. ' ' .. res.detail)
  end
  if type(res) == 'table' and res.err then return res end
  return redis.error_reply('ERR ' .. tostring(res))
end

-- The call's one read of the tenant's clock keys and of its configuration
-- token (rr:{t}:config:token, config.lua: what validates the configuration
-- kept between calls), in one MGET: {virtual, offset, token}.
local CLOCK_KEYS
local function clock_keys()
  local c = CLOCK_KEYS
  if not c then
    c = redis.call('MGET', key('clock', 'virtual'), key('clock', 'offset'), key('config', 'token'))
    CLOCK_KEYS = c
  end
  return c
end

-- The tenant's clock, in ms: its virtual clock when it has one (set_clock;
-- a simulation's tenant, which moves it from event to event), else the Redis
-- server clock plus an offset that only tests set (to let time pass without
-- sleeping). Both keys are the tenant's own, read in one MGET; every script
-- reads time here alone, so no path differs between the two clocks.
-- (TIME's seconds change once a second: the library keeps the last ones
-- read and their ms, so most calls make one tonumber, of the µs; and no
-- offset, the rule outside tests, makes none.)
--- @library
local CLOCK_S, CLOCK_S_MS = '', 0

local NOW
local function now_ms()
  if not NOW then
    local c = clock_keys()
    if c[1] then
      NOW = tonumber(c[1])
    else
      local t, offset = redis.call('TIME'), c[2]
      local s = t[1]
      if s ~= CLOCK_S then CLOCK_S, CLOCK_S_MS = s, tonumber(s) * 1000 end
      NOW = CLOCK_S_MS + math.floor(tonumber(t[2]) / 1000) + (offset and tonumber(offset) or 0)
    end
  end
  return NOW
end

local function next_seq()
  return redis.call('INCR', key('seq'))
end

-- JSON pieces. Objects are written by hand rather than with cjson.encode so
-- that empty objects and arrays come out the same on real Redis and on the
-- embedded backend (whose cjson turns {} into []), and so that opaque client
-- JSON (metadata, requestSession, attributes) passes through untouched.
-- Ids, enum names and reason codes: checked against the id and reason
-- patterns (letters, digits and _.@+-) before they reach a script, so they
-- are quoted as they are: no escaping is ever needed.
local function jid(s)
  if s == nil then return 'null' end
  return '"' .. s .. '"'
end

-- An integer as a string. redis.call formats a Lua number argument with
-- "%.17g", dearer than '%d', so numbers reach it through istr; a call's
-- events repeat the same few numbers (now, deadlines, counts), which the
-- memo formats once. A string (a number read back from Redis or a task)
-- passes as it is, and is remembered as itself: a hit is one lookup, with
-- no type() (which builds its answer's string). The memo is a pure
-- function of its keys, so the library keeps it between calls (the next
-- calls of the same millisecond find now formatted); it starts over at
-- ISTR_MAX entries.
--- @library
local ISTR, ISTR_N, ISTR_MAX = {}, 0, 256

local function istr(n)
  local s = ISTR[n]
  if s ~= nil then return s end
  if type(n) == 'string' then s = n else s = string.format('%d', n) end
  if ISTR_N >= ISTR_MAX then ISTR, ISTR_N = {}, 0 end
  ISTR[n] = s
  ISTR_N = ISTR_N + 1
  return s
end

-- now_ms() as a string, for what is stored.
local function now_ms_str()
  return istr(now_ms())
end

local function jint(n)
  if n == nil then return 'null' end
  return istr(n)
end

local function jbool(b)
  if b then return 'true' end
  return 'false'
end

-- (A list of one, the common case, without table.concat: it costs more
-- than the rest of the list's JSON.)
local function jlist(items)
  local n = #items
  if n == 1 then return '[' .. items[1] .. ']' end
  if n == 0 then return '[]' end
  return '[' .. table.concat(items, ',') .. ']'
end

-- A list of ids (see jid).
local function jids(list)
  local n = #list
  if n == 1 then return '["' .. list[1] .. '"]' end
  if n == 0 then return '[]' end
  return '["' .. table.concat(list, '","') .. '"]'
end

-- Ids for an error's detail: the first ten, and how many more.
local function id_list(ids)
  if #ids <= 10 then return table.concat(ids, ', ') end
  return table.concat(ids, ', ', 1, 10) .. ' and ' .. istr(#ids - 10) .. ' more'
end

-- What this call did, by name (event types, and RONA for a reservation
-- that ended unanswered or declined): added to the tenant's running totals
-- in rr:{t}:counts when the script ends, as one HINCRBY on a field that
-- names the whole mix in the order first counted, e.g.
-- "TASK_STATE_CHANGED*2 AGENT_RESERVED AGENT_STATE_CHANGED". A command per
-- name cost more than the rest of the counting; the mixes are few (one per
-- path through a script). /metrics sums the fields by name
-- (redroute.counts.totals_by_name), so the counts are exact whichever process
-- served the call.
local COUNTS, COUNTED = {}, {}

local function count(name)
  local n = COUNTS[name]
  if n == nil then
    n = 0
    COUNTED[#COUNTED + 1] = name
  end
  COUNTS[name] = n + 1
end

--- @once
AT_END[#AT_END + 1] = function()
  local n = #COUNTED
  if n == 0 then return end
  for i = 1, n do
    local name = COUNTED[i]
    local c = COUNTS[name]
    if c > 1 then COUNTED[i] = name .. '*' .. istr(c) end
  end
  redis.call('HINCRBY', key('counts'), n == 1 and COUNTED[1] or table.concat(COUNTED, ' '), '1')
end

-- Appends one event to the tenant's stream; data is already JSON. The
-- events are written, in order, when the script ends: a script that fails
-- writes none, and only the last XADD trims the stream (MAXLEN ~ is paid
-- on every XADD that carries it).
local EVENTS = {}

local function emit(etype, data)
  EVENTS[#EVENTS + 1] = etype
  EVENTS[#EVENTS + 1] = data
  count(etype)
end

--- @once
AT_END[#AT_END + 1] = function()
  local k, last = key('events'), #EVENTS - 1
  for i = 1, last - 2, 2 do
    redis.call('XADD', k, '*', 'type', EVENTS[i], 'data', EVENTS[i + 1])
  end
  if last > 0 then
    redis.call('XADD', k, 'MAXLEN', '~', MAXLEN, '*', 'type', EVENTS[last], 'data', EVENTS[last + 1])
  end
end

-- Deadlines. The sorted set rr:{t}:timers is the durable truth. One key,
-- rr:{t}:tmr:wake, holds the deadline it is armed for and expires then, at
-- or before the earliest deadline, so its keyspace notification wakes the
-- workers when it is due; fire_due arms it again for the next one. A
-- PUBLISH on rr:wake wakes a worker sleeping past a new earliest deadline
-- at once. (Removing the earliest deadline leaves the key as it is: one
-- early wake-up, which finds nothing due and re-arms.)
-- Members: "ttl|<taskId>", "rona|<taskId>|<mediaId>", "wrap|<taskId>",
-- "step|<taskId>", "pref|<taskId>", "ovf|<taskId>" (keys.timer_member in Python).
local function timer_arm(at)
  local delay = at - now_ms()
  if delay < 1 then delay = 1 end
  redis.call('SET', key('tmr', 'wake'), istr(at), 'PX', istr(delay))
end

-- A deadline no earlier than the armed wake-up changes neither the key nor
-- any worker's sleep: the wake-up comes first and its fire_due re-arms for
-- the head. So most new deadlines (a reservation's RONA, later than the
-- deadlines before it) cost no SET and no PUBLISH, and wake no worker.
local function timer_add(member, at)
  redis.call('ZADD', key('timers'), istr(at), member)
  -- (An armed deadline already past on the tenant's clock, which a clock
  -- offset or a virtual clock can leave, or a key armed before it held its
  -- deadline, says nothing: the head decides, as it did before.)
  local armed = tonumber(redis.call('GET', key('tmr', 'wake')) or '')
  if armed and armed >= now_ms() then
    if armed <= tonumber(at) then return end
  elseif redis.call('ZRANGE', key('timers'), '0', '0')[1] ~= member then
    return
  end
  timer_arm(at)
  redis.call('PUBLISH', 'rr:wake', TENANT)
end

local function timer_del(member)
  redis.call('ZREM', key('timers'), member)
end
