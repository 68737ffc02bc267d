"""One replication: the discrete-event loop that drives the real Engine (the
production Lua scripts) on a tenant's virtual clock.

The loop keeps a heap of what the people do next (a customer arrives or
hangs up, an agent accepts, ends the media, ends wrap-up, comes back READY
after a RONA) and asks Redis for the tenant's earliest deadline (TTL, RONA,
wrap-up, steps, overflow). It moves the clock to whichever comes first
(Engine.set_clock), fires due deadlines with fire_due, performs the people's
moves through the Engine, and reads what the router did from the tenant's
event stream (a reservation made by any script is an AGENT_RESERVED event):
each reaction is scheduled at the virtual time it takes. Nothing waits in
real time, and every draw comes from seeded streams, so a replication is
reproducible bit for bit on either backend.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from ..engine import Engine
from ..errors import InvalidTransition, NotFound, QueueFull, ValidationError
from ..scripts import ScriptRunner
from .scenario import Scenario

FIRE_BATCH = 500

# What the people do, in the heap: (time, seq, kind, args).
ARRIVE, ACCEPT, END_MEDIA, END_WRAP, ABANDON, AGENT_READY = range(6)


@dataclass(slots=True)
class RequestSpec:
    """One customer request: when it arrives (ms after the start) and what
    its people will take. noAnswers: how many reservations the agents leave
    unanswered before one accepts (None: drawn per reservation)."""

    queue_id: str
    at: int
    handle_ms: int
    accept_ms: int
    wrap_ms: int
    patience_ms: int | None
    priority: int = 1
    no_answers: int | None = None


@dataclass(slots=True)
class RequestRecord:
    """What happened to a request, in ms after the start (None: never)."""

    n: int
    queue_id: str
    arrival: int
    reserved: int | None = None  # first reservation
    answered: int | None = None  # accepted
    ended: int | None = None
    outcome: str | None = None  # ANSWERED, ABANDONED, EXPIRED, BLOCKED, or None (still live)
    reservations: int = 0

    @property
    def wait_ms(self) -> int | None:
        """Time to answer (ASA's wait), or to abandon / expire."""
        if self.answered is not None:
            return self.answered - self.arrival
        return None if self.ended is None else self.ended - self.arrival


@dataclass(slots=True)
class Busy:
    """An agent slot held for a request: from reservation to its task's close."""

    queue_id: str
    start: int
    end: int


@dataclass
class ReplicationResult:
    scenario: str
    replication: int
    seed: int
    requests: list[RequestRecord]
    busy: list[Busy]
    end_ms: int  # when the last request ended, ms after the start
    script_calls: int
    tenant: str = ""
    unfinished: int = 0  # requests still live when the loop stopped (should be 0)
    stats: dict[str, Any] = field(default_factory=dict)


def rng_for(seed: int, replication: int, purpose: str) -> random.Random:
    """An independent, reproducible stream per purpose, so that a what-if
    change (two more agents) leaves the traffic's draws as they were."""
    return random.Random(f"redroute-sim:{seed}:{replication}:{purpose}")


def draw_requests(scenario: Scenario, replication: int) -> list[RequestSpec]:
    """The replication's traffic: Poisson arrivals per stream (piecewise
    constant rates), merged in time order, each request with its durations
    drawn in that order from the scenario's distributions."""
    times: list[tuple[int, int, str, int]] = []
    for i, a in enumerate(scenario.arrivals):
        rng = rng_for(scenario.seed, replication, f"arrivals:{i}")
        seg = a.intervalMs if isinstance(a.ratePerHour, list) else scenario.durationMs
        start = 0
        while start < scenario.durationMs:
            end = min(scenario.durationMs, start + seg)
            if isinstance(a.ratePerHour, list) and start // seg >= len(a.ratePerHour) - 1:
                end = scenario.durationMs  # the last rate holds to the end
            rate = a.rate_at(start)
            t = float(start)
            while rate > 0:
                t += rng.expovariate(rate)
                if t >= end:
                    break
                times.append((int(t), i, a.queueId, a.priority))
            start = end
    times.sort()
    draws = {p: rng_for(scenario.seed, replication, p) for p in ("handle", "accept", "wrap", "patience")}
    out = []
    for at, _, queue_id, priority in times:
        q = scenario.queue(queue_id)
        patience = q.patience or scenario.patience
        out.append(RequestSpec(
            queue_id, at,
            (q.handle or scenario.handle).sample(draws["handle"]),
            (q.accept or scenario.accept).sample(draws["accept"]),
            (q.wrapUpTime or scenario.wrapUpTime).sample(draws["wrap"]),
            None if patience is None else patience.sample(draws["patience"]),
            priority))
    return out


async def configure(engine: Engine, scenario: Scenario) -> None:
    """The scenario's MRDs, queues and agents on the engine's tenant, every
    agent READY, in the scenario's order."""
    for m in scenario.mrds:
        await engine.put_mrd(m.id, max_requests=m.maxRequests, wrap_up_enabled=m.wrapUp.enabled,
                             wrap_up_timeout_ms=m.wrapUp.timeoutMs)
    for m in scenario.mrds:
        if m.blocks:
            await engine.put_mrd(m.id, max_requests=m.maxRequests, wrap_up_enabled=m.wrapUp.enabled,
                                 wrap_up_timeout_ms=m.wrapUp.timeoutMs, blocks=m.blocks)
    for q in sorted(scenario.queues, key=lambda q: q.overflow is not None):
        try:
            await engine.put_queue(
                q.id, mrd_id=q.mrdId, agent_request_ttl_ms=q.agentRequestTtlMs,
                agent_sla_ms=q.agentSlaMs, agent_selection_policy=q.agentSelectionPolicy,
                service_level_threshold_ms=q.serviceLevelThresholdMs, steps=q.steps,
                priority_unit_ms=q.priorityUnitMs, max_waiting=q.maxWaiting, overflow=q.overflow)
        except ValidationError as e:  # steps are checked by the router's own compiler
            raise ValidationError(f"queue {q.id}: {e}") from e
    for g in scenario.agents:
        for agent_id in g.agent_ids():
            await engine.put_agent(agent_id, queues=g.queues, attributes=g.attributes,
                                   max_requests=g.maxRequests)
            await engine.set_agent_state(agent_id, "READY")


class BatchingRunner(ScriptRunner):
    """The simulation's script runner: the same scripts, called through the
    same Engine methods, with fewer round trips. A clock move (set_clock) is
    held back and sent with the next script call, and the reads the loop
    needs after every step (the tenant's new events and its earliest
    deadline) follow that call in the same pipeline: one round trip per
    step instead of four. The scripts must be loaded first (load_all)."""

    def __init__(self, base: ScriptRunner, sim: Simulation) -> None:
        super().__init__(base.scripts, base.library)
        self._sim = sim
        self._held: list[tuple[str, list[Any], list[Any]]] = []

    async def call(self, redis: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        if name == "set_clock":
            self._held.append((name, keys, args))
            return int(args[-1])
        calls = [*self._held, (name, keys, args)]
        self._held = []
        async with redis.pipeline(transaction=False) as p:
            for n, k, a in calls:
                self.add(p, redis, n, k, a)
            self._sim.add_reads(p)
            results = await p.execute(raise_on_error=False)
        self._sim.calls += len(calls)
        self._sim.digest(results[len(calls):])
        for (n, _, _), r in zip(calls, results, strict=False):
            if isinstance(r, ResponseError):
                raise type(r)(self.locate(redis, n, str(r)))
        return results[len(calls) - 1]


class Simulation:
    """One replication of a scenario on an engine whose tenant is the
    simulation's own (its keys are written; give it a fresh tenant).

        result = await Simulation(engine, scenario, replication=0).run()

    requests: the traffic to play (default: drawn from the scenario)."""

    def __init__(self, engine: Engine, scenario: Scenario, replication: int = 0,
                 requests: list[RequestSpec] | None = None) -> None:
        self.engine = Engine(engine.redis, engine.tenant, runner=BatchingRunner(engine.runner, self),
                             events_maxlen=engine.events_maxlen, retention_ms=engine.retention_ms)
        self.scenario = scenario
        self.replication = replication
        self.specs = requests if requests is not None else draw_requests(scenario, replication)
        self.start = scenario.startTime
        self.now = self.start
        self._heap: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self.records: list[RequestRecord] = []
        self._by_conv: dict[str, int] = {}
        self._task_of: list[str | None] = []
        self._busy_open: dict[str, tuple[str, int]] = {}  # task id -> (queue, start)
        self.busy: list[Busy] = []
        self._ready_pending: set[tuple[str, str]] = set()
        self._rona = rng_for(scenario.seed, replication, "rona")
        self._recovery = rng_for(scenario.seed, replication, "recovery")
        self._live = 0
        self._last_id = "-"
        self._next_deadline = -1
        self.calls = 0

    # The heap

    def _at(self, t: int, kind: int, *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, args))

    # The loop

    async def run(self) -> ReplicationResult:
        e = self.engine
        await e.runner.load_all(e.redis)
        await e.set_clock(self.start)
        await configure(e, self.scenario)
        for n, spec in enumerate(self.specs):
            self.records.append(RequestRecord(n, spec.queue_id, spec.at))
            self._task_of.append(None)
            self._by_conv[f"c-{n}"] = n
            self._at(self.start + spec.at, ARRIVE, n)
        self._live = len(self.specs)
        stale = -1
        while self._live > 0:
            t_people = self._heap[0][0] if self._heap else None
            t_deadline = self._next_deadline if self._next_deadline >= 0 else None
            if t_deadline is not None and t_deadline == stale:
                t_deadline = None
            if t_people is None and t_deadline is None:
                break
            t = min(x for x in (t_people, t_deadline) if x is not None)
            if t > self.now:
                await e.set_clock(t)  # sent with the next call
                self.now = t
            if t_deadline is not None and t_deadline <= t and t_deadline != stale:
                while True:
                    fr = await e.fire_due(FIRE_BATCH)
                    if fr.processed < FIRE_BATCH:
                        break
                # A deadline still at the head after a pass that took none is
                # not due yet at t (never expected; guards the loop).
                stale = self._next_deadline if fr.processed == 0 else -1
                continue  # the people at t act after the router's deadlines at t
            _, _, kind, args = heapq.heappop(self._heap)
            await self._act(kind, *args)
        end = max((r.ended for r in self.records if r.ended is not None), default=0)
        return ReplicationResult(self.scenario.name, self.replication, self.scenario.seed,
                                 self.records, self.busy, end, self.calls, e.tenant,
                                 unfinished=self._live)

    async def _act(self, kind: int, *args: Any) -> None:
        """Performs one move (what the router did in reply is read with it)."""
        e = self.engine
        try:
            if kind == ARRIVE:
                (n,) = args
                spec = self.specs[n]
                try:
                    t = await e.push_task(f"c-{n}", spec.queue_id, priority=spec.priority)
                except QueueFull:
                    self._end(n, "BLOCKED")
                    return
                self._task_of[n] = t.id
                if spec.patience_ms is not None:
                    self._at(self.now + spec.patience_ms, ABANDON, n)
            elif kind == ACCEPT:
                n, task_id, media_id, agent_id = args
                await e.accept(task_id, media_id, agent_id)
                r = self.records[n]
                if r.answered is None:
                    r.answered = self.now - self.start
                self._at(self.now + self.specs[n].handle_ms, END_MEDIA, n, task_id, media_id)
            elif kind == END_MEDIA:
                _, task_id, media_id = args
                await e.close_media(task_id, media_id)
            elif kind == END_WRAP:
                (task_id,) = args
                await e.set_task_state(task_id, "CLOSED", "WRAP_UP_APPLIED")
            elif kind == ABANDON:
                (n,) = args
                r = self.records[n]
                if r.ended is not None or r.answered is not None or self._task_of[n] is None:
                    return
                await e.set_task_state(self._task_of[n], "CLOSED", "CANCELLED")
            elif kind == AGENT_READY:
                agent_id, mrd_id = args
                self._ready_pending.discard((agent_id, mrd_id))
                await e.set_agent_state(agent_id, "READY", mrd_id=mrd_id)
        except (InvalidTransition, NotFound):
            # The router moved first (a RONA before a late accept, a wrap-up
            # that expired, an agent made READY meanwhile): as in production.
            return

    # What the router did

    def add_reads(self, p: Any) -> None:
        """The reads after each step, added to its pipeline: the tenant's new
        events and its earliest deadline."""
        keys = self.engine.keys
        p.xrange(keys.events, self._last_id if self._last_id == "-" else f"({self._last_id}", "+")
        p.zrange(keys.timers, 0, 0, withscores=True)

    def digest(self, reads: list[Any]) -> None:
        """Schedules the people's reactions to what the router did."""
        entries, head = reads
        self._next_deadline = int(head[0][1]) if head else -1
        for entry_id, fields in entries:
            self._last_id = entry_id
            etype, data = fields["type"], fields["data"]
            if etype == "AGENT_STATE_CHANGED" and '"RONA"' not in data:
                continue  # only an agent's RONA asks the people for anything
            self._on_event(etype, json.loads(data))

    def _on_event(self, etype: str, data: dict[str, Any]) -> None:
        rel = self.now - self.start
        if etype == "AGENT_STATE_CHANGED":
            a = data["agent"]
            for m in a["mrdStates"]:
                if m["state"] == "NOT_READY" and m["reasonCode"] == "RONA":
                    k = (a["id"], m["mrdId"])
                    if k not in self._ready_pending:
                        self._ready_pending.add(k)
                        self._at(self.now + self.scenario.ronaRecovery.sample(self._recovery),
                                 AGENT_READY, *k)
            return
        task = data.get("task")
        n = None if task is None else self._by_conv.get(task["conversationId"])
        if n is None:
            return
        r = self.records[n]
        if etype == "AGENT_RESERVED":
            media = next(m for m in task["activeMedia"] if m["state"] == "RESERVED")
            self._task_of[n] = task["id"]
            self._busy_open[task["id"]] = (task["queueId"], rel)
            if r.reserved is None:
                r.reserved = rel
            r.reservations += 1
            spec = self.specs[n]
            if spec.no_answers is not None:
                unanswered = r.reservations <= spec.no_answers
            else:
                unanswered = self._rona.random() < self.scenario.noAnswerProbability
            if not unanswered:
                self._at(self.now + spec.accept_ms, ACCEPT, n, task["id"], media["id"], data["agentId"])
        elif etype == "NO_AGENT_AVAILABLE":
            self._close_busy(task["id"], rel)
            self._end(n, "EXPIRED")
        elif etype == "TASK_STATE_CHANGED":
            state = task["state"]
            if state["name"] == "ACTIVE":
                self._task_of[n] = task["id"]  # a RONA's new task, or an overflow
            elif state["name"] == "WRAP_UP" and data.get("taskStateChanged"):
                self._at(self.now + self.specs[n].wrap_ms, END_WRAP, task["id"])
            elif state["name"] == "CLOSED":
                self._close_busy(task["id"], rel)
                reason = state["reasonCode"]
                if reason in ("RONA", "REROUTE"):
                    return
                if reason == "CANCELLED":
                    self._end(n, "ABANDONED")
                elif reason == "NO_AGENT_AVAILABLE":
                    self._end(n, "EXPIRED")
                else:
                    self._end(n, "ANSWERED" if r.answered is not None else "ABANDONED")

    def _close_busy(self, task_id: str, rel: int) -> None:
        held = self._busy_open.pop(task_id, None)
        if held is not None:
            self.busy.append(Busy(held[0], held[1], rel))

    def _end(self, n: int, outcome: str) -> None:
        r = self.records[n]
        if r.ended is None:
            r.ended = self.now - self.start
            r.outcome = outcome
            self._live -= 1
