--[[
  get_queue: reads a queue with its live statistics.

  Input:  KEYS[1] tenant prefix; A[1] queueId
  Output: the queue as JSON plus waiting (count), oldestWaitMs (null when
          none waits) and agents (member agents counted by MRD state)
  Events: none
]]
--- @include "includes/agent"
return run(function()
  local q = queue_must(A[1])
  -- (:age holds every waiting task, those waiting for a preferred agent too)
  local waiting = redis.call('ZCARD', key('q', q.id, 'age'))
  local oldest = redis.call('ZRANGE', key('q', q.id, 'age'), '0', '0', 'WITHSCORES')
  local oldest_ms = nil
  if oldest[2] then oldest_ms = now_ms() - tonumber(oldest[2]) end
  local counts, names = {}, {}
  for _, aid in ipairs(redis.call('SMEMBERS', key('q', q.id, 'members'))) do
    local a = agent_get(aid)
    if a then
      local st = agent_mrd_display(a, q.mrdId)
      if not counts[st] then
        counts[st] = 0
        names[#names + 1] = st
      end
      counts[st] = counts[st] + 1
    end
  end
  table.sort(names)
  local parts = {}
  for i, st in ipairs(names) do parts[i] = jid(st) .. ':' .. jint(counts[st]) end
  return queue_json(q, ',"waiting":' .. jint(waiting) .. ',"oldestWaitMs":' .. jint(oldest_ms) ..
    ',"agents":{' .. table.concat(parts, ',') .. '}')
end)
