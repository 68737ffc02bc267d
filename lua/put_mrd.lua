--[[
  put_mrd: creates or replaces an MRD (media routing domain).

  Input:
    KEYS[1]  tenant prefix
    ARGV[3]  mrdId
    ARGV[4]  maxRequests (1..1000)
    ARGV[5]  autoJoin (1 or 0)
    ARGV[6]  wrapUp enabled (1 or 0)
    ARGV[7]  wrapUp timeoutMs
  Output: the MRD as JSON
  Events: AGENT_STATE_CHANGED for every agent when the MRD is new or its
          maxRequests changed (their capacity changed), then any reservations
          that capacity allows (TASK_STATE_CHANGED, AGENT_RESERVED, …)
]]
--- @include "includes/lifecycle"
return run(function()
  local id = A[1]
  local old = mrd_get(id)
  redis.call('HSET', key('mrd', id), 'maxRequests', A[2], 'autoJoin', A[3], 'wrapUp', A[4],
    'wrapUpTimeoutMs', A[5])
  redis.call('SADD', key('mrds'), id)
  MRD_CACHE[id] = nil
  MRD_IDS = nil
  local m = mrd_get(id)
  if not old or old.maxRequests ~= m.maxRequests then
    local ids = redis.call('SMEMBERS', key('agents'))
    table.sort(ids)
    for _, aid in ipairs(ids) do
      local a = agent_get(aid)
      mrd_hold_over(a, id)
      mrd_commit(a, id)
      emit_agent(a)
    end
    route_available(id)
  end
  return mrd_json(m)
end)
