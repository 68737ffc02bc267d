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
                     same average) and rn (accepts seen); a queue with
                     steps keeps mark, acc, gap and n per step's waiting
                     set instead, as mark|<k> …
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
  (position 0) is expected to wait ring. In a queue with steps each step's
  waiting set has its own take rate, and a task's rank at its step counts
  (ewt_remaining_steps: taken at its step before the next one starts, or
  moved on behind what is still ahead of it there).

  A request's prediction is kept in its task document (field ewt: the
  predicted wait from its enqueueTime in ms, '' when there was none) from
  the moment it is placed in its queue (PUSH, queue conference or transfer,
  overflow in: each a new prediction) until it is answered (the error is
  counted) or ends (the field is dropped). A RONA or REROUTE re-queue is
  the same request: the new task carries the prediction on.
]]
--- @once
local EWT_METHOD = 'POSITION_RATE'
local EWT_WEIGHT = 32
local EWT_MIN_TAKES = 10
local EWT_TTL_MS = '86460000'  -- 1441 minutes

-- A queue's take-rate state (field -> number), read once per call and
-- written at its end. The fields of a waiting set carry its step:
-- mark, acc, gap, n for a queue without steps; mark|k … for step k.
local EWT_STATES = {}

-- ewt_state(qid, f1, f2) reads only fields f1 (and f2), for a step that
-- reads no other (a reservation: ring; an accept: rn, ring): a hash of a
-- dozen fields or more costs its conversion to Lua. s.got names the fields
-- read then; a later ewt_state(qid) reads the rest, keeping what this call set.
local function ewt_state(qid, f1, f2)
  local s = EWT_STATES[qid]
  if s and (not s.got or (f1 and s.got[f1] and (not f2 or s.got[f2]))) then return s end
  local k, v, got = key('q', qid, 'ewt'), {}, nil
  if f1 and not s then
    if f2 then
      local h = redis.call('HMGET', k, f1, f2)
      v[f1], v[f2] = tonumber(h[1]), tonumber(h[2])
      got = {[f1] = true, [f2] = true}
    else
      v[f1] = tonumber(redis.call('HGET', k, f1))
      got = {[f1] = true}
    end
  else
    local h = redis.call('HGETALL', k)
    for i = 1, #h, 2 do v[h[i]] = tonumber(h[i + 1]) end
  end
  if s then
    for f in pairs(s.changed or {}) do v[f] = s.v[f] end
    s.v, s.got = v, nil
  else
    s = {v = v, got = got}
    EWT_STATES[qid] = s
  end
  return s
end

local function ewt_get(s, f)
  return s.v[f] or 0
end

-- Sets field f of the queue's state to v (nil: none; written at the end).
local function ewt_set(s, f, v)
  s.v[f] = v
  s.changed = s.changed or {}
  s.changed[f] = true
end

local function ewt_format(f, v)
  if v == nil then return '' end
  if string.sub(f, 1, 3) == 'gap' or f == 'ring' then return string.format('%.3f', v) end
  return istr(v)
end

-- Only the fields that changed: an accept writes two, a take four.
--- @once
AT_END[#AT_END + 1] = function()
  for qid, s in pairs(EWT_STATES) do
    if s.changed then
      local args = {}
      for f in pairs(s.changed) do
        args[#args + 1] = f
        args[#args + 1] = ewt_format(f, s.v[f])
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

-- The suffix of the fields of waiting set of step k (nil: the queue's).
local function ewt_sfx(k)
  return k and ('|' .. k) or ''
end

-- The mean busy time per take of the waiting set of step k (nil: the
-- queue's), or nil with too little history.
local function ewt_gap(s, k)
  local x = ewt_sfx(k)
  if ewt_get(s, 'n' .. x) < EWT_MIN_TAKES then return nil end
  return ewt_get(s, 'gap' .. x)
end

local function ewt_round(ms)
  return math.floor(ms + 0.5)
end

-- The expected wait from now of a request at position p of queue q
-- without steps (0: it is being offered now), or nil with too little
-- history.
local function ewt_remaining(q, p)
  local s = p == 0 and ewt_state(q.id, 'ring') or ewt_state(q.id)
  local ring = ewt_get(s, 'ring')
  if p == 0 then return ewt_round(ring) end
  local gap = ewt_gap(s, nil)
  return gap and ewt_round(p * gap + ring)
end

-- For a request rank-th in a waiting set whose takes come every gap ms on
-- average (as a Poisson stream, as while all its agents are busy), with a
-- deadline in next_ms: the expected time until it is taken or the
-- deadline comes, E[min(S, next_ms)] for S the rank-th take's time, and
-- the chance the deadline comes first, P(S > next_ms). (S is Erlang: the
-- sums below are the Poisson terms of next_ms / gap.)
local function ewt_before(rank, gap, next_ms)
  local x = next_ms / gap
  local term, cdf, sum = math.exp(-x), 0, 0
  for i = 0, rank - 1 do
    cdf = cdf + term
    sum = sum + (1 - cdf)
    term = term * x / (i + 1)
  end
  return gap * sum, math.min(1, cdf)
end

-- The same in a queue with steps, for a request at step k, rank-th in that
-- step's waiting set, reaching step k + 1 in next_ms (nil at the last
-- step); ahead: how many waiting at later steps come before it (they are
-- older). Taken at step k at that step's take rate before next_ms, or
-- else at step k + 1, behind those still ahead of it by then (the later
-- steps' and its own step's, each drained at its rate meanwhile; none when
-- nothing waits there now); nil with too little history.
local function ewt_remaining_steps(q, k, rank, next_ms, ahead)
  local s = ewt_state(q.id)
  local ring = ewt_get(s, 'ring')
  local gap = ewt_gap(s, k)
  if not next_ms then return gap and ewt_round(rank * gap + ring) end
  local before, late = next_ms, 1
  if gap then before, late = ewt_before(rank, gap, next_ms) end
  local mine = math.max(0, rank - 1 - (gap and next_ms / gap or 0))
  local after = 0
  if ahead > 0 or mine > 0 then
    local later = ewt_gap(s, k + 1)
    if not later then return nil end
    after = math.max(0, ahead + mine - next_ms / later) * later
  end
  return ewt_round(before + late * after + ring)
end

-- The expected wait from now of task t waiting in queue q's waiting set,
-- at position (task_position), member and score its place there.
local function ewt_waiting(t, q, position, member, score)
  if not t.step then return ewt_remaining(q, position) end
  local k = tonumber(t.step)
  local rank = redis.call('ZRANK', key('q', q.id, 'waiting:' .. k), member) + 1
  local ahead = 0
  for j = k + 1, q.nsteps do ahead = ahead + redis.call('ZCOUNT', key('q', q.id, 'waiting:' .. j), '-inf', score) end
  return ewt_remaining_steps(q, k, rank, t.nextStepAt and (tonumber(t.nextStepAt) - now_ms()), ahead)
end

-- Task t was parked in queue q (enqueue) as member with score: in its
-- waiting set (of its step), or waiting for its preferred agent only (no
-- estimate: one agent decides). position: routing's task_position, read
-- only for a new prediction; its predicted wait from its enqueueTime is
-- kept in the task ('' when there is no estimate).
local function ewt_enqueued(t, q, position, member, score)
  if not q then return end
  if t.parked == true then
    local s, mark = ewt_state(q.id), 'mark' .. ewt_sfx(t.step)
    if not s.v[mark] then ewt_set(s, mark, now_ms()) end
  end
  if t.ewt == nil and t.mode == 'QUEUE' then
    local r = t.parked == true and ewt_waiting(t, q, position(t), member, score)
    t.ewt = r and istr(now_ms() - t.enqueueTime + r) or ''
  end
end

-- Task t left its queue's waiting set (of its step): taken (reserved) or
-- not (closed, moved, re-placed, on to its next step).
local function ewt_unqueued(t, taken)
  local s, x, now = ewt_state(t.queueId), ewt_sfx(t.step), now_ms()
  local mark = s.v['mark' .. x]
  if mark then
    ewt_set(s, 'acc' .. x, ewt_get(s, 'acc' .. x) + now - mark)
    if taken then
      local n = ewt_get(s, 'n' .. x) + 1
      ewt_set(s, 'n' .. x, n)
      ewt_set(s, 'gap' .. x, ewt_average(ewt_get(s, 'gap' .. x), n, ewt_get(s, 'acc' .. x)))
      ewt_set(s, 'acc' .. x, 0)
    end
  end
  local set = t.step and key('q', t.queueId, 'waiting:' .. t.step) or key('q', t.queueId, 'waiting')
  local left = redis.call('ZCARD', set) > 0
  if left or mark then ewt_set(s, 'mark' .. x, left and now or nil) end
end

-- Task t is reserved to an agent; a request that never waited is predicted
-- here: the time to accept.
local function ewt_reserved(t)
  if t.ewt == nil and t.mode == 'QUEUE' then
    local q = queue_get(t.queueId)
    if q then t.ewt = istr(now_ms() - t.enqueueTime + ewt_remaining(q, 0)) end
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
      local s = ewt_state(t.queueId, 'rn', 'ring')
      local n = ewt_get(s, 'rn') + 1
      ewt_set(s, 'rn', n)
      ewt_set(s, 'ring', ewt_average(ewt_get(s, 'ring'), n, now - tonumber(t.rsv)))
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

-- The expected wait of a request pushed to queue q now, behind every task
-- waiting (at step 1 of a queue with steps); the time to accept when an
-- agent is free for it now.
local function ewt_new_request(q)
  -- (agent.lua's availability index: of step 1, the one a new request uses)
  local avail = q.nsteps and key('q', q.id, 'avail:' .. 1) or key('q', q.id, 'avail')
  if redis.call('ZCARD', avail) > 0 then return ewt_remaining(q, 0) end
  if not q.nsteps then return ewt_remaining(q, redis.call('ZCARD', key('q', q.id, 'waiting')) + 1) end
  local rank = redis.call('ZCARD', key('q', q.id, 'waiting:' .. 1)) + 1
  return ewt_remaining_steps(q, 1, rank, q.stepAt[2], redis.call('ZCARD', key('q', q.id, 'waiting')) - rank + 1)
end

-- Queue q's ewt object: the expected wait of a request pushed now and the
-- accuracy of the predictions answered in the last `minutes` minutes.
local function ewt_json(q, minutes)
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
  return '{"ms":' .. jint(ewt_new_request(q)) .. ',"method":"' .. EWT_METHOD ..
    '","accuracy":{"samples":' .. jint(n) .. ',"p50AbsErrorMs":' .. jint(ewt_percentile(counts, bins, n, 0.5)) ..
    ',"p90AbsErrorMs":' .. jint(ewt_percentile(counts, bins, n, 0.9)) .. '}}'
end

-- Every minute key queue qid's accuracy may still have (delete_queue).
local function ewt_minute_keys(qid)
  local now_min, out = math.floor(now_ms() / 60000), {}
  for m = now_min - 1440, now_min do out[#out + 1] = key('ewt', qid, istr(m)) end
  return out
end
