--- @include "base"
--[[
  webhooks: a tenant's webhooks and their deliveries (owner: the webhook
  scripts, *_webhook.lua and *_deliveries.lua / *_delivery.lua).

  rr:{t}:webhook:<id>         hash url, secret, types, queueIds (JSON lists,
                              '' for no filter), enabled ('1'/'0'),
                              createdAt, updatedAt
  rr:{t}:webhooks             sorted set of webhook ids, all scored 0 (read
                              by lex order: a stable list order)
  rr:{t}:webhooks:due         sorted set: enabled webhook id -> the earliest
                              score in its due set (what claim_deliveries scans)
  rr:{t}:webhook:<id>:due     sorted set: PENDING delivery id -> when it may be
                              attempted (its next attempt, or the end of the
                              lease of the attempt in flight)
  rr:{t}:webhook:<id>:dlv     hash: delivery id -> the delivery as cjson
                              (internal form below)
  rr:{t}:webhook:<id>:failed  sorted set of FAILED deliveries, all scored 0,
                              members "<failedAt, 15 digits>|<delivery id>"
                              (lex order: oldest failure first)

  A delivery is one (webhook, event); its id is the event's stream id, or
  for events retention trimmed before the dispatcher read them, the id the
  dispatcher gives the gap. Internal form: {id, eventId, type, status
  ('PENDING'|'FAILED'), attempts, createdAt, lastAttemptAt, nextAttemptAt,
  failedAt, lastStatus, lastError, round (attempts made before the
  last retry_delivery), body (the JSON POSTed; absent for a gap),
  fm (its member of :failed while FAILED)}. A delivered delivery is deleted:
  the stream is the record of what happened.
]]

local function wh_get(id)
  local h = redis.call('HMGET', key('webhook', id), 'url', 'secret', 'types', 'queueIds', 'enabled',
    'createdAt', 'updatedAt')
  if not h[1] then return nil end
  return {id = id, url = h[1], secret = h[2], types = h[3], queueIds = h[4], enabled = h[5] == '1',
          createdAt = tonumber(h[6]), updatedAt = tonumber(h[7])}
end

-- A JSON string (free text: URLs, errors).
local function jstr(s)
  if s == nil then return 'null' end
  return cjson.encode(s)
end

-- A stored filter list ('' for none) as JSON.
local function jfilter(s)
  if s == nil or s == '' then return 'null' end
  return s
end

-- The webhook as the API shows it: never its secret.
local function wh_json(w)
  local pending = redis.call('ZCARD', key('webhook', w.id, 'due'))
  local failed = redis.call('ZCARD', key('webhook', w.id, 'failed'))
  return '{"id":' .. jid(w.id) .. ',"url":' .. jstr(w.url) .. ',"types":' .. jfilter(w.types) ..
    ',"queueIds":' .. jfilter(w.queueIds) .. ',"enabled":' .. jbool(w.enabled) ..
    ',"createdAt":' .. jint(w.createdAt) .. ',"updatedAt":' .. jint(w.updatedAt) ..
    ',"deliveries":{"pending":' .. jint(pending) .. ',"failed":' .. jint(failed) .. '}}'
end

local function dlv_get(wid, did)
  local raw = redis.call('HGET', key('webhook', wid, 'dlv'), did)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function dlv_put(wid, d)
  redis.call('HSET', key('webhook', wid, 'dlv'), d.id, cjson.encode(d))
end

-- cjson decodes JSON null as a sentinel, not nil.
local function val(x)
  if x == cjson.null then return nil end
  return x
end

local function dlv_json(wid, d)
  return '{"id":' .. jid(d.id) .. ',"webhookId":' .. jid(wid) .. ',"eventId":' .. jid(val(d.eventId)) ..
    ',"type":' .. jid(val(d.type)) .. ',"status":' .. jid(d.status) ..
    ',"attempts":' .. jint(d.attempts) .. ',"createdAt":' .. jint(d.createdAt) ..
    ',"lastAttemptAt":' .. jint(val(d.lastAttemptAt)) .. ',"nextAttemptAt":' .. jint(val(d.nextAttemptAt)) ..
    ',"failedAt":' .. jint(val(d.failedAt)) .. ',"lastStatus":' .. jint(val(d.lastStatus)) ..
    ',"lastError":' .. jstr(val(d.lastError)) .. '}'
end

-- Keeps the webhook's score in rr:{t}:webhooks:due equal to the earliest of
-- its due set (absent when the set is empty or the webhook is disabled).
local function wh_due_sync(wid, enabled)
  local head = redis.call('ZRANGE', key('webhook', wid, 'due'), '0', '0', 'WITHSCORES')
  if enabled and head[2] then
    redis.call('ZADD', key('webhooks', 'due'), head[2], wid)
  else
    redis.call('ZREM', key('webhooks', 'due'), wid)
  end
end

-- Marks a delivery FAILED: out of the due set, into the failed index.
local function dlv_fail(wid, d)
  d.status = 'FAILED'
  d.failedAt = now_ms()
  d.nextAttemptAt = nil
  d.fm = string.format('%015d', now_ms()) .. '|' .. d.id
  redis.call('ZREM', key('webhook', wid, 'due'), d.id)
  redis.call('ZADD', key('webhook', wid, 'failed'), '0', d.fm)
  dlv_put(wid, d)
end

-- Builds the reply's next cursor: the last member when a page is full.
local function page(members, limit)
  if #members > limit then
    members[#members] = nil
    return members, members[#members]
  end
  return members, nil
end
