--[[
  add_deliveries: records the deliveries one event makes, one per enabled
  webhook whose filters it passes and which existed when it happened, and
  claims for the caller the first attempt of those it has room for.

  Input:
    KEYS[1]  tenant prefix
    A[1]     the event's stream id (the delivery id)
    A[2]     its type
    A[3]     the queues it concerns, a JSON list
    A[4]     the body to POST (JSON)
    A[5]     lease, ms: how long a claimed attempt is the caller's alone
    A[6]     the webhooks the caller has no room for, a JSON list, or '*'
             for all of them
  Output: {{webhookId, url, secret, attempt}, …}: the attempts claimed
  Events: none
  A delivery that exists already (the event handed out again after a
  crash) is left as it is.
]]
--- @include "includes/webhooks"
return run(function()
  local eid, etype, body, lease = A[1], A[2], A[4], tonumber(A[5])
  local event_ms = tonumber(string.match(eid, '^(%d+)-'))
  local queues = cjson.decode(A[3])
  local busy = {}
  local all_busy = A[6] == '*'
  if not all_busy then
    for _, w in ipairs(cjson.decode(A[6])) do busy[w] = true end
  end
  local claimed = {}
  for _, wid in ipairs(redis.call('ZRANGE', key('webhooks'), '0', '-1')) do
    local w = wh_get(wid)
    local wants = w and w.enabled and event_ms >= w.createdAt
    if wants and w.types ~= '' then
      wants = false
      for _, t in ipairs(cjson.decode(w.types)) do
        if t == etype then wants = true end
      end
    end
    if wants and w.queueIds ~= '' then
      wants = false
      for _, q in ipairs(cjson.decode(w.queueIds)) do
        for _, eq in ipairs(queues) do
          if q == eq then wants = true end
        end
      end
    end
    if wants and redis.call('HEXISTS', key('webhook', wid, 'dlv'), eid) == 0 then
      local d = {id = eid, eventId = eid, type = etype, status = 'PENDING', attempts = 0,
                 createdAt = now_ms(), nextAttemptAt = now_ms(), body = body}
      if not (all_busy or busy[wid]) then
        d.attempts = 1
        d.lastAttemptAt = now_ms()
        d.nextAttemptAt = now_ms() + lease
        claimed[#claimed + 1] = {wid, w.url, w.secret, '1'}
      end
      dlv_put(wid, d)
      redis.call('ZADD', key('webhook', wid, 'due'), istr(d.nextAttemptAt), eid)
      wh_due_sync(wid, true)
    end
  end
  return claimed
end)
