--- @include "agent"
--- @include "task"
--[[
  routing: the one place where a task meets an agent.

  rr:{t}:q:<id>:waiting  sorted set of QUEUED tasks, best first (wait_score;
                         members from wait_member)
  rr:{t}:q:<id>:age      sorted set of the same ids by enqueueTime (queue stats)

  Both directions are O(log n): a new task takes the head of its queue's
  availability index; an agent with capacity takes the best head among the
  waiting sets of its queues for that MRD, again while it has capacity.
]]
-- Higher priority first, then the earlier enqueue time. Priorities are 0..100.
local function wait_score(t)
  return (100 - t.priority) * 1e13 + t.enqueueTime
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

-- How long a reserved agent has to accept: the queue's agentSlaMs, or the
-- task's own slaMs when it is offered to a named agent outside a queue.
local function task_sla(t)
  local q = queue_get(t.queueId)
  if q and t.mode == 'QUEUE' then return q.agentSlaMs end
  return t.slaMs or (q and q.agentSlaMs) or 30000
end

local function emit_no_agent(t)
  emit('NO_AGENT_AVAILABLE', '{"task":' .. task_json(t) .. '}')
end

local function unqueue(t)
  t.parked = nil
  redis.call('ZREM', key('q', t.queueId, 'waiting'), wait_member(t))
  redis.call('ZREM', key('q', t.queueId, 'age'), t.id)
  timer_del('ttl|' .. t.id)
end

-- Parks a QUEUED task in its queue until an agent frees up or its TTL passes.
local function enqueue(t)
  t.parked = true
  redis.call('ZADD', key('q', t.queueId, 'waiting'), istr(wait_score(t)), wait_member(t))
  redis.call('ZADD', key('q', t.queueId, 'age'), istr(t.enqueueTime), t.id)
  timer_add('ttl|' .. t.id, t.ttlDeadline)
  task_save(t)
end

-- Offers media m of task t to agent a, which must be available for t's MRD.
-- Emits TASK_STATE_CHANGED (media RESERVED; taskStateChanged when the task
-- is created in this step), AGENT_RESERVED, AGENT_STATE_CHANGED.
local function reserve(t, m, a, created)
  if t.parked then unqueue(t) end
  m.state = 'RESERVED'
  t.assignedTo = a.id
  t.exclude = nil
  timer_add('rona|' .. t.id .. '|' .. m.id, now_ms() + task_sla(t))
  redis.call('SADD', key('agent', a.id, 'tasks'), t.id)
  mrd_count_add(a, t.mrdId, 1)
  task_save(t)
  emit_task(t, created, {m.id})
  emit('AGENT_RESERVED', '{"task":' .. task_json(t) .. ',"agentId":' .. jid(a.id) .. '}')
  emit_agent(a)
end

-- The agents holding a live task of conversation cid on MRD mrd, as a set,
-- and how many: none of them is offered another task of that conversation
-- there (a conference or transfer adds another agent, never the same one).
-- A conversation has a handful of tasks, so this stays cheap.
local function conversation_agents(cid, mrd)
  local out, n = {}, 0
  for _, id in ipairs(conversation_ids(cid)) do
    local t = task_is_live(id) and task_get(id)
    if t and t.assignedTo and t.mrdId == mrd and not out[t.assignedTo] then
      out[t.assignedTo] = true
      n = n + 1
    end
  end
  return out, n
end

-- The best available agent of t's queue, passing over the one t excludes
-- and those already in t's conversation.
local function find_agent(t)
  local skip, n = conversation_agents(t.conversationId, t.mrdId)
  if t.exclude and not skip[t.exclude] then
    skip[t.exclude] = true
    n = n + 1
  end
  local ids = redis.call('ZRANGE', key('q', t.queueId, 'avail'), '0', istr(n))
  for _, id in ipairs(ids) do
    if not skip[id] then return agent_get(id) end
  end
  return nil
end

-- Routes a new QUEUED task: reserved at once when an agent is free, else parked.
local function route_task(t)
  local a = find_agent(t)
  if a then
    reserve(t, t.media[1], a)
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

-- Gives agent a the best waiting tasks of its queues for MRD mrd while it
-- has capacity there.
local function route_agent(a, mrd)
  while agent_available(a, mrd) do
    local best, best_score
    for _, qid in ipairs(a.queues) do
      local q = queue_get(qid)
      if q and q.mrdId == mrd then
        -- Page past tasks it may not take: only tasks of conversations it
        -- holds and transfers it made, so a few at most.
        local from, found = 0, false
        while not found do
          local page = redis.call('ZRANGE', key('q', qid, 'waiting'), istr(from), istr(from + 4), 'WITHSCORES')
          for i = 1, #page, 2 do
            local score = tonumber(page[i + 1])
            if best_score and score >= best_score then
              found = true
              break
            end
            local t = task_get(member_task_id(page[i]))
            if may_offer(t, a) then
              best, best_score, found = t, score, true
              break
            end
          end
          if #page < 10 then break end
          from = from + 5
        end
      end
    end
    if not best then return end
    reserve(best, media_pending(best, 'QUEUED'), a)
  end
end

-- After a config change made agents available at once: each queue of the
-- MRD, in name order, gives its waiting tasks to its available agents in
-- the queue's selection order.
local function route_available(mrd)
  local qids = redis.call('SMEMBERS', key('queues'))
  table.sort(qids)
  for _, qid in ipairs(qids) do
    local q = queue_get(qid)
    if q and q.mrdId == mrd then
      for _, aid in ipairs(redis.call('ZRANGE', key('q', qid, 'avail'), '0', '-1')) do
        if redis.call('ZCARD', key('q', qid, 'waiting')) == 0 then break end
        route_agent(agent_get(aid), mrd)
      end
    end
  end
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
    emit_task(t, true, {t.media[1].id})
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
