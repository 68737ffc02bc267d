"""A random workload over every Engine operation, reproducible from a seed.

    stats = await run_workload(engine, ops=3000, seed=7)

Each step draws the same number of random values whatever the state, so the
sequence of operations a seed produces is fixed; which targets they hit
(tasks, medias) is read from Redis at that moment. Operations the state does
not allow fail with redroute errors, which are counted and ignored; any
other exception (a script error) propagates.

Time. The tenant clock moves 1 ms before every step (so no two steps share a
millisecond, which keeps LONGEST_AVAILABLE and arrival ties in step order)
and by whole multiples of UNIT_MS in pass_time steps, which then fire what is
due. Every duration configured (RONA, TTL, wrap-up) is a multiple of UNIT_MS
too, so whether a deadline has passed depends on the steps only, not on how
long the run takes in real time, as long as the run takes less than UNIT_MS
minus one millisecond per step (25 s - ops ms). So a seed replays the same
run on the same server process (any tenant). A different server process
can differ where a script iterates a Redis set (put_mrd over every agent,
put_queue over a queue's members: hash order, seeded per process).

Several processes may run it at once on one tenant (with different seeds,
and setup=True in each, or once beforehand): targets are read from Redis
and a step that lost a race just fails with a redroute error.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redroute import Engine, RedrouteError
from redroute.model import Task

UNIT_MS = 25_000
SLA_MS = 4 * UNIT_MS  # RONA
WRAP_UP_MS = 8 * UNIT_MS
TTL_MS = 20 * UNIT_MS
DEFAULT_AGENTS = tuple(f"a{i}" for i in range(1, 9))
DEFAULT_QUEUES = {"sales": "chat", "support": "chat", "phone": "voice"}


@dataclass
class WorkloadStats:
    attempted: Counter[str] = field(default_factory=Counter)
    succeeded: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # by op and error code
    fired: int = 0  # deadlines fired by pass_time steps

    @property
    def total(self) -> int:
        return sum(self.attempted.values())


async def setup_workload(engine: Engine, agents: Sequence[str] = DEFAULT_AGENTS,
                         queues: dict[str, str] | None = None) -> None:
    """Two MRDs (chat: 2 per agent with wrap-up; voice: 1, autoJoin), their
    queues with both selection policies, and agents in overlapping queues."""
    queues = queues or DEFAULT_QUEUES
    await engine.put_mrd("chat", max_requests=2, wrap_up_enabled=True, wrap_up_timeout_ms=WRAP_UP_MS)
    await engine.put_mrd("voice", max_requests=1, auto_join=True)
    for i, (qid, mrd) in enumerate(sorted(queues.items())):
        await engine.put_queue(qid, mrd_id=mrd, agent_sla_ms=SLA_MS, agent_request_ttl_ms=TTL_MS,
                               agent_selection_policy="LEAST_ACTIVE" if i % 2 else "LONGEST_AVAILABLE")
    names = sorted(queues)
    for i, aid in enumerate(agents):
        mine = [q for j, q in enumerate(names) if (i + j) % 3 != 2]
        await engine.put_agent(aid, queues=mine, max_requests=_override(i))


def _override(i: int) -> dict[str, int] | None:
    return {"chat": 3} if i % 4 == 3 else None


class _Draw:
    """The random values of one step, drawn up front."""

    def __init__(self, rng: random.Random, n: int = 8) -> None:
        self.v = [rng.random() for _ in range(n)]

    def pick(self, i: int, items: Sequence[object]) -> object:
        return items[min(int(self.v[i] * len(items)), len(items) - 1)] if items else None

    def chance(self, i: int, p: float) -> bool:
        return self.v[i] < p


_OPS: list[tuple[str, int]] = [
    ("push", 18), ("agent_state", 9), ("mrd_state", 4), ("accept", 18), ("decline", 4),
    ("close_media", 11), ("wrap_up", 3), ("close_task", 4), ("cancel_queued", 2), ("pull", 5),
    ("conference", 3), ("transfer", 4), ("pass_time", 5), ("put_agent", 1), ("put_mrd", 1),
    ("put_queue", 1), ("read", 2),
]


async def run_workload(
    engine: Engine, ops: int, seed: int, *, agents: Sequence[str] = DEFAULT_AGENTS,
    queues: dict[str, str] | None = None, conversations: int = 40, conversation_prefix: str = "c-",
    setup: bool = True, capacity_changes: bool = False,
) -> WorkloadStats:
    """Runs `ops` random operations on engine's tenant; see the module doc.
    capacity_changes: configuration steps also change maxRequests (up and
    down), which can leave an agent above its new maxRequests until its
    tasks end (held over by configuration, which the invariants allow)."""
    queues = queues or DEFAULT_QUEUES
    if setup:
        await setup_workload(engine, agents, queues)
    rng = random.Random(seed)
    names, weights = zip(*_OPS, strict=True)
    queue_ids, mrds = sorted(queues), sorted(set(queues.values()))
    convs = [f"{conversation_prefix}{i}" for i in range(conversations)]
    stats = WorkloadStats()

    for _ in range(ops):
        op = rng.choices(names, weights)[0]
        d = _Draw(rng)
        stats.attempted[op] += 1
        await engine.advance_clock(1)
        agent, conv = str(d.pick(0, agents)), str(d.pick(1, convs))
        try:
            await _step(engine, op, d, agent, conv, agents, queue_ids, mrds, stats, capacity_changes)
            stats.succeeded[op] += 1
        except RedrouteError as e:
            stats.errors[f"{op} {e.code}"] += 1
    return stats


async def _step(engine: Engine, op: str, d: _Draw, agent: str, conv: str, agents: Sequence[str],
                queue_ids: list[str], mrds: list[str], stats: WorkloadStats,
                capacity_changes: bool) -> None:
    queue = str(d.pick(2, queue_ids))

    async def agent_tasks(aid: str) -> list[Task]:
        try:
            return await engine.agent_tasks(aid)
        except RedrouteError:
            return []

    async def first_with(start: str, select: Callable[[list[Task]], list[Any]]) -> tuple[str, list[Any]]:
        """The first agent from start on (in order, wrapping) that has targets."""
        i = list(agents).index(start)
        for k in range(len(agents)):
            aid = agents[(i + k) % len(agents)]
            found = select(await agent_tasks(aid))
            if found:
                return aid, found
        raise _Nothing()

    if op == "push":
        ttl = d.pick(4, [None, None, None, 6 * UNIT_MS, 12 * UNIT_MS])
        await engine.push_task(conv, queue, priority=int(d.pick(3, [0, 1, 1, 1, 5])),
                               agent_request_ttl_ms=ttl, metadata={"n": int(d.v[5] * 1000)})
    elif op == "agent_state":
        state = str(d.pick(2, ["READY", "READY", "READY", "READY", "NOT_READY", "LOGIN", "LOGOUT"]))
        await engine.set_agent_state(agent, state, reason_code="BREAK" if d.chance(3, 0.2) else None)
    elif op == "mrd_state":
        await engine.set_agent_state(agent, str(d.pick(2, ["READY", "READY", "NOT_READY"])),
                                     mrd_id=str(d.pick(3, mrds)))
    elif op in ("accept", "decline"):
        agent, reserved = await first_with(agent, lambda ts: [(t, m) for t in ts for m in t.active_media
                                                              if m.state == "RESERVED"])
        t, m = d.pick(2, reserved)
        if op == "decline":
            await engine.set_task_state(t.id, "CLOSED", "RONA")
        else:
            who = str(d.pick(4, agents)) if d.chance(3, 0.05) else agent
            await engine.accept(t.id, m.id, who)
    elif op == "close_media":
        _, open_media = await first_with(agent, lambda ts: [(t, m) for t in ts for m in t.active_media
                                                            if m.state != "CLOSED"])
        t, m = d.pick(2, open_media)
        await engine.close_media(t.id, m.id)
    elif op == "wrap_up":
        _, held = await first_with(agent, lambda ts: [t for t in ts if t.state == "ACTIVE"])
        await engine.set_task_state(d.pick(2, held).id, "WRAP_UP")
    elif op == "close_task":
        t = d.pick(2, [t for t in await engine.conversation_tasks(conv) if t.state != "CLOSED"])
        if t is None:
            raise _Nothing
        await engine.set_task_state(t.id, "CLOSED", d.pick(3, [None, "FORCE_CLOSED", "DONE", "CANCELLED"]))
    elif op == "cancel_queued":
        queued = [(t, m) for t in await engine.conversation_tasks(conv) for m in t.active_media
                  if m.state == "QUEUED"]
        if not queued:
            raise _Nothing
        t, m = d.pick(2, queued)
        await engine.close_media(t.id, m.id)
    elif op == "pull":
        await engine.pull_task(agent, conv, str(d.pick(3, mrds)),
                               direction=str(d.pick(4, ["INBOUND", "OUTBOUND"])))
    elif op == "conference":
        if d.chance(3, 0.5):
            await engine.conference(conv, queue_id=queue)
        else:
            await engine.conference(conv, agent_id=str(d.pick(4, agents)),
                                    sla_ms=int(d.pick(5, [SLA_MS, 2 * SLA_MS])))
    elif op == "transfer":
        agent, active = await first_with(agent, lambda ts: [
            t for t in ts if t.state == "ACTIVE" and any(m.state == "ACTIVE" for m in t.active_media)])
        t = d.pick(2, active)
        if d.chance(3, 0.5):
            await engine.transfer(t.conversation_id, agent, queue_id=queue)
        else:
            await engine.transfer(t.conversation_id, agent, agent_id=str(d.pick(4, agents)),
                                  sla_ms=SLA_MS)
    elif op == "pass_time":
        await engine.advance_clock(int(d.pick(2, [1, 1, 2, 4])) * UNIT_MS)
        while True:
            r = await engine.fire_due()
            stats.fired += r.fired
            if r.processed < 500:
                break
    elif op == "put_agent":
        mine = [q for i, q in enumerate(queue_ids) if d.v[2 + i % 5] < 0.7] or [queue]
        if capacity_changes and d.chance(6, 0.5):
            override = {"chat": int(d.pick(7, [1, 2, 3]))}
        else:
            override = _override(list(agents).index(agent))
        await engine.put_agent(agent, queues=mine, attributes={"skill": int(d.v[5] * 10)},
                               max_requests=override)
    elif op == "put_mrd":
        chat = int(d.pick(3, [1, 2, 3])) if capacity_changes else 2
        voice = int(d.pick(3, [1, 1, 2])) if capacity_changes else 1
        if d.chance(2, 0.5):
            await engine.put_mrd("chat", max_requests=chat, wrap_up_enabled=d.chance(4, 0.7),
                                 wrap_up_timeout_ms=WRAP_UP_MS)
        else:
            await engine.put_mrd("voice", max_requests=voice, auto_join=d.chance(4, 0.7))
    elif op == "put_queue":
        q = await engine.get_queue(queue)
        await engine.put_queue(queue, mrd_id=q.mrd_id, agent_sla_ms=SLA_MS, agent_request_ttl_ms=TTL_MS,
                               agent_selection_policy=str(d.pick(3, ["LONGEST_AVAILABLE", "LEAST_ACTIVE"])))
    elif op == "read":
        await engine.get_queue(queue)
        await engine.conversation_tasks(conv)
    else:  # pragma: no cover
        raise AssertionError(op)


class _Nothing(RedrouteError):
    """No target for the step in the current state (counted like an error)."""

    code = "NO_TARGET"

    def __init__(self, detail: str = "no target in the current state") -> None:
        super().__init__(detail)
