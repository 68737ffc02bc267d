--[[
  get_routing: explains a task's routing: why it still waits, or why it went
  to its agent. Read-only.

  Input:  KEYS[1] tenant prefix; A[1] taskId
  Output: {"taskId", "state", "mediaState", "queueId", "step", "nextStepAt",
          "position", "candidates": [{"agentId", "firstStep", "eligibleNow",
          "available", "reason"}]}; NOT_FOUND for an unknown task.
          position: 1-based among the queue's waiting tasks (null when the
          task does not wait). candidates: the preferred agent first, then
          the queue's members by id. firstStep: the agent's first step in a
          queue with steps (null without steps, for a non-member, or when no
          step matches). reason, the first that applies:
            LOGGED_OUT, MADE_THE_TRANSFER, HOLDS_CONVERSATION (another live
            task of the conversation on the MRD), PREFERRED_AGENT_ONLY (the
            window of another agent is open), NO_MATCHING_STEP (no step
            matches, or not a member once the window ended), STEP_NOT_REACHED,
            NOT_READY, BLOCKED (an open media of an MRD that blocks the
            task's MRD), AT_CAPACITY, else AVAILABLE.
  Events: none
]]
--- @include "includes/routing"

return run(function()
  local t = task_must(A[1])
  local q = t.queueId and queue_get(t.queueId)
  local m = media_pending(t, 'QUEUED') or media_pending(t, 'RESERVED') or media_pending(t, 'ACTIVE') or t.media[1]
  local position = task_position(t)
  -- Agents of the conversation on the MRD through another live task.
  local holders = {}
  for _, id in ipairs(conversation_ids(t.conversationId)) do
    if id ~= t.id and task_is_live(id) then
      local o = task_get(id)
      if o and o.assignedTo and o.mrdId == t.mrdId then holders[o.assignedTo] = true end
    end
  end
  local window = t.pref and (t.parked == 'p' or (m.state == 'QUEUED' and pref_window_open(t)))
  local ids, seen = {}, {}
  if t.pref then
    ids[1] = t.pref
    seen[t.pref] = true
  end
  local members = {}
  if q then
    members = redis.call('SMEMBERS', key('q', q.id, 'members'))
    table.sort(members)
  end
  local is_member = {}
  for _, id in ipairs(members) do
    is_member[id] = true
    if not seen[id] then ids[#ids + 1] = id end
  end
  local step = tonumber(t.step)
  local out = {}
  for _, id in ipairs(ids) do
    local a = agent_get(id)
    if a then
      local fs
      if q and q.nsteps and is_member[id] then
        fs = tonumber(a.f['fs|' .. q.id] or '0')
        if fs == 0 then fs = nil end
      end
      local preferred = window and id == t.pref
      local matches = is_member[id] and (not (q and q.nsteps) or fs ~= nil)
      local reached = matches and (fs == nil or step == nil or fs <= step)
      local eligible = preferred or (not window and reached) or false
      local available = agent_available(a, t.mrdId)
      local reason
      if a.f.st == 'LOGOUT' then reason = 'LOGGED_OUT'
      elseif t.exclude == id then reason = 'MADE_THE_TRANSFER'
      elseif holders[id] then reason = 'HOLDS_CONVERSATION'
      elseif window and not preferred then reason = 'PREFERRED_AGENT_ONLY'
      elseif not preferred and not matches then reason = 'NO_MATCHING_STEP'
      elseif not preferred and not reached then reason = 'STEP_NOT_REACHED'
      elseif agent_mrd_base(a, t.mrdId) ~= 'READY' then reason = 'NOT_READY'
      elseif #agent_mrd_blocked_by(a, t.mrdId) > 0 then reason = 'BLOCKED'
      elseif not available then reason = 'AT_CAPACITY'
      else reason = 'AVAILABLE' end
      out[#out + 1] = '{"agentId":' .. jid(id) .. ',"firstStep":' .. jint(fs) .. ',"eligibleNow":' ..
        jbool(eligible) .. ',"available":' .. jbool(available) .. ',"reason":"' .. reason .. '"}'
    end
  end
  return '{"taskId":' .. jid(t.id) .. ',"state":' .. jid(t.state) .. ',"mediaState":' .. jid(m.state) ..
    ',"queueId":' .. jid(t.queueId) .. ',"step":' .. jint(t.step) .. ',"nextStepAt":' ..
    jint(t.nextStepAt) .. ',"position":' .. jint(position) .. ',"candidates":' .. jlist(out) .. '}'
end)
