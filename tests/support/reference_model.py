"""A pure-Python reference model of docs/lifecycle.md (PUSH, PULL,
conference, transfer, task and media states) and of docs/api.md (agent and MRD states,
capacity, selection policies, RONA / TTL / wrap-up deadlines, logout), for the
model-based test in test_model_based.py.

It is written from those documents and the behaviours the engine tests pin
down, not from the Lua: plain data, one method per operation, the routing
decision written as "the best candidate of all", every agent's slot count
derived from the tasks it holds rather than kept as a counter.

Time. The model keeps its own clock `now` (ms). The engine's clock is the
Redis server's plus the tenant offset that the test moves exactly as the
model's, so engine time = model time + the real time elapsed since the start
of the run. The test moves both clocks 1 ms before every step, and lets time
pass only in whole UNIT_MS; every duration configured is a whole number of
UNIT_MS. So two moments of the model compare the same way as in the engine
(strictly increasing between steps, equal within one), and whether a deadline
is due is the same in both as long as a run lasts less than UNIT_MS minus
one ms per step. Absolute times are never compared; relations are (see
test_model_based.check_times).

Skills (docs/api.md, v2): a queue's steps, evaluated here with the
expression module's Python evaluator; an agent's first step; a waiting
task's step by age, with a deadline per next step; the selection policies
as "the best of all" by (level, last available, id); preferred agents with
their window deadline.

Routing policies (docs/api.md, v2): a queue's waiting order by
enqueueTime - priority * priorityUnitMs (a strict queue counting 10^10),
compared across an agent's queues on that one scale; maxWaiting and the
overflow chain of a PUSH; overflow by age with its deadline; re-prioritising
a waiting task; MRD blocks (an agent holding an open media of a blocking
MRD is not available on the MRDs it blocks, and takes their work at once
when the block lifts).

Ids. A task created takes the next number n of the tenant sequence (task
t-n, its media m-n, request r-n unless it keeps one); a media added by a
PULL takes the next number too. The model predicts them exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redroute.errors import InvalidTransition, NotFound, QueueFull, ValidationError
from redroute.expressions import compile_expression, evaluate, skill_score

UNIT_MS = 100_000
STRICT_UNIT_MS = 10**10  # a queue without priorityUnitMs, on the aging scale
DEFAULT_SLA_MS = 30_000  # a named-agent task whose conversation has no queue
REASONS = {
    "RONA", "DONE", "RESPONSE_TIMEOUT", "NO_AGENT_AVAILABLE", "REROUTE", "CANCELLED",
    "AGENT_LOGOUT", "TRANSFERRED", "FORCE_CLOSED", "WRAP_UP_APPLIED", "WRAP_UP_NOT_APPLIED",
    "WRAP_UP_EXPIRED",
}


class Ambiguous(Exception):
    """The API leaves the outcome open (see transfer); the test skips the step."""


def refuse(cls: type[Exception], why: str) -> None:
    raise cls(why)


@dataclass(frozen=True)
class MrdConf:
    max_requests: int
    auto_join: bool
    wrap_up: bool
    wrap_up_ms: int
    blocks: tuple[str, ...] = ()  # the MRDs an open media of this one blocks


@dataclass(frozen=True)
class QueueConf:
    mrd: str
    ttl_ms: int
    sla_ms: int
    policy: str  # LONGEST_AVAILABLE, LEAST_ACTIVE, LEAST_LOADED, MOST_/LEAST_SKILLED
    steps: tuple[tuple[str, int | None], ...] | None = None  # (expression, timeoutMs)
    rtla_ms: int | None = None  # routeToLastAgent
    priority_unit_ms: int | None = None  # aging; None: strict priority
    max_waiting: int | None = None
    overflow: tuple[int, str] | None = None  # (afterMs, queueId)

    def step_starts(self) -> list[int]:
        """Each step's start from enqueueTime: [0, t1, t1+t2, …]."""
        out = [0]
        for _, timeout in (self.steps or ())[:-1]:
            out.append(out[-1] + timeout)
        return out

    def skill_names(self) -> list[str]:
        names: list[str] = []
        for expr, _ in self.steps or ():
            names.extend(compile_expression(expr).names)
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class AgentConf:
    queues: tuple[str, ...]
    max_requests: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    mrds: dict[str, MrdConf]
    queues: dict[str, QueueConf]
    agents: dict[str, AgentConf]


@dataclass
class MMedia:
    id: str
    mrd: str
    state: str  # QUEUED, RESERVED, ACTIVE, CLOSED
    queue: str | None
    answered: bool
    session: dict[str, Any]
    added: bool = False  # a PULL's extra media: enqueued and answered at once


@dataclass
class MTask:
    id: str
    seq: int
    request_id: str
    conv: str
    direction: str
    mode: str
    queue: str | None
    mrd: str
    priority: int
    media: list[MMedia]
    created: int  # model ms
    enqueue: int  # model ms: the routing request's first enqueue
    origin: str  # the task whose createdAt is this task's enqueueTime
    ttl: tuple[str, int] | None  # ttlDeadline = createdAt of task [0] + [1] ms
    ttl_deadline: int | None  # model ms
    metadata: dict[str, Any]
    state: str = "ACTIVE"
    reason: str | None = None
    assigned: str | None = None
    exclude: str | None = None  # a transfer is never offered to the agent that made it
    sla_ms: int | None = None  # a named-agent task's time to accept
    parked: str = ""  # "q": in its queue's waiting sets; "p": waiting for its preferred agent only
    step: int | None = None  # a queue with steps
    steps: int | None = None
    next_step: int | None = None  # model ms
    pref: str | None = None  # preferredAgentId
    pref_until: int | None = None  # model ms
    pref_off: bool = False  # the window ended early (the preferred agent let it go)
    overflow_at: int | None = None  # model ms: its queue's overflow deadline while it waits

    @property
    def live(self) -> bool:
        return self.state != "CLOSED"

    def media_in(self, state: str) -> MMedia | None:
        return next((m for m in self.media if m.state == state), None)

    def open_media(self) -> list[MMedia]:
        return [m for m in self.media if m.state != "CLOSED"]


@dataclass
class MMrdState:
    base: str | None = None  # LOGOUT, NOT_READY, PENDING_NOT_READY, READY; None: never set
    reason: str | None = None
    la: int | None = None  # last made READY or given a task (LONGEST_AVAILABLE order)


@dataclass
class MAgent:
    id: str
    queues: tuple[str, ...]
    overrides: dict[str, int]
    attributes: dict[str, Any] = field(default_factory=dict)
    state: str = "LOGOUT"
    reason: str | None = None
    mrds: dict[str, MMrdState] = field(default_factory=dict)


class Model:
    def __init__(self, config: Config) -> None:
        # Configuration changes (deletions, agents put again): a copy.
        self.cfg = Config(dict(config.mrds), dict(config.queues), dict(config.agents))
        self.now = 0
        self.seq = 0
        self.tasks: dict[str, MTask] = {}
        self.agents = {a: MAgent(a, c.queues, dict(c.max_requests), dict(c.attributes),
                                 mrds={m: MMrdState() for m in config.mrds})
                       for a, c in config.agents.items()}
        self.timers: dict[str, int] = {}  # member -> deadline (model ms)
        # What a step published that the test compares: in order.
        self.reserved: list[tuple[str, str]] = []  # AGENT_RESERVED (task, agent)
        self.no_agent: list[str] = []  # NO_AGENT_AVAILABLE (task)
        self.transitions: list[tuple[str, str]] = []  # TASK_STATE_CHANGED (task, transition)
        # Each queue's statistics counts since it was made (its totals; the
        # fields of docs/design.md's st:<queue>:<minute> counted one by one,
        # less the within-threshold ones, which depend on real ms).
        self.counted: dict[str, Counter[str]] = {}

    # Reads

    def live_tasks(self, agent: str) -> list[MTask]:
        return [t for t in self.tasks.values() if t.live and t.assigned == agent]

    def conversation(self, conv: str) -> list[MTask]:
        return [t for t in self.tasks.values() if t.conv == conv]

    def waiting(self, queue: str) -> list[MTask]:
        """Tasks in the queue's waiting sets (not those waiting for a preferred agent)."""
        return sorted((t for t in self.tasks.values() if t.parked == "q" and t.queue == queue),
                      key=self.wait_key)

    def wait_key(self, t: MTask) -> tuple[int, int]:
        """Waiting order on the scale shared by every queue: enqueueTime less
        priority times the queue's priorityUnitMs (10^10 for a strict queue,
        which orders by priority, then the earlier request), then arrival."""
        unit = self.cfg.queues[t.queue].priority_unit_ms or STRICT_UNIT_MS
        return (t.enqueue - t.priority * unit, t.seq)

    def position(self, t: MTask) -> int:
        """A waiting task's place in its queue's order (GET …/position), 1
        first: the waiting tasks ahead of it, preferred-only ones counted at
        the place their score gives them."""
        return 1 + sum(1 for o in self.queued(t.queue) if self.wait_key(o) < self.wait_key(t))

    def queued(self, queue: str) -> list[MTask]:
        """Every waiting task of the queue, preferred-only ones included."""
        return [t for t in self.tasks.values() if t.parked and t.queue == queue]

    def first_step(self, agent: str, queue: str) -> int | None:
        """The smallest step whose expression the member's attributes
        satisfy (0: none); None for a queue without steps."""
        q = self.cfg.queues[queue]
        if q.steps is None:
            return None
        attrs = self.agents[agent].attributes
        return next((k for k, (expr, _) in enumerate(q.steps, 1)
                     if evaluate(compile_expression(expr).code, attrs)), 0)

    def may_serve(self, agent: str, t: MTask) -> bool:
        """A member whose first step the task's step has reached."""
        if t.queue not in self.agents[agent].queues:
            return False
        fs = self.first_step(agent, t.queue)
        return fs is None or 0 < fs <= (t.step or 0)

    def held(self, agent: str, mrd: str) -> int:
        """Slots in use: every open media of the agent's tasks on the MRD, and
        one per task in WRAP_UP."""
        return sum(len(t.open_media()) + (t.state == "WRAP_UP")
                   for t in self.live_tasks(agent) if t.mrd == mrd)

    def max_requests(self, agent: str, mrd: str) -> int:
        a = self.agents[agent]
        return a.overrides.get(mrd, self.cfg.mrds[mrd].max_requests)

    def base(self, agent: str, mrd: str) -> str:
        a = self.agents[agent]
        st = a.mrds[mrd].base
        if st is not None:
            return st
        return "LOGOUT" if a.state == "LOGOUT" else "NOT_READY"

    def shown(self, agent: str, mrd: str) -> str:
        st = self.base(agent, mrd)
        if st != "READY":
            return st
        n = self.held(agent, mrd)
        if n == 0:
            return "READY"
        return "BUSY" if n >= self.max_requests(agent, mrd) else "ACTIVE"

    def available(self, agent: str, mrd: str) -> bool:
        return (self.agents[agent].state != "LOGOUT" and self.base(agent, mrd) == "READY"
                and self.held(agent, mrd) < self.max_requests(agent, mrd)
                and not self.blocked_by(agent, mrd))

    def blocked_by(self, agent: str, mrd: str) -> list[str]:
        """The MRDs blocking mrd for the agent: those whose blocks name it,
        of which it holds an open media."""
        return [b for b in sorted(self.cfg.mrds) if mrd in self.cfg.mrds[b].blocks
                and any(t.open_media() for t in self.live_tasks(agent) if t.mrd == b)]

    def conversation_agents(self, conv: str, mrd: str) -> set[str]:
        """Agents already in a conversation on an MRD: never offered another
        task of it there."""
        return {t.assigned for t in self.conversation(conv) if t.live and t.assigned and t.mrd == mrd}

    # Tasks: creation, routing, endings

    def _new_task(self, *, conv: str, direction: str, mode: str, queue: str | None, mrd: str,
                  priority: int, media_state: str, session: dict[str, Any],
                  metadata: dict[str, Any], ttl_ms: int | None, request_id: str | None = None,
                  keep_from: MTask | None = None, exclude: str | None = None,
                  sla_ms: int | None = None) -> MTask:
        self.seq += 1
        n = self.seq
        t = MTask(
            id=f"t-{n}", seq=n, request_id=request_id or f"r-{n}", conv=conv, direction=direction,
            mode=mode, queue=queue, mrd=mrd, priority=priority,
            media=[MMedia(f"m-{n}", mrd, media_state, queue, media_state == "ACTIVE", session)],
            created=self.now, enqueue=self.now, origin=f"t-{n}", ttl=None, ttl_deadline=None,
            metadata=metadata, exclude=exclude, sla_ms=sla_ms,
        )
        if keep_from is not None:  # the same routing request goes on
            t.enqueue, t.origin = keep_from.enqueue, keep_from.origin
            t.ttl, t.ttl_deadline = keep_from.ttl, keep_from.ttl_deadline
        elif ttl_ms is not None:
            t.ttl, t.ttl_deadline = (t.id, ttl_ms), self.now + ttl_ms
        self.tasks[t.id] = t
        return t

    def _sla(self, t: MTask) -> int:
        if t.mode == "QUEUE":
            return self.cfg.queues[t.queue].sla_ms
        return t.sla_ms or DEFAULT_SLA_MS

    def _emit(self, t: MTask, transition: str) -> None:
        self.transitions.append((t.id, transition))
        if transition == "CREATED" and t.mode == "QUEUE":
            self._count(t.queue, "e")
        elif transition == "ACCEPTED":
            self._count(t.queue, "a")
        elif transition in ("RONA", "DECLINED"):
            self._count(t.queue, "r")

    def _count(self, queue: str | None, field: str) -> None:
        """A statistics count of queue (none for a task without a queue,
        nor for a deleted queue: its totals went with it)."""
        if queue is not None and queue in self.cfg.queues:
            self.counted.setdefault(queue, Counter())[field] += 1

    def _left_active(self, t: MTask, transition: str) -> None:
        """t left ACTIVE with medias open (closed or wrapped up now):
        handled when one was answered, else cancelled by a client close."""
        if any(m.answered for m in t.media):
            self._count(t.queue, "hn")
        elif transition == "CLOSED":
            self._count(t.queue, "c")

    def _no_agent(self, t: MTask) -> None:
        self.no_agent.append(t.id)
        self._count(t.queue, "x")

    def _reserve(self, t: MTask, m: MMedia, agent: str, created: bool = False) -> None:
        if t.parked:
            self._unqueue(t)
        t.next_step = None
        m.state = "RESERVED"
        t.assigned = agent
        t.exclude = None
        self.timers[f"rona|{t.id}|{m.id}"] = self.now + self._sla(t)
        self.agents[agent].mrds[t.mrd].la = self.now
        self._emit(t, "CREATED" if created else "RESERVED")
        self.reserved.append((t.id, agent))

    def _unqueue(self, t: MTask) -> None:
        t.parked = ""
        for kind in ("ttl", "step", "pref", "ovf"):
            self.timers.pop(f"{kind}|{t.id}", None)
        t.next_step = t.overflow_at = None

    def _overflow_due(self, t: MTask) -> str | None:
        """The queue t overflows to now, if its queue's deadline passed."""
        ovf = self.cfg.queues[t.queue].overflow
        if ovf is not None and self.now >= t.enqueue + ovf[0]:
            return ovf[1]
        return None

    def _overflow_move(self, t: MTask) -> bool:
        """Along the overflow chain while each deadline has passed."""
        moved = False
        while (target := self._overflow_due(t)) is not None:
            t.queue = target
            m = t.media_in("QUEUED")
            if m is not None:
                m.queue = target
            moved = True
        return moved

    def _window_open(self, t: MTask) -> bool:
        return t.pref is not None and not t.pref_off and self.now < t.pref_until

    def _park(self, t: MTask) -> None:
        if self._window_open(t):
            t.parked = "p"
            self.timers[f"pref|{t.id}"] = t.pref_until
        else:
            t.parked = "q"
            if t.next_step is not None:
                self.timers[f"step|{t.id}"] = t.next_step
        self.timers[f"ttl|{t.id}"] = t.ttl_deadline
        ovf = self.cfg.queues[t.queue].overflow
        if ovf is not None:
            t.overflow_at = t.enqueue + ovf[0]
            self.timers[f"ovf|{t.id}"] = t.overflow_at

    def _set_step(self, t: MTask) -> None:
        """The step t's age has reached in its queue, and the next one's start."""
        q = self.cfg.queues[t.queue]
        if q.steps is None:
            t.step = t.steps = t.next_step = None
            return
        starts = q.step_starts()
        age = self.now - t.enqueue
        k = max(i for i, s in enumerate(starts, 1) if age >= s)
        t.step, t.steps = k, len(starts)
        t.next_step = t.enqueue + starts[k] if k < len(starts) else None
        if self._window_open(t):
            t.next_step = None

    def _score(self, agent: str, q: QueueConf, queue: str) -> tuple[float, ...]:
        """The selection order of the queue's policy (lower first)."""
        a = self.agents[agent]
        la = a.mrds[q.mrd].la
        if q.policy == "LEAST_ACTIVE":
            return (self.held(agent, q.mrd), la)
        if q.policy == "LEAST_LOADED":
            return (min(4095, self.held(agent, q.mrd) * 4096 // self.max_requests(agent, q.mrd)), la)
        if q.policy in ("MOST_SKILLED", "LEAST_SKILLED"):
            level = max(0, min(4095, int(skill_score(q.skill_names(), a.attributes) // 1)))
            return ((4095 - level) if q.policy == "MOST_SKILLED" else level, la)
        return (la,)

    def _best_agent(self, t: MTask) -> str | None:
        """The queue's best available agent: the longest available, or the
        least active then longest available; never the agent a transfer
        came from, nor one already in the conversation."""
        q = self.cfg.queues[t.queue]
        skip = self.conversation_agents(t.conv, t.mrd) | {t.exclude}
        cands = [a for a in self.agents.values()
                 if self.may_serve(a.id, t) and a.id not in skip and self.available(a.id, q.mrd)]
        if not cands:
            return None
        return min(cands, key=lambda a: (self._score(a.id, q, t.queue), a.id)).id

    def _route_task(self, t: MTask) -> None:
        before = t.queue
        moved = self._overflow_move(t)
        self._set_step(t)
        if moved:
            self._emit(t, "OVERFLOWED")
            self._count(before, "oo")
            self._count(t.queue, "oi")
            self._count(t.queue, "e")
        if t.pref is not None and self._window_open(t):
            if self.available(t.pref, t.mrd) and t.pref not in self.conversation_agents(t.conv, t.mrd):
                self._reserve(t, t.media[0], t.pref)
            else:
                self._park(t)
            return
        agent = self._best_agent(t)
        if agent:
            self._reserve(t, t.media[0], agent)
        else:
            self._park(t)

    def _restep(self, t: MTask) -> None:
        """A step or preferred-window deadline: the step by age, routed again."""
        self._unqueue(t)
        self._set_step(t)
        self._emit(t, "STEP_CHANGED")
        agent = self._best_agent(t)
        if agent:
            self._reserve(t, t.media[0], agent)
        else:
            self._park(t)

    def _may_offer(self, t: MTask, agent: str) -> bool:
        return t.exclude != agent and agent not in self.conversation_agents(t.conv, t.mrd)

    def _route_agent(self, agent: str, mrd: str) -> None:
        """An agent with capacity takes the best waiting task of its queues
        (higher priority, then earlier request), again while it has room."""
        a = self.agents[agent]
        while self.available(agent, mrd):
            cands = [t for t in self.tasks.values() if t.parked == "p" and t.pref == agent
                     and t.mrd == mrd and self._may_offer(t, agent)]
            if not cands:
                cands = [t for q in a.queues if self.cfg.queues[q].mrd == mrd
                         for t in self.waiting(q) if self._may_offer(t, agent) and self.may_serve(agent, t)]
            if not cands:
                return
            best = min(cands, key=self.wait_key)
            self._reserve(best, best.media_in("QUEUED"), agent)

    def _settle_count(self, agent: str | None, mrd: str) -> None:
        """PENDING_NOT_READY becomes NOT_READY when the last slot is freed."""
        if agent and self.base(agent, mrd) == "PENDING_NOT_READY" and self.held(agent, mrd) == 0:
            self.agents[agent].mrds[mrd].base = "NOT_READY"

    def _freed(self, agent: str | None, mrd: str) -> None:
        """After an agent got capacity back: it takes waiting work, then
        that of the MRDs a closed media of this one stopped blocking."""
        if agent:
            self._settle_count(agent, mrd)
            self._route_agent(agent, mrd)
            self._lifted(agent, mrd)

    def _lifted(self, agent: str, mrd: str) -> None:
        for x in sorted(self.cfg.mrds[mrd].blocks):
            self._route_agent(agent, x)

    def _close(self, t: MTask, reason: str, transition: str) -> str | None:
        """Closes every open media and the task; returns its agent."""
        leaves = t.state == "ACTIVE" and bool(t.open_media())
        for m in t.media:
            if m.state != "CLOSED":
                if m.state == "RESERVED":
                    self.timers.pop(f"rona|{t.id}|{m.id}", None)
                m.state = "CLOSED"
        if t.parked:
            self._unqueue(t)
        self.timers.pop(f"wrap|{t.id}", None)
        t.state, t.reason = "CLOSED", reason
        self._emit(t, transition)
        if leaves:
            self._left_active(t, transition)
        self._settle_count(t.assigned, t.mrd)
        return t.assigned

    def _end(self, t: MTask, reason: str, transition: str) -> None:
        self._freed(self._close(t, reason, transition), t.mrd)

    def _wrap(self, t: MTask, reason: str, timeout_ms: int | None, transition: str) -> str | None:
        """WRAP_UP: medias closed, one slot held until the task closes.
        Returns the agent when slots were freed."""
        freed = len(t.open_media()) - 1
        for m in t.open_media():
            m.state = "CLOSED"
        t.state, t.reason = "WRAP_UP", reason
        self._emit(t, transition)
        self._left_active(t, transition)
        if timeout_ms is not None:
            self.timers[f"wrap|{t.id}"] = self.now + timeout_ms
        # (No slot freed, but the closed media may lift a block.)
        return t.assigned if freed > 0 or self.cfg.mrds[t.mrd].blocks else None

    def _finish(self, t: MTask, reason: str) -> None:
        mrd = self.cfg.mrds[t.mrd]
        if mrd.wrap_up and t.assigned:
            self._freed(self._wrap(t, reason, mrd.wrap_up_ms, "WRAP_UP"), t.mrd)
        else:
            self._end(t, reason, "CLOSED")

    def _reroute(self, t: MTask, reason: str, transition: str) -> None:
        """RONA (and REROUTE on logout): the task closes; the request goes on
        in a new QUEUED task until its TTL, except transfers and named-agent
        tasks, which end with NO_AGENT_AVAILABLE."""
        agent = self._close(t, reason, transition)
        if agent and reason == "RONA":  # not offered it again: NOT_READY until it says otherwise
            self._set_base(agent, t.mrd, "NOT_READY", "RONA")
            self._follow_mrds(agent, "RONA")
            self._lifted(agent, t.mrd)
        if t.direction == "DIRECT_TRANSFER" or t.mode == "AGENT" or self.now >= t.ttl_deadline:
            self._no_agent(t)
            return
        nt = self._new_task(conv=t.conv, direction=t.direction, mode=t.mode, queue=t.queue,
                            mrd=t.mrd, priority=t.priority, media_state="QUEUED",
                            session=t.media[0].session, metadata=t.metadata, ttl_ms=None,
                            request_id=t.request_id, keep_from=t)
        # The request keeps its preferred agent, unless that agent let it go.
        nt.pref, nt.pref_until = t.pref, t.pref_until
        nt.pref_off = t.pref_off or (t.pref is not None and t.pref == t.assigned)
        self._emit(nt, "REROUTED")
        self._route_task(nt)

    def _queue_sla(self, queue: str | None) -> int:
        """The agentSlaMs of a task's queue, for a named-agent task made from
        it; the default when it has none or it was deleted since."""
        q = self.cfg.queues.get(queue) if queue else None
        return q.sla_ms if q else DEFAULT_SLA_MS

    def _offer_named(self, t: MTask, agent: str) -> None:
        if self.available(agent, t.mrd):
            self._reserve(t, t.media[0], agent, created=True)
        else:
            t.media[0].state = "CLOSED"
            t.state, t.reason = "CLOSED", "RONA"
            self._emit(t, "RONA")
            self._no_agent(t)

    # Agents

    def _set_base(self, agent: str, mrd: str, st: str, reason: str | None) -> None:
        s = self.agents[agent].mrds[mrd]
        cur = self.base(agent, mrd)
        if st == "READY" and cur != "READY":
            s.la = self.now
        if (st == "NOT_READY" and self.held(agent, mrd) > 0 and cur != "NOT_READY"
                and reason != "RONA"):
            st = "PENDING_NOT_READY"
        s.base, s.reason = st, reason

    def _follow_mrds(self, agent: str, reason: str | None) -> None:
        """A logged-in agent is READY while any of its MRDs is, else
        NOT_READY (with the reason of the MRD change that made it so)."""
        a = self.agents[agent]
        if a.state == "LOGOUT":
            return
        glob = "READY" if any(self.base(agent, m) == "READY" for m in self.cfg.mrds) else "NOT_READY"
        if glob != a.state:
            a.state, a.reason = glob, reason if glob == "NOT_READY" else None

    def _task(self, task_id: str) -> MTask:
        t = self.tasks.get(task_id)
        if t is None:
            refuse(NotFound, f"task {task_id}")
        return t

    def _media(self, t: MTask, media_id: str) -> MMedia:
        m = next((m for m in t.media if m.id == media_id), None)
        if m is None:
            refuse(NotFound, f"media {media_id}")
        return m

    def _agent(self, agent: str) -> MAgent:
        if agent not in self.agents:
            refuse(NotFound, f"agent {agent}")
        return self.agents[agent]

    # Operations (the Engine's methods, same arguments)

    def push_task(self, conv: str, queue: str, *, priority: int = 1, ttl_ms: int | None = None,
                  session: dict | None = None, metadata: dict | None = None,
                  direction: str = "INBOUND", preferred: str | None = None,
                  preferred_ms: int | None = None) -> MTask:
        q = self.cfg.queues.get(queue)
        if q is None:
            refuse(NotFound, f"queue {queue}")
        if preferred is not None:
            self._agent(preferred)
        elif q.rtla_ms is not None and direction == "INBOUND":
            preferred, preferred_ms = self._last_agent(conv), q.rtla_ms
        ttl_ms = ttl_ms or q.ttl_ms
        # A full queue: on along its overflow chain, else refused.
        while q.max_waiting is not None and len(self.queued(queue)) >= q.max_waiting:
            if q.overflow is None:
                refuse(QueueFull, f"queue {queue} is full")
            queue = q.overflow[1]
            q = self.cfg.queues[queue]
        t = self._new_task(conv=conv, direction=direction, mode="QUEUE", queue=queue, mrd=q.mrd,
                           priority=priority, media_state="QUEUED", session=session or {},
                           metadata=metadata or {}, ttl_ms=ttl_ms)
        if preferred is not None:
            t.pref, t.pref_until = preferred, self.now + (preferred_ms or 30_000)
        self._emit(t, "CREATED")
        self._route_task(t)
        return t

    def _last_agent(self, conv: str) -> str | None:
        """The agent of the conversation's newest task with an answered media
        whose agent still exists (a deleted one is passed over)."""
        for t in sorted(self.conversation(conv), key=lambda t: (t.created, t.seq), reverse=True):
            if t.assigned in self.agents and any(m.answered for m in t.media):
                return t.assigned
        return None

    def put_queue(self, queue: str, conf: QueueConf) -> None:
        """A new queue (no agent lists it yet, so nothing routes), or a
        queue's policy, steps, routeToLastAgent or routing policies changed
        (same MRD). An overflow queue must exist, share the MRD and not lead
        back; a queue others overflow to keeps their MRD."""
        if conf.mrd not in self.cfg.mrds:
            refuse(NotFound, f"mrd {conf.mrd}")
        old = self.cfg.queues.get(queue)
        if conf.overflow is not None:
            target = conf.overflow[1]
            if target == queue:
                refuse(ValidationError, "overflow to itself")
            if target not in self.cfg.queues:
                refuse(NotFound, f"queue {target}")
            if self.cfg.queues[target].mrd != conf.mrd:
                refuse(ValidationError, "overflow to another MRD")
            while target is not None:
                if target == queue:
                    refuse(ValidationError, "overflow loop")
                ovf = self.cfg.queues[target].overflow
                target = ovf[1] if ovf else None
        if old is None or old.mrd != conf.mrd:
            for other, c in self.cfg.queues.items():
                if other != queue and c.overflow and c.overflow[1] == queue and c.mrd != conf.mrd:
                    refuse(ValidationError, f"{other} overflows to {queue}")
        self.cfg.queues[queue] = conf
        if old is None:
            return
        replace = (old.priority_unit_ms, old.overflow) != (conf.priority_unit_ms, conf.overflow)
        if old.policy == conf.policy and old.steps == conf.steps and not replace:
            return
        if replace:
            # Every waiting task placed again (score, overflow deadline), in
            # enqueue order (then id, as text); one past its new deadline moves on.
            for t in sorted(self.queued(queue), key=lambda t: (t.enqueue, t.id)):
                if not t.parked:
                    continue  # (reserved meanwhile by an overflow before it)
                before = (t.step, t.steps, t.next_step)
                self._unqueue(t)
                if self._overflow_due(t) is not None:
                    self._route_task(t)
                else:
                    self._set_step(t)
                    self._park(t)
                    if (t.step, t.steps, t.next_step) != before:
                        self._emit(t, "STEP_CHANGED")
        elif old.steps != conf.steps:
            for t in sorted(self.queued(queue), key=lambda t: (t.enqueue, t.id)):
                before = (t.step, t.steps, t.next_step)
                parked = t.parked
                self._set_step(t)
                if parked == "p":
                    t.next_step = None
                after = (t.step, t.steps, t.next_step)
                if after != before:
                    self._unqueue(t)
                    t.step, t.steps, t.next_step = after
                    self._park(t)
                    self._emit(t, "STEP_CHANGED")
        self._route_available(conf.mrd)

    def _route_available(self, mrd: str) -> None:
        """After a config change: each queue of the MRD in name order, each of
        its availability indexes (per step) in selection order, takes work."""
        for qid in sorted(self.cfg.queues):
            q = self.cfg.queues[qid]
            if q.mrd != mrd:
                continue
            for k in range(1, len(q.steps) + 1) if q.steps else [None]:
                index = [a for a in sorted(self.agents) if qid in self.agents[a].queues
                         and self.available(a, mrd) and self.first_step(a, qid) == k]
                for a in sorted(index, key=lambda a: (self._score(a, q, qid), a)):
                    if not self.waiting(qid):
                        break
                    self._route_agent(a, mrd)
        # Then the agents that tasks of the MRD wait for as preferred agent.
        preferred = {t.pref for t in self.tasks.values()
                     if t.parked == "p" and self.cfg.queues[t.queue].mrd == mrd}
        for a in sorted(preferred):
            self._route_agent(a, mrd)

    def set_task_priority(self, task_id: str, priority: int) -> MTask:
        """A waiting task takes the place its new priority gives it."""
        if not 0 <= priority <= 100:
            refuse(ValidationError, "priority")
        t = self._task(task_id)
        if t.state != "ACTIVE" or not t.parked:
            refuse(InvalidTransition, "not waiting")
        self._unqueue(t)
        t.priority = priority
        self._set_step(t)
        self._park(t)
        self._emit(t, "REPRIORITIZED")
        return t

    def put_mrd_blocks(self, mrd: str, blocks: tuple[str, ...]) -> None:
        """An MRD's blocks change: agents whose block lifts take work."""
        if mrd in blocks:
            refuse(ValidationError, "an MRD cannot block itself")
        for x in blocks:
            if x not in self.cfg.mrds:
                refuse(NotFound, f"mrd {x}")
        old = self.cfg.mrds[mrd]
        self.cfg.mrds[mrd] = MrdConf(old.max_requests, old.auto_join, old.wrap_up, old.wrap_up_ms,
                                     tuple(sorted(set(blocks))))
        for x in sorted(set(old.blocks) ^ set(blocks)):
            self._route_available(x)

    def accept(self, task_id: str, media_id: str, agent: str | None) -> MTask:
        t = self._task(task_id)
        m = self._media(t, media_id)
        if m.state != "RESERVED" or t.state != "ACTIVE":
            refuse(InvalidTransition, f"media {m.id} is {m.state}")
        if agent is not None and agent != t.assigned:
            refuse(InvalidTransition, "reserved to another agent")
        self.timers.pop(f"rona|{t.id}|{m.id}", None)
        m.state, m.answered = "ACTIVE", True
        self._emit(t, "ACCEPTED")
        return t

    def close_media(self, task_id: str, media_id: str) -> MTask:
        t = self._task(task_id)
        m = self._media(t, media_id)
        if m.state == "CLOSED" or t.state != "ACTIVE":
            refuse(InvalidTransition, "already closed")
        if m.state != "ACTIVE":  # the customer left before an agent joined
            self._end(t, "CANCELLED", "CLOSED")
        elif len(t.open_media()) > 1:
            m.state = "CLOSED"
            self._emit(t, "MEDIA_CLOSED")
            self._freed(t.assigned, t.mrd)
        else:
            self._finish(t, "DONE")
        return t

    def set_task_state(self, task_id: str, name: str, reason: str | None) -> MTask:
        if name not in ("WRAP_UP", "CLOSED"):
            refuse(ValidationError, "name")
        if reason is not None and reason not in REASONS:
            refuse(ValidationError, "reasonCode")
        t = self._task(task_id)
        if t.state == "CLOSED":
            refuse(InvalidTransition, "already closed")
        if name == "WRAP_UP":
            mrd = self.cfg.mrds[t.mrd]
            if t.state != "ACTIVE" or not t.media_in("ACTIVE"):
                refuse(InvalidTransition, "no active media to wrap up")
            if not mrd.wrap_up:
                refuse(InvalidTransition, "wrap-up not enabled")
            self._freed(self._wrap(t, reason or "DONE", mrd.wrap_up_ms, "WRAP_UP"), t.mrd)
        elif reason == "RONA":  # a decline
            if t.state != "ACTIVE" or not t.media_in("RESERVED"):
                refuse(InvalidTransition, "not reserved")
            self._reroute(t, "RONA", "DECLINED")
        else:
            if reason is None:
                joined = t.state != "ACTIVE" or t.media_in("ACTIVE")
                reason = "DONE" if joined else "CANCELLED"
            self._end(t, reason, "CLOSED")
        return t

    def pull_task(self, agent: str, conv: str, mrd: str, *, direction: str = "INBOUND",
                  session: dict | None = None, metadata: dict | None = None) -> tuple[MTask, bool]:
        if direction not in ("INBOUND", "OUTBOUND"):
            refuse(ValidationError, "direction")
        a = self._agent(agent)
        conf = self.cfg.mrds.get(mrd)
        if conf is None:
            refuse(NotFound, f"mrd {mrd}")
        if a.state == "LOGOUT":
            refuse(InvalidTransition, "logged out")
        mine = [t for t in self.live_tasks(agent) if t.conv == conv and t.mrd == mrd]
        joinable = [t for t in mine if t.state == "ACTIVE" and t.media_in("ACTIVE")]
        if mine and not joinable:
            refuse(InvalidTransition, "holds the conversation in a task it cannot join")
        t = joinable[0] if joinable else None
        if t and conf.auto_join:
            return t, False
        if self.held(agent, mrd) >= self.max_requests(agent, mrd):
            refuse(InvalidTransition, "at capacity")
        if t:
            self.seq += 1
            t.media.append(MMedia(f"m-{self.seq}", mrd, "ACTIVE", None, True, session or {}, True))
            created = False
            self._emit(t, "MEDIA_ADDED")
        else:
            t = self._new_task(conv=conv, direction=direction, mode="AGENT", queue=None, mrd=mrd,
                               priority=1, media_state="ACTIVE", session=session or {},
                               metadata=metadata or {}, ttl_ms=None)
            t.assigned = agent
            created = True
            self._emit(t, "CREATED")
        a.mrds[mrd].la = self.now
        return t, created

    def transfer(self, conv: str, from_agent: str, *, queue: str | None = None,
                 agent: str | None = None, sla_ms: int | None = None,
                 metadata: dict | None = None) -> MTask:
        if (queue is None) == (agent is None):
            refuse(ValidationError, "exactly one of queueId and agentId")
        self._agent(from_agent)
        olds = [t for t in self.live_tasks(from_agent)
                if t.conv == conv and t.state == "ACTIVE" and t.media_in("ACTIVE")]
        if not olds:
            refuse(InvalidTransition, "no active task for the conversation")
        if len(olds) > 1:
            # The API names no MRD: an agent in a conversation on two MRDs
            # could mean either task.
            raise Ambiguous(f"{from_agent} holds {conv} on {[t.mrd for t in olds]}")
        old = olds[0]
        if queue is not None:
            q = self.cfg.queues.get(queue)
            if q is None:
                refuse(NotFound, f"queue {queue}")
        else:
            self._agent(agent)
            if agent == from_agent:
                refuse(InvalidTransition, "transfer to itself")
            if any(t.conv == conv for t in self.live_tasks(agent)):
                refuse(InvalidTransition, "the agent already holds the conversation")
        session = old.media_in("ACTIVE").session
        meta = metadata if metadata is not None else old.metadata
        if queue is not None:
            nt = self._new_task(conv=conv, direction="DIRECT_TRANSFER", mode="QUEUE", queue=queue,
                                mrd=q.mrd, priority=old.priority, media_state="QUEUED",
                                session=session, metadata=meta, ttl_ms=q.ttl_ms, exclude=from_agent)
            self._emit(nt, "CREATED")
            self._route_task(nt)
        else:
            sla = sla_ms or self._queue_sla(old.queue)
            nt = self._new_task(conv=conv, direction="DIRECT_TRANSFER", mode="AGENT", queue=None,
                                mrd=old.mrd, priority=old.priority, media_state="QUEUED",
                                session=session, metadata=meta, ttl_ms=sla, sla_ms=sla)
            self._offer_named(nt, agent)
        # The transferring agent's side: WRAP_UP, then CLOSED, both TRANSFERRED.
        self._wrap(old, "TRANSFERRED", None, "TRANSFERRED")
        self._end(old, "TRANSFERRED", "CLOSED")
        return nt

    def conference_agent(self, conv: str, agent: str, *, mrd: str | None = None,
                         sla_ms: int | None = None, session: dict | None = None,
                         metadata: dict | None = None) -> MTask:
        self._agent(agent)
        live = [t for t in self.conversation(conv) if t.live and (mrd is None or t.mrd == mrd)]
        # The conversation's newest live task (by creation; within one step,
        # the index orders ids as strings).
        host = max(live, key=lambda t: (t.created, t.id)) if live else None
        mrd = mrd or (host.mrd if host else None)
        if mrd is None:
            refuse(ValidationError, "mrdId is required")
        if mrd not in self.cfg.mrds:
            refuse(NotFound, f"mrd {mrd}")
        if any(t.conv == conv for t in self.live_tasks(agent)):
            refuse(InvalidTransition, "the agent already holds the conversation")
        host_queue = host.queue if host else None
        sla = sla_ms or self._queue_sla(host_queue)
        t = self._new_task(conv=conv, direction="DIRECT_CONFERENCE", mode="AGENT", queue=None,
                           mrd=mrd, priority=host.priority if host else 1, media_state="QUEUED",
                           session=session or {}, metadata=metadata or {}, ttl_ms=sla, sla_ms=sla)
        self._offer_named(t, agent)
        return t

    def set_agent_state(self, agent: str, state: str, *, mrd: str | None = None,
                        reason: str | None = None) -> MAgent:
        allowed = ("LOGIN", "READY", "NOT_READY", "LOGOUT") if mrd is None else ("READY", "NOT_READY")
        if state not in allowed:
            refuse(ValidationError, "state")
        a = self._agent(agent)
        logged_out = a.state == "LOGOUT"
        if mrd is not None:
            if mrd not in self.cfg.mrds:
                refuse(NotFound, f"mrd {mrd}")
            if logged_out:
                refuse(InvalidTransition, "logged out")
            self._set_base(agent, mrd, state, reason)
            self._follow_mrds(agent, None)
            self._freed(agent, mrd)
            return a
        if state == "NOT_READY" and logged_out:
            refuse(InvalidTransition, "logged out")
        if (state == "LOGIN" and not logged_out) or (state == "LOGOUT" and logged_out):
            return a
        a.state, a.reason = state, reason
        for m in sorted(self.cfg.mrds):
            self._set_base(agent, m, "NOT_READY" if state == "LOGIN" else state, reason)
        if state == "LOGOUT":
            # Reserved tasks are re-routed, the others end; oldest first.
            for t in sorted(self.live_tasks(agent), key=lambda t: t.seq):
                if t.media_in("RESERVED"):
                    self._reroute(t, "REROUTE", "REROUTED")
                else:
                    self._close(t, "AGENT_LOGOUT", "CLOSED")
        if state == "READY":
            for m in sorted(self.cfg.mrds):
                self._route_agent(agent, m)
        return a

    # Configuration: put again and deleted

    def put_agent(self, agent: str, queues: list[str] | tuple[str, ...],
                  attributes: dict[str, Any], overrides: dict[str, int]) -> MAgent:
        """Creates an agent (LOGOUT) or replaces its queues, attributes and
        overrides (keeping its states and tasks); it takes what it now may.
        A queue that does not exist is refused."""
        unknown = [q for q in queues if q not in self.cfg.queues]
        if unknown:
            refuse(NotFound, f"queue {unknown[0]}")
        qs = tuple(dict.fromkeys(queues))
        a = self.agents.get(agent)
        if a is None:
            a = self.agents[agent] = MAgent(agent, qs, dict(overrides),
                                            mrds={m: MMrdState() for m in self.cfg.mrds})
        a.queues, a.attributes, a.overrides = qs, dict(attributes), dict(overrides)
        for m in sorted(self.cfg.mrds):
            self._route_agent(agent, m)
        return a

    def put_mrd(self, mrd: str, conf: MrdConf) -> None:
        """Only an MRD that does not exist (one deleted, made again)."""
        assert mrd not in self.cfg.mrds
        self.cfg.mrds[mrd] = conf
        for a in self.agents.values():
            a.mrds[mrd] = MMrdState()

    def delete_agent(self, agent: str) -> None:
        self._agent(agent)
        if self.live_tasks(agent):
            refuse(InvalidTransition, f"agent {agent} holds tasks")
        if any(t.parked == "p" and t.pref == agent for t in self.tasks.values()):
            refuse(InvalidTransition, f"tasks wait for agent {agent} as their preferred agent")
        del self.agents[agent]

    def delete_queue(self, queue: str) -> None:
        if queue not in self.cfg.queues:
            refuse(NotFound, f"queue {queue}")
        if any(queue in a.queues for a in self.agents.values()):
            refuse(InvalidTransition, f"agents list queue {queue}")
        if any(c.overflow and c.overflow[1] == queue for q, c in self.cfg.queues.items() if q != queue):
            refuse(InvalidTransition, f"queue {queue} is an overflow queue")
        if self.queued(queue) or any(t.live and t.queue == queue and t.media_in("RESERVED")
                                      for t in self.tasks.values()):
            refuse(InvalidTransition, f"queue {queue} has waiting or reserved tasks")
        del self.cfg.queues[queue]
        self.counted.pop(queue, None)

    def delete_mrd(self, mrd: str) -> None:
        """Every agent loses its state on the MRD; a logged-in one is READY
        while another MRD is."""
        if mrd not in self.cfg.mrds:
            refuse(NotFound, f"mrd {mrd}")
        if any(q.mrd == mrd for q in self.cfg.queues.values()):
            refuse(InvalidTransition, f"queues use mrd {mrd}")
        if any(mrd in c.blocks for c in self.cfg.mrds.values()):
            refuse(InvalidTransition, f"mrd {mrd} is blocked by another")
        if any(self.held(a, mrd) for a in self.agents):
            refuse(InvalidTransition, f"agents hold tasks on mrd {mrd}")
        del self.cfg.mrds[mrd]
        for a in sorted(self.agents):
            del self.agents[a].mrds[mrd]
            self._follow_mrds(a, None)

    def pass_time(self, ms: int) -> int:
        """Time passes; the deadlines due fire in deadline order. Returns how
        many changed a task."""
        self.now += ms
        due = sorted((at, member) for member, at in self.timers.items() if at <= self.now)
        fired = 0
        for _, member in due:
            # Removed, or set again for later, by an earlier deadline of this pass: not due.
            at = self.timers.get(member)
            if at is None or at > self.now:
                continue
            self.timers.pop(member, None)
            kind, tid, *rest = member.split("|")
            t = self.tasks.get(tid)
            if t is None or not t.live:
                continue
            if kind == "ttl" and t.media_in("QUEUED"):
                self._close(t, "NO_AGENT_AVAILABLE", "TTL_EXPIRED")
                self._no_agent(t)
                fired += 1
            elif kind == "rona" and any(m.id == rest[0] and m.state == "RESERVED" for m in t.media):
                self._reroute(t, "RONA", "RONA")
                fired += 1
            elif kind == "wrap" and t.state == "WRAP_UP":
                self._end(t, "WRAP_UP_EXPIRED", "CLOSED")
                fired += 1
            elif (kind == "step" and t.parked == "q") or (kind == "pref" and t.parked == "p"):
                self._restep(t)
                fired += 1
            elif kind == "ovf" and t.parked and self._overflow_due(t) is not None:
                self._unqueue(t)
                self._route_task(t)
                fired += 1
        return fired

    # Views, in the shapes the test compares (times left out; see check_times)

    def task_view(self, t: MTask) -> dict[str, Any]:
        return {
            "id": t.id, "requestId": t.request_id, "conversationId": t.conv,
            "state": t.state, "reasonCode": t.reason, "assignedTo": t.assigned,
            "direction": t.direction, "mode": t.mode, "queueId": t.queue, "mrdId": t.mrd,
            "priority": t.priority, "metadata": t.metadata,
            "routing": {"step": t.step, "steps": t.steps, "preferredAgentId": t.pref,
                        "nextStepIn": None if t.next_step is None else t.next_step - t.enqueue,
                        "preferredFor": None if t.pref_until is None else t.pref_until - t.enqueue},
            "media": [{"id": m.id, "mrdId": m.mrd, "state": m.state, "queueId": m.queue,
                       "answered": m.answered, "requestSession": m.session} for m in t.media],
        }

    def agent_view(self, agent: str) -> dict[str, Any]:
        a = self.agents[agent]
        return {
            "id": a.id, "state": a.state, "reasonCode": a.reason, "queues": list(a.queues),
            "maxRequests": dict(a.overrides),
            "mrdStates": [{"mrdId": m, "state": self.shown(agent, m), "reasonCode": a.mrds[m].reason,
                           "activeTasks": self.held(agent, m),
                           "maxRequests": self.max_requests(agent, m),
                           "blockedBy": self.blocked_by(agent, m)}
                          for m in sorted(self.cfg.mrds)],
        }

    def queue_view(self, queue: str) -> dict[str, Any]:
        q = self.cfg.queues[queue]
        counts: dict[str, int] = {}
        for a in self.agents.values():
            if queue in a.queues:
                st = self.shown(a.id, q.mrd)
                counts[st] = counts.get(st, 0) + 1
        return {"waiting": len(self.queued(queue)), "agents": counts}

    def listed(self, tasks: list[MTask]) -> list[MTask]:
        """List order: oldest first, then by id number."""
        return sorted(tasks, key=lambda t: (t.created, t.seq))

