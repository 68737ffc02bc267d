--[[
  put_agent: creates or replaces an agent's configuration. A new agent starts
  LOGOUT; an existing one keeps its states and tasks.

  Input:
    KEYS[1]  tenant prefix
    A[1]     agentId
    A[2]     queues, a JSON list of queue ids
    A[3]     attributes, a JSON object
    A[4]     maxRequests overrides, a JSON object {mrdId: 1..1000}
  Rules:
    The agent leaves the indexes of the queues it no longer lists; for each
    queue with steps it lists, its attributes are evaluated against the
    steps (its first step there and its skill score) and it is indexed
    again; then it takes what it now may.
  Output: the agent as JSON; NOT_FOUND naming a queue that does not exist
  Events: AGENT_STATE_CHANGED, then any reservations its new queues,
          attributes or capacity allow
]]
--- @include "includes/lifecycle"
return run(function()
  local id = A[1]
  for _, qid in ipairs(cjson.decode(A[2])) do
    queue_must(qid)
  end
  local k = key('agent', id)
  local a = agent_get(id)
  if a then
    for _, qid in ipairs(a.queues) do
      redis.call('SREM', key('q', qid, 'members'), id)
      agent_leave_queue(a, qid)
    end
  else
    redis.call('HSET', k, 'st', 'LOGOUT', 'rc', '', 't', istr(now_ms()))
    config_add('agents', id)
  end
  redis.call('HSET', k, 'queues', A[2], 'attrs', A[3], 'max', A[4])
  agent_forget(id)
  a = agent_get(id)
  for _, qid in ipairs(a.queues) do
    redis.call('SADD', key('q', qid, 'members'), id)
    local q = queue_get(qid)
    if q and q.nsteps then agent_evaluate(a, q) end
  end
  for _, mrd in ipairs(mrd_ids()) do
    agent_mrd_hold_over(a, mrd)
    agent_mrd_commit(a, mrd)
  end
  emit_agent(a)
  for _, mrd in ipairs(mrd_ids()) do route_agent(a, mrd) end
  return agent_json(a)
end)
