--[[
  pull_task: PULL mode and OUTBOUND: the agent is known, no routing.

  Input:
    KEYS[1]  tenant prefix
    A[1]     agentId
    A[2]     conversationId
    A[3]     mrdId
    A[4]     direction: INBOUND or OUTBOUND
    A[5]     requestSession, a JSON object
    A[6]     metadata, a JSON object
  Rules:
    No live task of the agent for the conversation on that MRD: a new task
    (mode AGENT, media ACTIVE), counted in the agent's slots -> 201.
    One exists: the MRD is autoJoin -> that task as it is (200); else a new
    ACTIVE media is added to it and counted -> 200.
    The agent holds a live task of the conversation on that MRD that has no
    ACTIVE media (RESERVED, not yet accepted; or in WRAP_UP): nothing to
    join, and a second task would give it two for one conversation ->
    INVALID_TRANSITION.
  Output: {status, task JSON}; NOT_FOUND for an unknown agent or MRD;
          INVALID_TRANSITION when the agent is logged out or at capacity,
          or holds the conversation in a task it cannot join
  Events: TASK_STATE_CHANGED (CREATED, or MEDIA_ADDED with mediaStateChanges
          [new media]),
          AGENT_STATE_CHANGED; none when autoJoin returns the task
]]
--- @include "includes/lifecycle"
return run(function()
  local a = agent_must(A[1])
  local cid, mrd_id = A[2], A[3]
  local mrd = mrd_must(mrd_id)
  if a.f.st == 'LOGOUT' then fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' is logged out') end
  local t = agent_conversation_task(a, cid, mrd_id)
  if not t then
    for _, tid in ipairs(redis.call('SMEMBERS', key('agent', a.id, 'tasks'))) do
      local o = task_get(tid)
      if o and o.conversationId == cid and o.mrdId == mrd_id then
        fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' holds conversation ' .. cid .. ' in task ' ..
          o.id .. ' (' .. o.state .. ', media ' .. o.media[1].state .. '), which it cannot join')
      end
    end
  end
  if t and mrd.autoJoin then return {200, task_json(t)} end
  if agent_mrd_count(a, mrd_id) >= agent_max(a, mrd_id) then
    fail('INVALID_TRANSITION', 'agent ' .. a.id .. ' is at capacity on mrd ' .. mrd_id)
  end
  local status, m = 200, nil
  if t then
    m = {id = 'm-' .. istr(next_seq()), mrdId = mrd_id, state = 'ACTIVE', enqueueTime = now_ms_str(), session = A[5]}
    t.media[#t.media + 1] = m
  else
    status = 201
    t = task_new({conversationId = cid, direction = A[4], mode = 'AGENT', mrdId = mrd_id,
      metadata = A[6], session = A[5], mediaState = 'ACTIVE'})
    t.assignedTo = a.id
    m = t.media[1]
    redis.call('SADD', key('agent', a.id, 'tasks'), t.id)
  end
  m.answerTime = now_ms_str()
  task_save(t)
  emit_task(t, status == 201, {m.id}, status == 201 and 'CREATED' or 'MEDIA_ADDED')
  agent_mrd_count_add(a, mrd_id, 1)
  emit_agent(a)
  return {status, task_json(t)}
end)
