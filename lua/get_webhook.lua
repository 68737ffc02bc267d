--[[
  get_webhook: reads a webhook.

  Input:  KEYS[1] tenant prefix; A[1] webhookId
  Output: the webhook as JSON, without its secret, or error NOT_FOUND
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local w = wh_get(A[1])
  if not w then fail('NOT_FOUND', 'webhook ' .. A[1] .. ' does not exist') end
  return wh_json(w)
end)
