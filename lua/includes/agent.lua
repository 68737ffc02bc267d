--- @include "config"
--[[
  agent: agents, their per-MRD states and the availability indexes.

  rr:{t}:agent:<id>        hash: st, rc, t (global state, reason, since),
                           queues (JSON list), attrs (client JSON), max (JSON
                           map of maxRequests overrides) and per MRD m:
                           m|st base state (LOGOUT, NOT_READY,
                           PENDING_NOT_READY, READY), m|rc reason,
                           m|n open medias + WRAP_UP tasks held, m|sh the
                           state it last showed, m|t when that changed, m|la last time it was made ready or
                           given a task (the LONGEST_AVAILABLE order),
                           m|ov how many it holds over maxRequests because
                           the limit was lowered under it ('' when none)
  rr:{t}:agent:<id>:tasks  set of the agent's live task ids
  rr:{t}:agents            set of agent ids
  rr:{t}:q:<id>:members    set of agents that list the queue
  rr:{t}:q:<id>:avail      sorted set of the queue's agents that can take a
                           task of its MRD now, best first (see agent_score)

  An MRD shows READY with no tasks, ACTIVE below maxRequests and BUSY at it
  while its base state is READY; other base states show as they are.
]]
local function nz(s)
  if s == '' then return nil end
  return s
end

-- An HGETALL reply (field, value, field, value, ...) as a table.
local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Agents are read once per script and their field changes written in one
-- HSET per agent when the script ends, so every reader in the script sees
-- the same, current table.
local AGENTS = {}

local function agent_get(id)
  local a = AGENTS[id]
  if a ~= nil then return a or nil end
  local f = hash_table(redis.call('HGETALL', key('agent', id)))
  if f.st == nil then
    AGENTS[id] = false
    return nil
  end
  a = {id = id, f = f, queues = cjson.decode(f.queues or '[]'), max = cjson.decode(f.max or '{}'),
       dirty = {}}
  AGENTS[id] = a
  return a
end

-- Drops the cached copy after a script wrote the agent's hash directly.
local function agent_forget(id)
  AGENTS[id] = nil
end

AT_END[#AT_END + 1] = function()
  for id, a in pairs(AGENTS) do
    if a and next(a.dirty) then
      local args = {}
      for f, v in pairs(a.dirty) do
        args[#args + 1] = f
        args[#args + 1] = v
      end
      redis.call('HSET', key('agent', id), unpack(args))
    end
  end
end

local function agent_must(id)
  local a = agent_get(id)
  if not a then fail('NOT_FOUND', 'agent ' .. id .. ' does not exist') end
  return a
end

-- Values are kept as Redis holds them, strings (numbers through istr), so
-- the agent's JSON and its HSET use them as they are.
local function agent_set(a, field, value)
  if type(value) == 'number' then value = istr(value) end
  a.f[field] = value
  a.dirty[field] = value
end

local function agent_max(a, mrd)
  local override = a.max[mrd]
  if override ~= nil then return tonumber(override) end
  local m = mrd_get(mrd)
  if m then return m.maxRequests end
  return 1
end

local function mrd_base(a, mrd)
  local st = a.f[mrd .. '|st']
  if st then return st end
  -- An MRD the agent has not set yet: logged out with the agent, else not
  -- ready until the agent asks (an MRD created later is not taken at once).
  if a.f.st == 'LOGOUT' then return 'LOGOUT' end
  return 'NOT_READY'
end

local function mrd_count(a, mrd)
  return tonumber(a.f[mrd .. '|n'] or '0')
end

local function mrd_display(a, mrd)
  local st = mrd_base(a, mrd)
  if st ~= 'READY' then return st end
  local n = mrd_count(a, mrd)
  if n == 0 then return 'READY' end
  if n >= agent_max(a, mrd) then return 'BUSY' end
  return 'ACTIVE'
end

local function agent_available(a, mrd)
  return a.f.st ~= 'LOGOUT' and mrd_base(a, mrd) == 'READY' and mrd_count(a, mrd) < agent_max(a, mrd)
end

local function agent_score(a, mrd, policy)
  local la = tonumber(a.f[mrd .. '|la'] or '0')
  if policy == 'LEAST_ACTIVE' then return mrd_count(a, mrd) * 1e13 + la end
  return la
end

-- Puts the agent in, or takes it out of, the availability index of each of
-- its queues that serves this MRD.
local function agent_reindex(a, mrd)
  local avail = agent_available(a, mrd)
  for _, qid in ipairs(a.queues) do
    local q = queue_get(qid)
    if q and q.mrdId == mrd then
      if avail then
        redis.call('ZADD', key('q', qid, 'avail'), istr(agent_score(a, mrd, q.agentSelectionPolicy)), a.id)
      else
        redis.call('ZREM', key('q', qid, 'avail'), a.id)
      end
    end
  end
end

-- Stamps the state change time when what the MRD shows differs from what it
-- showed last (m|sh), then refreshes the indexes. Every change of an agent's
-- MRD ends here, config changes (capacity) included.
local function mrd_commit(a, mrd)
  local shown = mrd_display(a, mrd)
  if shown ~= (a.f[mrd .. '|sh'] or 'LOGOUT') then
    agent_set(a, mrd .. '|sh', shown)
    agent_set(a, mrd .. '|t', now_ms())
  end
  agent_reindex(a, mrd)
end

local function mrd_set_base(a, mrd, st, rc)
  if st == 'READY' and mrd_base(a, mrd) ~= 'READY' then agent_set(a, mrd .. '|la', now_ms()) end
  if st == 'NOT_READY' and mrd_count(a, mrd) > 0 and mrd_base(a, mrd) ~= 'NOT_READY' and rc ~= 'RONA' then
    st = 'PENDING_NOT_READY'
  end
  agent_set(a, mrd .. '|st', st)
  agent_set(a, mrd .. '|rc', rc or '')
  mrd_commit(a, mrd)
end

-- Capacity lowered under what the agent holds (put_mrd, put_agent): its
-- tasks stay until they end and it takes no more meanwhile; m|ov records
-- the count held over the limit by that change, shrinking as they close,
-- so that only a configuration, never routing, can explain an agent above
-- its maxRequests.
local function mrd_hold_over(a, mrd)
  local n = mrd_count(a, mrd)
  if n > agent_max(a, mrd) then
    agent_set(a, mrd .. '|ov', n)
  elseif (a.f[mrd .. '|ov'] or '') ~= '' then
    agent_set(a, mrd .. '|ov', '')
  end
end

-- One more (delta 1) or one less (delta -1) slot in use on the MRD.
local function mrd_count_add(a, mrd, delta)
  local n = mrd_count(a, mrd) + delta
  agent_set(a, mrd .. '|n', n)
  local ov = tonumber(a.f[mrd .. '|ov'] or '')
  if ov and delta < 0 then
    if n <= agent_max(a, mrd) then
      agent_set(a, mrd .. '|ov', '')
    elseif n < ov then
      agent_set(a, mrd .. '|ov', n)
    end
  end
  if delta > 0 then agent_set(a, mrd .. '|la', now_ms()) end
  if n == 0 and mrd_base(a, mrd) == 'PENDING_NOT_READY' then agent_set(a, mrd .. '|st', 'NOT_READY') end
  mrd_commit(a, mrd)
end

local MRD_IDS
local function mrd_ids()
  if not MRD_IDS then
    MRD_IDS = redis.call('SMEMBERS', key('mrds'))
    table.sort(MRD_IDS)
  end
  return MRD_IDS
end

-- After an MRD changed on its own, the logged-in agent's global state
-- follows: READY while any MRD is ready, else NOT_READY with reason rc.
local function agent_follow_mrds(a, rc)
  if a.f.st == 'LOGOUT' then return end
  local global = 'NOT_READY'
  for _, m in ipairs(mrd_ids()) do
    if mrd_base(a, m) == 'READY' then global = 'READY' end
  end
  if global ~= a.f.st then
    agent_set(a, 'st', global)
    agent_set(a, 'rc', global == 'NOT_READY' and rc or '')
    agent_set(a, 't', now_ms())
  end
end

local function agent_json(a)
  local states = {}
  for i, mrd in ipairs(mrd_ids()) do
    states[i] = '{"mrdId":' .. jid(mrd) .. ',"state":' .. jid(mrd_display(a, mrd)) ..
      ',"reasonCode":' .. jid(nz(a.f[mrd .. '|rc'])) .. ',"activeTasks":' .. (a.f[mrd .. '|n'] or '0') ..
      ',"maxRequests":' .. jint(agent_max(a, mrd)) ..
      ',"stateChangeTime":' .. (a.f[mrd .. '|t'] or a.f.t or 'null') .. '}'
  end
  local max = {}
  for mrd, n in pairs(a.max) do max[#max + 1] = jid(mrd) .. ':' .. jint(tonumber(n)) end
  table.sort(max)
  return '{"id":' .. jid(a.id) .. ',"state":{"name":' .. jid(a.f.st) .. ',"reasonCode":' ..
    jid(nz(a.f.rc)) .. '},"queues":' .. jids(a.queues) .. ',"attributes":' .. (a.f.attrs or '{}') ..
    ',"maxRequests":{' .. table.concat(max, ',') .. '},"mrdStates":' .. jlist(states) .. '}'
end

local function emit_agent(a)
  emit('AGENT_STATE_CHANGED', '{"agent":' .. agent_json(a) .. '}')
end
