--[[
  set_agent_state: changes an agent's global state, or one MRD's state.

  Input:
    KEYS[1]  tenant prefix
    A[1]     agentId
    A[2]     state: LOGIN, READY, NOT_READY or LOGOUT globally; READY or
             NOT_READY for one MRD
    A[3]     mrdId, or '' for the global state
    A[4]     reasonCode, or ''
  Output: the agent as JSON; NOT_FOUND for an unknown agent or MRD;
          INVALID_TRANSITION for NOT_READY or an MRD change while LOGOUT
  Events: AGENT_STATE_CHANGED; on LOGOUT first the agent's tasks, oldest
          first: reserved ones close REROUTE and are routed again
          (TASK_STATE_CHANGED REROUTED twice: the task let go, the new one …),
          others close AGENT_LOGOUT (CLOSED), then the one
          AGENT_STATE_CHANGED; on READY any reservations it takes
          (TASK_STATE_CHANGED, AGENT_RESERVED, AGENT_STATE_CHANGED)
]]
--- @include "includes/lifecycle"
return run(function()
  local a = agent_must(A[1])
  local st, mrd, rc = A[2], A[3], nz(A[4])
  local logged_out = a.f.st == 'LOGOUT'

  if mrd ~= '' then
    mrd_must(mrd)
    if logged_out then fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' is logged out') end
    agent_mrd_set_base(a, mrd, st, rc)
    agent_follow_mrds(a, nil)
    agent_settle(a, mrd)
    return agent_json(a)
  end

  if st == 'NOT_READY' and logged_out then
    fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' is logged out')
  end
  if (st == 'LOGIN' and not logged_out) or (st == 'LOGOUT' and logged_out) then
    return agent_json(a)
  end
  local mrds = mrd_ids()
  agent_set(a, 'st', st)
  agent_set(a, 'rc', rc or '')
  agent_set(a, 't', now_ms())
  local base = st
  if st == 'LOGIN' then base = 'NOT_READY' end
  for _, m in ipairs(mrds) do agent_mrd_set_base(a, m, base, rc) end

  if st == 'LOGOUT' then
    -- Out of every index first, so nothing routed below comes back to it.
    -- Oldest task first, so the events come in the same order on any server.
    local tids = redis.call('SMEMBERS', key('agent', a.id, 'tasks'))
    table.sort(tids, function(x, y)
      local nx, ny = tonumber(string.sub(x, 3)), tonumber(string.sub(y, 3))
      if nx and ny then return nx < ny end
      return x < y
    end)
    for _, tid in ipairs(tids) do
      local t = task_get(tid)
      if media_pending(t, 'RESERVED') then
        task_reroute(t, 'REROUTE', 'REROUTED')
      else
        task_close(t, 'AGENT_LOGOUT', 'CLOSED')
      end
    end
    a = agent_get(a.id)
  end
  emit_agent(a)
  if st == 'READY' then
    for _, m in ipairs(mrds) do route_agent(a, m) end
  end
  return agent_json(a)
end)
