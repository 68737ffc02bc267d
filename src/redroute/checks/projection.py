"""The live state of a tenant rebuilt from its event stream alone, and a
comparison with the state in Redis (docs/design.md, invariant 3: replaying the
stream rebuilds the live state exactly).

Every event carries the full API shape of the task or agent it concerns as
it is after the step, so the last event about a task or an agent is its
state. From those snapshots the projection derives:

- tasks (live ones: not CLOSED; closed ones stay until the end of replay),
- agents,
- queue contents: per queue, the ids of the live tasks with a QUEUED media,
  in routing order (higher priority first, then earlier enqueueTime, then
  arrival, i.e. the task's sequence number),
- an agent's live tasks and a conversation's tasks, ordered as the engine
  lists them (createdAt, then id).

`apply` is idempotent and order-tolerant: a snapshot older (by stream id)
than the one held for the same task or agent is ignored, so a Projection is
a correct handler for an at-least-once GroupConsumer as well as for a replay.

Not in the stream, so not in the projection: MRD and queue configuration
(put_mrd and put_queue emit no event of their own), and routing internals
that no API shape shows (the agents' availability order, deadlines other
than ttlDeadline). A queue's MRD is inferred from the tasks seen in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine
from ..errors import NotFound
from ..events.model import Event
from ..events.stream import StreamReader, parse_id
from ..keys import task_id_of_key, task_match, waiting_task_id
from ..model import EventType

Doc = dict[str, Any]


def _task_order(t: Doc) -> tuple[int, int, str]:
    # The engine's list order: createdAt, then ids by length, then by text.
    return t["createdAt"], len(t["id"]), t["id"]


def _seq(task_id: str) -> tuple[int, int | str]:
    num = task_id[2:]
    return (0, int(num)) if task_id.startswith("t-") and num.isdigit() else (1, task_id)


def _wait_order(t: Doc) -> tuple[int, int, tuple[int, int | str]]:
    return -t["priority"], t["enqueueTime"], _seq(t["id"])


def _is_queued(t: Doc) -> bool:
    return t["state"]["name"] != "CLOSED" and bool(t.get("queueId")) and any(
        m["state"] == "QUEUED" for m in t["activeMedia"])


@dataclass
class Projection:
    tasks: dict[str, Doc] = field(default_factory=dict)
    agents: dict[str, Doc] = field(default_factory=dict)
    last_id: str = "0-0"  # the newest stream id applied
    seen: int = 0  # events taken in, duplicates and stale ones included
    applied: int = 0  # events that changed the projection
    _versions: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict, repr=False)

    def apply(self, event: Event) -> bool:
        """Takes in one event; False when it was a duplicate or stale."""
        version = parse_id(event.id)
        self.seen += 1
        changed = False
        if event.task is not None:
            changed |= self._put("task", self.tasks, event.task, version)
        if event.agent is not None:
            changed |= self._put("agent", self.agents, event.agent, version)
        if event.type is EventType.AGENT_DELETED:
            changed |= self._drop("agent", self.agents, event.data["agentId"], version)
        if version > parse_id(self.last_id):
            self.last_id = event.id
        self.applied += changed
        return changed

    async def __call__(self, event: Event) -> None:
        """A GroupConsumer handler."""
        self.apply(event)

    def _put(self, kind: str, into: dict[str, Doc], doc: Doc, version: tuple[int, int]) -> bool:
        key = (kind, doc["id"])
        if key in self._versions and self._versions[key] >= version:
            return False
        self._versions[key] = version
        into[doc["id"]] = doc
        return True

    def _drop(self, kind: str, into: dict[str, Doc], doc_id: str, version: tuple[int, int]) -> bool:
        # The deletion's version stays, so an older event met later does
        # not bring the document back.
        key = (kind, doc_id)
        if key in self._versions and self._versions[key] >= version:
            return False
        self._versions[key] = version
        return into.pop(doc_id, None) is not None

    # Views

    def live_tasks(self) -> dict[str, Doc]:
        return {i: t for i, t in self.tasks.items() if t["state"]["name"] != "CLOSED"}

    def queue_ids(self) -> set[str]:
        ids = {t["queueId"] for t in self.tasks.values() if t.get("queueId")}
        for a in self.agents.values():
            ids.update(a["queues"])
        return ids

    def waiting(self, queue_id: str) -> list[str]:
        """The queue's waiting task ids, the next one to route first."""
        queued = [t for t in self.tasks.values() if t.get("queueId") == queue_id and _is_queued(t)]
        return [t["id"] for t in sorted(queued, key=_wait_order)]

    def agent_tasks(self, agent_id: str) -> list[Doc]:
        held = [t for t in self.live_tasks().values() if t.get("assignedTo") == agent_id]
        return sorted(held, key=_task_order)

    def conversation_tasks(self, conversation_id: str) -> list[Doc]:
        tasks = [t for t in self.tasks.values() if t["conversationId"] == conversation_id]
        return sorted(tasks, key=_task_order)

    def conversation_ids(self) -> set[str]:
        return {t["conversationId"] for t in self.tasks.values()}

    def queue_mrd(self, queue_id: str) -> str | None:
        """The queue's MRD as the newest task seen in it tells (None when no
        task was seen: queue configuration is not in the stream)."""
        newest: tuple[tuple[int, int], str] | None = None
        for t in self.tasks.values():
            if t.get("queueId") == queue_id:
                v = (self._versions[("task", t["id"])], t["mrdId"])
                newest = v if newest is None or v > newest else newest
        return newest[1] if newest else None

    def queue_agents(self, queue_id: str) -> dict[str, int] | None:
        """The queue's member agents counted by their state on its MRD."""
        mrd = self.queue_mrd(queue_id)
        if mrd is None:
            return None
        counts: dict[str, int] = {}
        for a in self.agents.values():
            if queue_id in a["queues"]:
                st = next((m["state"] for m in a["mrdStates"] if m["mrdId"] == mrd), None)
                if st is not None:
                    counts[st] = counts.get(st, 0) + 1
        return counts


async def replay(engine: Engine, *, batch: int = 1000) -> Projection:
    """The projection of every event in the tenant's stream, from the first
    ever added. Raises StreamGap when retention has trimmed any: a trimmed
    stream cannot rebuild the state."""
    reader = StreamReader(engine.redis, engine.tenant, after="0", count=batch,
                          stream=engine.events_key)
    projection = Projection()
    while events := await reader.read():
        for event in events:
            projection.apply(event)
    return projection


@dataclass(frozen=True, slots=True)
class Difference:
    what: str  # "task t-12", "agent a1", "queue sales", ...
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fields(what: str, stream: Doc, redis: Doc) -> list[Difference]:
    return [Difference(what, f"{k}: stream {_short(stream.get(k))}, Redis {_short(redis.get(k))}")
            for k in sorted(set(stream) | set(redis)) if stream.get(k) != redis.get(k)]


def _ids(tasks: Iterable[Doc]) -> list[str]:
    return [t["id"] for t in tasks]


async def compare(projection: Projection, engine: Engine) -> list[Difference]:
    """What differs between the projection and the tenant's state in Redis.
    Read it at a quiet moment: a step running in between shows up here.
    Closed tasks Redis has already expired (retention) are not differences."""
    r, k = engine.redis, engine.keys
    diffs: list[Difference] = []

    async def read(script: str, *args: str) -> Any:
        return json.loads(await engine.call(script, *args))

    # Tasks: the live set, then every task either side knows of.
    live = set(await r.smembers(k.live))
    for tid in sorted(set(projection.live_tasks()) - live, key=_seq):
        diffs.append(Difference(f"task {tid}", "live in the stream, not in Redis' live set"))
    for tid in sorted(live - set(projection.live_tasks()), key=_seq):
        diffs.append(Difference(f"task {tid}", "in Redis' live set, not live in the stream"))
    stored = {task_id_of_key(k, key) async for key in r.scan_iter(match=task_match(k), count=1000)}
    expired: set[str] = set()
    for tid in sorted(set(projection.tasks) | stored | live, key=_seq):
        mine = projection.tasks.get(tid)
        try:
            current = await read("get_task", tid)
        except NotFound:
            if mine is not None and mine["state"]["name"] == "CLOSED":
                expired.add(tid)
            else:
                diffs.append(Difference(f"task {tid}", "in the stream, not in Redis"))
            continue
        if mine is None:
            diffs.append(Difference(f"task {tid}", "in Redis, never in the stream"))
        else:
            diffs.extend(_fields(f"task {tid}", mine, current))

    # Agents and what they hold.
    for aid in sorted(set(projection.agents) | set(await r.smembers(k.agents))):
        mine = projection.agents.get(aid)
        try:
            current = await read("get_agent", aid)
        except NotFound:
            diffs.append(Difference(f"agent {aid}", "in the stream, not in Redis"))
            continue
        if mine is None:
            diffs.append(Difference(f"agent {aid}", "in Redis, never in the stream"))
            continue
        diffs.extend(_fields(f"agent {aid}", mine, current))
        held = _ids((await read("list_tasks", "agent", aid))["tasks"])
        if held != _ids(projection.agent_tasks(aid)):
            diffs.append(Difference(f"agent {aid} tasks",
                                    f"stream {_ids(projection.agent_tasks(aid))}, Redis {held}"))

    for cid in sorted(projection.conversation_ids()):
        listed = _ids((await read("list_tasks", "conversation", cid))["tasks"])
        mine_ids = [i for i in _ids(projection.conversation_tasks(cid)) if i not in expired]
        if listed != mine_ids:
            diffs.append(Difference(f"conversation {cid}", f"stream {mine_ids}, Redis {listed}"))

    # Queues: contents in order, and the statistics derived from them.
    for qid in sorted(projection.queue_ids() | set(await r.smembers(k.queues))):
        waiting = [waiting_task_id(m) for m in await r.zrange(k.q_waiting(qid), 0, -1)]
        mine_waiting = projection.waiting(qid)
        if waiting != mine_waiting:
            diffs.append(Difference(f"queue {qid}", f"waiting: stream {mine_waiting}, Redis {waiting}"))
        try:
            q = await read("get_queue", qid)
        except NotFound:
            continue  # a queue agents list but nobody configured: nothing to compare
        if q["waiting"] != len(mine_waiting):
            diffs.append(Difference(f"queue {qid}",
                                    f"waiting count: stream {len(mine_waiting)}, Redis {q['waiting']}"))
        agents = projection.queue_agents(qid)
        if agents is not None and q["mrdId"] == projection.queue_mrd(qid) and agents != q["agents"]:
            diffs.append(Difference(f"queue {qid}", f"agents: stream {agents}, Redis {q['agents']}"))
    return diffs
