--[[
  push_task: a routing request (PUSH mode, or a direct queue conference):
  creates the task in its queue and routes it in the same step.

  Input:
    KEYS[1]  tenant prefix
    A[1]     queueId
    A[2]     conversationId
    A[3]     priority (0..100, higher first)
    A[4]     agentRequestTtlMs, or '' for the queue's
    A[5]     requestSession, a JSON object
    A[6]     metadata, a JSON object
    A[7]     direction: INBOUND or DIRECT_CONFERENCE
    A[8]     idempotency key, or '': a request retried with the same key
             (its outcome unknown to the caller, say after a timeout) gets
             the task the first one created instead of a second task
    A[9]     preferredAgentId, or '': until enqueueTime + A[10] the task
             is offered to that agent only, then routed as any other
    A[10]    preferredAgentTimeoutMs, or '' (DEFAULT_PREFERRED_AGENT_TIMEOUT_MS)
  Rules:
    Without A[9], an INBOUND PUSH to a queue with routeToLastAgent
    prefers the agent that last accepted a task of the conversation, for
    the queue's routeToLastAgent timeoutMs.
    A queue with maxWaiting tasks waiting sends the request on to its
    overflow queue (along the chain while each is full), else refuses it
    (QUEUE_FULL). TTL and preferred agent come from the queue named.
  Output: the task as JSON (media QUEUED, or RESERVED when an agent was free);
          with an idempotency key {201, the new task as JSON}, or {200, the
          key's earlier task as JSON, as it is now} when the key was used in
          the last RETENTION ms for the same queue and conversation;
          NOT_FOUND for an unknown queue or preferred agent; VALIDATION_ERROR for a key used
          for another request; QUEUE_FULL for a full queue without overflow
  Keys: rr:{t}:idem:<key>  "<taskId>|<queueId>|<conversationId>", expires
                           RETENTION ms after the first request
  Events: TASK_STATE_CHANGED (CREATED, media QUEUED), then when an agent is
          free TASK_STATE_CHANGED (RESERVED), AGENT_RESERVED,
          AGENT_STATE_CHANGED
]]
--- @include "includes/lifecycle"
return run(function()
  local idem, request = A[8] or '', A[1] .. '|' .. A[2]
  if idem ~= '' then
    local prior = redis.call('GET', key('idem', idem))
    if prior then
      local tid, was = string.match(prior, '^([^|]+)|(.*)$')
      if was ~= request then
        fail('VALIDATION_ERROR', 'Idempotency-Key ' .. idem .. ' was used for another request')
      end
      local t = task_get(tid)
      if t then return {200, task_json(t)} end
    end
  end
  local q = queue_must(A[1])
  local ttl = tonumber(A[4]) or q.agentRequestTtlMs
  local pref, pref_ms = nz(A[9] or ''), tonumber(A[10] or '') or DEFAULT_PREFERRED_AGENT_TIMEOUT_MS
  if pref then
    agent_must(pref)
  elseif q.rtla and A[7] == 'INBOUND' then
    pref, pref_ms = conversation_last_agent(A[2]), q.rtla
  end
  for _ = 1, 100 do
    if not (q.maxWaiting and redis.call('ZCARD', key('q', q.id, 'age')) >= q.maxWaiting) then break end
    local nq = q.overflowQueueId and queue_get(q.overflowQueueId)
    if not nq then
      fail('QUEUE_FULL', 'queue ' .. q.id .. ' already has ' .. istr(q.maxWaiting) .. ' waiting tasks')
    end
    q = nq
  end
  local t = task_new_queued({conversationId = A[2], direction = A[7], mode = 'QUEUE', queueId = q.id,
    mrdId = q.mrdId, priority = A[3], ttlDeadline = istr(now_ms() + ttl),
    metadata = A[6], session = A[5], mediaState = 'QUEUED',
    pref = pref, prefUntil = pref and istr(now_ms() + pref_ms)})
  emit_task(t, true, {t.media[1].id}, 'CREATED', true)
  route_task(t)
  if idem ~= '' then
    redis.call('SET', key('idem', idem), t.id .. '|' .. request, 'PX', RETENTION)
    return {201, task_json(t)}
  end
  return task_json(t)
end)
