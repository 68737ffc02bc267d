--[[
  set_task_state: WRAP_UP or CLOSED asked for a task.

  Input:
    KEYS[1]  tenant prefix
    A[1]     taskId
    A[2]     name: WRAP_UP or CLOSED
    A[3]     reasonCode, or '' (DONE; CANCELLED for a task no agent joined)
  Rules:
    CLOSED/RONA on a reserved task is a decline: the RONA path at once.
    CLOSED ends a live task with the reason (FORCE_CLOSED, CANCELLED, …).
    WRAP_UP needs an ACTIVE task with an agent and an MRD that enables it.
  Output: the task as JSON (for a decline, the closed task); NOT_FOUND;
          INVALID_TRANSITION
  Events: TASK_STATE_CHANGED (WRAP_UP, CLOSED, or DECLINED for a decline),
          AGENT_STATE_CHANGED, and what follows (a decline's new task,
          REROUTED; the freed agent's next reservation)
]]
--- @include "includes/lifecycle"
return run(function()
  local t = task_must(A[1])
  local name, reason = A[2], nz(A[3])
  if t.state == 'CLOSED' then fail('INVALID_TRANSITION', 'task ' .. t.id .. ' is already closed') end
  if name == 'WRAP_UP' then
    local mrd = mrd_get(t.mrdId)
    if t.state ~= 'ACTIVE' or not media_pending(t, 'ACTIVE') then
      fail('INVALID_TRANSITION', 'task ' .. t.id .. ' has no active media to wrap up')
    end
    if not (mrd and mrd.wrapUp) then
      fail('INVALID_TRANSITION', 'wrap-up is not enabled on mrd ' .. t.mrdId)
    end
    agent_settle(task_wrap(t, reason or 'DONE', mrd.wrapUpTimeoutMs, 'WRAP_UP'), t.mrdId)
  elseif reason == 'RONA' then
    if t.state ~= 'ACTIVE' or not media_pending(t, 'RESERVED') then
      fail('INVALID_TRANSITION', 'task ' .. t.id .. ' is not reserved to an agent')
    end
    task_reroute(t, 'RONA', 'DECLINED')
  else
    if not reason then
      reason = 'DONE'
      if t.state == 'ACTIVE' and not media_pending(t, 'ACTIVE') then reason = 'CANCELLED' end
    end
    task_end(t, reason, 'CLOSED')
  end
  return task_json(t)
end)
