--[[
  delete_agent: deletes an agent that holds no task.

  Input:
    KEYS[1]  tenant prefix
    A[1]     agentId
  Output: 1; NOT_FOUND for an unknown agent; INVALID_TRANSITION naming the
          live tasks it holds (reserved, active or in WRAP_UP), else the
          tasks that wait for it as their preferred agent
  Events: AGENT_STATE_CHANGED with the agent LOGOUT (when it was logged
          in), then AGENT_DELETED {"agentId"}
]]
--- @include "includes/routing"
return run(function()
  local a = agent_must(A[1])
  local tids = redis.call('SMEMBERS', key('agent', a.id, 'tasks'))
  if #tids > 0 then
    table.sort(tids)
    fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' holds tasks ' .. id_list(tids))
  end
  local waiting = redis.call('ZRANGE', key('agent', a.id, 'pref'), '0', '-1')
  if #waiting > 0 then
    for i, member in ipairs(waiting) do waiting[i] = member_task_id(member) end
    table.sort(waiting)
    fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' is the preferred agent of waiting tasks ' ..
      id_list(waiting))
  end
  if a.f.st ~= 'LOGOUT' then
    agent_set(a, 'st', 'LOGOUT')
    agent_set(a, 'rc', '')
    agent_set(a, 't', now_ms())
    for _, m in ipairs(mrd_ids()) do agent_mrd_set_base(a, m, 'LOGOUT', nil) end
    emit_agent(a)
  end
  -- Out of every index, even one of a queue it no longer lists.
  for _, qid in ipairs(redis.call('SMEMBERS', key('queues'))) do
    redis.call('SREM', key('q', qid, 'members'), a.id)
    agent_leave_queue(a, qid)
  end
  agent_drop(a)
  emit('AGENT_DELETED', '{"agentId":' .. jid(a.id) .. '}')
  return 1
end)
