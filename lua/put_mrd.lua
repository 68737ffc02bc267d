--[[
  put_mrd: creates or replaces an MRD (media routing domain).

  Input:
    KEYS[1]  tenant prefix
    A[1]     mrdId
    A[2]     maxRequests (1..1000)
    A[3]     autoJoin (1 or 0)
    A[4]     wrapUp enabled (1 or 0)
    A[5]     wrapUp timeoutMs
    A[6]     blocks: JSON list of the MRDs (each existing, not this one) an
             open media of this MRD blocks, or '' for none
  Rules:
    Each MRD named in blocks lists this one in its blockers; one no longer
    named drops it. Agents holding an open media of this MRD enter or
    leave the indexes of the MRDs whose block changed, and take at once
    what a lifted block lets them.
  Output: the MRD as JSON; NOT_FOUND for an unknown MRD in blocks
  Events: AGENT_STATE_CHANGED for every agent when the MRD is new or its
          maxRequests changed (their capacity changed), or when its blocks
          changed for each agent holding an open media of it; then any
          reservations that capacity allows (TASK_STATE_CHANGED,
          AGENT_RESERVED, …)
]]
--- @include "includes/lifecycle"
return run(function()
  local id = A[1]
  local old = mrd_get(id)
  -- (A caller of the v1 arguments only sets no blocks.)
  local blocks_json = A[6] or ''
  local blocks = blocks_json ~= '' and cjson.decode(blocks_json) or {}
  for _, x in ipairs(blocks) do
    mrd_must(x)
  end
  local old_blocks = (old and old.blocks) or {}
  config_changed()
  redis.call('HSET', key('mrd', id), 'maxRequests', A[2], 'autoJoin', A[3], 'wrapUp', A[4],
    'wrapUpTimeoutMs', A[5])
  if blocks_json ~= '' then
    redis.call('HSET', key('mrd', id), 'blocks', blocks_json)
  else
    redis.call('HDEL', key('mrd', id), 'blocks')
  end
  config_add('mrds', id)
  -- The MRDs whose block by this one changes.
  local changed, now_in = {}, {}
  for _, x in ipairs(blocks) do now_in[x] = true end
  for _, x in ipairs(old_blocks) do
    if not now_in[x] then
      mrd_blockers_edit(x, id, false)
      changed[#changed + 1] = x
    end
  end
  local was_in = {}
  for _, x in ipairs(old_blocks) do was_in[x] = true end
  for _, x in ipairs(blocks) do
    if not was_in[x] then
      mrd_blockers_edit(x, id, true)
      changed[#changed + 1] = x
    end
  end
  table.sort(changed)
  -- (When the blocks last changed: the checker judges offers after it only.)
  if #changed > 0 then redis.call('HSET', key('mrd', id), 'blocksAt', now_ms_str()) end
  config_changed()
  local m = mrd_get(id)
  if #changed > 0 then
    local ids = redis.call('SMEMBERS', key('agents'))
    table.sort(ids)
    for _, aid in ipairs(ids) do
      local a = agent_get(aid)
      if agent_mrd_open(a, id) > 0 then
        for _, x in ipairs(changed) do agent_reindex(a, x) end
        emit_agent(a)
      end
    end
    for _, x in ipairs(changed) do route_available(x) end
  end
  if not old or old.maxRequests ~= m.maxRequests then
    local ids = redis.call('SMEMBERS', key('agents'))
    table.sort(ids)
    for _, aid in ipairs(ids) do
      local a = agent_get(aid)
      agent_mrd_hold_over(a, id)
      agent_mrd_commit(a, id)
      emit_agent(a)
    end
    route_available(id)
  end
  return mrd_json(m)
end)
