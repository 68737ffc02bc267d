--[[
  get_mrd: reads an MRD.

  Input:  KEYS[1] tenant prefix; A[1] mrdId
  Output: the MRD as JSON, or error NOT_FOUND
  Events: none
]]
--- @include "includes/config"
return run(function()
  return mrd_json(mrd_must(A[1]))
end)
