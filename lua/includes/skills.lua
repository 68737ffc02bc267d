--- @include "config"
--[[
  skills: queue steps (precision routing). Owner of the compiled
  expressions' evaluation and of a request's step by age.

  Fields of a queue's hash (config.lua) when it has steps:
    steps       the steps as the API shows them (JSON list)
    stepAt      JSON list of each step's start as an offset from the
                request's enqueueTime: [0, t1, t1+t2, …]
    stepCode    JSON list of each step's compiled expression (postfix, see
                redroute/expressions.py, which parsed and checked it)
    skillNames  JSON list of the attribute names used in the steps
  Expressions are evaluated here only when an agent or a queue is written
  (put_agent, put_queue), never per routing decision.
]]

-- A bare name: true, a number > 0 or a non-empty string.
local function expr_truthy(v)
  local t = type(v)
  if t == 'boolean' then return v end
  if t == 'number' then return v > 0 end
  if t == 'string' then return v ~= '' end
  return false
end

-- Equality of same-typed values only (1 is not true, "1" is not 1).
local function expr_same(a, b)
  return type(a) == type(b) and (type(a) == 'number' or type(a) == 'string' or type(a) == 'boolean')
    and a == b
end

local function expr_compare(op, a, v)
  if a == nil then return false end
  if op == '==' then return expr_same(a, v) end
  if op == '!=' then return not expr_same(a, v) end
  if type(a) ~= 'number' or type(v) ~= 'number' then return false end
  if op == '>=' then return a >= v end
  if op == '>' then return a > v end
  if op == '<=' then return a <= v end
  return a < v
end

-- Evaluates a compiled expression (postfix) against decoded attributes
-- (cjson.null counts as missing).
local function expr_eval(code, attrs)
  local stack, n = {}, 0
  for _, ins in ipairs(code) do
    local op = ins[1]
    if op == 'NOT' then
      stack[n] = not stack[n]
    elseif op == 'AND' or op == 'OR' then
      local b, a = stack[n], stack[n - 1]
      n = n - 1
      if op == 'AND' then stack[n] = a and b else stack[n] = a or b end
    else
      local v = attrs[ins[2]]
      if v == cjson.null then v = nil end
      n = n + 1
      if op == 'v' then
        stack[n] = expr_truthy(v)
      elseif op == 'IN' then
        local hit = false
        if v ~= nil then
          for _, x in ipairs(ins[3]) do
            if expr_same(v, x) then hit = true break end
          end
        end
        stack[n] = hit
      else
        stack[n] = expr_compare(op, v, ins[3])
      end
    end
  end
  if n == 0 then return true end
  return stack[1]
end

-- The queue's compiled steps and skill names, decoded once per script.
local function queue_code(q)
  if q.code == nil then
    local h = redis.call('HMGET', key('queue', q.id), 'stepCode', 'skillNames')
    q.code = cjson.decode(h[1] or '[]')
    q.skillNames = cjson.decode(h[2] or '[]')
  end
  return q.code
end

-- The step a request enqueued at enq has reached at now, and when the next
-- one starts (nil at the last step).
local function step_by_age(q, enq, now)
  local age, k = now - tonumber(enq), 1
  while q.stepAt[k + 1] and age >= q.stepAt[k + 1] do k = k + 1 end
  local nxt = q.stepAt[k + 1]
  return k, nxt and (tonumber(enq) + nxt) or nil
end
