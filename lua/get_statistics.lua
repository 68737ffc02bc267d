--[[
  get_statistics: a queue's statistics: what it holds now, and what was
  counted over a window of minutes (stats.lua).

  Input:
    KEYS[1]  tenant prefix
    A[1]     queueId
    A[2]     windowMinutes (1..1440, checked in Python): the current
             minute and the A[2] - 1 before it
  Output: {"queueId", "at" (now, ms), "thresholdMs" (the queue's
          serviceLevelThresholdMs), "waiting", "oldestTaskId",
          "oldestEnqueueTime" (null when none waits), "steps" (the queue's
          step count, null without steps), "tally" (stats_tally_json),
          "agents" (members by the state they show on the queue's MRD),
          "loggedInAgents", "availableAgents" (in its availability
          indexes), "window" (stats_window_json), "ewt" (ewt.lua,
          ewt_json: the estimate and its accuracy over the same
          window)}; NOT_FOUND for an
          unknown queue. Reads at most A[2] minute buckets (past whole
          hours as their hour bucket, made on first use), never a task.
  Events: none
]]
--- @include "includes/agent"
--- @include "includes/stats"
--- @include "includes/ewt"
return run(function()
  local q = queue_must(A[1])
  local waiting, oldest_id, oldest_at = queue_oldest(q)
  local available = 0
  if q.nsteps then
    for k = 1, q.nsteps do available = available + redis.call('ZCARD', key('q', q.id, 'avail:' .. k)) end
  else
    available = redis.call('ZCARD', key('q', q.id, 'avail'))
  end
  local agents, logged_in = queue_agent_states(q)
  return '{"queueId":' .. jid(q.id) .. ',"at":' .. jint(now_ms()) ..
    ',"thresholdMs":' .. jint(q.serviceLevelThresholdMs) .. ',"waiting":' .. jint(waiting) ..
    ',"oldestTaskId":' .. jid(oldest_id) .. ',"oldestEnqueueTime":' .. jint(oldest_at) ..
    ',"steps":' .. jint(q.nsteps) .. ',"tally":' .. stats_tally_json(q.id) ..
    ',"agents":' .. agents .. ',"loggedInAgents":' .. jint(logged_in) ..
    ',"availableAgents":' .. jint(available) ..
    ',"window":' .. stats_window_json(q.id, tonumber(A[2])) ..
    ',"ewt":' .. ewt_json(q, tonumber(A[2])) .. '}'
end)
