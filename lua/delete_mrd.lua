--[[
  delete_mrd: deletes an MRD that nothing uses any more.

  Input:
    KEYS[1]  tenant prefix
    A[1]     mrdId
  Output: 1; NOT_FOUND for an unknown MRD; INVALID_TRANSITION naming the
          queues that use it, else the MRDs whose blocks name it, else the
          agents that hold tasks on it (open medias or WRAP_UP)
  Rules:
    The MRDs its own blocks name forget it (their blockers).
  Events: AGENT_STATE_CHANGED for every agent (the MRD leaves its
          mrdStates; its global state follows the MRDs left), then
          MRD_DELETED {"mrdId"}
]]
--- @include "includes/agent"
return run(function()
  local id = A[1]
  mrd_must(id)
  local users = queues_where(function(q) return q.mrdId == id end)
  if #users > 0 then
    fail('INVALID_TRANSITION', 'mrd ' .. id .. ' is used by queues ' .. id_list(users))
  end
  local m = mrd_get(id)
  if m.blockers then
    fail('INVALID_TRANSITION', 'mrd ' .. id .. ' is blocked by mrds ' .. id_list(m.blockers))
  end
  local aids = redis.call('SMEMBERS', key('agents'))
  table.sort(aids)
  local holders, agents = {}, {}
  for _, aid in ipairs(aids) do
    local a = agent_get(aid)
    if a then
      agents[#agents + 1] = a
      if agent_mrd_count(a, id) > 0 then holders[#holders + 1] = aid end
    end
  end
  if #holders > 0 then
    fail('INVALID_TRANSITION', 'mrd ' .. id .. ' has open tasks of agents ' .. id_list(holders))
  end
  config_changed()
  for _, x in ipairs(m.blocks or {}) do mrd_blockers_edit(x, id, false) end
  redis.call('DEL', key('mrd', id))
  config_remove('mrds', id)
  config_changed()
  for _, a in ipairs(agents) do
    agent_mrd_forget(a, id)
    agent_follow_mrds(a, nil)
    emit_agent(a)
  end
  emit('MRD_DELETED', '{"mrdId":' .. jid(id) .. '}')
  return 1
end)
