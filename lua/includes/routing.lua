--- @include "agent"
--- @include "task"
--- @include "ewt"
--[[
  routing: the one place where a task meets an agent.

  rr:{t}:q:<id>:waiting  sorted set of QUEUED tasks, best first (wait_score;
                         members from wait_member)
  rr:{t}:q:<id>:age      sorted set of the same ids by enqueueTime (queue
                         stats), preferred-only tasks included
  rr:{t}:q:<id>:waiting:<k>  a queue with steps: the waiting tasks at step
                         k (each also in :waiting, the whole queue's order)
  rr:{t}:q:<id>:pref     tasks waiting for their preferred agent only
                         (preferredAgentId, until preferredUntil); not in
                         :waiting
  rr:{t}:agent:<id>:pref the same tasks, by the agent they wait for

  Both directions are O(log n) per step: a new task takes the best head of
  its queue's availability indexes for steps 1..k (its step); an agent
  with capacity takes its preferred-only tasks first, then the best head
  among the waiting sets of its queues for that MRD (for a queue with
  steps, those of steps >= its first step), again while it has capacity.
  Deadlines: step|<task> when a waiting task reaches its next step,
  pref|<task> when its preferred-agent window ends, ovf|<task> when it
  overflows to its queue's overflow queue (fire_due).

  Routing policies: a queue with priorityUnitMs orders its waiting sets by
  enqueueTime - priority * priorityUnitMs (aging); a queue without keeps
  v1's strict order. An agent of several queues compares their heads on
  the aging scale, a strict queue counting as priorityUnitMs = 10^10
  (wait_common). Both encodings stay far below 2^53.
]]
-- A strict queue: higher priority first, then the earlier enqueue time
-- (priorities are 0..100). An aging queue: enqueueTime less the priority's
-- head start.
local function wait_score(t, q)
  q = q or queue_get(t.queueId)
  if q and q.pu then return t.enqueueTime - t.priority * q.pu end
  return (100 - t.priority) * 1e13 + t.enqueueTime
end

-- A score of queue q's waiting sets on the aging scale shared by every
-- queue: a strict score (100 - p) * 1e13 + enqueueTime (enqueueTime below
-- 1e13) is enqueueTime - p * 1e10 there; an aging score is already.
local STRICT_UNIT = 1e10
local function wait_common(score, q)
  if q and q.pu then return score end
  local level = math.floor(score / 1e13)
  return (score - level * 1e13) - (100 - level) * STRICT_UNIT
end

-- Members of a waiting set are the task's number zero-padded, so that equal
-- scores (the same priority and millisecond) keep arrival order.
-- (Done on the digits as text: a number would be parsed and formatted again.)
local function wait_member(t)
  local digits = string.sub(t.id, 3)
  return string.rep('0', 15 - #digits) .. digits
end

local function member_task_id(member)
  return 't-' .. string.match(member, '^0*(.+)$')
end

-- How many members of sorted set k come before (score, member).
local function rank_before(k, score, member)
  local n = redis.call('ZCOUNT', k, '-inf', score)
  if n == 0 then return 0 end  -- (the common case: no preferred-only task)
  n = redis.call('ZCOUNT', k, '-inf', '(' .. score)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', k, score, score)) do
    if m < member then n = n + 1 end
  end
  return n
end

-- A waiting task's place in its queue's order, 1 for the next one handed
-- out: the waiting tasks before it, those waiting for a preferred agent
-- only counted at the place their score gives them (they join it when their
-- window ends); nil when t does not wait.
local function task_position(t)
  if not t.parked then return nil end
  local member, score = wait_member(t), istr(wait_score(t))
  local waiting, pref = key('q', t.queueId, 'waiting'), key('q', t.queueId, 'pref')
  if t.parked == true then
    return 1 + redis.call('ZRANK', waiting, member) + rank_before(pref, score, member)
  end
  return 1 + rank_before(waiting, score, member) + redis.call('ZRANK', pref, member)
end

-- How long a reserved agent has to accept: the queue's agentSlaMs, or the
-- task's own slaMs when it is offered to a named agent outside a queue.
local function task_sla(t)
  local q = queue_get(t.queueId)
  if q and t.mode == 'QUEUE' then return q.agentSlaMs end
  return t.slaMs or (q and q.agentSlaMs) or DEFAULT_AGENT_SLA_MS
end

local function emit_no_agent(t)
  emit('NO_AGENT_AVAILABLE', '{"task":' .. task_json(t) .. '}')
  if t.queueId then stats_abandoned(t, 'x') end
end

-- The preferred agent's count of tasks waiting for it only (pf): lets
-- route_agent skip the lookup for the many agents that have none.
local function pref_count_add(aid, delta)
  local a = agent_get(aid)
  if a then agent_set(a, 'pf', tonumber(a.f.pf or '0') + delta) end
end

-- taken: it leaves because an agent is reserved it (the queue's take rate,
-- ewt.lua).
local function unqueue(t, taken)
  local member = wait_member(t)
  if t.parked == 'p' then
    redis.call('ZREM', key('q', t.queueId, 'pref'), member)
    redis.call('ZREM', key('agent', t.pref, 'pref'), member)
    pref_count_add(t.pref, -1)
    timer_del('pref|' .. t.id)
  else
    redis.call('ZREM', key('q', t.queueId, 'waiting'), member)
    if t.step then
      redis.call('ZREM', key('q', t.queueId, 'waiting:' .. t.step), member)
      if t.nextStepAt then
        timer_del('step|' .. t.id)
        t.nextStepAt = nil
      end
    end
    ewt_unqueued(t, taken)
  end
  t.parked = nil
  redis.call('ZREM', key('q', t.queueId, 'age'), t.id)
  stats_waiting(t, '-1')
  timer_del('ttl|' .. t.id)
  if t.overflowAt then
    timer_del('ovf|' .. t.id)
    t.overflowAt = nil
  end
end

-- The queue a QUEUED task of queue q overflows to now (its overflow
-- deadline passed), if any.
local function overflow_due(t, q)
  if q and q.overflowQueueId and now_ms() >= t.enqueueTime + q.overflowAfterMs then
    return queue_get(q.overflowQueueId)
  end
  return nil
end

-- Moves a QUEUED task that is in no waiting set along its queue's overflow
-- chain while its overflow is due (PUT queue refuses loops; the bound is a
-- guard). Returns whether it moved.
local function overflow_move(t)
  local moved = false
  for _ = 1, 100 do
    local nq = overflow_due(t, queue_get(t.queueId))
    if not nq then break end
    t.queueId = nq.id
    local m = media_pending(t, 'QUEUED')
    if m then m.queueId = nq.id end
    moved = true
  end
  return moved
end

-- Whether t waits for its preferred agent only now.
local function pref_window_open(t)
  return t.pref and not t.prefOff and now_ms() < tonumber(t.prefUntil)
end

-- Sets t's step from its age (a queue with steps), and its next step's
-- deadline while it waits. Returns whether the step changed.
local function task_step(t, q)
  if not (q and q.nsteps) then
    t.step, t.steps, t.nextStepAt = nil, nil, nil
    return false
  end
  local k, nxt = step_by_age(q, t.enqueueTime, now_ms())
  local was = t.step
  t.step, t.steps = istr(k), istr(q.nsteps)
  t.nextStepAt = nxt and istr(nxt) or nil
  -- Its step counts again when a preferred window ends (no deadline meanwhile).
  if pref_window_open(t) then t.nextStepAt = nil end
  return was ~= t.step
end

-- A new QUEUED task of a queue, with the step its age has reached (so that
-- the event of its creation shows it).
local function task_new_queued(f)
  local t = task_new(f)
  task_step(t, queue_get(t.queueId))
  return t
end

-- Parks a QUEUED task in its queue until an agent frees up or its TTL
-- passes: in the preferred agent's set while its window is open, else in
-- the waiting sets of the queue (and of its step). quiet: see task_save.
local function enqueue(t, quiet)
  local q = queue_get(t.queueId)
  local member, score = wait_member(t), istr(wait_score(t, q))
  if pref_window_open(t) then
    t.parked = 'p'
    redis.call('ZADD', key('q', t.queueId, 'pref'), score, member)
    redis.call('ZADD', key('agent', t.pref, 'pref'), score, member)
    pref_count_add(t.pref, 1)
    timer_add('pref|' .. t.id, tonumber(t.prefUntil))
  else
    t.parked = true
    redis.call('ZADD', key('q', t.queueId, 'waiting'), score, member)
    if t.step then
      redis.call('ZADD', key('q', t.queueId, 'waiting:' .. t.step), score, member)
      if t.nextStepAt then timer_add('step|' .. t.id, tonumber(t.nextStepAt)) end
    end
  end
  redis.call('ZADD', key('q', t.queueId, 'age'), istr(t.enqueueTime), t.id)
  stats_waiting(t, '1')
  timer_add('ttl|' .. t.id, t.ttlDeadline)
  if q and q.overflowQueueId then
    t.overflowAt = istr(t.enqueueTime + q.overflowAfterMs)
    timer_add('ovf|' .. t.id, tonumber(t.overflowAt))
  end
  ewt_enqueued(t, q, task_position, member, score)
  task_save(t, quiet)
end

-- Offers media m of task t to agent a, which must be available for t's MRD.
-- Emits TASK_STATE_CHANGED (media RESERVED; taskStateChanged when the task
-- is created in this step), AGENT_RESERVED, AGENT_STATE_CHANGED.
local function reserve(t, m, a, created)
  if t.parked then unqueue(t, true) end
  t.nextStepAt = nil
  m.state = 'RESERVED'
  t.assignedTo = a.id
  t.rsv = now_ms_str()
  t.exclude = nil
  timer_add('rona|' .. t.id .. '|' .. m.id, now_ms() + task_sla(t))
  redis.call('SADD', key('agent', a.id, 'tasks'), t.id)
  agent_mrd_count_add(a, t.mrdId, 1)
  ewt_reserved(t)
  stats_hold_moved(t, nil)
  task_save(t)
  emit_task(t, created, {m.id}, created and 'CREATED' or 'RESERVED')
  emit('AGENT_RESERVED', '{"task":' .. task_json(t) .. ',"agentId":"' .. a.id .. '"}')
  emit_agent(a)
end

-- The agents holding a live task of conversation cid on MRD mrd, as a set,
-- and how many: none of them is offered another task of that conversation
-- there (a conference or transfer adds another agent, never the same one).
-- A conversation has a handful of tasks, so this stays cheap.
local function conversation_agents(cid, mrd)
  local out, n, ids = {}, 0, conversation_ids(cid)
  for i = 1, #ids do
    local id = ids[i]
    local t = task_is_live(id) and task_get(id)
    if t and t.assignedTo and t.mrdId == mrd and not out[t.assignedTo] then
      out[t.assignedTo] = true
      n = n + 1
    end
  end
  return out, n
end

-- The agent that last accepted a task of conversation cid (newest task
-- first), if it still exists: routeToLastAgent's preferred agent.
local function conversation_last_agent(cid)
  local ids = conversation_ids(cid)
  for i = #ids, 1, -1 do
    local t = task_get(ids[i])
    if t and t.assignedTo then
      for _, m in ipairs(t.media) do
        if m.answerTime and agent_get(t.assignedTo) then return t.assignedTo end
      end
    end
  end
  return nil
end

-- The best available agent of t's queue, passing over the one t excludes
-- and those already in t's conversation: the head of the queue's index, or
-- for a queue with steps the best head of the indexes of steps 1..t.step
-- (equal scores: the smaller agent id, as within one index).
local function find_agent(t)
  local skip, n = conversation_agents(t.conversationId, t.mrdId)
  if t.exclude and not skip[t.exclude] then
    skip[t.exclude] = true
    n = n + 1
  end
  if not t.step then
    local ids = redis.call('ZRANGE', key('q', t.queueId, 'avail'), '0', istr(n))
    for _, id in ipairs(ids) do
      if not skip[id] then return agent_get(id) end
    end
    return nil
  end
  local best, best_score
  for k = 1, tonumber(t.step) do
    local page = redis.call('ZRANGE', key('q', t.queueId, 'avail:' .. k), '0', istr(n), 'WITHSCORES')
    for i = 1, #page, 2 do
      local id = page[i]
      if not skip[id] then
        local score = tonumber(page[i + 1])
        if not best_score or score < best_score or (score == best_score and id < best) then
          best, best_score = id, score
        end
        break
      end
    end
  end
  return best and agent_get(best)
end

-- Routes a QUEUED task (new, re-queued, or out of its preferred window):
-- at its step by age; to its preferred agent only while the window is
-- open; reserved at once when an agent is free, else parked.
local function route_task(t)
  local from = t.queueId
  local moved = overflow_move(t)
  local q = queue_get(t.queueId)
  task_step(t, q)
  if moved then
    t.ewt = nil  -- predicted again in the queue it moved to
    task_save(t)
    emit_task(t, false, {}, 'OVERFLOWED')
    stats_overflowed(from, t)
  end
  if t.pref then
    if pref_window_open(t) then
      local a = agent_get(t.pref)
      if a and agent_available(a, t.mrdId) and not conversation_agents(t.conversationId, t.mrdId)[a.id] then
        reserve(t, t.media[1], a)
      else
        enqueue(t)
      end
      return
    end
  end
  local a = find_agent(t)
  if a then
    reserve(t, t.media[1], a)
  else
    enqueue(t)
  end
end

-- A waiting task's deadline came (its next step, or the end of its
-- preferred-agent window): it takes the step its age has reached in its
-- queue's waiting sets and is routed again at once (transition STEP_CHANGED).
local function task_restep(t)
  unqueue(t)
  task_step(t, queue_get(t.queueId))
  task_save(t)
  emit_task(t, false, {}, 'STEP_CHANGED')
  local a = find_agent(t)
  if a then
    reserve(t, media_pending(t, 'QUEUED'), a)
  else
    enqueue(t)
  end
end

-- Whether agent a may be offered waiting task t: not a transfer it made,
-- nor a conversation it already holds on that MRD.
local function may_offer(t, a)
  if t.exclude == a.id then return false end
  return not conversation_agents(t.conversationId, t.mrdId)[a.id]
end

-- The better of (best, best_score) and the first task of sorted set k
-- that agent a may be offered. Pages past tasks it may not take: only tasks
-- of conversations it holds and transfers it made, so a few at most.
-- Scores are compared on the common aging scale (wait_common of queue q).
local function best_waiting(k, q, a, best, best_score)
  local from = 0
  while true do
    local page = redis.call('ZRANGE', k, istr(from), istr(from + 4), 'WITHSCORES')
    for i = 1, #page, 2 do
      local score = wait_common(tonumber(page[i + 1]), q)
      if best_score and score >= best_score then return best, best_score end
      local t = task_get(member_task_id(page[i]))
      if may_offer(t, a) then return t, score end
    end
    if #page < 10 then return best, best_score end
    from = from + 5
  end
end

-- Gives agent a the best waiting tasks of its queues for MRD mrd while it
-- has capacity there: first those that wait for it as their preferred
-- agent (only it may take them, and only for a while), then the best of its
-- queues' (of a queue with steps, the waiting sets of steps >= its first
-- step there).
local function route_agent(a, mrd)
  while agent_available(a, mrd) do
    local best, best_score
    if tonumber(a.f.pf or '0') > 0 then
      -- (Few, of queues that may order differently: the best on the common scale.)
      local pages = redis.call('ZRANGE', key('agent', a.id, 'pref'), '0', '-1', 'WITHSCORES')
      for i = 1, #pages, 2 do
        local t = task_get(member_task_id(pages[i]))
        if t.mrdId == mrd and may_offer(t, a) then
          local score = wait_common(tonumber(pages[i + 1]), queue_get(t.queueId))
          if not best_score or score < best_score then best, best_score = t, score end
        end
      end
      best_score = nil
    end
    if not best then
      local queues = a.queues
      for i = 1, #queues do
        local qid = queues[i]
        local q = queue_get(qid)
        if q and q.mrdId == mrd then
          if q.nsteps then
            local fs = tonumber(a.f['fs|' .. qid] or '0')
            if fs > 0 then
              for k = fs, q.nsteps do
                best, best_score = best_waiting(key('q', qid, 'waiting:' .. k), q, a, best, best_score)
              end
            end
          else
            best, best_score = best_waiting(key('q', qid, 'waiting'), q, a, best, best_score)
          end
        end
      end
    end
    if not best then return end
    reserve(best, media_pending(best, 'QUEUED'), a)
  end
end

-- After a config change made agents available at once: each queue of the
-- MRD, in name order, gives its waiting tasks to its available agents in
-- the queue's selection order; then each agent that tasks of the MRD wait
-- for as their preferred agent, by id, takes them (it may be in no queue's
-- index, and a queue whose waiting set emptied stops early).
local function route_available(mrd)
  local qids = redis.call('SMEMBERS', key('queues'))
  table.sort(qids)
  local preferred, ids = {}, {}
  for _, qid in ipairs(qids) do
    local q = queue_get(qid)
    if q and q.mrdId == mrd then
      for k = 1, q.nsteps or 1 do
        local idx = q.nsteps and key('q', qid, 'avail:' .. k) or key('q', qid, 'avail')
        for _, aid in ipairs(redis.call('ZRANGE', idx, '0', '-1')) do
          if redis.call('ZCARD', key('q', qid, 'waiting')) == 0 then break end
          route_agent(agent_get(aid), mrd)
        end
      end
      for _, member in ipairs(redis.call('ZRANGE', key('q', qid, 'pref'), '0', '-1')) do
        local aid = task_get(member_task_id(member)).pref
        if not preferred[aid] then
          preferred[aid] = true
          ids[#ids + 1] = aid
        end
      end
    end
  end
  table.sort(ids)
  for _, aid in ipairs(ids) do route_agent(agent_get(aid), mrd) end
end

-- Offers a new task to one named agent: reserved when the agent can take it
-- now, else it closes RONA at once and publishes NO_AGENT_AVAILABLE.
local function offer_named(t, a)
  if a and agent_available(a, t.mrdId) then
    reserve(t, t.media[1], a, true)
  else
    t.media[1].state = 'CLOSED'
    t.state = 'CLOSED'
    t.reason = 'RONA'
    task_save(t)
    conversation_settle(t.conversationId)
    emit_task(t, true, {t.media[1].id}, 'RONA')
    emit_no_agent(t)
  end
end

-- The agent's live task for a conversation that has an ACTIVE media (on
-- MRD mrd when given). An agent can hold one conversation on several MRDs
-- (chat and voice); without mrd the oldest task is the one, so the choice
-- never depends on the set's order.
local function agent_conversation_task(a, cid, mrd)
  local best
  for _, tid in ipairs(redis.call('SMEMBERS', key('agent', a.id, 'tasks'))) do
    local t = task_get(tid)
    if t.conversationId == cid and t.state == 'ACTIVE' and (mrd == nil or t.mrdId == mrd)
        and media_pending(t, 'ACTIVE') and (best == nil or tonumber(t.createdAt) < tonumber(best.createdAt)
          or (t.createdAt == best.createdAt and tonumber(string.sub(t.id, 3)) <
              tonumber(string.sub(best.id, 3)))) then
      best = t
    end
  end
  return best
end
