--[[
  close_media: one media of a task ends (its session is no longer active).
  A task whose last media closes goes WRAP_UP when its MRD enables wrap-up
  and it was answered, else CLOSED: DONE when answered, CANCELLED when the
  customer left before any agent joined.

  Input:
    KEYS[1]  tenant prefix
    A[1]     taskId
    A[2]     mediaId
  Output: the task as JSON; NOT_FOUND; INVALID_TRANSITION when the task or
          media is already closed
  Events: TASK_STATE_CHANGED (MEDIA_CLOSED while another media stays open,
          else WRAP_UP or CLOSED), AGENT_STATE_CHANGED for the freed slot,
          then any reservation the agent takes
]]
--- @include "includes/lifecycle"
return run(function()
  local t = task_must(A[1])
  local m = media_find(t, A[2])
  if not m then fail('NOT_FOUND', 'media ' .. A[2] .. ' is not in task ' .. t.id) end
  if m.state == 'CLOSED' or t.state ~= 'ACTIVE' then
    fail('INVALID_TRANSITION', 'media ' .. m.id .. ' of task ' .. t.id .. ' is already closed')
  end
  if m.state ~= 'ACTIVE' then
    task_end(t, 'CANCELLED', 'CLOSED')
  elseif media_open_count(t) > 1 then
    m.state = 'CLOSED'
    task_save(t)
    emit_task(t, false, {m.id}, 'MEDIA_CLOSED')
    local a = agent_get(t.assignedTo)
    agent_mrd_count_add(a, t.mrdId, -1)
    agent_settle(a, t.mrdId)
  else
    task_finish(t, 'DONE')
  end
  return task_json(t)
end)
