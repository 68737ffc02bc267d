--[[
  list_config: one page of the tenant's MRDs, queues or agents, in id order
  (byte-wise), each in the shape its single read returns (queues with their
  live statistics).

  Input:
    KEYS[1]  tenant prefix
    A[1]     kind: 'mrds', 'queues' or 'agents'
    A[2]     limit (1..1000)
    A[3]     after: the last id of the previous page, or '' for the first
  Output: {"<kind>": [...], "next": <the page's last id, or null when no
          id follows it>}
  Events: none (the first list of config written before the id index
          existed completes the index; see index_complete)
]]
--- @include "includes/agent"
return run(function()
  local kind, limit, after = A[1], tonumber(A[2]), A[3]
  if kind ~= 'mrds' and kind ~= 'queues' and kind ~= 'agents' then
    fail('VALIDATION_ERROR', 'kind must be mrds, queues or agents')
  end
  local from = '-'
  if after ~= '' then from = '(' .. after end
  local ids = redis.call('ZRANGEBYLEX', index_complete(kind), from, '+', 'LIMIT', '0', istr(limit + 1))
  local nxt = nil
  if #ids > limit then
    ids[#ids] = nil
    nxt = ids[#ids]
  end
  local out = {}
  for _, id in ipairs(ids) do
    if kind == 'mrds' then
      local m = mrd_get(id)
      if m then out[#out + 1] = mrd_json(m) end
    elseif kind == 'queues' then
      local q = queue_get(id)
      if q then out[#out + 1] = queue_json(q, queue_stats(q)) end
    else
      local a = agent_get(id)
      if a then out[#out + 1] = agent_json(a) end
    end
  end
  return '{"' .. kind .. '":' .. jlist(out) .. ',"next":' .. jid(nxt) .. '}'
end)
