--[[
  put_webhook: creates or replaces a webhook.

  Input:
    KEYS[1]  tenant prefix
    A[1]     webhookId
    A[2]     url (checked by the caller: http(s), an address it may call)
    A[3]     secret (the signing key; stored, never returned)
    A[4]     types filter, a JSON list of event types, or '' for all
    A[5]     queueIds filter, a JSON list of queue ids, or '' for all
    A[6]     enabled (1 or 0)
  Output: the webhook as JSON, without its secret
  Events: none (webhooks are not routing state)
  A disabled webhook keeps its pending deliveries, unclaimed, until it is
  enabled again; it gets no new ones meanwhile.
]]
--- @include "includes/webhooks"
return run(function()
  local id = A[1]
  local k = key('webhook', id)
  local created = redis.call('HGET', k, 'createdAt') or now_ms_str()
  redis.call('HSET', k, 'url', A[2], 'secret', A[3], 'types', A[4], 'queueIds', A[5],
    'enabled', A[6], 'createdAt', created, 'updatedAt', now_ms_str())
  redis.call('ZADD', key('webhooks'), '0', id)
  wh_due_sync(id, A[6] == '1')
  return wh_json(wh_get(id))
end)
