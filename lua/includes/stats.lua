--- @include "config"
--[[
  stats: a queue's statistics, counted in the step that makes the change.

  rr:{t}:st:<queue>:<minute>  hash, one per queue and minute of the clock
                     (now_ms() // 60000) in which something was counted;
                     expires 1441 minutes after it is made (the longest
                     window is 1440). Fields: th the queue's
                     serviceLevelThresholdMs when the minute was first
                     counted (the "within" counts of the minute use it);
                     e entered, a answered, aw answered within th, x
                     expired, c cancelled, bw abandoned within th, r
                     RONAs, oi overflowed in, oo overflowed out; ws the
                     sum and wm the max of the answered waits (ms), w<bin>
                     their histogram; hn, hs the count and sum of handle
                     times (ms), h<bin> their histogram (stats_bin)
  rr:{t}:st:<queue>:h<hour>  hash, the sums of the 60 minute buckets of a
                     past hour (hour = minute // 60; wm the max, no th),
                     with _ = 1 so an hour with nothing counted is kept
                     too: made by the first window read that spans the
                     whole hour (its minutes no longer change), read in
                     their place after; expires as a minute bucket does
  rr:{t}:qgen        string, the counter of queue generations: a queue
                     made takes the next as its gen (config.lua)
  rr:{t}:q:<queue>:totals  hash of the queue's counts since it was made
                     (each field of a bucket counted one at a time: e, a,
                     aw, x, c, bw, r, oi, oo, hn), for /metrics' counters
  rr:{t}:q:<queue>:tally  hash of what the queue holds now: p<priority>
                     and s<step> its waiting tasks (preferred-only ones
                     included) by priority and by step, r its tasks with a
                     RESERVED media, a its tasks with an ACTIVE media (not
                     in WRAP_UP) that were counted in this generation of
                     the queue (the task's tq is the queue's gen)

  What is counted, per event (src/redroute/statistics.py replays the same
  rules from the stream, so the two agree by construction):
    TASK_STATE_CHANGED of a task of a queue (queueId set), by transition:
      CREATED      of mode QUEUE (PUSH, queue conference, queue transfer): e
      ACCEPTED     a, aw, ws, wm, w<bin>: wait = now - enqueueTime
      RONA, DECLINED  r
      CLOSED       with medias closed now and none ever answered: c, bw
      (any)        task now WRAP_UP or CLOSED with medias closed now, one
                   answered: hn, hs, h<bin>: now - its first answerTime
      OVERFLOWED   oo in the queue it left, oi and e in the one it entered
                   (a chain passed in one step counts its ends only)
    NO_AGENT_AVAILABLE of a task of a queue: x, bw (its TTL passed, or a
      transfer's reservation ended unanswered)
  A queue with statisticsEnabled false counts no minutes; its tally is
  kept all the same (the realtime figures need it).
]]
local STATS_TTL_MS = '86460000'  -- 1441 minutes

-- The histogram bin of a duration in ms: 64 ms wide below 1024 ms (bins
-- 0..15), then 8 bins per power of two (16 + 8 * (e - 10) + sub for
-- 2^e <= ms < 2^(e+1)): a bin's middle is within 32 ms or 1/16 of every
-- value in it. Integer arithmetic only, so Python bins the same
-- (statistics.bin_of).
local function stats_bin(ms)
  if ms < 1024 then return math.floor(ms / 64) end
  local e, p = 10, 2048
  while p <= ms do
    e = e + 1
    p = p * 2
  end
  return 16 + (e - 10) * 8 + math.floor(ms / (p / 16)) - 8
end

-- This call's minute buckets: key -> {k, totals, th, wm}, th and wm read
-- once per call, when a count needs them.
local STATS_BUCKETS = {}

-- The bucket of queue qid for the current minute; nil when the queue
-- counts no statistics. (The tasks of a deleted queue that end after it
-- count with threshold 0: the stream shows no deletion of their queue
-- before a new one of the same id, so the replay counts them too.)
-- read: the caller reads b.th and b.wm. Else the bucket is only made sure
-- of, with HSETNX: an integer reply, where HMGET's is an array to convert.
local function stats_bucket(qid, read)
  local q = queue_get(qid)
  if q and q.statsOff then return nil end
  local k = key('st', qid, istr(math.floor(now_ms() / 60000)))
  local b = STATS_BUCKETS[k]
  if not b then
    b = {k = k, totals = q and key('q', qid, 'totals')}
    STATS_BUCKETS[k] = b
    if not read then
      local th = q and q.serviceLevelThresholdMs or 0
      if redis.call('HSETNX', k, 'th', istr(th)) == 1 then
        redis.call('PEXPIRE', k, STATS_TTL_MS)
        b.th, b.wm = th, -1
      end
      return b
    end
  end
  if read and not b.th then
    local h = redis.call('HMGET', k, 'th', 'wm')
    b.th, b.wm = tonumber(h[1]), tonumber(h[2]) or -1
    if not b.th then
      b.th = q and q.serviceLevelThresholdMs or 0
      redis.call('HSET', k, 'th', istr(b.th))
      redis.call('PEXPIRE', k, STATS_TTL_MS)
    end
  end
  return b
end

-- Adds n (a string) to a field of bucket b, or counts one: then the
-- queue's totals count it too (a deleted queue keeps none).
local function stats_add(b, field, n)
  redis.call('HINCRBY', b.k, field, n or '1')
  if not n and b.totals then redis.call('HINCRBY', b.totals, field, '1') end
end

local function stats_count(qid, field)
  local b = stats_bucket(qid)
  if b then stats_add(b, field) end
end

-- A request of the queue left it unanswered (field x or c) after its wait.
local function stats_abandoned(t, field)
  local b = stats_bucket(t.queueId, true)
  if not b then return end
  stats_add(b, field)
  if now_ms() - t.enqueueTime <= b.th then stats_add(b, 'bw') end
end

local function stats_answered(t)
  local b = stats_bucket(t.queueId, true)
  if not b then return end
  local w = math.max(0, now_ms() - t.enqueueTime)
  stats_add(b, 'a')
  if w <= b.th then stats_add(b, 'aw') end
  stats_add(b, 'ws', istr(w))
  stats_add(b, 'w' .. stats_bin(w), '1')
  if w > b.wm then
    b.wm = w
    redis.call('HSET', b.k, 'wm', istr(w))
  end
end

local function stats_handled(t)
  local first, media = nil, t.media
  for i = 1, #media do
    local m = media[i]
    if m.answerTime and (not first or tonumber(m.answerTime) < first) then first = tonumber(m.answerTime) end
  end
  if not first then return false end
  local b = stats_bucket(t.queueId)
  if b then
    local h = math.max(0, now_ms() - first)
    stats_add(b, 'hn')
    stats_add(b, 'hs', istr(h))
    stats_add(b, 'h' .. stats_bin(h), '1')
  end
  return true
end

-- Counts a TASK_STATE_CHANGED of task t (emit_task).
local function stats_task(t, media_ids, transition)
  if not t.queueId then return end
  if transition == 'CREATED' then
    if t.mode == 'QUEUE' then stats_count(t.queueId, 'e') end
  elseif transition == 'ACCEPTED' then
    stats_answered(t)
  elseif transition == 'RONA' or transition == 'DECLINED' then
    stats_count(t.queueId, 'r')
  end
  if (t.state == 'WRAP_UP' or t.state == 'CLOSED') and media_ids and #media_ids > 0 then
    if not stats_handled(t) and transition == 'CLOSED' then stats_abandoned(t, 'c') end
  end
end

-- Task t moved from queue from to t.queueId (OVERFLOWED).
local function stats_overflowed(from, t)
  stats_count(from, 'oo')
  local b = stats_bucket(t.queueId)
  if b then
    stats_add(b, 'oi')
    stats_add(b, 'e')
  end
end

-- Where a live task of a queue is counted in its tally when not waiting:
-- 'r' (a RESERVED media), 'a' (an ACTIVE one, task ACTIVE), else nil.
local function stats_holding(t)
  if t.state ~= 'ACTIVE' then return nil end
  local held, media = nil, t.media
  for i = 1, #media do
    local m = media[i]
    if m.state == 'RESERVED' then return 'r' end
    if m.state == 'ACTIVE' then held = 'a' end
  end
  return held
end

-- A new queue's generation (put_queue): never the same twice in a tenant.
local function stats_next_gen()
  return redis.call('INCR', key('qgen'))
end

-- A task of a queue changed its holding from was (stats_holding before the
-- change; the caller saves the task after). The task records the queue's
-- generation it was counted in (tq), so a task that outlived its queue's
-- deletion (an ACTIVE one keeps its queueId) is never taken off the tally
-- of a queue made again with the same id.
local function stats_hold_moved(t, was)
  local now = stats_holding(t)
  local q = t.queueId and queue_get(t.queueId)
  if was == now or not q then return end
  local k = key('q', t.queueId, 'tally')
  if was and t.tq == q.gen then redis.call('HINCRBY', k, was, '-1') end
  if now then
    redis.call('HINCRBY', k, now, '1')
    t.tq = q.gen
  end
end

-- A task entered (delta 1) or left (-1) its queue's waiting sets.
local function stats_waiting(t, delta)
  local k = key('q', t.queueId, 'tally')
  redis.call('HINCRBY', k, 'p' .. t.priority, delta)
  if t.step then redis.call('HINCRBY', k, 's' .. t.step, delta) end
end

-- Adds a bucket's fields (an HGETALL reply) to the sums: wm by max, the
-- rest by addition; th and _ left out.
local function stats_sum(sums, names, h)
  for i = 1, #h, 2 do
    local f, v = h[i], tonumber(h[i + 1])
    if f ~= 'th' and f ~= '_' then
      local cur = sums[f]
      if cur == nil then
        names[#names + 1] = f
        sums[f] = v
      elseif f == 'wm' then
        if v > cur then sums[f] = v end
      else
        sums[f] = cur + v
      end
    end
  end
end

local function stats_json(sums, names)
  local parts = {}
  for i, f in ipairs(names) do parts[i] = '"' .. f .. '":' .. istr(sums[f]) end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Hour `hour` of queue qid (all its minutes past): its sums, made from its
-- 60 minute buckets on first use.
local function stats_hour(qid, hour)
  local hs = istr(hour)
  local k = key('st', qid, 'h' .. hs)
  local h = redis.call('HGETALL', k)
  if #h > 0 then return h end
  local sums, names = {}, {}
  for m = hour * 60, hour * 60 + 59 do
    stats_sum(sums, names, redis.call('HGETALL', key('st', qid, istr(m))))
  end
  h = {'_', '1'}
  for _, f in ipairs(names) do
    h[#h + 1] = f
    h[#h + 1] = istr(sums[f])
  end
  redis.call('HSET', k, unpack(h))
  redis.call('PEXPIRE', k, STATS_TTL_MS)
  return h
end

-- The sums of queue qid's buckets over the last `minutes` minutes (the
-- current one and those before it), as a JSON object of field: sum (wm:
-- the max). A whole past hour inside the window is read as its hour
-- bucket: at most 59 + 23 + 60 reads for the longest window.
local function stats_window_json(qid, minutes)
  local now_min = math.floor(now_ms() / 60000)
  local sums, names = {}, {}
  local m = now_min - minutes + 1
  while m <= now_min do
    if m % 60 == 0 and m + 59 < now_min then
      stats_sum(sums, names, stats_hour(qid, m / 60))
      m = m + 60
    else
      stats_sum(sums, names, redis.call('HGETALL', key('st', qid, istr(m))))
      m = m + 1
    end
  end
  return stats_json(sums, names)
end

-- Queue qid's tally (what it holds now) as a JSON object of field: count,
-- zeros left out.
local function stats_tally_json(qid)
  local h = redis.call('HGETALL', key('q', qid, 'tally'))
  local parts = {}
  for i = 1, #h, 2 do
    if h[i + 1] ~= '0' then parts[#parts + 1] = '"' .. h[i] .. '":' .. h[i + 1] end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Every minute and hour bucket key queue qid may still have (delete_queue).
local function stats_bucket_keys(qid)
  local now_min, out = math.floor(now_ms() / 60000), {}
  for m = now_min - 1440, now_min do out[#out + 1] = key('st', qid, istr(m)) end
  local now_hour = math.floor(now_min / 60)
  for h = now_hour - 25, now_hour do
    local hs = istr(h)
    out[#out + 1] = key('st', qid, 'h' .. hs)
  end
  return out
end
