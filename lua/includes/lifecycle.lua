--- @include "routing"
--[[
  lifecycle: how tasks end, and what an agent does with the capacity it gets
  back. Used by every script that closes, re-routes or wraps up a task.
]]
-- Closes every open media of t and t itself with reason; frees the agent's
-- slots (open medias, plus the one a WRAP_UP task holds) without emitting
-- the agent's event, so the caller can change the agent further first.
-- Emits TASK_STATE_CHANGED with transition (the caller names what happened:
-- CLOSED, TTL_EXPIRED, RONA, DECLINED, REROUTED). Returns the agent that held
-- the task, if any.
local function task_close(t, reason, transition)
  local held, changed, was, media = 0, {}, stats_holding(t), t.media
  for i = 1, #media do
    local m = media[i]
    if m.state ~= 'CLOSED' then
      if t.parked then unqueue(t) end
      if m.state == 'RESERVED' then timer_del('rona|' .. t.id .. '|' .. m.id) end
      if m.state == 'RESERVED' or m.state == 'ACTIVE' then held = held + 1 end
      m.state = 'CLOSED'
      changed[#changed + 1] = m.id
    end
  end
  local wrapped = t.state == 'WRAP_UP'
  if wrapped then
    held = held + 1
    timer_del('wrap|' .. t.id)
  end
  t.state = 'CLOSED'
  t.reason = reason
  t.ewt = nil  -- (its request's prediction: see ewt.lua)
  stats_hold_moved(t, was)
  task_save(t)
  conversation_settle(t.conversationId)
  emit_task(t, true, changed, transition)
  if not t.assignedTo then return nil end
  redis.call('SREM', key('agent', t.assignedTo, 'tasks'), t.id)
  local a = agent_get(t.assignedTo)
  if a and wrapped then agent_mrd_wrap_add(a, t.mrdId, -1) end
  if a and held > 0 then agent_mrd_count_add(a, t.mrdId, -held) end
  return a
end

-- The MRDs whose block on agent a was lifted in this step (a.lifted, see
-- agent_mrd_blocks_follow) take their waiting tasks at once.
local function route_lifted(a)
  local lifted = a.lifted
  if not lifted then return end
  a.lifted = nil
  local mrds = {}
  for x in pairs(lifted) do mrds[#mrds + 1] = x end
  table.sort(mrds)
  for _, x in ipairs(mrds) do route_agent(a, x) end
end

-- After an agent's capacity or state changed: publish it, then let it take
-- waiting work (on MRDs a closed media stopped blocking too).
local function agent_settle(a, mrd)
  if not a then return end
  emit_agent(a)
  route_agent(a, mrd)
  route_lifted(a)
end

-- Ends a task and frees its agent for the next waiting task.
local function task_end(t, reason, transition)
  agent_settle(task_close(t, reason, transition), t.mrdId)
end

-- The RONA path (reason RONA) and the logout path (reason REROUTE) for a
-- reserved task: it closes, and the request goes on in a new task with the
-- same requestId and enqueueTime until its TTL, except for transfers and
-- named-agent tasks, which are not re-queued and publish NO_AGENT_AVAILABLE.
-- transition names the closing (RONA, DECLINED, REROUTED); the new task is
-- REROUTED. On RONA the agent's MRD goes NOT_READY (RONA) and is published here; on
-- REROUTE the caller (logout) publishes the agent once it is done with it.
local function task_reroute(t, reason, transition)
  local session, ewt = t.media[1].session, t.ewt
  local a = task_close(t, reason, transition)
  if reason == 'RONA' then count('RONA') end
  if a and reason == 'RONA' then
    agent_mrd_set_base(a, t.mrdId, 'NOT_READY', 'RONA')
    agent_follow_mrds(a, 'RONA')
    emit_agent(a)
    route_lifted(a)
  end
  if t.direction == 'DIRECT_TRANSFER' or t.mode == 'AGENT' or now_ms() >= tonumber(t.ttlDeadline) then
    emit_no_agent(t)
  else
    -- The request keeps its preferred agent, unless that agent is the one
    -- that let it go: then its window ends here.
    local nt = task_new_queued({requestId = t.requestId, conversationId = t.conversationId,
      direction = t.direction, mode = t.mode, queueId = t.queueId, mrdId = t.mrdId,
      priority = t.priority, enqueueTime = t.enqueueTime, ttlDeadline = t.ttlDeadline,
      metadata = t.metadata, session = session, mediaState = 'QUEUED', ewt = ewt,
      pref = t.pref, prefUntil = t.prefUntil, prefOff = t.prefOff or (t.pref and t.pref == t.assignedTo)})
    emit_task(nt, true, {nt.media[1].id}, 'REROUTED')
    route_task(nt)
  end
end

-- Closes every open media of t and puts it in WRAP_UP with reason, holding
-- one of its agent's slots until it closes, with a durable timer when
-- timeout_ms is given. Emits TASK_STATE_CHANGED with transition (WRAP_UP, or
-- TRANSFERRED for a transfer); returns the agent when
-- slots were freed (its event not yet emitted).
local function task_wrap(t, reason, timeout_ms, transition)
  local changed, freed, was = {}, -1, stats_holding(t)
  for _, m in ipairs(t.media) do
    if m.state ~= 'CLOSED' then
      if m.state == 'RESERVED' then timer_del('rona|' .. t.id .. '|' .. m.id) end
      m.state = 'CLOSED'
      changed[#changed + 1] = m.id
      freed = freed + 1
    end
  end
  t.state = 'WRAP_UP'
  t.reason = reason
  stats_hold_moved(t, was)
  if timeout_ms then timer_add('wrap|' .. t.id, now_ms() + timeout_ms) end
  task_save(t)
  emit_task(t, true, changed, transition)
  local a = t.assignedTo and agent_get(t.assignedTo)
  if a then agent_mrd_wrap_add(a, t.mrdId, 1) end
  if freed > 0 then
    agent_mrd_count_add(a, t.mrdId, -freed)
    return a
  end
  -- (No slot freed, but its closed media may have lifted a block: the agent
  -- shows it, and takes what it now may.)
  if a and (a.lifted or a.blocks_shown) then return a end
  return nil
end

-- The agent or the customer has left: the task goes WRAP_UP when its MRD
-- enables wrap-up, else it closes with reason.
local function task_finish(t, reason)
  local mrd = mrd_get(t.mrdId)
  if mrd and mrd.wrapUp and t.assignedTo then
    agent_settle(task_wrap(t, reason, mrd.wrapUpTimeoutMs, 'WRAP_UP'), t.mrdId)
  else
    task_end(t, reason, 'CLOSED')
  end
end
