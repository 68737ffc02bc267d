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
6. Steps (a queue with steps): each member's stored first step is the
   smallest step whose expression its attributes satisfy; every (queue,
   step) index lists exactly the members whose first step it is and that
   are available; a waiting task is in the waiting set of its step and no
   agent available there whose first step is <= that step may take it
   (part of 5); every waiting task with a later step has its step
   deadline at nextStepAt.
7. Preferred agent: a task waiting for its preferred agent only is in that
   agent's preferred set and the queue's, not in the waiting sets, has its
   window deadline at preferredUntil, and its agent cannot take it now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine
from ..expressions import evaluate
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


def _first_steps(rep: Report, q: str, cfg: dict[str, str],
                 members: dict[str, dict[str, str]]) -> dict[str, int] | None:
    """Each member's first step in queue q (0: none), evaluated here from
    the stored compiled steps and compared with what the engine stored; None
    for a queue without steps."""
    if "stepCode" not in cfg:
        return None
    code = json.loads(cfg["stepCode"])
    out = {}
    for a, h in members.items():
        attrs = json.loads(h.get("attrs") or "{}")
        fs = next((k for k, c in enumerate(code, 1) if evaluate(c, attrs)), 0)
        stored = int(h.get(f"fs|{q}") or -1)
        if stored != fs:
            rep.add(f"agent {a}: first step {stored} in queue {q}, its attributes give {fs}")
        out[a] = fs
    return out


def _check_waiting(rep: Report, t: dict[str, Any], timers: dict[str, float],
                   by_step: dict[tuple[str, int], set[str]], preferred: dict[str, set[str]],
                   agent_pref: dict[str, set[str]]) -> None:
    """A QUEUED task's place by step or preferred agent, and its deadlines."""
    tid, q = t["id"], t.get("queueId")
    steps = [k for (qq, k), ids in by_step.items() if qq == q and tid in ids]
    if t.get("parked") == "p":
        a = t.get("pref")
        if steps or tid not in preferred.get(q, set()) or tid not in agent_pref.get(a, set()):
            rep.add(f"task {tid} waits for agent {a} only but is in step sets {steps} / preferred sets")
        if timers.get(f"pref|{tid}") != float(t.get("prefUntil") or -1):
            rep.add(f"task {tid} waits for its preferred agent without its window deadline")
        return
    expected = [int(t["step"])] if t.get("step") else []
    if steps != expected:
        rep.add(f"task {tid} at step {t.get('step')} is in the waiting sets of steps {steps}")
    if t.get("nextStepAt") and timers.get(f"step|{tid}") != float(t["nextStepAt"]):
        rep.add(f"task {tid} has a later step at {t['nextStepAt']} without its step deadline")
    if t.get("step") and t.get("steps") and int(t["step"]) < int(t["steps"]) and not t.get("nextStepAt"):
        rep.add(f"task {tid} waits at step {t['step']} of {t['steps']} with no next step")


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
    preferred = {q: {waiting_task_id(m) for m in await r.zrange(k.q_pref(q), 0, -1)}
                 for q in queues}
    by_step = {(q, n): {waiting_task_id(m) for m in await r.zrange(k.q_waiting_step(q, n), 0, -1)}
               for q in queues for n in range(1, 11)}
    agent_pref = {a: {waiting_task_id(m) for m in await r.zrange(k.agent_pref(a), 0, -1)}
                  for a in agent_ids}
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
            # under what the agent held (m|ov, see agent_mrd_hold_over).
            if real > _agent_max(a, mrd, mrds) and real > int(a.get(f"{mrd}|ov") or 0):
                rep.add(f"agent {aid} mrd {mrd}: {real} open medias over maxRequests")

    # 2. one place per live task, none for a closed one
    in_waiting: dict[str, list[str]] = {}
    for q, members in waiting.items():
        for tid in members:
            in_waiting.setdefault(tid, []).append(q)
    for q, members in preferred.items():
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
        if "QUEUED" in states:
            _check_waiting(rep, t, timers, by_step, preferred, agent_pref)
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
        # 6. first steps, and each (queue, step) index
        first = _first_steps(rep, q, cfg, {a: agents[a] for a in members})
        indexes = {0: set(await r.zrange(k.q_avail(q), 0, -1))}
        expected = {0: available if first is None else set()}
        if first is not None:
            for n in range(1, 11):
                indexes[n] = set(await r.zrange(k.q_avail_step(q, n), 0, -1))
                expected[n] = {a for a in available if first[a] == n}
        for n in sorted(indexes):
            if indexes[n] != expected[n]:
                where = f"step {n} index" if n else "availability index"
                rep.add(f"queue {q}: {where} {sorted(indexes[n])}, available agents {sorted(expected[n])}")
        for tid in sorted(waiting.get(q, ())):
            t = tasks.get(tid)
            if t is None:
                continue
            held_by = holders.get((t["conversationId"], mrd), set())
            step = int(t.get("step") or 0)
            takers = sorted(a for a in available if a != t.get("exclude") and a not in held_by
                            and (first is None or 0 < first[a] <= step))
            if takers:
                at = f" at step {step}" if first is not None else ""
                rep.add(f"task {tid} waits in queue {q}{at} while {takers} could take it")
        for tid in sorted(preferred.get(q, ())):
            t = tasks.get(tid)
            a = t and t.get("pref")
            if a in agents and _available(agents[a], t["mrdId"], mrds) and a not in holders.get(
                    (t["conversationId"], t["mrdId"]), set()):
                rep.add(f"task {tid} waits for its preferred agent {a}, who could take it")

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
