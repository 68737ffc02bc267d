--[[
  retry_delivery: sends a FAILED delivery again: it is PENDING once more,
  due now, with a fresh round of back-off and a fresh give-up time.

  Input:  KEYS[1] tenant prefix; A[1] webhookId; A[2] deliveryId
  Output: the delivery as JSON; NOT_FOUND for an unknown webhook or
          delivery; INVALID_TRANSITION when it is not FAILED, or when its
          event was lost to retention (there is nothing to send)
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local wid, did = A[1], A[2]
  local w = wh_get(wid)
  if not w then fail('NOT_FOUND', 'webhook ' .. wid .. ' does not exist') end
  local d = dlv_get(wid, did)
  if not d then fail('NOT_FOUND', 'delivery ' .. did .. ' of webhook ' .. wid .. ' does not exist') end
  if d.status ~= 'FAILED' then
    fail('INVALID_TRANSITION', 'delivery ' .. did .. ' is ' .. d.status .. ', not FAILED')
  end
  if not d.body then
    fail('INVALID_TRANSITION', 'delivery ' .. did .. ' has nothing to send: its events were ' ..
      'trimmed from the stream before they were read')
  end
  redis.call('ZREM', key('webhook', wid, 'failed'), d.fm)
  d.status, d.fm, d.failedAt = 'PENDING', nil, nil
  -- Attempt numbers go on (a late report of an old attempt stays stale);
  -- the back-off and the give-up time start over.
  d.round, d.createdAt, d.nextAttemptAt = d.attempts, now_ms(), now_ms()
  dlv_put(wid, d)
  redis.call('ZADD', key('webhook', wid, 'due'), now_ms_str(), did)
  wh_due_sync(wid, w.enabled)
  return dlv_json(wid, d)
end)
