--- @include "skills"
--- @include "reply"
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
                           the limit was lowered under it ('' when none),
                           m|wu the WRAP_UP tasks among m|n (they hold a
                           slot but no open media, so they block nothing);
                           per queue with steps: fs|<queue> its first step
                           there ('0': none matches), sk|<queue> its skill
                           score; pf the count of preferred-only tasks
                           waiting for it (routing.lua)
  rr:{t}:agent:<id>:tasks  set of the agent's live task ids
  rr:{t}:agents            set of agent ids
  rr:{t}:q:<id>:members    set of agents that list the queue
  rr:{t}:q:<id>:avail      sorted set of the queue's agents that can take a
                           task of its MRD now, best first (see agent_score)
  rr:{t}:q:<id>:avail:<k>  the same for a queue with steps, per step k:
                           the available agents whose first step is k

  An MRD shows READY with no tasks, ACTIVE below maxRequests and BUSY at it
  while its base state is READY; other base states show as they are.
  MRD blocks: while the agent holds an open media of an MRD whose blocks
  name MRD x, it is not available on x (out of x's indexes, offered
  nothing of x); tasks it holds stay. When the last such media closes, x
  is lifted (LIFTED) and the caller routes it (route_lifted, lifecycle.lua).
]]
local function nz(s)
  if s == '' then return nil end
  return s
end

-- Agents are read once per script and their field changes written in one
-- HSET per agent when the script ends, so every reader in the script sees
-- the same, current table.
local AGENTS = {}

-- An agent's queues and max fields decoded, by their JSON text: most calls
-- read an agent, whose fields rarely change, and few agents' lists differ.
-- A pure function of its keys, so the library keeps it between calls (see
-- istr); it starts over at AGENT_DECODED_MAX entries. What it hands out is
-- shared by every agent read with the same text, and by later calls: a
-- script never changes a.queues or a.max in place (put_agent writes the
-- fields and reads the agent again).
--- @library
local AGENT_DECODED, AGENT_DECODED_N, AGENT_DECODED_MAX = {}, 0, 256

local function agent_decoded(s)
  local v = AGENT_DECODED[s]
  if v ~= nil then return v end
  v = cjson.decode(s)
  if AGENT_DECODED_N >= AGENT_DECODED_MAX then AGENT_DECODED, AGENT_DECODED_N = {}, 0 end
  AGENT_DECODED[s] = v
  AGENT_DECODED_N = AGENT_DECODED_N + 1
  return v
end

local function agent_get(id)
  local a = AGENTS[id]
  if a ~= nil then return a or nil end
  local f = hash_table(redis.call('HGETALL', key('agent', id)))
  if f.st == nil then
    AGENTS[id] = false
    return nil
  end
  a = {id = id, f = f, queues = agent_decoded(f.queues or '[]'), max = agent_decoded(f.max or '{}'),
       dirty = {}}
  AGENTS[id] = a
  return a
end

-- Drops the cached copy after a script wrote the agent's hash directly.
local function agent_forget(id)
  AGENTS[id] = nil
end

--- @once
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
  return found('agent', id, agent_get(id))
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

local function agent_mrd_base(a, mrd)
  local st = a.f[mrd .. '|st']
  if st then return st end
  -- An MRD the agent has not set yet: logged out with the agent, else not
  -- ready until the agent asks (an MRD created later is not taken at once).
  if a.f.st == 'LOGOUT' then return 'LOGOUT' end
  return 'NOT_READY'
end

-- An agent's counts (m|n, m|wu) as numbers: tonumber is dear (Lua 5.1 runs
-- strtod twice), and counts take few values. A pure function of its keys,
-- so the library keeps it between calls (see istr); it starts over at 256
-- entries. Read as AGENT_COUNT[s] or agent_count(s): a hit makes no call.
--- @library
local AGENT_COUNT, AGENT_COUNT_N = {}, 0

local function agent_count(s)
  local n = tonumber(s)
  if AGENT_COUNT_N >= 256 then AGENT_COUNT, AGENT_COUNT_N = {}, 0 end
  AGENT_COUNT[s] = n
  AGENT_COUNT_N = AGENT_COUNT_N + 1
  return n
end

local function agent_mrd_count(a, mrd)
  local s = a.f[mrd .. '|n'] or '0'
  return AGENT_COUNT[s] or agent_count(s)
end

local function agent_mrd_display(a, mrd)
  local st = agent_mrd_base(a, mrd)
  if st ~= 'READY' then return st end
  local n = agent_mrd_count(a, mrd)
  if n == 0 then return 'READY' end
  if n >= agent_max(a, mrd) then return 'BUSY' end
  return 'ACTIVE'
end

-- Open medias the agent holds on the MRD (its slots less its WRAP_UP tasks).
local function agent_mrd_open(a, mrd)
  local wu = a.f[mrd .. '|wu'] or '0'
  return agent_mrd_count(a, mrd) - (AGENT_COUNT[wu] or agent_count(wu))
end

-- The MRDs blocking mrd for the agent now (MRD blocks), in id order.
local function agent_mrd_blocked_by(a, mrd)
  local m, out = mrd_get(mrd), {}
  if m and m.blockers then
    for _, b in ipairs(m.blockers) do
      if agent_mrd_open(a, b) > 0 then out[#out + 1] = b end
    end
  end
  return out
end

local function agent_available(a, mrd)
  if a.f.st == 'LOGOUT' or agent_mrd_base(a, mrd) ~= 'READY' or agent_mrd_count(a, mrd) >= agent_max(a, mrd) then
    return false
  end
  local m = mrd_get(mrd)
  return not (m and m.blockers and #agent_mrd_blocked_by(a, mrd) > 0)
end

-- Scores pack a level and the LONGEST_AVAILABLE time into one number below
-- 2^53 (a sorted set's score is a double): la, in ms, stays below 2^41 until
-- 2039, leaving 4096 levels. LEAST_LOADED's level is the load in 4096ths
-- (exact between any two maxRequests up to 64); a skill score is counted
-- from 0 to 4095.
--- @once
local LA_SPAN = 2199023255552  -- 2^41
local LEVELS = 4095

local function agent_score(a, mrd, q)
  local la = tonumber(a.f[mrd .. '|la'] or '0')
  local policy = q.agentSelectionPolicy
  if policy == 'LONGEST_AVAILABLE' then return la end
  if policy == 'LEAST_ACTIVE' then return agent_mrd_count(a, mrd) * 1e13 + la end
  local level
  if policy == 'LEAST_LOADED' then
    level = math.min(LEVELS, math.floor(agent_mrd_count(a, mrd) * 4096 / agent_max(a, mrd)))
  else
    level = math.max(0, math.min(LEVELS, math.floor(tonumber(a.f['sk|' .. q.id] or '0'))))
    if policy == 'MOST_SKILLED' then level = LEVELS - level end
  end
  return level * LA_SPAN + la
end

-- The availability index the agent belongs in for queue q: the queue's, or
-- for a queue with steps that of the agent's first step (none when no step
-- matches it).
local function agent_index(a, q)
  if not q.nsteps then return key('q', q.id, 'avail') end
  local fs = a.f['fs|' .. q.id]
  if fs == nil or fs == '0' then return nil end
  return key('q', q.id, 'avail:' .. fs)
end

-- Puts the agent in, or takes it out of, the availability index of each of
-- its queues that serves this MRD.
local function agent_reindex(a, mrd)
  local avail = agent_available(a, mrd)
  local queues = a.queues
  for i = 1, #queues do
    local q = queue_get(queues[i])
    if q and q.mrdId == mrd then
      local k = agent_index(a, q)
      if k then
        if avail then
          redis.call('ZADD', k, istr(agent_score(a, mrd, q)), a.id)
        else
          redis.call('ZREM', k, a.id)
        end
      end
    end
  end
end

-- The agent's attributes, decoded once per script.
local function agent_attrs(a)
  if a.attrs == nil then a.attrs = cjson.decode(a.f.attrs or '{}') end
  return a.attrs
end

-- Evaluates queue q's steps for member a (put_agent, put_queue): its first
-- step (fs|<q>) and skill score (sk|<q>). Takes it out of the index of a
-- first step it no longer has; the caller reindexes.
local function agent_evaluate(a, q)
  local code, attrs, fs = queue_code(q), agent_attrs(a), 0
  for k, c in ipairs(code) do
    if expr_eval(c, attrs) then
      fs = k
      break
    end
  end
  local score = 0
  for _, name in ipairs(q.skillNames) do
    local v = attrs[name]
    if v == true then score = score + 1 elseif type(v) == 'number' then score = score + v end
  end
  local old = a.f['fs|' .. q.id]
  if old and old ~= '0' and tonumber(old) ~= fs then
    redis.call('ZREM', key('q', q.id, 'avail:' .. old), a.id)
  end
  agent_set(a, 'fs|' .. q.id, fs)
  agent_set(a, 'sk|' .. q.id, score)
end

-- Takes the agent out of queue qid's indexes and forgets its evaluation
-- there (it left the queue, or the queue's steps are being rebuilt).
local function agent_leave_queue(a, qid)
  redis.call('ZREM', key('q', qid, 'avail'), a.id)
  local fs = a.f['fs|' .. qid]
  if fs then
    if fs ~= '0' then redis.call('ZREM', key('q', qid, 'avail:' .. fs), a.id) end
    a.f['fs|' .. qid], a.f['sk|' .. qid] = nil, nil
    a.dirty['fs|' .. qid], a.dirty['sk|' .. qid] = nil, nil
    redis.call('HDEL', key('agent', a.id), 'fs|' .. qid, 'sk|' .. qid)
  end
end

-- Stamps the state change time when what the MRD shows differs from what it
-- showed last (m|sh), then refreshes the indexes. Every change of an agent's
-- MRD ends here, config changes (capacity) included.
local function agent_mrd_commit(a, mrd)
  local shown = agent_mrd_display(a, mrd)
  if shown ~= (a.f[mrd .. '|sh'] or 'LOGOUT') then
    agent_set(a, mrd .. '|sh', shown)
    agent_set(a, mrd .. '|t', now_ms())
  end
  agent_reindex(a, mrd)
end

local function agent_mrd_set_base(a, mrd, st, rc)
  if st == 'READY' and agent_mrd_base(a, mrd) ~= 'READY' then agent_set(a, mrd .. '|la', now_ms()) end
  if st == 'NOT_READY' and agent_mrd_count(a, mrd) > 0 and agent_mrd_base(a, mrd) ~= 'NOT_READY' and rc ~= 'RONA' then
    st = 'PENDING_NOT_READY'
  end
  agent_set(a, mrd .. '|st', st)
  agent_set(a, mrd .. '|rc', rc or '')
  agent_mrd_commit(a, mrd)
end

-- Capacity lowered under what the agent holds (put_mrd, put_agent): its
-- tasks stay until they end and it takes no more meanwhile; m|ov records
-- the count held over the limit by that change, shrinking as they close,
-- so that only a configuration, never routing, can explain an agent above
-- its maxRequests.
local function agent_mrd_hold_over(a, mrd)
  local n = agent_mrd_count(a, mrd)
  if n > agent_max(a, mrd) then
    agent_set(a, mrd .. '|ov', n)
  elseif (a.f[mrd .. '|ov'] or '') ~= '' then
    agent_set(a, mrd .. '|ov', '')
  end
end

-- The agent's open medias on MRD b changed (was_open: whether it held any
-- before): the MRDs b blocks enter or leave its indexes; those it may take
-- again are recorded in a.lifted, and a.blocks_shown says its blockedBy
-- changed (the caller publishes the agent).
local function agent_mrd_blocks_follow(a, b, was_open)
  local m = mrd_get(b)
  if not (m and m.blocks) then return end
  if was_open ~= (agent_mrd_open(a, b) > 0) then a.blocks_shown = true end
  for _, x in ipairs(m.blocks) do
    agent_reindex(a, x)
    if agent_available(a, x) then
      a.lifted = a.lifted or {}
      a.lifted[x] = true
    end
  end
end

-- One more (delta 1) or one less (delta -1) slot in use on the MRD.
local function agent_mrd_count_add(a, mrd, delta)
  local was_open = agent_mrd_open(a, mrd) > 0
  local n = agent_mrd_count(a, mrd) + delta
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
  if n == 0 and agent_mrd_base(a, mrd) == 'PENDING_NOT_READY' then agent_set(a, mrd .. '|st', 'NOT_READY') end
  agent_mrd_commit(a, mrd)
  agent_mrd_blocks_follow(a, mrd, was_open)
end

-- One more (delta 1) or one less (delta -1) WRAP_UP task among the slots.
local function agent_mrd_wrap_add(a, mrd, delta)
  local was_open = agent_mrd_open(a, mrd) > 0
  -- (A task wrapped up before this count existed must not take it below 0.)
  agent_set(a, mrd .. '|wu', math.max(0, tonumber(a.f[mrd .. '|wu'] or '0') + delta))
  agent_mrd_blocks_follow(a, mrd, was_open)
end


-- After an MRD changed on its own, the logged-in agent's global state
-- follows: READY while any MRD is ready, else NOT_READY with reason rc.
local function agent_follow_mrds(a, rc)
  if a.f.st == 'LOGOUT' then return end
  local global = 'NOT_READY'
  local ids = mrd_ids()
  for i = 1, #ids do
    if agent_mrd_base(a, ids[i]) == 'READY' then global = 'READY' end
  end
  if global ~= a.f.st then
    agent_set(a, 'st', global)
    agent_set(a, 'rc', global == 'NOT_READY' and rc or '')
    agent_set(a, 't', now_ms())
  end
end

-- One MRD's state in the agent's JSON: that of every MRD after the first
-- (agent_json_in writes the first in line; the two agree).
local function agent_mrd_json(a, mrd)
  local f, m = a.f, mrd_get(mrd)
  local rc = f[mrd .. '|rc']
  return '{"mrdId":"' .. mrd .. '","state":"' .. agent_mrd_display(a, mrd) ..
    '","reasonCode":' .. ((rc and rc ~= '') and '"' .. rc .. '"' or 'null') ..
    ',"activeTasks":' .. (f[mrd .. '|n'] or '0') .. ',"maxRequests":' .. jint(agent_max(a, mrd)) ..
    ',"stateChangeTime":' .. (f[mrd .. '|t'] or f.t or 'null') .. ',"blockedBy":' ..
    ((m and m.blockers) and jids(agent_mrd_blocked_by(a, mrd)) or '[]') .. '}'
end

-- The agent's API JSON between pre and post, in one concatenation, as
-- task_json_in: ids, states and reasons in line, the first MRD's state too
-- (most tenants have one), and an MRD that no other blocks shows its
-- blockedBy without building the list. (A name and its quotes: x and '"'
-- or '', x or 'null'.)
local function agent_json_in(a, pre, post)
  local f, ids = a.f, mrd_ids()
  -- (Most agents override no maxRequests: no list to sort and join.)
  local max = ''
  if next(a.max) then
    local list = {}
    for mrd, n in pairs(a.max) do list[#list + 1] = jid(mrd) .. ':' .. jint(tonumber(n)) end
    table.sort(list)
    max = table.concat(list, ',')
  end
  local rc, queues = f.rc, a.queues
  if rc == '' then rc = nil end
  local q1 = #queues == 1 and queues[1]
  local mrd = ids[1]
  if not mrd then
    return pre .. '{"id":"' .. a.id .. '","state":{"name":"' .. f.st .. '","reasonCode":' ..
      (rc and '"' or '') .. (rc or 'null') .. (rc and '"' or '') .. '},"queues":' .. jids(queues) ..
      ',"attributes":' .. (f.attrs or '{}') .. ',"maxRequests":{' .. max .. '},"mrdStates":[]}' .. post
  end
  local rest = ''
  if #ids > 1 then
    local states = {}
    for i = 2, #ids do states[i - 1] = agent_mrd_json(a, ids[i]) end
    rest = ',' .. table.concat(states, ',')
  end
  local m, mrc = mrd_get(mrd), f[mrd .. '|rc']
  if mrc == '' then mrc = nil end
  return pre .. '{"id":"' .. a.id .. '","state":{"name":"' .. f.st .. '","reasonCode":' ..
    (rc and '"' or '') .. (rc or 'null') .. (rc and '"' or '') .. '},"queues":' ..
    (q1 and '["' or '') .. (q1 or jids(queues)) .. (q1 and '"]' or '') ..
    ',"attributes":' .. (f.attrs or '{}') .. ',"maxRequests":{' .. max ..
    '},"mrdStates":[{"mrdId":"' .. mrd .. '","state":"' .. agent_mrd_display(a, mrd) .. '","reasonCode":' ..
    (mrc and '"' or '') .. (mrc or 'null') .. (mrc and '"' or '') ..
    ',"activeTasks":' .. (f[mrd .. '|n'] or '0') .. ',"maxRequests":' .. jint(agent_max(a, mrd)) ..
    ',"stateChangeTime":' .. (f[mrd .. '|t'] or f.t or 'null') .. ',"blockedBy":' ..
    ((m and m.blockers) and jids(agent_mrd_blocked_by(a, mrd)) or '[]') .. '}' .. rest .. ']}' .. post
end

local function agent_json(a)
  return agent_json_in(a, '', '')
end

local function emit_agent(a)
  a.blocks_shown = nil
  emit('AGENT_STATE_CHANGED', agent_json_in(a, '{"agent":', '}'))
end

-- An MRD deleted: the agent's fields for it go (delete_mrd).
--- @library
local AGENT_MRD_FIELDS = {'st', 'rc', 'n', 'sh', 't', 'la', 'ov', 'wu'}

local function agent_mrd_forget(a, mrd)
  local fields = {}
  for i, f in ipairs(AGENT_MRD_FIELDS) do
    fields[i] = mrd .. '|' .. f
    a.f[fields[i]] = nil
    a.dirty[fields[i]] = nil
  end
  redis.call('HDEL', key('agent', a.id), unpack(fields))
end

-- The agent deleted: its keys and id go, and no pending change of it is
-- written back at the end (delete_agent).
local function agent_drop(a)
  redis.call('DEL', key('agent', a.id), key('agent', a.id, 'tasks'))
  config_remove('agents', a.id)
  a.dirty = {}
  AGENTS[a.id] = false
end

-- Counts by name, as a JSON object in name order: tally(name) counts one.
local function name_counts()
  local counts, names = {}, {}
  local function tally(name)
    if not counts[name] then
      counts[name] = 0
      names[#names + 1] = name
    end
    counts[name] = counts[name] + 1
  end
  local function json()
    table.sort(names)
    local parts = {}
    for i, n in ipairs(names) do parts[i] = jid(n) .. ':' .. jint(counts[n]) end
    return '{' .. table.concat(parts, ',') .. '}'
  end
  return tally, json, counts
end

-- A queue's member agents counted by what they show on its MRD, as JSON,
-- and how many of them are logged in.
local function queue_agent_states(q)
  local tally, json, counts = name_counts()
  local members = redis.call('SMEMBERS', key('q', q.id, 'members'))
  for _, aid in ipairs(members) do
    local a = agent_get(aid)
    if a then tally(agent_mrd_display(a, q.mrdId)) end
  end
  local logged_in = 0
  for st, n in pairs(counts) do
    if st ~= 'LOGOUT' then logged_in = logged_in + n end
  end
  return json(), logged_in
end

-- A queue's waiting tasks (preferred-only ones included: :age holds them
-- all), and its oldest: {count, taskId, enqueueTime} (nil when none waits).
local function queue_oldest(q)
  local waiting = redis.call('ZCARD', key('q', q.id, 'age'))
  local oldest = redis.call('ZRANGE', key('q', q.id, 'age'), '0', '0', 'WITHSCORES')
  return waiting, oldest[1], tonumber(oldest[2])
end

-- A queue's live statistics, as JSON fields to add to queue_json: waiting
-- (count), oldestWaitMs (null when none waits) and agents (member agents
-- counted by what they show on the queue's MRD).
local function queue_stats(q)
  local waiting, _, since = queue_oldest(q)
  return ',"waiting":' .. jint(waiting) .. ',"oldestWaitMs":' .. jint(since and now_ms() - since) ..
    ',"agents":' .. queue_agent_states(q)
end
