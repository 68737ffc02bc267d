--[[
  list_tasks: a conversation's tasks (live and recently closed, oldest
  first) or an agent's live tasks.

  Input:
    KEYS[1]  tenant prefix
    A[1]     'conversation' or 'agent'
    A[2]     its id
  Output: {"tasks": [Task, …]}; NOT_FOUND for an unknown agent
  Events: none
]]
--- @include "includes/task"
return run(function()
  local ids
  if A[1] == 'agent' then
    found('agent', A[2], redis.call('EXISTS', key('agent', A[2])) == 1)
    ids = redis.call('SMEMBERS', key('agent', A[2], 'tasks'))
  else
    ids = redis.call('ZRANGE', key('conv', A[2]), '0', '-1')
  end
  local out = {}
  for _, id in ipairs(ids) do
    local t = task_get(id)
    if t then out[#out + 1] = t end
  end
  table.sort(out, function(x, y)
    if x.createdAt ~= y.createdAt then return tonumber(x.createdAt) < tonumber(y.createdAt) end
    return #x.id < #y.id or (#x.id == #y.id and x.id < y.id)
  end)
  for i, t in ipairs(out) do out[i] = task_json(t) end
  return '{"tasks":' .. jlist(out) .. '}'
end)
