--[[
  fire_due: fires the tenant's deadlines that are due, each exactly once: a
  deadline is removed as it fires, and a stale one (the task moved on) does
  nothing.

  Input:
    KEYS[1]  tenant prefix
    A[1]     the most deadlines to fire in this call
  Output: {fired, processed, next deadline in ms or -1, now in ms, lag of each
          fired deadline in ms…}; rr:{t}:tmr:wake is armed for the next
          deadline
  Events: per deadline kind
    ttl   a QUEUED request's TTL: TASK_STATE_CHANGED (TTL_EXPIRED: CLOSED,
          NO_AGENT_AVAILABLE), NO_AGENT_AVAILABLE
    rona  a RESERVED media not accepted: the RONA path (see task_reroute):
          TASK_STATE_CHANGED (RONA), then the new task's (REROUTED)
    wrap  a WRAP_UP timeout: TASK_STATE_CHANGED (CLOSED, WRAP_UP_EXPIRED),
          AGENT_STATE_CHANGED, the agent's next reservation
    step  a waiting task reaches its next step (queue with steps), and
    pref  a preferred-agent window ends: the task takes the step its age
          reached (TASK_STATE_CHANGED, transition STEP_CHANGED) and is routed
          at once (TASK_STATE_CHANGED, AGENT_RESERVED, AGENT_STATE_CHANGED)
    ovf   a task still waiting at its queue's overflow deadline moves to
          the overflow queue (TASK_STATE_CHANGED, transition OVERFLOWED) and
          is routed there at once
]]
--- @include "includes/lifecycle"
return run(function()
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', key('timers'), '-inf', istr(now), 'LIMIT', '0', A[1])
  local fired, lags = 0, {}
  for _, member in ipairs(due) do
    -- An earlier deadline of this batch may have removed this one, or set
    -- it again for later (an overflow moves a task to a queue with steps):
    -- then it is not due.
    local at = tonumber(redis.call('ZSCORE', key('timers'), member))
    local before = fired
    if at and at <= now then timer_del(member) end
    local kind, tid, mid = string.match(member, '^(%a+)|([^|]+)|?(.*)$')
    local t = at and at <= now and tid and task_get(tid)
    if t and t.state ~= 'CLOSED' then
      if kind == 'ttl' and media_pending(t, 'QUEUED') then
        task_close(t, 'NO_AGENT_AVAILABLE', 'TTL_EXPIRED')
        emit_no_agent(t)
        fired = fired + 1
      elseif kind == 'rona' then
        local m = media_find(t, mid)
        if m and m.state == 'RESERVED' then
          task_reroute(t, 'RONA', 'RONA')
          fired = fired + 1
        end
      elseif kind == 'wrap' and t.state == 'WRAP_UP' then
        task_end(t, 'WRAP_UP_EXPIRED', 'CLOSED')
        fired = fired + 1
      elseif (kind == 'step' and t.parked == true) or (kind == 'pref' and t.parked == 'p') then
        task_restep(t)
        fired = fired + 1
      elseif kind == 'ovf' and t.parked and overflow_due(t, queue_get(t.queueId)) then
        unqueue(t)
        route_task(t)
        fired = fired + 1
      end
    end
    if fired > before then lags[#lags + 1] = now - at end
  end
  local head = redis.call('ZRANGE', key('timers'), '0', '0', 'WITHSCORES')
  if head[2] then timer_arm(tonumber(head[2])) end
  local out = {fired, #due, tonumber(head[2] or '-1'), now}
  for _, lag in ipairs(lags) do out[#out + 1] = lag end
  return out
end)
