--[[
  accept_task: the reserved agent accepts: media RESERVED -> ACTIVE.

  Input:
    KEYS[1]  tenant prefix
    A[1]     taskId
    A[2]     mediaId
    A[3]     agentId, or '' for the agent it is reserved to
  Output: the task as JSON; NOT_FOUND for an unknown task or media;
          INVALID_TRANSITION when the media is not RESERVED or is reserved
          to another agent
  Events: TASK_STATE_CHANGED (ACCEPTED, mediaStateChanges [mediaId])
]]
--- @include "includes/lifecycle"
return run(function()
  local t = task_must(A[1])
  local m = media_find(t, A[2])
  if not m then fail('NOT_FOUND', 'media ' .. A[2] .. ' is not in task ' .. t.id) end
  if m.state ~= 'RESERVED' or t.state ~= 'ACTIVE' then
    fail('INVALID_TRANSITION', 'media ' .. m.id .. ' is ' .. m.state .. ', not RESERVED')
  end
  if A[3] ~= '' and A[3] ~= t.assignedTo then
    fail('INVALID_TRANSITION', 'task ' .. t.id .. ' is reserved to another agent')
  end
  timer_del('rona|' .. t.id .. '|' .. m.id)
  local was = stats_holding(t)
  m.state = 'ACTIVE'
  m.answerTime = now_ms_str()
  ewt_answered(t)
  stats_hold_moved(t, was)
  task_save(t)
  emit_task(t, false, {m.id}, 'ACCEPTED')
  return task_json(t)
end)
