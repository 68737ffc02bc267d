--[[
  get_mrd: reads an MRD.

  Input:  KEYS[1] tenant prefix; A[1] mrdId
  Output: the MRD as JSON, or error NOT_FOUND
  Events: none
]]
--- @include "includes/config"
return run(function()
  local m = mrd_get(A[1])
  if not m then fail('NOT_FOUND', 'mrd ' .. A[1] .. ' does not exist') end
  return mrd_json(m)
end)
