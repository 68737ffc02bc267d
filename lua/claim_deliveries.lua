--[[
  claim_deliveries: claims due attempts for the caller, a few per webhook,
  so any number of dispatchers share the work and each attempt is made by
  one of them (until its lease ends: a dispatcher that died mid-attempt
  leaves it to be claimed again).

  Input:
    KEYS[1]  tenant prefix
    A[1]     most attempts claimed in all
    A[2]     most attempts claimed per webhook
    A[3]     lease, ms
    A[4]     the webhooks the caller has no room for, a JSON list
  Output: {{webhookId, deliveryId, url, secret, attempt, body}, …, next, now}:
          the claimed attempts, then when the next due attempt of the
          tenant is (ms, or -1 when none is pending), and the time now
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local total, per, lease = tonumber(A[1]), tonumber(A[2]), tonumber(A[3])
  local busy = {}
  for _, w in ipairs(cjson.decode(A[4])) do busy[w] = true end
  local now = now_ms_str()
  local out = {}
  local scan = redis.call('ZRANGE', key('webhooks', 'due'), '-inf', now, 'BYSCORE', 'LIMIT', '0',
    istr(total + #cjson.decode(A[4])))
  for _, wid in ipairs(scan) do
    if #out >= total then break end
    local w = wh_get(wid)
    if not w or not w.enabled then
      redis.call('ZREM', key('webhooks', 'due'), wid)
    elseif not busy[wid] then
      local n = math.min(per, total - #out)
      local ids = redis.call('ZRANGE', key('webhook', wid, 'due'), '-inf', now, 'BYSCORE', 'LIMIT', '0',
        istr(n))
      for _, did in ipairs(ids) do
        local d = dlv_get(wid, did)
        if d and d.status == 'PENDING' then
          d.attempts = d.attempts + 1
          d.lastAttemptAt = now_ms()
          d.nextAttemptAt = now_ms() + lease
          dlv_put(wid, d)
          redis.call('ZADD', key('webhook', wid, 'due'), istr(d.nextAttemptAt), did)
          out[#out + 1] = {wid, did, w.url, w.secret, istr(d.attempts), d.body or ''}
        else
          redis.call('ZREM', key('webhook', wid, 'due'), did)
        end
      end
      wh_due_sync(wid, true)
    end
  end
  local head = redis.call('ZRANGE', key('webhooks', 'due'), '0', '0', 'WITHSCORES')
  out[#out + 1] = head[2] or '-1'
  out[#out + 1] = now
  return out
end)
