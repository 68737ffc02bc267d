--[[
  put_queue: creates or replaces a queue.

  Input:
    KEYS[1]  tenant prefix
    A[1]     queueId
    A[2]     mrdId (must exist)
    A[3]     agentRequestTtlMs
    A[4]     agentSlaMs (the RONA timeout)
    A[5]     agentSelectionPolicy (LONGEST_AVAILABLE, LEAST_ACTIVE,
             LEAST_LOADED, MOST_SKILLED or LEAST_SKILLED)
    A[6]     serviceLevelThresholdMs
    A[7]     steps as the API shows them (JSON list), or '' for none
    A[8]     each step's start from enqueueTime, JSON list [0, t1, t1+t2, …]
    A[9]     each step's compiled expression, JSON list (checked in Python)
    A[10]    the attribute names the steps use, JSON list
    A[11]    routeToLastAgent timeoutMs, or '' for none
    A[12]    priorityUnitMs (priority aging), or '' for strict priority
    A[13]    maxWaiting, or '' for no limit
    A[14]    overflow afterMs, or '' for no overflow
    A[15]    overflow queueId, or '' for no overflow
    A[16]    statisticsEnabled: '0' counts no statistics minutes, '1' or
             '' counts them (stats.lua)
  Rules:
    A change of MRD, policy or steps rebuilds the queue's availability
    indexes: every member is evaluated against the steps (its first step
    and skill score) and indexed again. A change of steps also gives every
    waiting task the step its age has reached in the new steps. A change
    of priorityUnitMs or overflow places every waiting task again (its
    score, its overflow deadline); one whose overflow is already due moves
    on at once. Then the MRD's available agents take what they now may.
    The overflow queue must exist, have the same MRD, and its chain must
    not come back to this queue; a queue others overflow to keeps their MRD.
  Output: the queue as JSON; NOT_FOUND for an unknown MRD or overflow queue;
          INVALID_TRANSITION when the MRD would change while tasks wait in
          the queue; VALIDATION_ERROR for an overflow loop or MRD mismatch
  Events: TASK_STATE_CHANGED (transition STEP_CHANGED) for each waiting task
          whose routing (step, steps, nextStepAt) the new steps change, or
          (transition OVERFLOWED) for each that overflows now; then
          reservations of waiting tasks to member agents the change makes
          eligible (TASK_STATE_CHANGED, AGENT_RESERVED, AGENT_STATE_CHANGED)
]]
--- @include "includes/lifecycle"
return run(function()
  local id, mrd = A[1], A[2]
  -- (A caller of the v1 arguments only sets no steps and no routeToLastAgent.)
  local steps, rtla = A[7] or '', A[11] or ''
  mrd_must(mrd)
  local old = queue_get(id)
  if old and old.mrdId ~= mrd and redis.call('ZCARD', key('q', id, 'age')) > 0 then
    fail('INVALID_TRANSITION', 'queue ' .. id .. ' has waiting tasks; its mrdId cannot change')
  end
  -- (The same for the routing policies.)
  local unit, max_waiting, ovq = A[12] or '', A[13] or '', A[15] or ''
  if ovq == id then fail('VALIDATION_ERROR', 'queue ' .. id .. ' cannot overflow to itself') end
  if ovq ~= '' then
    local target = queue_must(ovq)
    if target.mrdId ~= mrd then
      fail('VALIDATION_ERROR', 'overflow queue ' .. ovq .. ' has mrdId ' .. target.mrdId .. ', not ' .. mrd)
    end
    local at, hops = target, 0
    while at do
      if at.id == id then fail('VALIDATION_ERROR', 'overflow to ' .. ovq .. ' would loop back to queue ' .. id) end
      hops = hops + 1
      at = hops < 1000 and at.overflowQueueId and queue_get(at.overflowQueueId)
    end
  end
  if not old or old.mrdId ~= mrd then
    for _, other in ipairs(redis.call('SMEMBERS', key('queues'))) do
      local o = queue_get(other)
      if o and other ~= id and o.overflowQueueId == id and o.mrdId ~= mrd then
        fail('VALIDATION_ERROR', 'queue ' .. other .. ' overflows to ' .. id .. ' with mrdId ' .. o.mrdId)
      end
    end
  end
  local qk = key('queue', id)
  local old_steps = (old and redis.call('HGET', qk, 'steps')) or ''
  config_changed()
  redis.call('HSET', qk, 'mrdId', mrd, 'agentRequestTtlMs', A[3], 'agentSlaMs', A[4],
    'agentSelectionPolicy', A[5], 'serviceLevelThresholdMs', A[6])
  if steps ~= '' then
    redis.call('HSET', qk, 'steps', steps, 'stepAt', A[8], 'stepCode', A[9], 'skillNames', A[10])
  else
    redis.call('HDEL', qk, 'steps', 'stepAt', 'stepCode', 'skillNames')
  end
  if rtla ~= '' then redis.call('HSET', qk, 'rtla', rtla) else redis.call('HDEL', qk, 'rtla') end
  if unit ~= '' then redis.call('HSET', qk, 'priorityUnitMs', unit) else redis.call('HDEL', qk, 'priorityUnitMs') end
  if max_waiting ~= '' then
    redis.call('HSET', qk, 'maxWaiting', max_waiting)
  else
    redis.call('HDEL', qk, 'maxWaiting')
  end
  if ovq ~= '' then
    redis.call('HSET', qk, 'overflowAfterMs', A[14], 'overflowQueueId', ovq)
  else
    redis.call('HDEL', qk, 'overflowAfterMs', 'overflowQueueId')
  end
  -- Counting on or off: from this minute on, the stored minutes and the
  -- stream's may differ (the check compares the minutes after it).
  local stats_on = A[16] ~= '0'
  if old and old.statsOff == stats_on then redis.call('HSET', qk, 'statsSince', now_ms_str()) end
  if not old then redis.call('HSET', qk, 'gen', istr(stats_next_gen())) end
  if stats_on then redis.call('HDEL', qk, 'statistics') else redis.call('HSET', qk, 'statistics', '0') end
  config_add('queues', id)
  config_changed()
  local q = queue_get(id)
  local steps_changed = old_steps ~= steps
  local replace = old and (old.pu ~= q.pu or old.overflowAfterMs ~= q.overflowAfterMs
    or old.overflowQueueId ~= q.overflowQueueId)
  local reindex = not old or old.mrdId ~= q.mrdId or old.agentSelectionPolicy ~= q.agentSelectionPolicy
    or steps_changed
  if reindex then
    -- The availability indexes are scored by policy, filtered by MRD and
    -- split by first step: rebuild them.
    local gone = {key('q', id, 'avail')}
    for k = 1, 10 do gone[#gone + 1] = key('q', id, 'avail:' .. k) end
    redis.call('DEL', unpack(gone))
    local members = redis.call('SMEMBERS', key('q', id, 'members'))
    table.sort(members)
    for _, aid in ipairs(members) do
      local a = agent_get(aid)
      if a then
        if q.nsteps then agent_evaluate(a, q) else agent_leave_queue(a, id) end
        agent_reindex(a, mrd)
      end
    end
  end
  if steps_changed or replace then
    for _, tid in ipairs(redis.call('ZRANGE', key('q', id, 'age'), '0', '-1')) do
      local t = task_get(tid)
      local before = task_routing_json(t)
      local k, nxt, n = nil, nil, nil
      if q.nsteps then
        k, nxt = step_by_age(q, t.enqueueTime, now_ms())
        n = q.nsteps
      end
      if t.parked == 'p' then nxt = nil end
      if replace or istr(k or '') ~= (t.step or '') or istr(n or '') ~= (t.steps or '')
          or istr(nxt or '') ~= (t.nextStepAt or '') then
        unqueue(t)
        if overflow_due(t, q) then
          route_task(t)
        else
          task_step(t, q)
          local shown = task_routing_json(t) ~= before
          enqueue(t, not shown)
          if shown then emit_task(t, false, {}, 'STEP_CHANGED') end
        end
      end
    end
  end
  if reindex or replace then route_available(mrd) end
  return queue_json(q)
end)
