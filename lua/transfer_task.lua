--[[
  transfer_task: a direct queue transfer (queueId) or a named agent transfer
  (agentId) of the conversation the transferring agent holds.

  Input:
    KEYS[1]  tenant prefix
    A[1]     conversationId
    A[2]     fromAgentId
    A[3]     queueId, or ''
    A[4]     agentId, or ''
    A[5]     slaMs for a named agent, or '' for the old task's queue's
    A[6]     metadata, a JSON object, or '' to keep the old task's
  Rules:
    The new task is DIRECT_TRANSFER: QUEUE mode routed like PUSH (never to
    the transferring agent), or AGENT mode RESERVED to the named agent, or
    closed RONA with NO_AGENT_AVAILABLE when that agent cannot take it now.
    The transferring agent's task goes WRAP_UP, then CLOSED, both
    TRANSFERRED, and its slot is freed.
  Output: the new task as JSON; NOT_FOUND for an unknown agent or queue;
          INVALID_TRANSITION when fromAgentId holds no active task for the
          conversation, transfers to itself, or names an agent that already
          holds a live task of the conversation
  Events: TASK_STATE_CHANGED (new task, CREATED) and its reservation or
          (RONA) NO_AGENT_AVAILABLE; TASK_STATE_CHANGED (TRANSFERRED: WRAP_UP,
          reason TRANSFERRED), TASK_STATE_CHANGED (CLOSED, reason
          TRANSFERRED), AGENT_STATE_CHANGED, and
          the transferring agent's next reservation
]]
--- @include "includes/lifecycle"
return run(function()
  local cid = A[1]
  local from = agent_must(A[2])
  local old = agent_conversation_task(from, cid, nil)
  if not old then
    fail('INVALID_TRANSITION', 'agent ' .. from.id .. ' holds no active task for conversation ' .. cid)
  end
  local q, target
  if A[3] ~= '' then
    q = queue_must(A[3])
  else
    target = agent_must(A[4])
    if target.id == from.id then fail('INVALID_TRANSITION', 'an agent cannot transfer to itself') end
    for _, tid in ipairs(redis.call('SMEMBERS', key('agent', target.id, 'tasks'))) do
      if task_get(tid).conversationId == cid then
        fail('INVALID_TRANSITION', 'agent ' .. target.id .. ' already holds conversation ' .. cid)
      end
    end
  end
  local session = media_pending(old, 'ACTIVE').session
  local metadata = nz(A[6]) or old.metadata
  local nt
  if q then
    nt = task_new_queued({conversationId = cid, direction = 'DIRECT_TRANSFER', mode = 'QUEUE', queueId = q.id,
      mrdId = q.mrdId, priority = old.priority, ttlDeadline = istr(now_ms() + q.agentRequestTtlMs),
      metadata = metadata, session = session, mediaState = 'QUEUED', exclude = from.id})
    emit_task(nt, true, {nt.media[1].id}, 'CREATED')
    route_task(nt)
  else
    local oq = queue_get(old.queueId)
    local sla = tonumber(A[5]) or (oq and oq.agentSlaMs) or DEFAULT_AGENT_SLA_MS
    nt = task_new({conversationId = cid, direction = 'DIRECT_TRANSFER', mode = 'AGENT',
      mrdId = old.mrdId, priority = old.priority, ttlDeadline = istr(now_ms() + sla), slaMs = sla,
      metadata = metadata, session = session, mediaState = 'QUEUED'})
    offer_named(nt, target)
  end
  task_wrap(old, 'TRANSFERRED', nil, 'TRANSFERRED')
  task_end(old, 'TRANSFERRED', 'CLOSED')
  return task_json(nt)
end)
