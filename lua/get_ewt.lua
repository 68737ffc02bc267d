--[[
  get_ewt: a queue's estimated wait and its measured accuracy (the ewt
  object of its statistics). Read-only.

  Input:  KEYS[1] tenant prefix; A[1] queueId; A[2] windowMinutes (1..1440)
  Output: {"ms", "method", "accuracy": {"samples", "p50AbsErrorMs",
          "p90AbsErrorMs"}} (ewt.lua, ewt_json); NOT_FOUND for an unknown
          queue
  Events: none
]]
--- @include "includes/ewt"
return run(function()
  return ewt_json(queue_must(A[1]), tonumber(A[2]))
end)
