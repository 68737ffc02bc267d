--[[
  conference_agent: a named-agent conference: a DIRECT_CONFERENCE/AGENT task
  offered to one agent. (A direct queue conference is push_task with
  direction DIRECT_CONFERENCE.)

  Input:
    KEYS[1]  tenant prefix
    A[1]     conversationId
    A[2]     agentId
    A[3]     mrdId, or '' for the MRD of the conversation's newest live task
    A[4]     slaMs to accept, or '' for that task's queue's agentSlaMs
    A[5]     requestSession, a JSON object
    A[6]     metadata, a JSON object
  Output: the task as JSON: RESERVED to the agent, or CLOSED/RONA when the
          agent cannot take it now; NOT_FOUND for an unknown agent or MRD;
          VALIDATION_ERROR when no MRD is given or found; INVALID_TRANSITION
          when the agent already holds the conversation
  Events: TASK_STATE_CHANGED (CREATED, media RESERVED), AGENT_RESERVED,
          AGENT_STATE_CHANGED; or TASK_STATE_CHANGED (RONA: CLOSED, reason
          RONA) and
          NO_AGENT_AVAILABLE
]]
--- @include "includes/lifecycle"
return run(function()
  local cid = A[1]
  local a = agent_must(A[2])
  local mrd_id, sla, from = nz(A[3]), tonumber(A[4]), nil
  local ids = conversation_ids(cid)
  for i = #ids, 1, -1 do
    local t = task_get(ids[i])
    if t and t.state ~= 'CLOSED' and (mrd_id == nil or t.mrdId == mrd_id) then
      from = t
      break
    end
  end
  mrd_id = mrd_id or (from and from.mrdId)
  if not mrd_id then
    fail('VALIDATION_ERROR', 'mrdId is required: conversation ' .. cid .. ' has no live task')
  end
  mrd_must(mrd_id)
  for _, tid in ipairs(redis.call('SMEMBERS', key('agent', a.id, 'tasks'))) do
    if task_get(tid).conversationId == cid then
      fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' already holds conversation ' .. cid)
    end
  end
  local q = from and queue_get(from.queueId)
  sla = sla or (q and q.agentSlaMs) or DEFAULT_AGENT_SLA_MS
  local t = task_new({conversationId = cid, direction = 'DIRECT_CONFERENCE', mode = 'AGENT',
    mrdId = mrd_id, priority = from and from.priority, ttlDeadline = istr(now_ms() + sla), slaMs = sla,
    metadata = A[6], session = A[5], mediaState = 'QUEUED'})
  offer_named(t, a)
  return task_json(t)
end)
