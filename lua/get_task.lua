--[[
  get_task: reads a task (live, or closed within the retention period).

  Input:  KEYS[1] tenant prefix; A[1] taskId
  Output: the task as JSON, or error NOT_FOUND
  Events: none
]]
--- @include "includes/task"
return run(function()
  return task_json(task_must(A[1]))
end)
