--[[
  set_task_priority: re-prioritises a waiting task.

  Input:
    KEYS[1]  tenant prefix
    A[1]     taskId
    A[2]     priority (0..100)
  Rules:
    Only a task waiting in its queue (media QUEUED, in the queue's waiting
    or preferred sets) changes: it takes the place its new priority gives it
    (its step, deadlines and preferred window stay). No agent could take it
    before, and none can now: eligibility does not depend on priority.
  Output: the task as JSON; NOT_FOUND; INVALID_TRANSITION for a task that is
          not waiting
  Events: TASK_STATE_CHANGED (transition REPRIORITIZED)
]]
--- @include "includes/lifecycle"
return run(function()
  local t = task_must(A[1])
  if t.state ~= 'ACTIVE' or not t.parked then
    fail('INVALID_TRANSITION', 'task ' .. t.id .. ' is not waiting in a queue')
  end
  unqueue(t)
  t.priority = A[2]
  task_step(t, queue_get(t.queueId))
  enqueue(t)
  emit_task(t, false, {}, 'REPRIORITIZED')
  return task_json(t)
end)
