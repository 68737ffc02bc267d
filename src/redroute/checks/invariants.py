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
   and agent equals its current state; and each TASK_STATE_CHANGED's
   transition agrees with the snapshot it carries (TRANSITION_SHOWS).
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
8. Webhook deliveries are where their status says: a PENDING delivery is in
   its webhook's due set and a FAILED one in its failed index (and not due);
   those indexes hold nothing else; no delivery, due set or failed index
   outlives its webhook; and the tenant's due index lists exactly the
   enabled webhooks with a due delivery, at their earliest due time.
9. Configuration refers only to what exists: every MRD, queue and agent id
   listed has its hash and every hash is listed; each id index lists
   exactly its set (or is absent: configuration written before it
   existed); a queue's MRD exists; an agent lists only queues that exist,
   each queue's members are exactly the agents that list it, and an agent
   has no state on an MRD that does not exist; no key of a queue or agent
   outlives it.
10. Routing policies: every waiting task of a queue with overflow has its
    overflow deadline at enqueueTime + afterMs (and no other task has one),
    and (with `overdue_ms`) a task past that deadline by more is not still
    waiting in the queue; each waiting set holds each task at the score its
    queue's policy gives it (aging or strict).
11. MRD blocks: each MRD's stored blockers are the MRDs whose blocks name
    it; each agent's WRAP_UP count is exactly its WRAP_UP tasks (so its open
    medias are counted right); no agent was offered a task of an MRD it is
    blocked on (a live task of a blocked MRD reserved after a blocking media
    it still holds opened, and after the blocks last changed); and a
    blocked agent is in none of that MRD's availability indexes (part of 5,
    whose "available" includes the block).
12. Estimated wait: a task carries its request's prediction only while the
    request waits in or is offered from a queue (a QUEUED or RESERVED
    media), never once answered or closed; and a queue counts its busy
    time (its take-rate mark is set) exactly while its waiting set (of each
    step, in a queue with steps) is not empty.
13. Statistics: each queue's tally counts what it holds now (waiting tasks
    by priority and step, reserved, active); every counted minute of every
    queue (src/redroute/statistics.py)
    holds what the event stream says happened in it, field for field: the
    stream replayed with the counting rules gives the same buckets, over
    the minutes the stream covers (all of them, unless retention trimmed
    it) of the last 1440, after the queue's counting was last switched.
14. Clock: the tenant's clock never runs back: no task records a time
    (createdAt, updatedAt) later than the tenant's clock now, whether it
    is the Redis clock plus the tests' offset or a virtual clock (set_clock).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from .. import statistics
from ..engine import Engine
from ..events.model import Event
from ..expressions import LIMITS, evaluate
from ..keys import (
    failed_delivery_id,
    glob_escape,
    task_match,
    timer_member,
    timer_task_id,
    waiting_task_id,
)
from ..limits import WINDOW_MINUTES

STEPS = range(1, LIMITS.steps + 1)  # a queue's step numbers


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
            and int(agent.get(f"{mrd}|n", 0)) < _agent_max(agent, mrd, mrds)
            and not _blocked_by(agent, mrd, mrds))


def _blocked_by(agent: dict[str, str], mrd: str, mrds: dict[str, dict[str, str]]) -> list[str]:
    """The MRDs whose open medias block mrd for the agent (from the MRDs'
    blocks, not the stored blockers lists, which are checked apart)."""
    return sorted(b for b, cfg in mrds.items() if mrd in json.loads(cfg.get("blocks") or "[]")
                  and int(agent.get(f"{b}|n", 0)) - int(agent.get(f"{b}|wu", 0)) > 0)


def _wait_score(t: dict[str, Any], cfg: dict[str, str]) -> int:
    """wait_score of routing.lua: aging, or strict priority."""
    if cfg.get("priorityUnitMs"):
        return int(t["enqueueTime"]) - int(t["priority"]) * int(cfg["priorityUnitMs"])
    return (100 - int(t["priority"])) * 10**13 + int(t["enqueueTime"])


def _agent_max(agent: dict[str, str], mrd: str, mrds: dict[str, dict[str, str]]) -> int:
    overrides = json.loads(agent.get("max") or "{}")
    if mrd in overrides:
        return int(overrides[mrd])
    return int(mrds[mrd]["maxRequests"]) if mrd in mrds else 1


def _first_steps(cfg: dict[str, str], members: dict[str, dict[str, str]]) -> dict[str, int] | None:
    """Each member's first step in a queue (0: none), evaluated here from the
    stored compiled steps; None for a queue without steps."""
    if "stepCode" not in cfg:
        return None
    code = json.loads(cfg["stepCode"])
    return {a: next((k for k, c in enumerate(code, 1) if evaluate(c, json.loads(h.get("attrs") or "{}"))), 0)
            for a, h in members.items()}


@dataclass
class Snapshot:
    """A tenant's state as the checks read it, once."""

    mrds: dict[str, dict[str, str]]
    queues: dict[str, dict[str, str]]
    agents: dict[str, dict[str, str]]
    agent_tasks: dict[str, set[str]]  # agent -> its live task ids
    live: set[str]
    timers: dict[str, float]  # member -> due time
    waiting: dict[str, set[str]]  # queue -> task ids in its waiting set
    preferred: dict[str, set[str]]  # queue -> task ids waiting for a preferred agent
    by_step: dict[tuple[str, int], set[str]]  # (queue, step) -> task ids in its waiting set
    agent_pref: dict[str, set[str]]  # agent -> task ids waiting for it only
    scores: dict[str, dict[str, float]]  # queue -> task id -> its score in the waiting set
    avail: dict[tuple[str, int], set[str]]  # (queue, step or 0) -> agents in that index
    tasks: dict[str, dict[str, Any]]  # every stored task document by id
    now: int  # the tenant's clock, ms, read after the rest

    def members(self, q: str) -> list[str]:
        return sorted(a for a, h in self.agents.items() if q in json.loads(h.get("queues") or "[]"))

    def available(self, q: str) -> set[str]:
        mrd = self.queues[q].get("mrdId", "")
        return {a for a in self.members(q) if _available(self.agents[a], mrd, self.mrds)}

    def first_steps(self, q: str) -> dict[str, int] | None:
        return _first_steps(self.queues[q], {a: self.agents[a] for a in self.members(q)})

    def holders(self) -> dict[tuple[str, str], set[str]]:
        """(conversation, MRD) -> the agents holding a live task of it."""
        out: dict[tuple[str, str], set[str]] = {}
        for o in self.tasks.values():
            if o["state"] != "CLOSED" and o.get("assignedTo"):
                out.setdefault((o["conversationId"], o["mrdId"]), set()).add(o["assignedTo"])
        return out


async def _members(redis: Any, key: str) -> set[str]:
    return {waiting_task_id(m) for m in await redis.zrange(key, 0, -1)}


async def read(engine: Engine) -> Snapshot:
    r, k = engine.redis, engine.keys
    queues = {q: await r.hgetall(k.queue(q)) for q in await r.smembers(k.queues)}
    agent_ids = await r.smembers(k.agents)
    avail = {(q, 0): set(await r.zrange(k.q_avail(q), 0, -1)) for q in queues}
    for q, cfg in queues.items():
        if "stepCode" in cfg:
            avail |= {(q, n): set(await r.zrange(k.q_avail_step(q, n), 0, -1)) for n in STEPS}
    tasks: dict[str, dict[str, Any]] = {}
    for key in await _scan(r, task_match(k)):
        raw = await r.get(key)
        if raw:
            t = json.loads(raw)
            tasks[t["id"]] = t
    return Snapshot(
        mrds={m: await r.hgetall(k.mrd(m)) for m in await r.smembers(k.mrds)},
        queues=queues,
        agents={a: await r.hgetall(k.agent(a)) for a in agent_ids},
        agent_tasks={a: await r.smembers(k.agent_tasks(a)) for a in agent_ids},
        live=await r.smembers(k.live),
        timers=dict(await r.zrange(k.timers, 0, -1, withscores=True)),
        waiting={q: await _members(r, k.q_waiting(q)) for q in queues},
        preferred={q: await _members(r, k.q_pref(q)) for q in queues},
        by_step={(q, n): await _members(r, k.q_waiting_step(q, n)) for q in queues for n in STEPS},
        agent_pref={a: await _members(r, k.agent_pref(a)) for a in agent_ids},
        scores={q: {waiting_task_id(m): sc for m, sc in await r.zrange(k.q_waiting(q), 0, -1, withscores=True)}
                for q in queues},
        avail=avail,
        tasks=tasks,
        now=await engine.clock(),
    )


def _open_media(t: dict[str, Any]) -> list[str]:
    return [m["id"] for m in t["media"] if m["state"] != "CLOSED"]


def _expected(t: dict[str, Any]) -> tuple[list[str], str | None]:
    """Where a live task must be, and the deadline that ends it."""
    states = {m["state"] for m in t["media"]}
    tid = t["id"]
    if "QUEUED" in states:
        return [f"queue {t.get('queueId')}"], timer_member("ttl", tid)
    if "RESERVED" in states:
        m = next(m for m in t["media"] if m["state"] == "RESERVED")
        return [f"agent {t['assignedTo']}"], timer_member("rona", tid, m["id"])
    deadline = timer_member("wrap", tid) if t["state"] == "WRAP_UP" else None
    return [f"agent {t['assignedTo']}"], deadline


def _queued(s: Snapshot) -> list[dict[str, Any]]:
    """The live tasks with a QUEUED media."""
    return [t for t in s.tasks.values()
            if t["state"] != "CLOSED" and any(m["state"] == "QUEUED" for m in t["media"])]


def check_capacity(s: Snapshot, rep: Report) -> None:
    """1. Capacity: stored counts, maxRequests, one task per agent's side of
    a conversation, and medias consistent with their task's state."""
    held: dict[tuple[str, str], int] = {}
    sides: dict[tuple[str, str, str], list[str]] = {}
    for t in s.tasks.values():
        open_media = _open_media(t)
        if t["state"] != "ACTIVE" and open_media:
            rep.add(f"task {t['id']} is {t['state']} with open medias {open_media}")
        if t["state"] == "ACTIVE" and not open_media:
            rep.add(f"task {t['id']} is ACTIVE with every media closed")
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
    for aid, a in s.agents.items():
        for mrd in s.mrds:
            stored = int(a.get(f"{mrd}|n", 0))
            real = held.get((aid, mrd), 0)
            if stored != real:
                rep.add(f"agent {aid} mrd {mrd}: stored count {stored}, open medias {real}")
            # Above the limit only by a configuration change lowering it
            # under what the agent held (m|ov, see agent_mrd_hold_over).
            if real > _agent_max(a, mrd, s.mrds) and real > int(a.get(f"{mrd}|ov") or 0):
                rep.add(f"agent {aid} mrd {mrd}: {real} open medias over maxRequests")


def check_one_place(s: Snapshot, rep: Report) -> None:
    """2. A live task is in exactly one place (a queue's waiting or preferred
    set, or an agent); a closed task is in none and has no deadline."""
    in_waiting: dict[str, list[str]] = {}
    for sets in (s.waiting, s.preferred):
        for q, members in sets.items():
            for tid in members:
                in_waiting.setdefault(tid, []).append(q)
    with_agent: dict[str, list[str]] = {}
    for aid, tids in s.agent_tasks.items():
        for tid in tids:
            with_agent.setdefault(tid, []).append(aid)
    for tid in s.live:
        if tid not in s.tasks:
            rep.add(f"live task {tid} has no document")
    for tid, t in s.tasks.items():
        places = [f"queue {q}" for q in in_waiting.get(tid, [])]
        places += [f"agent {a}" for a in with_agent.get(tid, [])]
        if t["state"] == "CLOSED":
            task_timers = [m for m in s.timers if timer_task_id(m) == tid]
            if places or tid in s.live or task_timers:
                rep.add(f"closed task {tid} still in {places or task_timers or 'the live set'}")
            continue
        if tid not in s.live:
            rep.add(f"task {tid} is {t['state']} but not in the live set")
        expected, _ = _expected(t)
        if places != expected:
            states = {m["state"] for m in t["media"]}
            rep.add(f"task {tid} ({t['state']}, medias {sorted(states)}) is in {places}, expected {expected}")


# What a TASK_STATE_CHANGED's snapshot shows for each transition: the task's
# state (and reason), whether taskStateChanged is set, and the state of the
# medias it lists as changed (None: not checked).
TRANSITION_SHOWS: dict[str, tuple[frozenset[tuple[str, str | None]], bool | None, str | None]] = {
    "CREATED": (frozenset({("ACTIVE", None)}), True, None),
    "RESERVED": (frozenset({("ACTIVE", None)}), False, "RESERVED"),
    "ACCEPTED": (frozenset({("ACTIVE", None)}), False, "ACTIVE"),
    "DECLINED": (frozenset({("CLOSED", "RONA")}), True, "CLOSED"),
    "RONA": (frozenset({("CLOSED", "RONA")}), True, "CLOSED"),
    "REROUTED": (frozenset({("ACTIVE", None), ("CLOSED", "REROUTE")}), True, None),
    "STEP_CHANGED": (frozenset({("ACTIVE", None)}), False, None),
    "OVERFLOWED": (frozenset({("ACTIVE", None)}), False, None),
    "REPRIORITIZED": (frozenset({("ACTIVE", None)}), False, None),
    "MEDIA_ADDED": (frozenset({("ACTIVE", None)}), False, "ACTIVE"),
    "MEDIA_CLOSED": (frozenset({("ACTIVE", None)}), False, "CLOSED"),
    "WRAP_UP": (frozenset({("WRAP_UP", "*")}), True, "CLOSED"),
    "CLOSED": (frozenset({("CLOSED", "*")}), True, "CLOSED"),
    "TTL_EXPIRED": (frozenset({("CLOSED", "NO_AGENT_AVAILABLE")}), True, "CLOSED"),
    "TRANSFERRED": (frozenset({("WRAP_UP", "TRANSFERRED")}), True, "CLOSED"),
}

# Transitions that always change a media (a close from WRAP_UP changes none).
TRANSITION_LISTS_MEDIA = frozenset({"RESERVED", "ACCEPTED", "MEDIA_ADDED", "MEDIA_CLOSED", "WRAP_UP",
                                    "TRANSFERRED", "DECLINED", "RONA", "TTL_EXPIRED"})


def transition_problem(data: dict[str, Any]) -> str | None:
    """Why a TASK_STATE_CHANGED's transition disagrees with its snapshot, or
    None. Events written before named transitions carry none: not judged."""
    name = data.get("transition")
    if name is None:
        return None
    shows = TRANSITION_SHOWS.get(name)
    if shows is None:
        return f"unknown transition {name}"
    states, task_changed, media_state = shows
    t = data["task"]
    st, reason = t["state"]["name"], t["state"]["reasonCode"]
    if (st, reason) not in states and (st, "*") not in states:
        return f"{name} with the task {st}/{reason}"
    if task_changed is not None and data["taskStateChanged"] is not task_changed:
        return f"{name} with taskStateChanged {data['taskStateChanged']}"
    if media_state is not None:
        by_id = {m["id"]: m["state"] for m in t["activeMedia"]}
        wrong = [m for m in data["mediaStateChanges"] if by_id.get(m) != media_state]
        if wrong or (name in TRANSITION_LISTS_MEDIA and not data["mediaStateChanges"]):
            return f"{name} with changed medias {data['mediaStateChanges']} not all {media_state}"
    return None


async def check_events(engine: Engine, s: Snapshot, rep: Report,
                       events: list[Event] | None = None) -> None:
    """3. The stream carries every change: the last event about each task
    and agent equals its current state, and every transition agrees with
    what its event shows."""
    last_task: dict[str, dict[str, Any]] = {}
    last_agent: dict[str, dict[str, Any]] = {}
    for ev in events if events is not None else await engine.events():
        if ev.type == "TASK_STATE_CHANGED" and (why := transition_problem(ev.data)):
            rep.add(f"event {ev.id} of task {ev.task['id']}: {why}")
        if ev.task is not None:
            last_task[ev.task["id"]] = ev.task
        if ev.agent is not None:
            last_agent[ev.agent["id"]] = ev.agent
    for tid in s.tasks:
        current = (await engine.get_task(tid)).to_dict()
        if last_task.get(tid) != current:
            rep.add(f"task {tid}: last event {last_task.get(tid)} differs from state {current}")
    for aid in s.agents:
        current = (await engine.get_agent(aid)).to_dict()
        if last_agent.get(aid) != current:
            rep.add(f"agent {aid}: last event differs from state {current}")


async def _stream_trimmed(engine: Engine) -> bool:
    try:
        info = await engine.redis.xinfo_stream(engine.events_key)
    except ResponseError:  # no stream yet: nothing happened
        return False
    added = info.get("entries-added", info.get("entries_added"))
    return added is None or int(added) > int(info["length"])


async def check_tallies(engine: Engine, s: Snapshot, rep: Report) -> None:
    """13. Each queue's tally counts what it holds: its waiting tasks by
    priority and step, its tasks with a RESERVED media, and its ACTIVE
    tasks with an ACTIVE media (those counted in this queue, not in one of
    the same id since deleted)."""
    want: dict[str, dict[str, int]] = {q: {} for q in s.queues}
    for t in s.tasks.values():
        q = t.get("queueId")
        if q not in want or t["state"] != "ACTIVE":
            continue
        states = {m["state"] for m in t["media"]}
        if "QUEUED" in states:
            fields = [f"p{t['priority']}"] + ([f"s{t['step']}"] if t.get("step") else [])
        elif t.get("tq") != s.queues[q].get("gen"):
            fields = []  # counted in a queue of this id since deleted
        else:
            fields = ["r"] if "RESERVED" in states else ["a"] if "ACTIVE" in states else []
        for f in fields:
            want[q][f] = want[q].get(f, 0) + 1
    for q, expected in want.items():
        have = {f: int(n) for f, n in (await engine.redis.hgetall(engine.keys.q_tally(q))).items() if int(n)}
        if have != expected:
            rep.add(f"queue {q}: tally {have} differs from what it holds {expected}")


async def check_statistics(engine: Engine, s: Snapshot, rep: Report, events: list[Event]) -> None:
    """13. Every counted minute agrees with the stream replayed."""
    for msg in await statistics_differences(engine, events, s.queues):
        rep.add(msg)


async def statistics_differences(engine: Engine, events: list[Event],
                                 queues: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The counted minutes that differ from the stream's events replayed
    (invariant 13; also `redroute events replay`)."""
    r, k = engine.redis, engine.keys
    if queues is None:
        queues = {q: await r.hgetall(k.queue(q)) for q in await r.smembers(k.queues)}
    replayed = statistics.replay(events)
    now_min = statistics.minute_of((await engine.fire_due(0)).now)
    first = now_min - WINDOW_MINUTES[1] + 1
    if replayed.first_minute is not None and await _stream_trimmed(engine):
        first = max(first, replayed.first_minute + 1)
    stored: dict[tuple[str, int], dict[str, str]] = {}
    hours: dict[tuple[str, int], dict[str, str]] = {}
    prefix = k.st("", "")[:-1]  # rr:{t}:st:
    for key in await _scan(r, glob_escape(prefix) + "*"):
        q, _, m = key[len(prefix):].rpartition(":")
        if m.startswith("h"):
            hours[(q, int(m[1:]))] = await r.hgetall(key)
        else:
            stored[(q, int(m))] = await r.hgetall(key)
    out: list[str] = []
    for (q, hour), summed in sorted(hours.items()):
        # (An hour whose minutes may have expired since is not judged.)
        if hour * 60 >= now_min - WINDOW_MINUTES[1] + 1:
            want = statistics.hour_sums([stored.get((q, m), {}) for m in range(hour * 60, hour * 60 + 60)])
            have = {f: int(v) for f, v in summed.items() if f != "_"}
            if have != want:
                out.append(f"statistics of queue {q}, hour {hour}: {have} is not the sum of its "
                           f"minutes {want}")
    for q, cfg in sorted(queues.items()):
        if cfg.get("statistics") == "0":
            continue
        lo = max(first, statistics.minute_of(int(cfg.get("statsSince", -statistics.MINUTE_MS))) + 1)
        minutes = {m for (x, m) in set(stored) | set(replayed.minutes) if x == q and lo <= m <= now_min}
        for m in sorted(minutes - replayed.unknown):
            out += statistics.compare_bucket(q, m, stored.get((q, m), {}), replayed.minutes.get((q, m)),
                                             int(cfg["serviceLevelThresholdMs"]))
    return out


def check_deadlines(s: Snapshot, rep: Report, overdue_ms: int | None) -> None:
    """4. Every live task has the deadline that ends it (none overdue by
    more than overdue_ms, when given), and every deadline has its task."""
    for tid, t in s.tasks.items():
        if t["state"] == "CLOSED":
            continue
        _, deadline = _expected(t)
        if deadline is None:
            continue
        if deadline not in s.timers:
            rep.add(f"task {tid} has no deadline {deadline}")
        elif overdue_ms is not None and s.now - s.timers[deadline] > overdue_ms:
            rep.add(f"task {tid}: deadline {deadline} overdue by {s.now - s.timers[deadline]:.0f} ms")
    for member in s.timers:
        tid = timer_task_id(member)
        if tid not in s.tasks:
            rep.add(f"deadline {member} for a task that does not exist")


def check_nothing_waits(s: Snapshot, rep: Report) -> None:
    """5. No task waits beside an available agent that may take it (at its
    step, for a queue with steps), and a queue without steps indexes
    exactly its available agents (one with steps: none there, see 6)."""
    holders = s.holders()
    for q, cfg in sorted(s.queues.items()):
        mrd = cfg.get("mrdId", "")
        available = s.available(q)
        first = s.first_steps(q)
        expected = available if first is None else set()
        if s.avail[(q, 0)] != expected:
            rep.add(f"queue {q}: availability index {sorted(s.avail[(q, 0)])}, available agents {sorted(expected)}")
        for tid in sorted(s.waiting.get(q, ())):
            t = s.tasks.get(tid)
            if t is None:
                continue
            held_by = holders.get((t["conversationId"], mrd), set())
            step = int(t.get("step") or 0)
            takers = sorted(a for a in available if a != t.get("exclude") and a not in held_by
                            and (first is None or 0 < first[a] <= step))
            if takers:
                at = f" at step {step}" if first is not None else ""
                rep.add(f"task {tid} waits in queue {q}{at} while {takers} could take it")


def check_steps(s: Snapshot, rep: Report) -> None:
    """6. Steps: stored first steps, each (queue, step) index, and each
    waiting task's step set and step deadline."""
    for q in sorted(s.queues):
        first = s.first_steps(q)
        if first is None:
            continue
        for a in s.members(q):
            stored = int(s.agents[a].get(f"fs|{q}") or -1)
            if stored != first[a]:
                rep.add(f"agent {a}: first step {stored} in queue {q}, its attributes give {first[a]}")
        available = s.available(q)
        for n in STEPS:
            expected = {a for a in available if first[a] == n}
            if s.avail[(q, n)] != expected:
                rep.add(f"queue {q}: step {n} index {sorted(s.avail[(q, n)])}, available agents {sorted(expected)}")
    for t in _queued(s):
        if t.get("parked") == "p":
            continue  # waits for its preferred agent: 7
        tid, q = t["id"], t.get("queueId")
        steps = [n for (qq, n), ids in s.by_step.items() if qq == q and tid in ids]
        expected = [int(t["step"])] if t.get("step") else []
        if steps != expected:
            rep.add(f"task {tid} at step {t.get('step')} is in the waiting sets of steps {steps}")
        if t.get("nextStepAt") and s.timers.get(timer_member("step", tid)) != float(t["nextStepAt"]):
            rep.add(f"task {tid} has a later step at {t['nextStepAt']} without its step deadline")
        if t.get("step") and t.get("steps") and int(t["step"]) < int(t["steps"]) and not t.get("nextStepAt"):
            rep.add(f"task {tid} waits at step {t['step']} of {t['steps']} with no next step")


def check_preferred(s: Snapshot, rep: Report) -> None:
    """7. A task waiting for its preferred agent only is in that agent's and
    the queue's preferred sets, in no step set, has its window deadline, and
    its agent cannot take it now."""
    for t in _queued(s):
        if t.get("parked") != "p":
            continue
        tid, q, a = t["id"], t.get("queueId"), t.get("pref")
        steps = [n for (qq, n), ids in s.by_step.items() if qq == q and tid in ids]
        if steps or tid not in s.preferred.get(q, set()) or tid not in s.agent_pref.get(a, set()):
            rep.add(f"task {tid} waits for agent {a} only but is in step sets {steps} / preferred sets")
        if s.timers.get(timer_member("pref", tid)) != float(t.get("prefUntil") or -1):
            rep.add(f"task {tid} waits for its preferred agent without its window deadline")
    holders = s.holders()
    for q in sorted(s.queues):
        for tid in sorted(s.preferred.get(q, ())):
            t = s.tasks.get(tid)
            a = t and t.get("pref")
            if a in s.agents and _available(s.agents[a], t["mrdId"], s.mrds) and a not in holders.get(
                    (t["conversationId"], t["mrdId"]), set()):
                rep.add(f"task {tid} waits for its preferred agent {a}, who could take it")


def check_policies(s: Snapshot, rep: Report, overdue_ms: int | None) -> None:
    """10. Overflow deadlines of waiting tasks, none overdue (with
    overdue_ms), and each waiting set's scores by its queue's policy."""
    for t in _queued(s):
        tid, cfg = t["id"], s.queues.get(t.get("queueId") or "", {})
        member = timer_member("ovf", tid)
        if not cfg.get("overflowQueueId"):
            if member in s.timers:
                rep.add(f"task {tid} has an overflow deadline in queue {t.get('queueId')}, which has no overflow")
            continue
        due = int(t["enqueueTime"]) + int(cfg["overflowAfterMs"])
        if s.timers.get(member) != float(due):
            rep.add(f"task {tid} waits in overflowing queue {t.get('queueId')} without its overflow deadline {due}")
        if overdue_ms is not None and s.now - due > overdue_ms:
            rep.add(f"task {tid} still waits in queue {t.get('queueId')} {s.now - due} ms past its overflow deadline")
    for q, scores in sorted(s.scores.items()):
        for tid, score in sorted(scores.items()):
            t = s.tasks.get(tid)
            if t is not None and float(_wait_score(t, s.queues[q])) != score:
                rep.add(f"task {tid} waits in queue {q} with score {score:.0f}, its policy gives "
                        f"{_wait_score(t, s.queues[q])}")


def check_blocks(s: Snapshot, rep: Report) -> None:
    """11. MRD blocks: stored blockers, WRAP_UP counts, and no task of a
    blocked MRD offered while the blocking media was open."""
    for x, cfg in sorted(s.mrds.items()):
        want = sorted(b for b, c in s.mrds.items() if x in json.loads(c.get("blocks") or "[]"))
        have = json.loads(cfg.get("blockers") or "[]")
        if want != have:
            rep.add(f"mrd {x}: blockers {have}, the MRDs whose blocks name it are {want}")
    wrapped: dict[tuple[str, str], int] = {}
    held: dict[str, list[dict[str, Any]]] = {}
    for t in s.tasks.values():
        if t["state"] == "WRAP_UP" and t.get("assignedTo"):
            wrapped[(t["assignedTo"], t["mrdId"])] = wrapped.get((t["assignedTo"], t["mrdId"]), 0) + 1
        if t["state"] == "ACTIVE" and t.get("assignedTo"):
            held.setdefault(t["assignedTo"], []).append(t)
    for aid, a in sorted(s.agents.items()):
        for mrd in s.mrds:
            if int(a.get(f"{mrd}|wu", 0)) != wrapped.get((aid, mrd), 0):
                rep.add(f"agent {aid} mrd {mrd}: stored WRAP_UP count {a.get(f'{mrd}|wu', 0)}, "
                        f"WRAP_UP tasks {wrapped.get((aid, mrd), 0)}")
    for aid, ts in sorted(held.items()):
        for blocker in ts:
            cfg = s.mrds.get(blocker["mrdId"], {})
            blocks = json.loads(cfg.get("blocks") or "[]")
            # A media blocks from when it opened: reserved (rsv), or created
            # ACTIVE (pull); judged only since the blocks last changed.
            opened = [max(int(m["enqueueTime"]), int(blocker.get("rsv") or 0), int(cfg.get("blocksAt") or 0))
                      for m in blocker["media"] if m["state"] != "CLOSED"]
            if not blocks or not opened:
                continue
            for t in ts:
                if t["mrdId"] in blocks and int(t.get("rsv") or 0) > min(opened):
                    rep.add(f"agent {aid} was offered task {t['id']} of mrd {t['mrdId']} while holding "
                            f"{blocker['id']} of mrd {blocker['mrdId']}, which blocks it")


async def check_ewt(engine: Engine, s: Snapshot, rep: Report) -> None:
    """12. Predictions only on requests still waiting or offered, and each
    queue's take-rate mark set exactly while tasks wait in its set."""
    for tid, t in sorted(s.tasks.items()):
        if "ewt" in t and (t["state"] == "CLOSED" or not any(
                m["state"] in ("QUEUED", "RESERVED") for m in t["media"])):
            rep.add(f"task {tid} ({t['state']}) still carries its wait prediction {t['ewt']!r}")
    for q, cfg in sorted(s.queues.items()):
        state = await engine.redis.hgetall(engine.keys.q_ewt(q))
        sets = ({f"mark|{k}": (f"step {k}'s waiting set", s.by_step[(q, k)]) for k in STEPS}
                if "stepCode" in cfg else {"mark": ("its waiting set", s.waiting[q])})
        for mark, (where, tasks) in sets.items():
            if bool(state.get(mark)) != bool(tasks):
                rep.add(f"queue {q}: take-rate {mark} {state.get(mark)!r} with {len(tasks)} tasks in {where}")


async def check(engine: Engine, *, overdue_ms: int | None = None, events: bool = True) -> Report:
    """Every invariant, in order, on the tenant's state as it is now."""
    s = await read(engine)
    closed = sum(1 for t in s.tasks.values() if t["state"] == "CLOSED")
    rep = Report(tasks_live=len(s.tasks) - closed, tasks_closed=closed, agents=len(s.agents))
    check_capacity(s, rep)
    check_one_place(s, rep)
    if events:
        all_events = await engine.events()
        await check_events(engine, s, rep, all_events)
        await check_statistics(engine, s, rep, all_events)
    check_deadlines(s, rep, overdue_ms)
    check_nothing_waits(s, rep)
    check_steps(s, rep)
    check_preferred(s, rep)
    await check_webhooks(engine, rep)
    await check_config(engine, s, rep)
    check_policies(s, rep, overdue_ms)
    check_blocks(s, rep)
    await check_ewt(engine, s, rep)
    await check_tallies(engine, s, rep)
    check_clock(s, rep)
    return rep


def check_clock(s: Snapshot, rep: Report) -> None:
    """14. The tenant's clock never runs back: no task records a time later
    than it (a virtual clock set back by hand, or a Redis clock that jumped)."""
    for tid in sorted(s.tasks):
        t = s.tasks[tid]
        for f in ("createdAt", "updatedAt"):
            at = int(t.get(f) or 0)  # (stored as decimal strings)
            if at > s.now:
                rep.add(f"task {tid}: {f} {at} is later than the tenant's clock {s.now}: the clock ran back")


async def check_webhooks(engine: Engine, rep: Report) -> None:
    """8. deliveries are indexed by their status, and belong to a webhook."""
    r, k = engine.redis, engine.keys
    ids = set(await r.zrange(k.webhooks, 0, -1))
    due_index = dict(await r.zrange(k.webhooks_due, 0, -1, withscores=True))
    prefix = k.webhook("")
    for key in await _scan(r, glob_escape(prefix) + "*:*"):
        wid = key[len(prefix):].rpartition(":")[0]
        if wid not in ids:
            rep.add(f"{key} outlives webhook {wid}")
    for wid in sorted(ids):
        hook = await r.hgetall(k.webhook(wid))
        if not hook:
            rep.add(f"webhook {wid} is listed but has no hash")
            continue
        records = {d: json.loads(raw) for d, raw in (await r.hgetall(k.webhook_dlv(wid))).items()}
        due = dict(await r.zrange(k.webhook_due(wid), 0, -1, withscores=True))
        failed = {failed_delivery_id(m): m for m in await r.zrange(k.webhook_failed(wid), 0, -1)}
        for did, d in records.items():
            if d["status"] == "PENDING" and (did not in due or did in failed):
                rep.add(f"webhook {wid}: PENDING delivery {did} is not (only) in its due set")
            if d["status"] == "FAILED" and (failed.get(did) != d.get("fm") or did in due):
                rep.add(f"webhook {wid}: FAILED delivery {did} is not (only) in its failed index")
        for did in set(due) | set(failed):
            if did not in records:
                rep.add(f"webhook {wid}: indexed delivery {did} has no record")
        expect = min(due.values()) if due and hook.get("enabled") == "1" else None
        if due_index.get(wid) != expect:
            rep.add(f"webhook {wid}: due index {due_index.get(wid)}, earliest due {expect}")
    for wid in set(due_index) - ids:
        rep.add(f"due index lists webhook {wid}, which does not exist")


_MRD_FIELDS = {"st", "rc", "n", "sh", "t", "la", "ov", "wu"}  # an agent's <mrd>|<field> (agent.lua)


async def check_config(engine: Engine, s: Snapshot, rep: Report) -> None:
    """9. configuration refers only to what exists."""
    r, k = engine.redis, engine.keys
    mrds, queues, agents = s.mrds, s.queues, s.agents
    kinds = {"mrds": (mrds, k.mrd("")), "queues": (queues, k.queue("")), "agents": (agents, k.agent(""))}
    for kind, (listed, hash_prefix) in kinds.items():
        for i, h in sorted(listed.items()):
            if not h:
                rep.add(f"{kind} lists {i}, which has no hash")
        for key in await _scan(r, glob_escape(hash_prefix) + "*"):
            i = key[len(hash_prefix):].split(":")[0]
            if i not in listed:
                rep.add(f"key {key} of {kind[:-1]} {i}, which {kind} does not list")
        indexed = set(await r.zrange(k.index(kind), 0, -1))
        if indexed and indexed != set(listed):
            rep.add(f"the {kind} index differs from the set by {sorted(indexed ^ set(listed))}")
    queue_keys = k.q_members("")[: -len(":members")]  # rr:{t}:q:
    for key in await _scan(r, glob_escape(queue_keys) + "*"):
        q = key[len(queue_keys):].split(":")[0]
        if q not in queues:
            rep.add(f"key {key} of queue {q}, which does not exist")
    listing: dict[str, set[str]] = {q: set() for q in queues}
    for q, h in sorted(queues.items()):
        if h.get("mrdId") not in mrds:
            rep.add(f"queue {q} uses mrd {h.get('mrdId')}, which does not exist")
    for a, h in sorted(agents.items()):
        for q in json.loads(h.get("queues") or "[]"):
            if q in listing:
                listing[q].add(a)
            else:
                rep.add(f"agent {a} lists queue {q}, which does not exist")
        gone = sorted({f.partition("|")[0] for f in h
                       if "|" in f and f.partition("|")[2] in _MRD_FIELDS} - set(mrds))
        if gone:
            rep.add(f"agent {a} has state on mrds {gone}, which do not exist")
    for q, expected in sorted(listing.items()):
        members = set(await r.smembers(k.q_members(q)))
        if members != expected:
            rep.add(f"queue {q}: members {sorted(members)}, agents listing it {sorted(expected)}")
