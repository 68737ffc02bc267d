--[[
  get_tenant_statistics: the tenant's queue ids, and its agents by their
  global state (GET /v1/statistics; each queue's figures come from
  get_statistics).

  Input:  KEYS[1] tenant prefix
  Output: {"queueIds": [ids in id order], "agents": {"READY": n, …}}
  Events: none
]]
--- @include "includes/agent"
return run(function()
  local tally, json = name_counts()
  for _, aid in ipairs(redis.call('SMEMBERS', key('agents'))) do
    local st = redis.call('HGET', key('agent', aid), 'st')
    if st then tally(st) end
  end
  local qids = redis.call('SMEMBERS', key('queues'))
  table.sort(qids)
  return '{"queueIds":' .. jids(qids) .. ',"agents":' .. json() .. '}'
end)
