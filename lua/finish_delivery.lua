--[[
  finish_delivery: records how an attempt ended. Delivered: the delivery
  is deleted. Not delivered: its next attempt is scheduled with exponential
  back-off, or, past the give-up time, it is kept as FAILED.

  Input:
    KEYS[1]  tenant prefix
    A[1]     webhookId
    A[2]     deliveryId
    A[3]     the attempt's number (as claimed)
    A[4]     1 delivered, 0 not
    A[5]     the receiver's HTTP status, or ''
    A[6]     what went wrong, or ''
    A[7]     back-off of the first retry, ms (doubling per attempt)
    A[8]     longest back-off, ms
    A[9]     give up this long after the delivery was created, ms
  Output: 'DELIVERED', 'RETRY', 'FAILED', or 'STALE' when the delivery is
          gone or another attempt has been claimed since (nothing changes)
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local wid, did, attempt = A[1], A[2], tonumber(A[3])
  local d = dlv_get(wid, did)
  if not d or d.status ~= 'PENDING' or d.attempts ~= attempt then return 'STALE' end
  local w = wh_get(wid)
  if A[4] == '1' then
    redis.call('HDEL', key('webhook', wid, 'dlv'), did)
    redis.call('ZREM', key('webhook', wid, 'due'), did)
    wh_due_sync(wid, w and w.enabled)
    return 'DELIVERED'
  end
  d.lastStatus = tonumber(A[5])
  if A[6] ~= '' then d.lastError = A[6] else d.lastError = nil end
  -- The n-th attempt of a round (a retry_delivery starts a new one) waits
  -- base * 2^(n-1) before the next.
  local backoff = math.min(math.floor(tonumber(A[7]) * 2 ^ (attempt - (d.round or 0) - 1)), tonumber(A[8]))
  local nxt = now_ms() + backoff
  if nxt > d.createdAt + tonumber(A[9]) then
    dlv_fail(wid, d)
    wh_due_sync(wid, w and w.enabled)
    return 'FAILED'
  end
  d.nextAttemptAt = nxt
  dlv_put(wid, d)
  redis.call('ZADD', key('webhook', wid, 'due'), istr(nxt), did)
  wh_due_sync(wid, w and w.enabled)
  return 'RETRY'
end)
