--[[
  delete_queue: deletes a queue that no agent lists and no task waits in or
  is reserved from.

  Input:
    KEYS[1]  tenant prefix
    A[1]     queueId
  Output: 1; NOT_FOUND for an unknown queue; INVALID_TRANSITION naming the
          agents that list it, else the queues that overflow to it, else
          its waiting tasks' count, else its reserved tasks. Its ACTIVE and WRAP_UP tasks stay with their
          agents and keep their queueId. Its statistics (and its estimated
          wait's take rate and accuracy) go with it.
  Events: QUEUE_DELETED {"queueId"}
]]
--- @include "includes/config"
--- @include "includes/task"
--- @include "includes/stats"
--- @include "includes/ewt"
return run(function()
  local id = A[1]
  queue_must(id)
  local members = redis.call('SMEMBERS', key('q', id, 'members'))
  if #members > 0 then
    table.sort(members)
    fail('INVALID_TRANSITION', 'queue ' .. id .. ' is listed by agents ' .. id_list(members))
  end
  local feeders = queues_where(function(q) return q.overflowQueueId == id end)
  if #feeders > 0 then
    fail('INVALID_TRANSITION', 'queue ' .. id .. ' is the overflow queue of queues ' .. id_list(feeders))
  end
  -- (:age holds every waiting task, those waiting for a preferred agent too)
  local waiting = redis.call('ZCARD', key('q', id, 'age'))
  if waiting > 0 then
    fail('INVALID_TRANSITION', 'queue ' .. id .. ' has ' .. istr(waiting) .. ' waiting tasks')
  end
  -- Reserved tasks wait for an accept that may not come: a RONA would
  -- route them back to this queue. Each has a RONA deadline.
  local reserved = {}
  for _, member in ipairs(redis.call('ZRANGE', key('timers'), '0', '-1')) do
    local tid = string.match(member, '^rona|([^|]+)|')
    if tid then
      local t = task_get(tid)
      if t and t.queueId == id then reserved[#reserved + 1] = tid end
    end
  end
  if #reserved > 0 then
    table.sort(reserved)
    fail('INVALID_TRANSITION', 'queue ' .. id .. ' has reserved tasks ' .. id_list(reserved))
  end
  local gone = {key('queue', id), key('q', id, 'members'), key('q', id, 'avail'),
    key('q', id, 'waiting'), key('q', id, 'age'), key('q', id, 'pref'), key('q', id, 'ewt'),
    key('q', id, 'tally'), key('q', id, 'totals')}
  for k = 1, 10 do
    gone[#gone + 1] = key('q', id, 'avail:' .. k)
    gone[#gone + 1] = key('q', id, 'waiting:' .. k)
  end
  config_changed()
  redis.call('DEL', unpack(gone))
  redis.call('DEL', unpack(stats_bucket_keys(id)))
  redis.call('DEL', unpack(ewt_minute_keys(id)))
  config_remove('queues', id)
  config_changed()
  emit('QUEUE_DELETED', '{"queueId":' .. jid(id) .. '}')
  return 1
end)
