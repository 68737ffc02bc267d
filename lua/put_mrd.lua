--[[
  put_mrd: creates or replaces an MRD (media routing domain).

  Input:
    KEYS[1]  tenant prefix
    A[1]     mrdId
    A[2]     maxRequests (1..1000)
    A[3]     autoJoin (1 or 0)
    A[4]     wrapUp enabled (1 or 0)
    A[5]     wrapUp timeoutMs
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
  config_add('mrds', id)
  MRD_CACHE[id] = nil
  MRD_IDS = nil
  local m = mrd_get(id)
  if not old or old.maxRequests ~= m.maxRequests then
    local ids = redis.call('SMEMBERS', key('agents'))
    table.sort(ids)
    for _, aid in ipairs(ids) do
      local a = agent_get(aid)
      agent_mrd_hold_over(a, id)
      agent_mrd_commit(a, id)
      emit_agent(a)
    end
    route_available(id)
  end
  return mrd_json(m)
end)
