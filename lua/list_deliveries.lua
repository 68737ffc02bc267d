--[[
  list_deliveries: one page of a webhook's FAILED deliveries, oldest
  failure first.

  Input:
    KEYS[1]  tenant prefix
    A[1]     webhookId
    A[2]     cursor: the last member of the previous page, or ''
    A[3]     limit (1..1000)
  Output: {"deliveries": [Delivery, …], "next": cursor or null}, or
          NOT_FOUND for an unknown webhook
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local wid, limit = A[1], tonumber(A[3])
  if redis.call('EXISTS', key('webhook', wid)) == 0 then
    fail('NOT_FOUND', 'webhook ' .. wid .. ' does not exist')
  end
  local from = '-'
  if A[2] ~= '' then from = '(' .. A[2] end
  local members, nxt = page(redis.call('ZRANGE', key('webhook', wid, 'failed'), from, '+', 'BYLEX',
    'LIMIT', '0', istr(limit + 1)), limit)
  local out = {}
  for _, m in ipairs(members) do
    local d = dlv_get(wid, string.match(m, '|(.*)$'))
    if d then out[#out + 1] = dlv_json(wid, d) end
  end
  return '{"deliveries":' .. jlist(out) .. ',"next":' .. jstr(nxt) .. '}'
end)
