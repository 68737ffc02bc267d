--- @include "base"
--[[
  config: MRDs and queues, read once per script.

  rr:{t}:mrd:<id>    hash maxRequests, autoJoin, wrapUp, wrapUpTimeoutMs; and
                     when set: blocks (JSON list of the MRDs an open media
                     of this one blocks), blockers (JSON list of the MRDs
                     whose blocks name this one, kept by put_mrd),
                     blocksAt (when its blocks last changed)
  rr:{t}:mrds        set of MRD ids
  rr:{t}:queue:<id>  hash mrdId, agentRequestTtlMs, agentSlaMs,
                     agentSelectionPolicy, serviceLevelThresholdMs; and
                     when set: rtla (routeToLastAgent timeoutMs), steps,
                     stepAt, stepCode, skillNames (see skills.lua),
                     priorityUnitMs, maxWaiting, overflowAfterMs and
                     overflowQueueId (routing policies, routing.lua),
                     statistics ('0': counts no minutes, stats.lua) and
                     statsSince (when its statistics were last switched
                     on or off: the minutes up to it are not checked
                     against the stream), gen (a number unique to this
                     queue since it was made: its tally counts only the
                     tasks counted in it, stats.lua)
  rr:{t}:queues      set of queue ids
  rr:{t}:index:<kind>  sorted set (scores 0) of the ids in the set of
                     that kind (mrds, queues or agents), for lists in id
                     order; every script that adds to or removes from the
                     set does the same here
  rr:{t}:config:token  string, the version of the tenant's configuration
                     (the keys above but the indexes): replaced by every
                     script that writes it (config_changed), read with the
                     clock (base, clock_keys); what validates the
                     configuration the library keeps between calls
]]
-- Defaults a script needs on its own, the constants of redroute.limits of
-- the same names (a test checks they agree): the RONA timeout of a task
-- offered outside a queue when neither the task nor a queue names one, and
-- how long a PUSH prefers its preferredAgentId when it gives no timeout.
local DEFAULT_AGENT_SLA_MS = 30000
local DEFAULT_PREFERRED_AGENT_TIMEOUT_MS = 30000

-- Configuration kept between calls. A library-level local (made once when
-- the function library loads, kept by every call after) holds, per tenant
-- (prefix P: tenants share the Lua VM), the MRDs and queues decoded, and
-- the MRD ids, under the token they were read with. A call trusts them only
-- while the tenant's token (read in the call's one MGET of the clock keys)
-- is the same: every script that writes configuration replaces the token
-- first (config_changed). A token is the Redis server's time in µs and a
-- count, so it never comes back after the keys are lost (FLUSHALL, keys
-- deleted, a restore), and a tenant without one trusts nothing kept. Under
-- EVALSHA (a Redis without functions) the chunk runs per call: what is kept
-- lives one call. Memory is bounded: at most 64 tenants are kept (one more
-- drops them all), and 256 MRDs and queues a tenant (one more drops its).
-- What is kept is never changed by a script, but the fields derived from
-- the same hash under the same token (queue_code's, skills.lua).
--- @library
local CONFIG_KEPT = {n = 0}

-- The call's configuration: {token, mrd = {id -> MRD or false}, queue = {id
-- -> queue or false}, ids = the MRD ids}, the tenant's kept one when its
-- token holds; CONFIG_MINT the token a tenant without one gets when the call
-- changes state; CONFIG_CHANGED when this call replaced the token.
local CONFIG, CONFIG_MINT, CONFIG_CHANGED

-- A new token: the server time in µs, and one more than the count of the
-- token it replaces (two in the same µs, a clock set back, still differ).
local function config_token_new()
  local t, was = redis.call('TIME'), clock_keys()[3]
  local n = was and tonumber(string.match(was, '%.(%d+)$')) or 0
  return string.format('%d%06d.%d', tonumber(t[1]), tonumber(t[2]), n + 1)
end

local function config()
  local c = CONFIG
  if c then return c end
  local token = clock_keys()[3]
  if not token then
    token = config_token_new()
    CONFIG_MINT = token
  end
  local kept = CONFIG_KEPT
  c = kept[P]
  if not c or c.token ~= token then
    if not c then
      if kept.n >= 64 then
        kept = {n = 0}
        CONFIG_KEPT = kept
      end
      kept.n = kept.n + 1
    end
    c = {token = token, mrd = {}, queue = {}, n = 0}
    kept[P] = c
  end
  CONFIG = c
  return c
end

-- A script that writes configuration calls this before its first write
-- (after every check that may fail: bad input changes nothing): the
-- tenant's token is replaced, once per call, so no call trusts what was
-- read before. And the call reads afresh from here on, through a cache of
-- its own: so it calls this again after writing, before reading what it
-- wrote.
local function config_changed()
  if not CONFIG_CHANGED then
    CONFIG_CHANGED = true
    redis.call('SET', key('config', 'token'), config_token_new())
    CONFIG_MINT = nil
    if CONFIG_KEPT[P] then
      CONFIG_KEPT[P] = nil
      CONFIG_KEPT.n = CONFIG_KEPT.n - 1
    end
  end
  CONFIG = {mrd = {}, queue = {}, n = 0}
end

-- A tenant without a token gets the one its call read under, when the call
-- changed state (it emitted events): a call that fails, or only reads,
-- writes nothing.
local function config_mint()
  if CONFIG_MINT and #EVENTS > 0 then redis.call('SET', key('config', 'token'), CONFIG_MINT) end
end

--- @once
AT_END[#AT_END + 1] = config_mint

-- A configuration hash, read once while its token holds: the fields
-- wanted, with HMGET, not HGETALL (Redis builds a Lua table of a reply
-- element by element, so half the elements cost half), made a table by
-- decode(id, values); false when the hash does not exist (its first field
-- is always set).
local function config_get(cache, kind, id, fields, decode)
  local h = redis.call('HMGET', key(kind, id), unpack(fields))
  local c = h[1] and decode(id, h) or false
  local cfg = CONFIG
  if cfg.n >= 256 then
    cfg.mrd, cfg.queue, cfg.n = {}, {}, 0
    cache = cfg[kind]
  end
  cfg.n = cfg.n + 1
  cache[id] = c
  return c or nil
end

--- @library
local MRD_FIELDS = {'maxRequests', 'autoJoin', 'wrapUp', 'wrapUpTimeoutMs', 'blocks', 'blockers'}
local function mrd_decode(id, h)
  local m = {id = id, maxRequests = tonumber(h[1]), autoJoin = h[2] == '1', wrapUp = h[3] == '1',
             wrapUpTimeoutMs = tonumber(h[4])}
  -- Blocking: only an MRD that sets it, or is named by one, has a list.
  if h[5] then m.blocks = cjson.decode(h[5]) end
  if h[6] and h[6] ~= '[]' then m.blockers = cjson.decode(h[6]) end
  return m
end

local function mrd_get(id)
  if id == nil then return nil end
  local cache = (CONFIG or config()).mrd
  local c = cache[id]
  if c ~= nil then return c or nil end
  return config_get(cache, 'mrd', id, MRD_FIELDS, mrd_decode)
end

local function mrd_must(id)
  return found('mrd', id, mrd_get(id))
end

local function mrd_json(m)
  local v2 = ''
  if m.blocks then v2 = ',"blocks":' .. jids(m.blocks) end
  return '{"id":' .. jid(m.id) .. ',"maxRequests":' .. jint(m.maxRequests) ..
    ',"autoJoin":' .. jbool(m.autoJoin) .. ',"wrapUp":{"enabled":' .. jbool(m.wrapUp) ..
    ',"timeoutMs":' .. jint(m.wrapUpTimeoutMs) .. '}' .. v2 .. '}'
end

-- Adds (add true) or removes mrd id from the blockers list of MRD x.
local function mrd_blockers_edit(x, id, add)
  local k = key('mrd', x)
  local list, out = cjson.decode(redis.call('HGET', k, 'blockers') or '[]'), {}
  for _, b in ipairs(list) do
    if b ~= id then out[#out + 1] = b end
  end
  if add then out[#out + 1] = id end
  table.sort(out)
  config_changed()
  if #out == 0 then redis.call('HDEL', k, 'blockers') else redis.call('HSET', k, 'blockers', jids(out)) end
  config_changed()
end

-- Every MRD id, in name order (the order of an agent's mrdStates): never
-- changed by its caller.
local function mrd_ids()
  local c = CONFIG or config()
  local ids = c.ids
  if not ids then
    ids = redis.call('SMEMBERS', key('mrds'))
    table.sort(ids)
    c.ids = ids
  end
  return ids
end

--- @library
local QUEUE_FIELDS = {'mrdId', 'agentRequestTtlMs', 'agentSlaMs',
  'agentSelectionPolicy', 'serviceLevelThresholdMs', 'stepAt', 'rtla', 'priorityUnitMs', 'maxWaiting',
  'overflowAfterMs', 'overflowQueueId', 'statistics', 'gen'}
local function queue_decode(id, h)
  local q = {id = id, mrdId = h[1], agentRequestTtlMs = tonumber(h[2]), agentSlaMs = tonumber(h[3]),
             agentSelectionPolicy = h[4], serviceLevelThresholdMs = tonumber(h[5]), rtla = tonumber(h[7]),
             pu = tonumber(h[8]), maxWaiting = tonumber(h[9]), overflowAfterMs = tonumber(h[10]),
             overflowQueueId = h[11], statsOff = h[12] == '0', gen = h[13]}
  -- A queue with steps: nsteps and each step's start (skills.lua); a queue
  -- without has neither, and routes as in v1.
  if h[6] then
    q.stepAt = cjson.decode(h[6])
    q.nsteps = #q.stepAt
  end
  return q
end

local function queue_get(id)
  if id == nil then return nil end
  local cache = (CONFIG or config()).queue
  local c = cache[id]
  if c ~= nil then return c or nil end
  return config_get(cache, 'queue', id, QUEUE_FIELDS, queue_decode)
end

local function queue_must(id)
  return found('queue', id, queue_get(id))
end

-- The ids of the queues for which pred(queue) holds, sorted.
local function queues_where(pred)
  local out = {}
  for _, qid in ipairs(redis.call('SMEMBERS', key('queues'))) do
    local q = queue_get(qid)
    if q and pred(q) then out[#out + 1] = qid end
  end
  table.sort(out)
  return out
end

-- The v2 fields appear only on a queue that sets them.
local function queue_json(q, extra)
  local v2 = ''
  if q.nsteps then v2 = ',"steps":' .. redis.call('HGET', key('queue', q.id), 'steps') end
  if q.rtla then v2 = v2 .. ',"routeToLastAgent":{"timeoutMs":' .. jint(q.rtla) .. '}' end
  if q.pu then v2 = v2 .. ',"priorityUnitMs":' .. jint(q.pu) end
  if q.maxWaiting then v2 = v2 .. ',"maxWaiting":' .. jint(q.maxWaiting) end
  if q.overflowQueueId then
    v2 = v2 .. ',"overflow":{"afterMs":' .. jint(q.overflowAfterMs) .. ',"queueId":' .. jid(q.overflowQueueId) .. '}'
  end
  if q.statsOff then v2 = v2 .. ',"statisticsEnabled":false' end
  return '{"id":' .. jid(q.id) .. ',"mrdId":' .. jid(q.mrdId) ..
    ',"agentRequestTtlMs":' .. jint(q.agentRequestTtlMs) .. ',"agentSlaMs":' .. jint(q.agentSlaMs) ..
    ',"agentSelectionPolicy":' .. jid(q.agentSelectionPolicy) ..
    ',"serviceLevelThresholdMs":' .. jint(q.serviceLevelThresholdMs) .. v2 .. (extra or '') .. '}'
end

-- The id index of a kind, completed first when it lists fewer ids than the
-- kind's set: configuration written before the index existed is only in
-- the set. The counts differ only then, as every script since keeps both.
local function index_complete(kind)
  local idx = key('index', kind)
  if redis.call('ZCARD', idx) ~= redis.call('SCARD', key(kind)) then
    for _, id in ipairs(redis.call('SMEMBERS', key(kind))) do
      redis.call('ZADD', idx, '0', id)
    end
  end
  return idx
end

-- A new MRD, queue or agent id (kind 'mrds', 'queues', 'agents').
local function config_add(kind, id)
  if kind ~= 'agents' then config_changed() end
  redis.call('SADD', key(kind), id)
  redis.call('ZADD', key('index', kind), '0', id)
  index_complete(kind)
end

local function config_remove(kind, id)
  if kind ~= 'agents' then config_changed() end
  redis.call('SREM', key(kind), id)
  redis.call('ZREM', key('index', kind), id)
end
