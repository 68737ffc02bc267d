"""A recorded day: what `redroute events export` writes from a tenant's event
stream, and how `redroute simulate --replay` plays it again.

The export is JSONL, one line per moment of a PUSH request's life, in stream
order, each with the stream id, the time in ms (the router's clock), the
request, task, conversation and queue:

  {"type": "arrival", "at": …, "requestId", "taskId", "conversationId", "queueId", "priority"}
  {"type": "reserved", …, "agentId"}      an agent was offered the task
  {"type": "unanswered", …, "agentId"}    the reservation ended in RONA or a decline
  {"type": "accepted", …, "agentId"}      the agent accepted (its answerTime)
  {"type": "wrapUp", …}                   the media closed; wrap-up began
  {"type": "closed", …, "reason"}         the task closed (DONE, CANCELLED, WRAP_UP_*, NO_AGENT_AVAILABLE, …)

A replay keeps each request's arrival (time and queue), accept, handle and
wrap-up times and how many reservations it left unanswered, and plays them
on the router configured by the scenario. A customer who hung up keeps the
patience recorded; one who did not waited at least as long as recorded, so
their patience is that wait plus a draw from the scenario's patience (none
without it). What the record lacks (a request still open at the export's
end) is drawn from the scenario's distributions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..events.model import Event
from ..model import EventType
from .core import Busy, ReplicationResult, RequestRecord, RequestSpec, rng_for
from .scenario import Scenario

_CLOSING = {"CLOSED", "TTL_EXPIRED"}
_UNANSWERED = {"RONA", "DECLINED"}


def export_lines(events: Iterable[Event]) -> Iterator[dict[str, Any]]:
    """The export's records for a tenant's events (PUSH requests only)."""
    for e in events:
        task = e.task
        if task is None or task["type"]["mode"] != "QUEUE":
            continue
        base = {"id": e.id, "requestId": task["requestId"], "taskId": task["id"],
                "conversationId": task["conversationId"], "queueId": task.get("queueId")}
        if e.type is EventType.AGENT_RESERVED:
            yield {**base, "type": "reserved", "at": task["updatedAt"], "agentId": e.data["agentId"]}
            continue
        if e.type is not EventType.TASK_STATE_CHANGED:
            continue
        transition = e.data.get("transition")
        if transition == "CREATED" and task["type"]["direction"] == "INBOUND":
            yield {**base, "type": "arrival", "at": task["enqueueTime"], "priority": task["priority"]}
        elif transition == "ACCEPTED":
            at = max((m["answerTime"] or 0) for m in task["activeMedia"])
            yield {**base, "type": "accepted", "at": at or task["updatedAt"],
                   "agentId": task["assignedTo"]}
        elif transition in _UNANSWERED:
            yield {**base, "type": "unanswered", "at": task["updatedAt"], "agentId": task["assignedTo"]}
        elif transition == "WRAP_UP":
            yield {**base, "type": "wrapUp", "at": task["updatedAt"]}
        elif transition in _CLOSING:
            yield {**base, "type": "closed", "at": task["updatedAt"],
                   "reason": task["state"]["reasonCode"]}


@dataclass
class Recorded:
    """One request of a recorded day, in absolute ms."""

    request_id: str
    queue_id: str
    arrival: int
    priority: int = 1
    reserved: list[int] = field(default_factory=list)
    unanswered: int = 0
    accepted: int | None = None
    wrap_up: int | None = None
    closed: int | None = None
    reason: str | None = None
    busy: list[tuple[int, int]] = field(default_factory=list)  # reserved .. that task's close
    _open: dict[str, int] = field(default_factory=dict)


@dataclass
class Day:
    requests: list[Recorded]  # by arrival
    start: int  # the first arrival, ms
    agents: dict[str, set[str]] = field(default_factory=dict)  # queue -> agents reserved for it

    @property
    def end(self) -> int:
        return max(r.arrival for r in self.requests) + 1 - self.start


class ReplayError(ValueError):
    pass


def read_day(lines: Iterable[str]) -> Day:
    """A recorded day from the export's JSONL lines; requests whose arrival is
    not in it (they came before --from) are left out."""
    reqs: dict[str, Recorded] = {}
    agents: dict[str, set[str]] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            kind, rid, at = d["type"], d["requestId"], int(d["at"])
        except (ValueError, KeyError, TypeError) as e:
            raise ReplayError(f"line {i}: not an export record ({e})") from None
        if kind == "arrival":
            reqs.setdefault(rid, Recorded(rid, d["queueId"], at, int(d.get("priority", 1))))
            continue
        r = reqs.get(rid)
        if r is None:
            continue
        if kind == "reserved":
            agents.setdefault(r.queue_id, set()).add(d.get("agentId", ""))
            r.reserved.append(at)
            r._open[d["taskId"]] = at
        elif kind == "unanswered":
            r.unanswered += 1
            start = r._open.pop(d["taskId"], None)
            if start is not None:
                r.busy.append((start, at))
        elif kind == "accepted" and r.accepted is None:
            r.accepted = at
        elif kind == "wrapUp":
            r.wrap_up = at
        elif kind == "closed":
            start = r._open.pop(d["taskId"], None)
            if start is not None:
                r.busy.append((start, at))
            if d.get("reason") not in ("RONA", "REROUTE"):
                r.closed, r.reason = at, d.get("reason")
    if not reqs:
        raise ReplayError("the record holds no request arrival (export from before the day began)")
    ordered = sorted(reqs.values(), key=lambda r: (r.arrival, r.request_id))
    return Day(ordered, ordered[0].arrival, agents)


def replay_scenario(scenario: Scenario, day: Day) -> Scenario:
    """The scenario set to the recorded day: it starts at the first arrival,
    lasts until the last one, and counts every request (no warm-up)."""
    queues = {q.id for q in scenario.queues}
    missing = sorted({r.queue_id for r in day.requests} - queues)
    if missing:
        raise ReplayError(f"the record has requests for queues the scenario lacks: {', '.join(missing)}")
    return scenario.model_copy(update={"startTime": day.start, "durationMs": max(1000, day.end),
                                       "warmupMs": 0, "arrivals": []})


def day_traffic(day: Day, scenario: Scenario, replication: int) -> list[RequestSpec]:
    """The recorded requests as the simulator plays them (see the module)."""
    draws = {p: rng_for(scenario.seed, replication, f"replay:{p}")
             for p in ("handle", "accept", "wrap", "patience")}
    out = []
    for r in day.requests:
        q = scenario.queue(r.queue_id)
        patience_dist = q.patience or scenario.patience
        if r.accepted is not None and r.reserved:
            last = max(x for x in r.reserved if x <= r.accepted)
            accept = r.accepted - last
            ended_media = r.wrap_up if r.wrap_up is not None else r.closed
            handle = (ended_media - r.accepted if ended_media is not None
                      else (q.handle or scenario.handle).sample(draws["handle"]))
        else:
            accept = (q.accept or scenario.accept).sample(draws["accept"])
            handle = (q.handle or scenario.handle).sample(draws["handle"])
            if r.reserved and r.closed is not None:
                # It rang until the customer hung up (or the task closed):
                # at least that long, then.
                accept = max(accept, r.closed - max(r.reserved) + 1)
        if r.wrap_up is not None and r.closed is not None:
            wrap = r.closed - r.wrap_up
        else:
            wrap = (q.wrapUpTime or scenario.wrapUpTime).sample(draws["wrap"])
        if r.reason == "CANCELLED" and r.accepted is None and r.closed is not None:
            patience: int | None = r.closed - r.arrival
        else:
            waited = (r.accepted if r.accepted is not None else (r.closed or r.arrival)) - r.arrival
            patience = None if patience_dist is None else waited + 1 + patience_dist.sample(draws["patience"])
        out.append(RequestSpec(r.queue_id, r.arrival - day.start, handle, accept, wrap, patience,
                               r.priority, no_answers=r.unanswered))
    return out


class DayTraffic:
    """day_traffic as a picklable callable for simulate(traffic=...)."""

    def __init__(self, day: Day, scenario: Scenario) -> None:
        self.day, self.scenario = day, scenario

    def __call__(self, replication: int) -> list[RequestSpec]:
        return day_traffic(self.day, self.scenario, replication)


def recorded_result(day: Day, scenario: Scenario) -> ReplicationResult:
    """The recorded day as a replication's result, for the same KPIs."""
    records, busy = [], []
    for n, r in enumerate(day.requests):
        outcome = None
        if r.accepted is not None:
            outcome = "ANSWERED"
        elif r.reason == "CANCELLED":
            outcome = "ABANDONED"
        elif r.reason == "NO_AGENT_AVAILABLE":
            outcome = "EXPIRED"
        elif r.closed is not None:
            outcome = "ABANDONED"
        rel = (lambda x: None if x is None else x - day.start)  # noqa: E731
        records.append(RequestRecord(n, r.queue_id, r.arrival - day.start,
                                     rel(min(r.reserved)) if r.reserved else None, rel(r.accepted),
                                     rel(r.closed), outcome, len(r.reserved)))
        busy += [Busy(r.queue_id, a - day.start, b - day.start) for a, b in r.busy]
    end = max((x.ended for x in records if x.ended is not None), default=0)
    return ReplicationResult(scenario.name, 0, scenario.seed, records, busy, end, 0, "recorded",
                             unfinished=sum(1 for x in records if x.outcome is None))


def recorded_kpis(day: Day, scenario: Scenario) -> dict[str, dict[str, float | None]]:
    """The recorded day's KPIs (stats.replication_kpis), its occupancy over
    the agents the record shows serving each queue (the scenario's may be a
    what-if)."""
    from .stats import replication_kpis

    result = recorded_result(day, scenario)
    kpis = replication_kpis(result, scenario)
    window = scenario.durationMs - scenario.warmupMs
    for q in scenario.queues:
        seen = len(day.agents.get(q.id, ()))
        mrd = scenario.mrd(q.mrdId)
        busy = sum(max(0, min(b.end, scenario.durationMs) - max(b.start, scenario.warmupMs))
                   for b in result.busy if b.queue_id == q.id)
        kpis[q.id]["occupancy"] = busy / (seen * mrd.maxRequests * window) if seen else None
    return kpis
