--- @include "config"
--- @include "stats"
--[[
  ewt: estimated wait time (method POSITION_RATE) and its measured
  accuracy. Hooks called by routing (enqueue, unqueue, reserve), lifecycle
  (task_close) and accept_task.

  rr:{t}:q:<id>:ewt  hash, the queue's take rate: mark (since when the
                     time its waiting set is non-empty is not yet counted;
                     '' while it is empty), acc (busy ms counted since the
                     last take), gap (mean busy ms per take, a moving
                     average over the last EWT_WEIGHT takes), n (takes
                     seen), ring (mean ms from reservation to accept, the
                     same average) and rn (accepts seen)
  rr:{t}:ewt:<id>:<minute>  hash, one per queue and minute of the clock
                     (now_ms() // 60000) in which a prediction met its
                     answer: b<bin> the count of absolute errors in each
                     bin of stats_bin; expires 1441 minutes after its last
                     new bin (the longest window is 1440)

  Method: a waiting request at position p (1 is the next the queue hands
  out) is expected to wait p takes of the queue plus the time an agent
  takes to accept: p * gap + ring. A take is a waiting task reserved out of
  the queue's waiting set; gap is the time the set was non-empty divided by
  the takes in it (all agents are busy then, so it is the time between
  agents freeing up for this queue). With fewer than EWT_MIN_TAKES takes seen
  there is no estimate (nil, null in JSON); a request reserved at once
  (position 0) is expected to wait ring.

  A request's prediction is kept in its task document (field ewt: the
  predicted wait from its enqueueTime in ms, '' when there was none) from
  the moment it is placed in its queue (PUSH, queue conference or transfer,
  overflow in: each a new prediction) until it is answered (the error is
  counted) or ends (the field is dropped). A RONA or REROUTE re-queue is
  the same request: the new task carries the prediction on.
]]
local EWT_METHOD = 'POSITION_RATE'
local EWT_WEIGHT = 32
local EWT_MIN_TAKES = 10
local EWT_TTL_MS = '86460000'  -- 1441 minutes

-- A queue's take-rate state, read once per call and written at its end.
local EWT_STATES = {}

local function ewt_state(qid)
  local s = EWT_STATES[qid]
  if s then return s end
  local h = redis.call('HMGET', key('q', qid, 'ewt'), 'mark', 'acc', 'gap', 'n', 'ring', 'rn')
  s = {mark = tonumber(h[1] or ''), acc = tonumber(h[2]) or 0, gap = tonumber(h[3]) or 0,
       n = tonumber(h[4]) or 0, ring = tonumber(h[5]) or 0, rn = tonumber(h[6]) or 0}
  EWT_STATES[qid] = s
  return s
end

-- Sets field f of the queue's state to v (written when the script ends).
local function ewt_set(s, f, v)
  s[f] = v
  s.changed = s.changed or {}
  s.changed[f] = true
end

local EWT_FORMAT = {mark = function(v) return v and istr(v) or '' end, acc = istr, n = istr, rn = istr,
  gap = function(v) return string.format('%.3f', v) end, ring = function(v) return string.format('%.3f', v) end}

-- Only the fields that changed: an accept writes two, a take four.
AT_END[#AT_END + 1] = function()
  for qid, s in pairs(EWT_STATES) do
    if s.changed then
      local args = {}
      for f in pairs(s.changed) do
        args[#args + 1] = f
        args[#args + 1] = EWT_FORMAT[f](s[f])
      end
      redis.call('HSET', key('q', qid, 'ewt'), unpack(args))
    end
  end
end

-- A moving average: the plain mean of the first EWT_WEIGHT observations,
-- then each new one weighs 1/EWT_WEIGHT.
local function ewt_average(mean, n, x)
  return mean + (x - mean) / math.min(n, EWT_WEIGHT)
end

-- The expected wait from now of a request at position p of queue q (0: it
-- is being offered now), or nil when the queue has too little history.
local function ewt_remaining(q, p)
  local s = ewt_state(q.id)
  if p == 0 then return math.floor(s.ring + 0.5) end
  if s.n < EWT_MIN_TAKES then return nil end
  return math.floor(p * s.gap + s.ring + 0.5)
end

-- A new request of queue q at position p: its predicted wait from its
-- enqueueTime, kept in the task ('' when there is no estimate).
local function ewt_predict(t, q, p)
  local r = ewt_remaining(q, p)
  t.ewt = r and istr(now_ms() - t.enqueueTime + r) or ''
end

-- Task t was parked in queue q (enqueue): in its waiting set, or waiting
-- for its preferred agent only (no estimate: one agent decides). position:
-- routing's task_position, read only for a new prediction.
local function ewt_enqueued(t, q, position)
  if not q then return end
  if t.parked == true then
    local s = ewt_state(q.id)
    if not s.mark then ewt_set(s, 'mark', now_ms()) end
  end
  if t.ewt == nil and t.mode == 'QUEUE' then
    if t.parked == true then
      ewt_predict(t, q, position(t))
    else
      t.ewt = ''
    end
  end
end

-- Task t left its queue's waiting set: taken (reserved) or not (closed,
-- moved, re-placed).
local function ewt_unqueued(t, taken)
  local s = ewt_state(t.queueId)
  local now = now_ms()
  if s.mark then
    ewt_set(s, 'acc', s.acc + now - s.mark)
    if taken then
      ewt_set(s, 'n', s.n + 1)
      ewt_set(s, 'gap', ewt_average(s.gap, s.n, s.acc))
      ewt_set(s, 'acc', 0)
    end
  end
  local left = redis.call('ZCARD', key('q', t.queueId, 'waiting')) > 0
  if left or s.mark then ewt_set(s, 'mark', left and now or nil) end
end

-- Task t is reserved to an agent; a request that never waited is predicted
-- here (position 0).
local function ewt_reserved(t)
  if t.ewt == nil and t.mode == 'QUEUE' then
    local q = queue_get(t.queueId)
    if q then ewt_predict(t, q, 0) end
  end
end

-- The middle of bin b of stats_bin (the statistics' histogram bins: a
-- bin's middle is within 32 ms or 1/16 of every value in it).
local function ewt_bin_mid(b)
  if b < 16 then return b * 64 + 32 end
  local e = 10 + math.floor((b - 16) / 8)
  local w = 2 ^ e / 8
  return math.floor(2 ^ e + ((b - 16) % 8) * w + w / 2)
end

-- Task t's media is accepted: the time to accept joins the queue's
-- average, and the request's prediction meets its actual wait (accept
-- time - enqueueTime).
-- (A reserved task's queue exists: delete_queue refuses a queue with one.)
local function ewt_answered(t)
  if t.mode == 'QUEUE' and t.queueId then
    local now = now_ms()
    if t.rsv then
      local s = ewt_state(t.queueId)
      ewt_set(s, 'rn', s.rn + 1)
      ewt_set(s, 'ring', ewt_average(s.ring, s.rn, now - tonumber(t.rsv)))
    end
    if t.ewt and t.ewt ~= '' then
      local err = math.abs(now - t.enqueueTime - tonumber(t.ewt))
      local k = key('ewt', t.queueId, istr(math.floor(now / 60000)))
      -- A bin's first sample (re)sets the expiry: at most a few per minute.
      if redis.call('HINCRBY', k, 'b' .. stats_bin(err), '1') == 1 then redis.call('PEXPIRE', k, EWT_TTL_MS) end
    end
  end
  t.ewt = nil
end

-- The p-th fraction of a histogram of n samples (counts by bin).
local function ewt_percentile(counts, bins, n, p)
  if n == 0 then return nil end
  local want, seen = math.ceil(p * n), 0
  for _, b in ipairs(bins) do
    seen = seen + counts[b]
    if seen >= want then return ewt_bin_mid(b) end
  end
  return nil
end

-- Queue q's ewt object: the expected wait of a request pushed now (behind
-- every task waiting; 0 takes when an agent is free for it now) and the
-- accuracy of the predictions answered in the last `minutes` minutes.
local function ewt_json(q, minutes)
  -- (agent.lua's availability index: of step 1, the one a new request uses)
  local avail = q.nsteps and key('q', q.id, 'avail:' .. 1) or key('q', q.id, 'avail')
  local p = 0
  if redis.call('ZCARD', avail) == 0 then p = redis.call('ZCARD', key('q', q.id, 'waiting')) + 1 end
  local counts, bins, n = {}, {}, 0
  local last = math.floor(now_ms() / 60000)
  for m = last - minutes + 1, last do
    local h = redis.call('HGETALL', key('ewt', q.id, istr(m)))
    for i = 1, #h, 2 do
      local c, b = tonumber(h[i + 1]), tonumber(string.sub(h[i], 2))
      if not counts[b] then bins[#bins + 1] = b end
      counts[b] = (counts[b] or 0) + c
      n = n + c
    end
  end
  table.sort(bins)
  return '{"ms":' .. jint(ewt_remaining(q, p)) .. ',"method":"' .. EWT_METHOD ..
    '","accuracy":{"samples":' .. jint(n) .. ',"p50AbsErrorMs":' .. jint(ewt_percentile(counts, bins, n, 0.5)) ..
    ',"p90AbsErrorMs":' .. jint(ewt_percentile(counts, bins, n, 0.9)) .. '}}'
end
