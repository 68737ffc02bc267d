--[[
  put_queue: creates or replaces a queue.

  Input:
    KEYS[1]  tenant prefix
    ARGV[3]  queueId
    ARGV[4]  mrdId (must exist)
    ARGV[5]  agentRequestTtlMs
    ARGV[6]  agentSlaMs (the RONA timeout)
    ARGV[7]  agentSelectionPolicy (LONGEST_AVAILABLE or LEAST_ACTIVE)
    ARGV[8]  serviceLevelThresholdMs
  Output: the queue as JSON; NOT_FOUND for an unknown MRD; INVALID_TRANSITION
          when the MRD would change while tasks wait in the queue
  Events: reservations of waiting tasks to member agents the change makes
          eligible (TASK_STATE_CHANGED, AGENT_RESERVED, AGENT_STATE_CHANGED)
]]
--- @include "includes/lifecycle"
return run(function()
  local id, mrd = A[1], A[2]
  if not mrd_get(mrd) then fail('NOT_FOUND', 'mrd ' .. mrd .. ' does not exist') end
  local old = queue_get(id)
  if old and old.mrdId ~= mrd and redis.call('ZCARD', key('q', id, 'waiting')) > 0 then
    fail('INVALID_TRANSITION', 'queue ' .. id .. ' has waiting tasks; its mrdId cannot change')
  end
  redis.call('HSET', key('queue', id), 'mrdId', mrd, 'agentRequestTtlMs', A[3], 'agentSlaMs', A[4],
    'agentSelectionPolicy', A[5], 'serviceLevelThresholdMs', A[6])
  redis.call('SADD', key('queues'), id)
  QUEUE_CACHE[id] = nil
  local q = queue_get(id)
  if not old or old.mrdId ~= q.mrdId or old.agentSelectionPolicy ~= q.agentSelectionPolicy then
    -- The availability index is scored by policy and filtered by MRD: rebuild it.
    redis.call('DEL', key('q', id, 'avail'))
    for _, aid in ipairs(redis.call('SMEMBERS', key('q', id, 'members'))) do
      local a = agent_get(aid)
      if a then agent_reindex(a, mrd) end
    end
    route_available(mrd)
  end
  return queue_json(q)
end)
