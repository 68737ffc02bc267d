--[[
  delete_webhook: deletes a webhook with every delivery it has, pending or
  failed, so nothing more is sent to it. An attempt already in flight ends
  without a record (finish_delivery finds none).

  Input:  KEYS[1] tenant prefix; A[1] webhookId
  Output: 1, or error NOT_FOUND
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local id = A[1]
  if redis.call('EXISTS', key('webhook', id)) == 0 then
    fail('NOT_FOUND', 'webhook ' .. id .. ' does not exist')
  end
  redis.call('DEL', key('webhook', id), key('webhook', id, 'due'), key('webhook', id, 'dlv'),
    key('webhook', id, 'failed'))
  redis.call('ZREM', key('webhooks'), id)
  redis.call('ZREM', key('webhooks', 'due'), id)
  return 1
end)
