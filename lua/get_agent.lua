--[[
  get_agent: reads an agent with its per-MRD states.

  Input:  KEYS[1] tenant prefix; A[1] agentId
  Output: the agent as JSON, or error NOT_FOUND
  Events: none
]]
--- @include "includes/agent"
return run(function()
  return agent_json(agent_must(A[1]))
end)
