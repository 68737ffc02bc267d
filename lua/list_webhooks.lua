--[[
  list_webhooks: one page of the tenant's webhooks, in id order.

  Input:
    KEYS[1]  tenant prefix
    A[1]     cursor: the last id of the previous page, or '' for the first
    A[2]     limit (1..1000)
  Output: {"webhooks": [Webhook, …], "next": cursor or null}, secrets left out
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local limit = tonumber(A[2])
  local from = '-'
  if A[1] ~= '' then from = '(' .. A[1] end
  local ids, nxt = page(redis.call('ZRANGE', key('webhooks'), from, '+', 'BYLEX', 'LIMIT', '0',
    istr(limit + 1)), limit)
  local out = {}
  for _, id in ipairs(ids) do
    local w = wh_get(id)
    if w then out[#out + 1] = wh_json(w) end
  end
  return '{"webhooks":' .. jlist(out) .. ',"next":' .. jid(nxt) .. '}'
end)
