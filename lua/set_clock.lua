--[[
  set_clock: gives the tenant a virtual clock, or moves it forward. From
  then on every script of this tenant reads its time from its virtual
  clock (the key base declares) instead of the Redis server clock (see base, now_ms):
  time stands still between two calls, so a simulation steps from event to
  event with no waiting and no drift. Only this tenant's key is written: no
  other tenant's clock can change.

  Input:
    KEYS[1]  tenant prefix
    A[1]     the time to set, ms since the epoch (an integer >= 0)
  Rules: a virtual clock never runs back (INVALID_TRANSITION); the first
         call may set any time.
  Output: the tenant's clock, ms
  Events: none
]]
--- @include "includes/base"
return run(function()
  local at = tonumber(A[1])
  if not at or at < 0 or at ~= math.floor(at) then
    fail('VALIDATION_ERROR', 'the clock must be a whole number of ms >= 0')
  end
  local was = tonumber(redis.call('GET', key('clock', 'virtual')) or '-1')
  if at < was then
    fail('INVALID_TRANSITION', 'the virtual clock is at ' .. istr(was) .. ' and never runs back')
  end
  redis.call('SET', key('clock', 'virtual'), istr(at))
  return at
end)
