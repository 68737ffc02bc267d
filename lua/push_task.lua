--[[
  push_task: a routing request (PUSH mode, or a direct queue conference):
  creates the task in its queue and routes it in the same step.

  Input:
    KEYS[1]  tenant prefix
    ARGV[3]  queueId
    ARGV[4]  conversationId
    ARGV[5]  priority (0..100, higher first)
    ARGV[6]  agentRequestTtlMs, or '' for the queue's
    ARGV[7]  requestSession, a JSON object
    ARGV[8]  metadata, a JSON object
    ARGV[9]  direction: INBOUND or DIRECT_CONFERENCE
  Output: the task as JSON (media QUEUED, or RESERVED when an agent was free);
          NOT_FOUND for an unknown queue
  Events: TASK_STATE_CHANGED (created, media QUEUED), then when an agent is
          free TASK_STATE_CHANGED (media RESERVED), AGENT_RESERVED,
          AGENT_STATE_CHANGED
]]
--- @include "includes/lifecycle"
return run(function()
  local q = queue_get(A[1])
  if not q then fail('NOT_FOUND', 'queue ' .. A[1] .. ' does not exist') end
  local ttl = tonumber(A[4]) or q.agentRequestTtlMs
  local t = task_new({conversationId = A[2], direction = A[7], mode = 'QUEUE', queueId = q.id,
    mrdId = q.mrdId, priority = tonumber(A[3]), ttlDeadline = now_ms() + ttl,
    metadata = A[6], session = A[5], mediaState = 'QUEUED'})
  emit_task(t, true, {t.media[1].id})
  route_task(t)
  return task_json(t)
end)
