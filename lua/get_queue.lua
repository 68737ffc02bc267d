--[[
  get_queue: reads a queue with its live statistics.

  Input:  KEYS[1] tenant prefix; A[1] queueId
  Output: the queue as JSON plus waiting (count), oldestWaitMs (null when
          none waits) and agents (member agents counted by MRD state)
  Events: none
]]
--- @include "includes/agent"
return run(function()
  local q = queue_must(A[1])
  return queue_json(q, queue_stats(q))
end)
