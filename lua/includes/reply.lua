--[[
  reply: Redis replies as Lua tables. No keys, no state: any script may
  include it, tenant scripts (through agent) and read_stream alike.
]]
-- A flat field, value, field, value … reply (HGETALL, XINFO) as a table.
local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
