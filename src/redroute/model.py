"""The object model of the HTTP API (docs/api.md): enums with the exact wire spellings, and
dataclasses decoded from (and encoded back to) the camelCase JSON shapes."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from . import jsoncodec
from .limits import DEFAULT_WRAP_UP_TIMEOUT_MS


def _client_floats(d: Any) -> bool:
    """A float in a task document's metadata or requestSession (see jsoncodec)."""
    # Mostly both are empty: has_float is not called for them.
    metadata = d.get("metadata")
    if metadata and jsoncodec.has_float(metadata):
        return True
    for m in d.get("activeMedia") or ():
        session = m.get("requestSession")
        if session and jsoncodec.has_float(session):
            return True
    return False


def _by_value(cls: Any) -> Any:
    """cls(value) for the enums of every task decode, by a dict lookup
    (EnumType.__call__ is several Python calls); a value that is no member
    still raises ValueError."""
    members = {m.value: m for m in cls}

    def member(value: Any) -> Any:
        m = members.get(value)
        return m if m is not None else cls(value)

    return member


class TaskStateName(StrEnum):
    ACTIVE = "ACTIVE"
    WRAP_UP = "WRAP_UP"
    CLOSED = "CLOSED"


class ReasonCode(StrEnum):
    RONA = "RONA"
    DONE = "DONE"
    RESPONSE_TIMEOUT = "RESPONSE_TIMEOUT"
    NO_AGENT_AVAILABLE = "NO_AGENT_AVAILABLE"
    REROUTE = "REROUTE"
    CANCELLED = "CANCELLED"
    AGENT_LOGOUT = "AGENT_LOGOUT"
    TRANSFERRED = "TRANSFERRED"
    FORCE_CLOSED = "FORCE_CLOSED"
    WRAP_UP_APPLIED = "WRAP_UP_APPLIED"
    WRAP_UP_NOT_APPLIED = "WRAP_UP_NOT_APPLIED"
    WRAP_UP_EXPIRED = "WRAP_UP_EXPIRED"


class MediaState(StrEnum):
    QUEUED = "QUEUED"
    RESERVED = "RESERVED"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class Direction(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"
    DIRECT_TRANSFER = "DIRECT_TRANSFER"
    DIRECT_CONFERENCE = "DIRECT_CONFERENCE"


class Mode(StrEnum):
    AGENT = "AGENT"
    QUEUE = "QUEUE"


_task_state = _by_value(TaskStateName)
_reason_code = _by_value(ReasonCode)
_media_state = _by_value(MediaState)
_direction = _by_value(Direction)
_mode = _by_value(Mode)


class AgentState(StrEnum):
    LOGIN = "LOGIN"
    READY = "READY"
    NOT_READY = "NOT_READY"
    LOGOUT = "LOGOUT"


class MrdState(StrEnum):
    LOGOUT = "LOGOUT"
    NOT_READY = "NOT_READY"
    PENDING_NOT_READY = "PENDING_NOT_READY"
    READY = "READY"
    ACTIVE = "ACTIVE"
    BUSY = "BUSY"


class SelectionPolicy(StrEnum):
    LONGEST_AVAILABLE = "LONGEST_AVAILABLE"
    LEAST_ACTIVE = "LEAST_ACTIVE"
    LEAST_LOADED = "LEAST_LOADED"
    MOST_SKILLED = "MOST_SKILLED"
    LEAST_SKILLED = "LEAST_SKILLED"


class CandidateReason(StrEnum):
    """Why a candidate agent is or is not offered a task (the routing
    explanation). BLOCKED: the agent holds an open media of an MRD whose
    blocks name the task's MRD."""

    AVAILABLE = "AVAILABLE"
    NO_MATCHING_STEP = "NO_MATCHING_STEP"
    STEP_NOT_REACHED = "STEP_NOT_REACHED"
    NOT_READY = "NOT_READY"
    AT_CAPACITY = "AT_CAPACITY"
    BLOCKED = "BLOCKED"
    HOLDS_CONVERSATION = "HOLDS_CONVERSATION"
    MADE_THE_TRANSFER = "MADE_THE_TRANSFER"
    LOGGED_OUT = "LOGGED_OUT"
    PREFERRED_AGENT_ONLY = "PREFERRED_AGENT_ONLY"


class EventType(StrEnum):
    TASK_STATE_CHANGED = "TASK_STATE_CHANGED"
    AGENT_RESERVED = "AGENT_RESERVED"
    NO_AGENT_AVAILABLE = "NO_AGENT_AVAILABLE"
    AGENT_STATE_CHANGED = "AGENT_STATE_CHANGED"
    # Configuration deleted: data {"mrdId"}, {"queueId"} or {"agentId"}.
    MRD_DELETED = "MRD_DELETED"
    QUEUE_DELETED = "QUEUE_DELETED"
    AGENT_DELETED = "AGENT_DELETED"


class Transition(StrEnum):
    """What a TASK_STATE_CHANGED event records as having happened (its
    `transition`), named by the script that made the change."""

    CREATED = "CREATED"  # a task made: PUSH, PULL, conference, transfer
    RESERVED = "RESERVED"  # a waiting media offered to an agent
    ACCEPTED = "ACCEPTED"  # the agent joined: media ACTIVE
    DECLINED = "DECLINED"  # the agent declined a reservation (CLOSED/RONA)
    RONA = "RONA"  # a reservation not accepted in time, or a named agent that cannot take it
    STEP_CHANGED = "STEP_CHANGED"  # a waiting task's step or preferred window changed
    OVERFLOWED = "OVERFLOWED"  # a waiting task moved to its queue's overflow queue
    REPRIORITIZED = "REPRIORITIZED"  # a waiting task's priority changed
    MEDIA_ADDED = "MEDIA_ADDED"  # a PULL joined another media to the agent's task
    MEDIA_CLOSED = "MEDIA_CLOSED"  # one media ended, others stay open
    WRAP_UP = "WRAP_UP"  # the task went WRAP_UP
    CLOSED = "CLOSED"  # the task closed (done, cancelled, forced, logout, wrap-up ended)
    TTL_EXPIRED = "TTL_EXPIRED"  # a waiting request reached its TTL: NO_AGENT_AVAILABLE
    REROUTED = "REROUTED"  # the request goes on in a new task, or a logout let a reservation go
    TRANSFERRED = "TRANSFERRED"  # the transferring agent's task, handed on


# Ids and tenants become parts of Redis keys: no ':' (the key separator), no
# braces (the hash tag), no spaces or control characters.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,127}$")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
REASON_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def _opt(cls: Any, value: Any) -> Any:
    return None if value is None else cls(value)


@dataclass(slots=True)
class Mrd:
    id: str
    max_requests: int
    auto_join: bool = False
    wrap_up_enabled: bool = False
    wrap_up_timeout_ms: int = DEFAULT_WRAP_UP_TIMEOUT_MS
    # v2, present when set: the MRDs an open media of this one blocks.
    blocks: list[str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mrd:
        return cls(d["id"], d["maxRequests"], d["autoJoin"], d["wrapUp"]["enabled"], d["wrapUp"]["timeoutMs"],
                   d.get("blocks"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "maxRequests": self.max_requests,
            "autoJoin": self.auto_join,
            "wrapUp": {"enabled": self.wrap_up_enabled, "timeoutMs": self.wrap_up_timeout_ms},
        }
        if self.blocks is not None:
            d["blocks"] = self.blocks
        return d


@dataclass(slots=True)
class Step:
    """One step of a queue: agents whose attributes satisfy the expression
    may take a request from the moment its age reaches the step."""

    expression: str
    timeout_ms: int | None = None  # every step but the last

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(d["expression"], d.get("timeoutMs"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"expression": self.expression}
        if self.timeout_ms is not None:
            d["timeoutMs"] = self.timeout_ms
        return d


@dataclass(slots=True)
class Overflow:
    """Where a queue's waiting task goes once it has waited after_ms since
    its enqueueTime (or a PUSH when the queue is full)."""

    after_ms: int
    queue_id: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Overflow:
        return cls(d["afterMs"], d["queueId"])

    def to_dict(self) -> dict[str, Any]:
        return {"afterMs": self.after_ms, "queueId": self.queue_id}


@dataclass(slots=True)
class Queue:
    id: str
    mrd_id: str
    agent_request_ttl_ms: int
    agent_sla_ms: int
    agent_selection_policy: SelectionPolicy
    service_level_threshold_ms: int
    # Live statistics, present on reads.
    waiting: int | None = None
    oldest_wait_ms: int | None = None
    agents: dict[str, int] | None = None
    # v2, present when set.
    steps: list[Step] | None = None
    route_to_last_agent_ms: int | None = None
    priority_unit_ms: int | None = None
    max_waiting: int | None = None
    overflow: Overflow | None = None
    statistics_enabled: bool = True  # shown only when false

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Queue:
        steps = d.get("steps")
        rtla = d.get("routeToLastAgent")
        overflow = d.get("overflow")
        return cls(
            d["id"], d["mrdId"], d["agentRequestTtlMs"], d["agentSlaMs"],
            SelectionPolicy(d["agentSelectionPolicy"]), d["serviceLevelThresholdMs"],
            d.get("waiting"), d.get("oldestWaitMs"), d.get("agents"),
            [Step.from_dict(s) for s in steps] if steps is not None else None,
            rtla["timeoutMs"] if rtla else None,
            d.get("priorityUnitMs"), d.get("maxWaiting"),
            Overflow.from_dict(overflow) if overflow else None,
            d.get("statisticsEnabled", True),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "mrdId": self.mrd_id,
            "agentRequestTtlMs": self.agent_request_ttl_ms,
            "agentSlaMs": self.agent_sla_ms,
            "agentSelectionPolicy": self.agent_selection_policy.value,
            "serviceLevelThresholdMs": self.service_level_threshold_ms,
        }
        if self.steps is not None:
            d["steps"] = [s.to_dict() for s in self.steps]
        if self.route_to_last_agent_ms is not None:
            d["routeToLastAgent"] = {"timeoutMs": self.route_to_last_agent_ms}
        if self.priority_unit_ms is not None:
            d["priorityUnitMs"] = self.priority_unit_ms
        if self.max_waiting is not None:
            d["maxWaiting"] = self.max_waiting
        if self.overflow is not None:
            d["overflow"] = self.overflow.to_dict()
        if not self.statistics_enabled:
            d["statisticsEnabled"] = False
        if self.waiting is not None:
            d.update(waiting=self.waiting, oldestWaitMs=self.oldest_wait_ms, agents=self.agents)
        return d


@dataclass(slots=True)
class MrdStatus:
    mrd_id: str
    state: MrdState
    reason_code: str | None
    active_tasks: int
    max_requests: int
    state_change_time: int
    # The MRDs whose open medias block this one now (MRD blocks).
    blocked_by: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MrdStatus:
        return cls(d["mrdId"], MrdState(d["state"]), d["reasonCode"], d["activeTasks"],
                   d["maxRequests"], d["stateChangeTime"], d.get("blockedBy", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mrdId": self.mrd_id, "state": self.state.value, "reasonCode": self.reason_code,
            "activeTasks": self.active_tasks, "maxRequests": self.max_requests,
            "stateChangeTime": self.state_change_time, "blockedBy": self.blocked_by,
        }


@dataclass(slots=True)
class Agent:
    id: str
    state: AgentState
    reason_code: str | None
    queues: list[str]
    attributes: dict[str, Any]
    max_requests: dict[str, int]
    mrd_states: list[MrdStatus]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agent:
        return cls(
            d["id"], AgentState(d["state"]["name"]), d["state"]["reasonCode"], d["queues"],
            d["attributes"], d["maxRequests"], [MrdStatus.from_dict(m) for m in d["mrdStates"]],
        )

    def mrd(self, mrd_id: str) -> MrdStatus:
        for m in self.mrd_states:
            if m.mrd_id == mrd_id:
                return m
        raise KeyError(mrd_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": {"name": self.state.value, "reasonCode": self.reason_code},
            "queues": self.queues,
            "attributes": self.attributes,
            "maxRequests": self.max_requests,
            "mrdStates": [m.to_dict() for m in self.mrd_states],
        }


@dataclass(slots=True)
class Media:
    id: str
    mrd_id: str
    state: MediaState
    queue_id: str | None
    enqueue_time: int
    answer_time: int | None
    request_session: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Media:
        return cls(d["id"], d["mrdId"], _media_state(d["state"]), d["queueId"], d["enqueueTime"],
                   d["answerTime"], d["requestSession"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "mrdId": self.mrd_id, "state": self.state.value,
            "queueId": self.queue_id, "enqueueTime": self.enqueue_time,
            "answerTime": self.answer_time, "requestSession": self.request_session,
        }


@dataclass(slots=True)
class Routing:
    """A task's routing: its step in a queue with steps (all None for a
    queue without), and its preferred agent's window."""

    step: int | None = None
    steps: int | None = None
    next_step_at: int | None = None
    preferred_agent_id: str | None = None
    preferred_until: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Routing:
        if not d:
            return cls()
        return cls(d["step"], d["steps"], d["nextStepAt"], d["preferredAgentId"], d["preferredUntil"])

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "steps": self.steps, "nextStepAt": self.next_step_at,
                "preferredAgentId": self.preferred_agent_id, "preferredUntil": self.preferred_until}


@dataclass(slots=True)
class Candidate:
    agent_id: str
    first_step: int | None
    eligible_now: bool
    available: bool
    reason: CandidateReason

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(d["agentId"], d["firstStep"], d["eligibleNow"], d["available"],
                   CandidateReason(d["reason"]))

    def to_dict(self) -> dict[str, Any]:
        return {"agentId": self.agent_id, "firstStep": self.first_step,
                "eligibleNow": self.eligible_now, "available": self.available,
                "reason": self.reason.value}


@dataclass(slots=True)
class RoutingExplanation:
    """GET /v1/tasks/{taskId}/routing: why a task waits, or why it went to
    its agent."""

    task_id: str
    state: TaskStateName
    media_state: MediaState
    queue_id: str | None
    step: int | None
    next_step_at: int | None
    position: int | None
    candidates: list[Candidate]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoutingExplanation:
        return cls(d["taskId"], TaskStateName(d["state"]), MediaState(d["mediaState"]), d["queueId"],
                   d["step"], d["nextStepAt"], d["position"],
                   [Candidate.from_dict(c) for c in d["candidates"]])

    def to_dict(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "state": self.state.value,
                "mediaState": self.media_state.value, "queueId": self.queue_id, "step": self.step,
                "nextStepAt": self.next_step_at, "position": self.position,
                "candidates": [c.to_dict() for c in self.candidates]}

    def candidate(self, agent_id: str) -> Candidate:
        for c in self.candidates:
            if c.agent_id == agent_id:
                return c
        raise KeyError(agent_id)


@dataclass(slots=True)
class TaskPosition:
    """GET /v1/tasks/{taskId}/position: a waiting task's place in its
    queue's order (1: the next one handed out) and its expected wait from
    now (None when the queue has too little history)."""

    position: int
    ewt_ms: int | None
    method: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskPosition:
        return cls(d["position"], d["ewtMs"], d["method"])

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "ewtMs": self.ewt_ms, "method": self.method}


@dataclass(slots=True)
class EwtAccuracy:
    """How far the predictions answered in a window were from the actual
    waits: their count and the median and 90th percentile of the absolute
    errors (None without samples)."""

    samples: int
    p50_abs_error_ms: int | None
    p90_abs_error_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "p50AbsErrorMs": self.p50_abs_error_ms,
                "p90AbsErrorMs": self.p90_abs_error_ms}


@dataclass(slots=True)
class QueueEwt:
    """A queue's statistics' `ewt`: the expected wait of a request pushed
    now (None with too little history), the method, and its accuracy."""

    ms: int | None
    method: str
    accuracy: EwtAccuracy

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueueEwt:
        a = d["accuracy"]
        return cls(d["ms"], d["method"], EwtAccuracy(a["samples"], a["p50AbsErrorMs"], a["p90AbsErrorMs"]))

    def to_dict(self) -> dict[str, Any]:
        return {"ms": self.ms, "method": self.method, "accuracy": self.accuracy.to_dict()}


@dataclass(slots=True)
class Task:
    id: str
    request_id: str
    conversation_id: str
    state: TaskStateName
    reason_code: ReasonCode | None
    assigned_to: str | None
    direction: Direction
    mode: Mode
    queue_id: str | None
    mrd_id: str
    priority: int
    active_media: list[Media]
    enqueue_time: int
    ttl_deadline: int | None
    created_at: int
    updated_at: int
    metadata: dict[str, Any] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing)
    # The engine's own JSON of the task when it was decoded from one (a
    # script's reply): the HTTP layer sends it as is rather than encode again.
    raw_json: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        state, kind, reason = d["state"], d["type"], d["state"]["reasonCode"]
        return cls(
            d["id"], d["requestId"], d["conversationId"], _task_state(state["name"]),
            None if reason is None else _reason_code(reason), d["assignedTo"],
            _direction(kind["direction"]), _mode(kind["mode"]), d["queueId"], d["mrdId"],
            d["priority"], [Media.from_dict(m) for m in d["activeMedia"]], d["enqueueTime"],
            d["ttlDeadline"], d["createdAt"], d["updatedAt"], d["metadata"],
            Routing.from_dict(d.get("routing")),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Task:
        # Every push, accept and close decodes one. Integers past 64 bits can
        # only be in what is kept as the client sent it.
        text = raw.decode() if isinstance(raw, bytes) else raw
        d = jsoncodec.loads(text, _client_floats)
        t = cls.from_dict(d)
        t.raw_json = text
        return t

    @property
    def media(self) -> Media:
        """The task's first media (most tasks have exactly one)."""
        return self.active_media[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "requestId": self.request_id,
            "conversationId": self.conversation_id,
            "state": {"name": self.state.value,
                      "reasonCode": self.reason_code.value if self.reason_code else None},
            "assignedTo": self.assigned_to,
            "type": {"direction": self.direction.value, "mode": self.mode.value},
            "queueId": self.queue_id,
            "mrdId": self.mrd_id,
            "priority": self.priority,
            "activeMedia": [m.to_dict() for m in self.active_media],
            "enqueueTime": self.enqueue_time,
            "ttlDeadline": self.ttl_deadline,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "metadata": self.metadata,
            "routing": self.routing.to_dict(),
        }


# Lists of configuration (MRDs, queues, agents): pages in id order.
CURSOR_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,172}$")  # base64url of an id, unpadded

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # the cursor of the next page; None on the last page


def page_cursor(last_id: str) -> str:
    """The cursor of the page after the one ending with last_id. Opaque to
    clients: the next page starts after that id, so it stays right when ids
    are added or deleted in between."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def cursor_after(cursor: str) -> str | None:
    """The id a cursor starts after, or None when it is not one page_cursor
    made."""
    if not isinstance(cursor, str) or not CURSOR_PATTERN.fullmatch(cursor):
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return raw if ID_PATTERN.fullmatch(raw) and page_cursor(raw) == cursor else None
