--[[
  get_position: a waiting task's place in its queue and its expected wait.
  Read-only.

  Input:  KEYS[1] tenant prefix; A[1] taskId
  Output: {"position", "ewtMs", "method"}: position 1 for the next task the
          queue hands out (routing's task_position); ewtMs the expected wait
          from now (ewt.lua), null when the queue has too little history or
          while the task waits for its preferred agent only (method
          PREFERRED_AGENT); NOT_FOUND for an unknown task;
          INVALID_TRANSITION for a task that does not wait (media not
          QUEUED)
  Events: none
]]
--- @include "includes/routing"
return run(function()
  local t = task_must(A[1])
  local position = task_position(t)
  if not position then
    local m = media_pending(t, 'RESERVED') or media_pending(t, 'ACTIVE') or t.media[1]
    fail('INVALID_TRANSITION', 'task ' .. t.id .. ' is not waiting in a queue (' .. t.state .. ', media ' ..
      m.state .. ')')
  end
  local ms, method = nil, EWT_METHOD
  if t.parked == 'p' then
    method = 'PREFERRED_AGENT'
  else
    ms = ewt_waiting(t, queue_get(t.queueId), position, wait_member(t), istr(wait_score(t)))
  end
  return '{"position":' .. jint(position) .. ',"ewtMs":' .. jint(ms) .. ',"method":"' .. method .. '"}'
end)
