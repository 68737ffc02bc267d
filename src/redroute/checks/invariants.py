"""The invariants of docs/design.md, checked against a tenant's keys in Redis.

Read at a quiet moment (no script running in between matters for tests;
`redroute check` reads the same way on a live system, so a violation it
reports there is worth a second look before acting on it).

1. No agent holds more open medias (plus WRAP_UP tasks) on an MRD than its
   maxRequests (unless the limit was lowered under what it held, until those
   end), and its stored count is exactly that number: every media
   that is not CLOSED counts, whatever its state, and a task that is no
   longer ACTIVE (WRAP_UP, CLOSED) has no open media left. An agent never
   holds two live tasks of the same conversation and MRD (a transfer or a
   conference never leaves two for one agent's side of a conversation).
2. A live task is in exactly one place: one queue's waiting set, or with one
   agent; a closed task is in none and has no deadline.
3. Every change produced its events: the last event that carries each task
   and agent equals its current state.
4. Nothing is lost or stuck: every live task has the deadline that ends it
   (TTL while QUEUED, RONA while RESERVED, wrap-up in WRAP_UP), and with
   `overdue_ms` none of those deadlines is older than that.
5. Nothing waits while an agent could take it: no agent that is available
   on a queue's MRD (logged in, READY there, below maxRequests) is left
   beside a task waiting in that queue that it may be offered (not one it
   transferred away, nor one of a conversation it already holds on that
   MRD); and each queue's availability index lists exactly its available
   agents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine
from ..keys import task_match, timer_member, timer_task_id, waiting_task_id


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    tasks_live: int = 0
    tasks_closed: int = 0
    agents: int = 0

    def add(self, msg: str) -> None:
        self.violations.append(msg)

    @property
    def ok(self) -> bool:
        return not self.violations


async def _scan(redis: Any, pattern: str) -> list[str]:
    return [k async for k in redis.scan_iter(match=pattern, count=1000)]


def _available(agent: dict[str, str], mrd: str, mrds: dict[str, dict[str, str]]) -> bool:
    """agent_available of agent.lua, on the agent's hash."""
    base = agent.get(f"{mrd}|st") or ("LOGOUT" if agent.get("st") == "LOGOUT" else "NOT_READY")
    return (agent.get("st") != "LOGOUT" and base == "READY"
            and int(agent.get(f"{mrd}|n", 0)) < _agent_max(agent, mrd, mrds))


def _agent_max(agent: dict[str, str], mrd: str, mrds: dict[str, dict[str, str]]) -> int:
    overrides = json.loads(agent.get("max") or "{}")
    if mrd in overrides:
        return int(overrides[mrd])
    return int(mrds[mrd]["maxRequests"]) if mrd in mrds else 1


async def check(engine: Engine, *, overdue_ms: int | None = None, events: bool = True) -> Report:
    r, k = engine.redis, engine.keys
    rep = Report()

    mrds = {m: await r.hgetall(k.mrd(m)) for m in await r.smembers(k.mrds)}
    queues = {q: await r.hgetall(k.queue(q)) for q in await r.smembers(k.queues)}
    agent_ids = await r.smembers(k.agents)
    agents = {a: await r.hgetall(k.agent(a)) for a in agent_ids}
    agent_tasks = {a: await r.smembers(k.agent_tasks(a)) for a in agent_ids}
    live = await r.smembers(k.live)
    timers = dict(await r.zrange(k.timers, 0, -1, withscores=True))
    waiting = {q: {waiting_task_id(m) for m in await r.zrange(k.q_waiting(q), 0, -1)}
               for q in queues}
    rep.agents = len(agents)

    tasks: dict[str, dict[str, Any]] = {}
    for key in await _scan(r, task_match(k)):
        raw = await r.get(key)
        if raw:
            t = json.loads(raw)
            tasks[t["id"]] = t
    now = (await engine.fire_due(0)).now if overdue_ms is not None else 0

    # 1. capacity
    held: dict[tuple[str, str], int] = {}
    sides: dict[tuple[str, str, str], list[str]] = {}
    for t in tasks.values():
        open_media = [m["id"] for m in t["media"] if m["state"] != "CLOSED"]
        if t["state"] != "ACTIVE" and open_media:
            rep.add(f"task {t['id']} is {t['state']} with open medias {open_media}")
        if t["state"] == "CLOSED" or not t.get("assignedTo"):
            continue
        # Every media that is not CLOSED holds a slot (QUEUED included: an
        # assigned task must not hide one from the count).
        n = len(open_media) + (1 if t["state"] == "WRAP_UP" else 0)
        key = (t["assignedTo"], t["mrdId"])
        held[key] = held.get(key, 0) + n
        sides.setdefault((t["assignedTo"], t["conversationId"], t["mrdId"]), []).append(t["id"])
    for (aid, cid, mrd), tids in sorted(sides.items()):
        if len(tids) > 1:
            rep.add(f"agent {aid} holds {len(tids)} live tasks {sorted(tids)} of conversation {cid} on mrd {mrd}")
    for aid, a in agents.items():
        for mrd in mrds:
            stored = int(a.get(f"{mrd}|n", 0))
            real = held.get((aid, mrd), 0)
            if stored != real:
                rep.add(f"agent {aid} mrd {mrd}: stored count {stored}, open medias {real}")
            # Above the limit only by a configuration change lowering it
            # under what the agent held (m|ov, see mrd_hold_over).
            if real > _agent_max(a, mrd, mrds) and real > int(a.get(f"{mrd}|ov") or 0):
                rep.add(f"agent {aid} mrd {mrd}: {real} open medias over maxRequests")

    # 2. one place per live task, none for a closed one
    in_waiting: dict[str, list[str]] = {}
    for q, members in waiting.items():
        for tid in members:
            in_waiting.setdefault(tid, []).append(q)
    with_agent: dict[str, list[str]] = {}
    for aid, tids in agent_tasks.items():
        for tid in tids:
            with_agent.setdefault(tid, []).append(aid)
    for tid in live:
        if tid not in tasks:
            rep.add(f"live task {tid} has no document")
    for tid, t in tasks.items():
        places = [f"queue {q}" for q in in_waiting.get(tid, [])]
        places += [f"agent {a}" for a in with_agent.get(tid, [])]
        states = {m["state"] for m in t["media"]}
        task_timers = [m for m in timers if timer_task_id(m) == tid]
        if t["state"] == "CLOSED":
            rep.tasks_closed += 1
            if places or tid in live or task_timers:
                rep.add(f"closed task {tid} still in {places or task_timers or 'the live set'}")
            continue
        rep.tasks_live += 1
        if tid not in live:
            rep.add(f"task {tid} is {t['state']} but not in the live set")
        if "QUEUED" in states:
            expected = [f"queue {t.get('queueId')}"]
            deadline = timer_member("ttl", tid)
        elif "RESERVED" in states:
            expected = [f"agent {t['assignedTo']}"]
            m = next(m for m in t["media"] if m["state"] == "RESERVED")
            deadline = timer_member("rona", tid, m["id"])
        else:
            expected = [f"agent {t['assignedTo']}"]
            deadline = timer_member("wrap", tid) if t["state"] == "WRAP_UP" else None
        if places != expected:
            rep.add(f"task {tid} ({t['state']}, medias {sorted(states)}) is in {places}, expected {expected}")
        # 4. the deadline that ends it
        if deadline and deadline not in timers:
            rep.add(f"task {tid} has no deadline {deadline}")
        if deadline and overdue_ms is not None and deadline in timers and now - timers[deadline] > overdue_ms:
            rep.add(f"task {tid}: deadline {deadline} overdue by {now - timers[deadline]:.0f} ms")
        if t["state"] == "ACTIVE" and not states - {"CLOSED"}:
            rep.add(f"task {tid} is ACTIVE with every media closed")
    for member in timers:
        tid = timer_task_id(member)
        if tid not in tasks:
            rep.add(f"deadline {member} for a task that does not exist")

    # 5. nothing waits while an agent could take it
    holders: dict[tuple[str, str], set[str]] = {}  # (conversation, MRD) -> agents with a live task
    for o in tasks.values():
        if o["state"] != "CLOSED" and o.get("assignedTo"):
            holders.setdefault((o["conversationId"], o["mrdId"]), set()).add(o["assignedTo"])
    for q, cfg in sorted(queues.items()):
        mrd = cfg.get("mrdId", "")
        members = sorted(a for a, h in agents.items() if q in json.loads(h.get("queues") or "[]"))
        available = {a for a in members if _available(agents[a], mrd, mrds)}
        indexed = set(await r.zrange(k.q_avail(q), 0, -1))
        if indexed != available:
            rep.add(f"queue {q}: availability index {sorted(indexed)}, available agents {sorted(available)}")
        for tid in sorted(waiting.get(q, ())):
            t = tasks.get(tid)
            if t is None:
                continue
            held_by = holders.get((t["conversationId"], mrd), set())
            takers = sorted(a for a in available if a != t.get("exclude") and a not in held_by)
            if takers:
                rep.add(f"task {tid} waits in queue {q} while {takers} could take it")

    # 3. the stream carries every change
    if events:
        last_task: dict[str, dict[str, Any]] = {}
        last_agent: dict[str, dict[str, Any]] = {}
        for ev in await engine.events():
            if ev.task is not None:
                last_task[ev.task["id"]] = ev.task
            if ev.agent is not None:
                last_agent[ev.agent["id"]] = ev.agent
        for tid in tasks:
            current = (await engine.get_task(tid)).to_dict()
            if last_task.get(tid) != current:
                rep.add(f"task {tid}: last event {last_task.get(tid)} differs from state {current}")
        for aid in agents:
            current = (await engine.get_agent(aid)).to_dict()
            if last_agent.get(aid) != current:
                rep.add(f"agent {aid}: last event differs from state {current}")
    return rep
