--- @include "base"
--- @include "stats"
--[[
  task: the task document, its JSON shape and its TASK_STATE_CHANGED event.

  rr:{t}:task:<id>   string, the task as cjson (internal form below); expires
                     RETENTION ms after the task closes
  rr:{t}:live        set of ids of tasks not CLOSED
  rr:{t}:conv:<cid>  sorted set of a conversation's task ids by createdAt;
                     expires RETENTION ms after its last live task closes

  Internal form: the API fields, with null fields left out, opaque client JSON
  kept as strings (metadata, media[i].session), the integer fields (priority,
  times, deadlines) as their decimal strings, and routing fields: exclude
  (an agent the task must not be offered to), slaMs (the RONA timeout of a
  task with no queue), parked (true while in its queue's waiting sets, 'p'
  while waiting for its preferred agent only), and the API's routing
  object: step, steps, nextStepAt (a queue with steps), pref and prefUntil
  (preferredAgentId, preferredUntil; prefOff once the window ended early);
  overflowAt (the overflow deadline while it waits in a queue with
  overflow) and rsv (when it was offered to its agent, for the MRD blocks
  invariant); ewt (a waiting or offered request's predicted wait, ewt.lua).
]]
-- Tasks are decoded once per script; every reader shares the table.
local TASKS = {}

-- A task's integer fields are kept as the strings they are written as
-- (arithmetic on them converts by itself; comparisons use tonumber): cjson
-- writes a number with "%.14g" and reads it with strtod, both dear on every
-- save and read. A task saved with numbers
-- (before this form) is converted when read.
local function task_numbers_as_strings(t)
  for _, f in ipairs({'priority', 'enqueueTime', 'ttlDeadline', 'createdAt', 'updatedAt'}) do
    if t[f] then t[f] = istr(t[f]) end
  end
  for _, m in ipairs(t.media) do
    if m.enqueueTime then m.enqueueTime = istr(m.enqueueTime) end
    if m.answerTime then m.answerTime = istr(m.answerTime) end
  end
end

local function task_get(id)
  local t = TASKS[id]
  if t ~= nil then return t or nil end
  local raw = redis.call('GET', key('task', id))
  t = raw and cjson.decode(raw) or false
  if t and type(t.createdAt) == 'number' then task_numbers_as_strings(t) end
  TASKS[id] = t
  return t or nil
end

-- Whether task id is live, without decoding it: a task this call already
-- holds says so itself; any other is looked up in the live set, so closed
-- tasks (most of a long conversation's) are never read.
local function task_is_live(id)
  local t = TASKS[id]
  if t ~= nil then return t and t.state ~= 'CLOSED' end
  return redis.call('SISMEMBER', key('live'), id) == 1
end

local function task_must(id)
  return found('task', id, task_get(id))
end

--- @once
local NO_ROUTING = '{"step":null,"steps":null,"nextStepAt":null,"preferredAgentId":null,"preferredUntil":null}'

local function task_routing_json(t)
  if not (t.steps or t.pref) then return NO_ROUTING end
  return '{"step":' .. jint(t.step) .. ',"steps":' .. jint(t.steps) .. ',"nextStepAt":' ..
    jint(t.nextStepAt) .. ',"preferredAgentId":' .. jid(t.pref) .. ',"preferredUntil":' ..
    jint(t.prefUntil) .. '}'
end

-- The API JSON of each task, built once per state: the events of a step and
-- the script's reply share it. Every change to a task is saved (task_save)
-- before its JSON is read again, and saving drops the cached copy.
local TASK_JSON = {}

-- The task's integer fields are strings (above): they go into its JSON as
-- they are, null when absent, with no call to jint or jid per field.
-- (The first media's JSON is written in line in task_json_in: the two agree.)
local function media_json(m)
  local q = m.queueId
  return '{"id":"' .. m.id .. '","mrdId":"' .. m.mrdId .. '","state":"' .. m.state ..
    '","queueId":' .. (q and '"' .. q .. '"' or 'null') .. ',"enqueueTime":' .. (m.enqueueTime or 'null') ..
    ',"answerTime":' .. (m.answerTime or 'null') .. ',"requestSession":' .. (m.session or '{}') .. '}'
end

-- The task's API JSON between pre and post, made in one concatenation: Redis'
-- Lua hashes every byte of every string it makes, so the JSON of an event
-- that embeds it is made without making the task's JSON on its own first,
-- and the first media (most tasks have only one) is written in line, not
-- made as a string and copied.
local function task_json_in(t, pre, post)
  local media = t.media
  local m, rest = media[1], ''
  if #media > 1 then
    local ms = {}
    for i = 2, #media do ms[i - 1] = media_json(media[i]) end
    rest = ',' .. table.concat(ms, ',')
  end
  -- Fields that are never null are quoted in line: one string built, not one
  -- per field. (A name and its quotes: x and '"' or '', x or 'null'.)
  local reason, to, q, mq = t.reason, t.assignedTo, t.queueId, m.queueId
  return pre .. '{"id":"' .. t.id .. '","requestId":"' .. t.requestId ..
    '","conversationId":"' .. t.conversationId ..
    '","state":{"name":"' .. t.state .. '","reasonCode":' .. (reason and '"' or '') .. (reason or 'null') ..
    (reason and '"' or '') .. '},"assignedTo":' .. (to and '"' or '') .. (to or 'null') .. (to and '"' or '') ..
    ',"type":{"direction":"' .. t.direction .. '","mode":"' .. t.mode .. '"}' ..
    ',"queueId":' .. (q and '"' or '') .. (q or 'null') .. (q and '"' or '') .. ',"mrdId":"' .. t.mrdId ..
    '","priority":' .. (t.priority or 'null') ..
    ',"activeMedia":[{"id":"' .. m.id .. '","mrdId":"' .. m.mrdId .. '","state":"' .. m.state ..
    '","queueId":' .. (mq and '"' or '') .. (mq or 'null') .. (mq and '"' or '') ..
    ',"enqueueTime":' .. (m.enqueueTime or 'null') .. ',"answerTime":' .. (m.answerTime or 'null') ..
    ',"requestSession":' .. (m.session or '{}') .. '}' .. rest .. ']' ..
    ',"enqueueTime":' .. (t.enqueueTime or 'null') .. ',"ttlDeadline":' .. (t.ttlDeadline or 'null') ..
    ',"createdAt":' .. (t.createdAt or 'null') .. ',"updatedAt":' .. (t.updatedAt or 'null') ..
    ',"metadata":' .. (t.metadata or '{}') .. ',"routing":' .. task_routing_json(t) .. '}' .. post
end

local function task_json(t)
  local j = TASK_JSON[t]
  if j then return j end
  j = task_json_in(t, '', '')
  TASK_JSON[t] = j
  return j
end

-- quiet: a change the task's JSON does not show (its place re-made after a
-- queue's policy changed) keeps updatedAt.
local function task_save(t, quiet)
  TASK_JSON[t] = nil
  if not quiet then t.updatedAt = now_ms_str() end
  local k = key('task', t.id)
  redis.call('SET', k, cjson.encode(t))
  if t.state == 'CLOSED' then
    redis.call('PEXPIRE', k, RETENTION)
    redis.call('SREM', key('live'), t.id)
  end
end

-- A conversation's task ids, oldest first, read once per call (task_new
-- adds the tasks it creates).
local CONVERSATIONS = {}

local function conversation_ids(cid)
  local ids = CONVERSATIONS[cid]
  if not ids then
    ids = redis.call('ZRANGE', key('conv', cid), '0', '-1')
    CONVERSATIONS[cid] = ids
  end
  return ids
end

-- A new task document with fresh ids; requestId is kept when given (RONA,
-- REROUTE) so every task serving one routing request shares it.
local function task_new(f)
  local n = istr(next_seq())
  local now = now_ms_str()
  local t = {id = 't-' .. n, requestId = f.requestId or ('r-' .. n), conversationId = f.conversationId,
    state = 'ACTIVE', direction = f.direction, mode = f.mode, queueId = f.queueId, mrdId = f.mrdId,
    priority = f.priority or '1', enqueueTime = f.enqueueTime or now, ttlDeadline = f.ttlDeadline,
    createdAt = now, updatedAt = now, metadata = f.metadata, exclude = f.exclude, slaMs = f.slaMs,
    pref = f.pref, prefUntil = f.prefUntil, prefOff = f.prefOff, ewt = f.ewt,
    media = {{id = 'm-' .. n, mrdId = f.mrdId, state = f.mediaState, queueId = f.queueId,
      enqueueTime = f.enqueueTime or now, session = f.session}}}
  TASKS[t.id] = t
  redis.call('SADD', key('live'), t.id)
  local ids = conversation_ids(t.conversationId)
  local ck = key('conv', t.conversationId)
  redis.call('ZADD', ck, now, t.id)
  -- Only a conversation with tasks can be set to expire (conversation_settle).
  if #ids > 0 then redis.call('PERSIST', ck) end
  ids[#ids + 1] = t.id
  return t
end

local function media_find(t, mid)
  local media = t.media
  for i = 1, #media do
    if media[i].id == mid then return media[i] end
  end
  return nil
end

-- The one media of a task that is waiting for or offered to an agent.
local function media_pending(t, state)
  local media = t.media
  for i = 1, #media do
    if media[i].state == state then return media[i] end
  end
  return nil
end

local function media_open_count(t)
  local n, media = 0, t.media
  for i = 1, #media do
    if media[i].state ~= 'CLOSED' then n = n + 1 end
  end
  return n
end

-- transition: what happened (TRANSITIONS), named by the script that makes
-- the change, so no consumer infers it from two snapshots.
--- @library
local TRANSITIONS = {CREATED = true, RESERVED = true, ACCEPTED = true, DECLINED = true, RONA = true,
  STEP_CHANGED = true, OVERFLOWED = true, REPRIORITIZED = true, MEDIA_ADDED = true,
  MEDIA_CLOSED = true, WRAP_UP = true, CLOSED = true, TTL_EXPIRED = true, REROUTED = true,
  TRANSFERRED = true}

-- once: the caller reads no task_json(t) before t is saved again (a new
-- task routed next, which saves it): the event is then made with the task's
-- JSON in line, not from the task's JSON made and kept first.
local function emit_task(t, task_changed, media_ids, transition, once)
  if not TRANSITIONS[transition] then error('emit_task: unknown transition ' .. tostring(transition)) end
  -- (One media changed, most events: its id in line, no list made.)
  local j, changed, id1 = TASK_JSON[t], task_changed and 'true' or 'false', media_ids and #media_ids == 1 and media_ids[1]
  local ids = id1 or jids(media_ids or {})
  local q1, q2 = id1 and '["' or '', id1 and '"]' or ''
  if j == nil and once then
    emit('TASK_STATE_CHANGED', task_json_in(t, '{"task":', ',"taskStateChanged":' .. changed ..
      ',"mediaStateChanges":' .. q1 .. ids .. q2 .. ',"transition":"' .. transition .. '"}'))
  else
    emit('TASK_STATE_CHANGED', '{"task":' .. (j or task_json(t)) .. ',"taskStateChanged":' .. changed ..
      ',"mediaStateChanges":' .. q1 .. ids .. q2 .. ',"transition":"' .. transition .. '"}')
  end
  stats_task(t, media_ids, transition)
end

-- Lets a conversation's index expire once none of its tasks is live.
local function conversation_settle(cid)
  local ids = conversation_ids(cid)
  for i = 1, #ids do
    if task_is_live(ids[i]) then return end
  end
  redis.call('PEXPIRE', key('conv', cid), RETENTION)
end
