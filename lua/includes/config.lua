--- @include "base"
--[[
  config: MRDs and queues, read once per script.

  rr:{t}:mrd:<id>    hash maxRequests, autoJoin, wrapUp, wrapUpTimeoutMs
  rr:{t}:mrds        set of MRD ids
  rr:{t}:queue:<id>  hash mrdId, agentRequestTtlMs, agentSlaMs,
                     agentSelectionPolicy, serviceLevelThresholdMs
  rr:{t}:queues      set of queue ids
]]
local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local MRD_CACHE = {}
local function mrd_get(id)
  if id == nil then return nil end
  local m = MRD_CACHE[id]
  if m == nil then
    local h = hash_table(redis.call('HGETALL', key('mrd', id)))
    if h.maxRequests == nil then
      m = false
    else
      m = {id = id, maxRequests = tonumber(h.maxRequests), autoJoin = h.autoJoin == '1',
           wrapUp = h.wrapUp == '1', wrapUpTimeoutMs = tonumber(h.wrapUpTimeoutMs)}
    end
    MRD_CACHE[id] = m
  end
  return m or nil
end

local function mrd_json(m)
  return '{"id":' .. jid(m.id) .. ',"maxRequests":' .. jint(m.maxRequests) ..
    ',"autoJoin":' .. jbool(m.autoJoin) .. ',"wrapUp":{"enabled":' .. jbool(m.wrapUp) ..
    ',"timeoutMs":' .. jint(m.wrapUpTimeoutMs) .. '}}'
end

local QUEUE_CACHE = {}
local function queue_get(id)
  if id == nil then return nil end
  local q = QUEUE_CACHE[id]
  if q == nil then
    local h = hash_table(redis.call('HGETALL', key('queue', id)))
    if h.mrdId == nil then
      q = false
    else
      q = {id = id, mrdId = h.mrdId, agentRequestTtlMs = tonumber(h.agentRequestTtlMs),
           agentSlaMs = tonumber(h.agentSlaMs), agentSelectionPolicy = h.agentSelectionPolicy,
           serviceLevelThresholdMs = tonumber(h.serviceLevelThresholdMs)}
    end
    QUEUE_CACHE[id] = q
  end
  return q or nil
end

local function queue_json(q, extra)
  return '{"id":' .. jid(q.id) .. ',"mrdId":' .. jid(q.mrdId) ..
    ',"agentRequestTtlMs":' .. jint(q.agentRequestTtlMs) .. ',"agentSlaMs":' .. jint(q.agentSlaMs) ..
    ',"agentSelectionPolicy":' .. jid(q.agentSelectionPolicy) ..
    ',"serviceLevelThresholdMs":' .. jint(q.serviceLevelThresholdMs) .. (extra or '') .. '}'
end
