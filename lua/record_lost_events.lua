--[[
  record_lost_events: events that retention trimmed before the dispatcher
  read them become FAILED deliveries of every enabled webhook that existed
  then (their type and queues are unknown, so no filter is applied), so a
  gap is listed, never skipped in silence. Recording the same gap twice
  changes nothing.

  Input:
    KEYS[1]  tenant prefix
    A[1]     delivery id (the lost event's id, or the gap's)
    A[2]     the event's id, or '' for a gap of several
    A[3]     the latest time the lost events can have happened, ms
    A[4]     what was lost, in words
  Output: how many deliveries were recorded
  Events: none
]]
--- @include "includes/webhooks"
return run(function()
  local did, before = A[1], tonumber(A[3])
  local eid = nil
  if A[2] ~= '' then eid = A[2] end
  local n = 0
  for _, wid in ipairs(redis.call('ZRANGE', key('webhooks'), '0', '-1')) do
    local w = wh_get(wid)
    if w and w.enabled and w.createdAt <= before and dlv_get(wid, did) == nil then
      local d = {id = did, eventId = eid, status = 'PENDING', attempts = 0, createdAt = now_ms(),
                 lastError = A[4]}
      dlv_fail(wid, d)
      n = n + 1
    end
  end
  return n
end)
