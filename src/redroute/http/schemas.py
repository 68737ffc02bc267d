"""The wire shapes of docs/api.md as pydantic models: request bodies (validated
here, before the engine is called) and response documents (used for the
OpenAPI description; responses themselves come from redroute.model).

Rule for unknown fields: a request body with a field this version does not
know is rejected with 422 VALIDATION_ERROR (extra="forbid"), so a typo never
silently falls back to a default. Numbers and booleans are strict: "5" is
not 5 and 1 is not true.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from ..expressions import LIMITS
from ..limits import (
    AGENT_REQUEST_TTL_MS,
    AGENT_SLA_MS,
    DEFAULT_AGENT_REQUEST_TTL_MS,
    DEFAULT_AGENT_SLA_MS,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_PAGE_LIMIT,
    DEFAULT_PREFERRED_AGENT_TIMEOUT_MS,
    DEFAULT_PRIORITY,
    DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
    DEFAULT_WINDOW_MINUTES,
    DEFAULT_WRAP_UP_TIMEOUT_MS,
    MAX_AGENT_QUEUES,
    MAX_BLOCKS,
    MAX_REQUESTS,
    MAX_WAITING,
    OVERFLOW_AFTER_MS,
    PAGE_LIMIT,
    PREFERRED_AGENT_TIMEOUT_MS,
    PRIORITY,
    PRIORITY_UNIT_MS,
    ROUTE_TO_LAST_AGENT_MS,
    SERVICE_LEVEL_THRESHOLD_MS,
    STEP_TIMEOUT_MS,
    WINDOW_MINUTES,
    WRAP_UP_TIMEOUT_MS,
)
from ..model import (
    CURSOR_PATTERN,
    ID_PATTERN,
    REASON_PATTERN,
    TENANT_PATTERN,
    AgentState,
    CandidateReason,
    Direction,
    EventType,
    MediaState,
    Mode,
    MrdState,
    ReasonCode,
    SelectionPolicy,
    TaskStateName,
)

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern, max_length=128)]
Tenant = Annotated[str, StringConstraints(pattern=TENANT_PATTERN.pattern, max_length=64)]
Reason = Annotated[str, StringConstraints(pattern=REASON_PATTERN.pattern, max_length=64)]
# Stream entry ids ("<ms>-<seq>", or "<ms>"), from Last-Event-ID.
STREAM_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"


def _stream_id_in_range(value: str) -> str:
    # Each part is a 64-bit unsigned integer in Redis: a larger one is a
    # Redis error (was a 500), so it is a validation error here.
    if any(int(part) > 2**64 - 1 for part in value.split("-")):
        raise ValueError("stream id parts must be at most 18446744073709551615")
    return value


StreamId = Annotated[str, StringConstraints(pattern=STREAM_ID_PATTERN, max_length=41),
                     AfterValidator(_stream_id_in_range)]

ID_ADAPTER: TypeAdapter[str] = TypeAdapter(Id)


def _int(limits: tuple[int, int], **kw: Any) -> Any:
    return Field(strict=True, ge=limits[0], le=limits[1], **kw)


JsonObject = dict[str, Any]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


# Requests


class WrapUpBody(Body):
    enabled: bool = Field(False, strict=True)
    timeoutMs: int = _int(WRAP_UP_TIMEOUT_MS, default=DEFAULT_WRAP_UP_TIMEOUT_MS)


class MrdBody(Body):
    """PUT /v1/mrds/{mrdId}"""

    maxRequests: int = _int(MAX_REQUESTS, default=DEFAULT_MAX_REQUESTS)
    autoJoin: bool = Field(False, strict=True)
    wrapUp: WrapUpBody = Field(default_factory=WrapUpBody)
    blocks: list[Id] | None = Field(
        None, max_length=MAX_BLOCKS, description="while an agent holds an open media of this MRD, "
        "it is offered no new task of these MRDs (each must exist; not this one)")


class StepBody(Body):
    expression: str = Field(
        "", description="attribute expression (grammar in the docs); an agent whose attributes "
        "satisfy it may take the queue's requests from this step on; empty: every member")
    timeoutMs: int | None = _int(STEP_TIMEOUT_MS, default=None,
                                 description="every step but the last: how long a request stays")


class RouteToLastAgentBody(Body):
    timeoutMs: int = _int(ROUTE_TO_LAST_AGENT_MS, description="how long the last agent is preferred")


class OverflowBody(Body):
    afterMs: int = _int(OVERFLOW_AFTER_MS, description="a task still waiting this long after its "
                        "enqueueTime moves to queueId")
    queueId: Id = Field(description="the overflow queue: same MRD, no loop back")


class QueueBody(Body):
    """PUT /v1/queues/{queueId}"""

    mrdId: Id
    agentRequestTtlMs: int = _int(AGENT_REQUEST_TTL_MS, default=DEFAULT_AGENT_REQUEST_TTL_MS)
    agentSlaMs: int = _int(AGENT_SLA_MS, default=DEFAULT_AGENT_SLA_MS, description="the RONA timeout")
    agentSelectionPolicy: SelectionPolicy = SelectionPolicy.LONGEST_AVAILABLE
    serviceLevelThresholdMs: int = _int(SERVICE_LEVEL_THRESHOLD_MS,
                                        default=DEFAULT_SERVICE_LEVEL_THRESHOLD_MS)
    steps: list[StepBody] | None = Field(None, min_length=1, max_length=LIMITS.steps,
                                         description="precision routing: steps that relax over time")
    routeToLastAgent: RouteToLastAgentBody | None = Field(
        None, description="a PUSH prefers the agent that last accepted its conversation")
    priorityUnitMs: int | None = _int(
        PRIORITY_UNIT_MS, default=None, description="priority aging: waiting tasks are "
        "ordered by enqueueTime - priority * priorityUnitMs; unset: strict priority")
    maxWaiting: int | None = _int(MAX_WAITING, default=None,
                                  description="a PUSH beyond this many waiting tasks is 409 "
                                  "QUEUE_FULL, or goes to the overflow queue")
    overflow: OverflowBody | None = None
    statisticsEnabled: bool = Field(True, strict=True, description="false: the queue counts no "
                                    "statistics window (its realtime figures stay)")


class TaskPriorityBody(Body):
    """PUT /v1/tasks/{taskId}/priority"""

    priority: int = _int(PRIORITY, description="higher is served first")


class AgentBody(Body):
    """PUT /v1/agents/{agentId}"""

    queues: list[Id] = Field(default_factory=list, max_length=MAX_AGENT_QUEUES)
    attributes: JsonObject = Field(default_factory=dict)
    maxRequests: dict[Id, Annotated[int, _int(MAX_REQUESTS)]] = Field(
        default_factory=dict, description="per-MRD overrides of the MRD's maxRequests")


class AgentStateBody(Body):
    """POST /v1/agents/{agentId}/state"""

    state: AgentState
    mrdId: Id | None = None
    reasonCode: Reason | None = None

    @model_validator(mode="after")
    def _mrd_states(self) -> AgentStateBody:
        if self.mrdId is not None and self.state not in (AgentState.READY, AgentState.NOT_READY):
            raise ValueError("with mrdId, state must be READY or NOT_READY")
        return self


class PushBody(Body):
    """POST /v1/tasks"""

    conversationId: Id
    queueId: Id
    priority: int = _int(PRIORITY, default=DEFAULT_PRIORITY, description="higher is served first")
    agentRequestTtlMs: int | None = _int(AGENT_REQUEST_TTL_MS, default=None)
    requestSession: JsonObject | None = None
    metadata: JsonObject | None = None
    preferredAgentId: Id | None = Field(None, description="offered to this agent only until "
                                        "enqueueTime + preferredAgentTimeoutMs")
    preferredAgentTimeoutMs: int | None = _int(
        PREFERRED_AGENT_TIMEOUT_MS, default=None,
        description=f"default {DEFAULT_PREFERRED_AGENT_TIMEOUT_MS}")


class PullBody(Body):
    """POST /v1/agents/{agentId}/tasks"""

    conversationId: Id
    mrdId: Id
    direction: Literal["INBOUND", "OUTBOUND"] = "INBOUND"
    requestSession: JsonObject | None = None
    metadata: JsonObject | None = None


class _OneTarget(Body):
    queueId: Id | None = None
    agentId: Id | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _OneTarget:
        if (self.queueId is None) == (self.agentId is None):
            raise ValueError("give exactly one of queueId and agentId")
        return self


class ConferenceBody(_OneTarget):
    """POST /v1/conversations/{conversationId}/conference"""

    mrdId: Id | None = Field(None, description="named-agent conference: the MRD (default: the "
                             "conversation's newest live task's)")
    agentSlaMs: int | None = _int(AGENT_SLA_MS, default=None,
                                  description="named-agent conference: time to accept")
    priority: int = _int(PRIORITY, default=DEFAULT_PRIORITY)
    requestSession: JsonObject | None = None
    metadata: JsonObject | None = None


class TransferBody(_OneTarget):
    """POST /v1/conversations/{conversationId}/transfer"""

    fromAgentId: Id
    agentSlaMs: int | None = _int(AGENT_SLA_MS, default=None,
                                  description="named agent transfer: time to accept")
    metadata: JsonObject | None = Field(None, description="default: the transferred task's")


class MediaStateBody(Body):
    """PUT /v1/tasks/{taskId}/media/{mediaId}/state"""

    state: Literal["ACTIVE", "CLOSED"]
    agentId: Id | None = None


class TaskStateBody(Body):
    """PUT /v1/tasks/{taskId}/state"""

    name: Literal["WRAP_UP", "CLOSED"]
    reasonCode: ReasonCode | None = None


# Responses (documentation of what the engine returns)


class TaskStateDoc(BaseModel):
    name: TaskStateName
    reasonCode: ReasonCode | None


class TaskType(BaseModel):
    direction: Direction
    mode: Mode


class Media(BaseModel):
    id: str
    mrdId: str
    state: MediaState
    queueId: str | None
    enqueueTime: int
    answerTime: int | None
    requestSession: JsonObject


class Routing(BaseModel):
    step: int | None = Field(description="null for a queue without steps")
    steps: int | None
    nextStepAt: int | None = Field(description="when a waiting task reaches its next step")
    preferredAgentId: str | None
    preferredUntil: int | None


class Task(BaseModel):
    id: str
    requestId: str
    conversationId: str
    state: TaskStateDoc
    assignedTo: str | None
    type: TaskType
    queueId: str | None
    mrdId: str
    priority: int
    activeMedia: list[Media]
    enqueueTime: int
    ttlDeadline: int | None
    createdAt: int
    updatedAt: int
    metadata: JsonObject
    routing: Routing


class Candidate(BaseModel):
    agentId: str
    firstStep: int | None = Field(description="the agent's first step (queue with steps)")
    eligibleNow: bool
    available: bool
    reason: CandidateReason


class RoutingExplanation(BaseModel):
    """GET /v1/tasks/{taskId}/routing"""

    taskId: str
    state: TaskStateName
    mediaState: MediaState
    queueId: str | None
    step: int | None
    nextStepAt: int | None
    position: int | None = Field(description="1-based among the queue's waiting tasks")
    candidates: list[Candidate]


class TaskPosition(BaseModel):
    """GET /v1/tasks/{taskId}/position"""

    position: int = Field(description="1 for the next task the queue hands out")
    ewtMs: int | None = Field(description="expected wait from now; null with too little history, "
                                          "or while the task waits for its preferred agent only")
    method: str = Field(description="POSITION_RATE, or PREFERRED_AGENT")


class TaskList(BaseModel):
    tasks: list[Task]


class AgentStateDoc(BaseModel):
    name: AgentState
    reasonCode: str | None


class MrdStatus(BaseModel):
    mrdId: str
    state: MrdState
    reasonCode: str | None
    activeTasks: int
    maxRequests: int
    stateChangeTime: int
    blockedBy: list[str] = Field(description="the MRDs whose open medias block this one now")


class Agent(BaseModel):
    id: str
    state: AgentStateDoc
    queues: list[str]
    attributes: JsonObject
    maxRequests: dict[str, int]
    mrdStates: list[MrdStatus]


class WrapUp(BaseModel):
    enabled: bool
    timeoutMs: int


class Mrd(BaseModel):
    id: str
    maxRequests: int
    autoJoin: bool
    wrapUp: WrapUp
    blocks: list[str] | None = Field(None, description="present when set")


class Queue(BaseModel):
    id: str
    mrdId: str
    agentRequestTtlMs: int
    agentSlaMs: int
    agentSelectionPolicy: SelectionPolicy
    serviceLevelThresholdMs: int
    waiting: int | None = Field(None, description="reads only: tasks waiting")
    oldestWaitMs: int | None = Field(None, description="reads only: the longest wait, ms")
    agents: dict[str, int] | None = Field(None, description="reads only: member agents by MRD state")
    steps: list[StepBody] | None = Field(None, description="present when set")
    routeToLastAgent: RouteToLastAgentBody | None = Field(None, description="present when set")
    priorityUnitMs: int | None = Field(None, description="present when set")
    maxWaiting: int | None = Field(None, description="present when set")
    overflow: OverflowBody | None = Field(None, description="present when set")
    statisticsEnabled: bool | None = Field(None, description="present when false")


class ListQuery(Body):
    """The query of a configuration list (GET /v1/mrds, /v1/queues, /v1/agents)."""

    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=PAGE_LIMIT[0], le=PAGE_LIMIT[1],
                       description="the most items on the page")
    cursor: str | None = Field(None, pattern=CURSOR_PATTERN.pattern, max_length=172,
                               description="the `next` of the previous page")


_NEXT = Field(description="the cursor of the next page; null on the last page")


class MrdList(BaseModel):
    mrds: list[Mrd]
    next: str | None = _NEXT


class QueueList(BaseModel):
    queues: list[Queue]
    next: str | None = _NEXT


class AgentList(BaseModel):
    agents: list[Agent]
    next: str | None = _NEXT


class ProblemDoc(BaseModel):
    """application/problem+json"""

    type: str
    title: str
    status: int
    detail: str
    code: Literal["VALIDATION_ERROR", "NOT_FOUND", "INVALID_TRANSITION", "QUEUE_FULL",
                  "REDIS_UNAVAILABLE", "INTERNAL"]
    errors: list[JsonObject] | None = Field(None, description="validation errors, per field")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: bool
    scripts: bool
    timerWorker: bool
    detail: str | None = None


EVENT_TYPES = tuple(e.value for e in EventType)


# Webhooks (v2)


class WebhookBody(Body):
    """PUT /v1/webhooks/{webhookId}"""

    url: str = Field(min_length=1, max_length=2048,
                     description="http(s); loopback, private and link-local targets are refused "
                                 "unless the operator allows them")
    secret: str = Field(min_length=1, max_length=1024, description="the signing key; never returned")
    types: list[EventType] | None = Field(None, min_length=1, max_length=len(EventType),
                                          description="only these event types (absent: all)")
    queueIds: list[Id] | None = Field(None, min_length=1, max_length=256,
                                      description="only events of these queues (absent: all)")
    enabled: bool = Field(True, strict=True)


class DeliveryCounts(BaseModel):
    pending: int
    failed: int


class Webhook(BaseModel):
    id: str
    url: str
    types: list[EventType] | None
    queueIds: list[str] | None
    enabled: bool
    createdAt: int
    updatedAt: int
    deliveries: DeliveryCounts


class WebhookList(BaseModel):
    webhooks: list[Webhook]
    next: str | None = Field(description="the cursor of the next page; null on the last")


class Delivery(BaseModel):
    id: str = Field(description="the event's stream id, or gap-<after>-<before> for events "
                                "trimmed before they were delivered")
    webhookId: str
    eventId: str | None
    type: EventType | None
    status: Literal["PENDING", "FAILED"]
    attempts: int
    createdAt: int
    lastAttemptAt: int | None
    nextAttemptAt: int | None
    failedAt: int | None
    lastStatus: int | None = Field(description="the receiver's last HTTP status")
    lastError: str | None


class DeliveryList(BaseModel):
    deliveries: list[Delivery]
    next: str | None


class PageQuery(Body):
    """?limit=&cursor= of a list"""

    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=256, pattern=r"^[A-Za-z0-9_.@+|\-]+$")


class DeliveryQuery(PageQuery):
    status: Literal["FAILED"] = "FAILED"


# Statistics (GET /v1/queues/{queueId}/statistics, GET /v1/statistics)

class StatisticsQuery(Body):
    windowMinutes: int = Field(DEFAULT_WINDOW_MINUTES, ge=WINDOW_MINUTES[0], le=WINDOW_MINUTES[1],
                               description="the window: the current minute and the ones before it")


class Realtime(BaseModel):
    waiting: int
    waitingByPriority: dict[str, int] = Field(description="waiting tasks by priority")
    waitingByStep: dict[str, int] = Field(description="waiting tasks by step (a queue with steps)")
    reserved: int = Field(description="tasks offered to an agent, not yet accepted")
    active: int = Field(description="tasks with an agent (not in WRAP_UP)")
    oldestWaitMs: int | None
    oldestTaskId: str | None
    agents: dict[str, int] = Field(description="member agents by the state they show on the queue's MRD")
    availableAgents: int = Field(description="members that can take a task of the queue now")
    loggedInAgents: int


class ServiceLevel(BaseModel):
    thresholdMs: int
    answered: int
    answeredWithin: int
    abandoned: int
    abandonedWithin: int
    sl: float | None = Field(description="answeredWithin / answered; null when none")
    sl2: float | None = Field(description="(answeredWithin + abandonedWithin) / (answered + abandoned)")


class WaitUntilAnswered(BaseModel):
    avgMs: int | None
    p50Ms: int | None
    p90Ms: int | None
    maxMs: int | None


class HandleTime(BaseModel):
    avgMs: int | None
    p50Ms: int | None
    p90Ms: int | None


class Window(BaseModel):
    minutes: int
    entered: int
    answered: int
    abandoned: int
    expired: int
    cancelled: int
    ronas: int
    overflowedIn: int
    overflowedOut: int
    serviceLevel: ServiceLevel
    waitUntilAnswered: WaitUntilAnswered
    handleTime: HandleTime


class EwtAccuracy(BaseModel):
    samples: int
    p50AbsErrorMs: int | None
    p90AbsErrorMs: int | None


class Ewt(BaseModel):
    ms: int | None = Field(description="the expected wait of a request pushed now; null: too little history")
    method: str | None
    accuracy: EwtAccuracy


class QueueStatistics(BaseModel):
    queueId: str
    at: int = Field(description="when the figures were read, ms")
    realtime: Realtime
    window: Window
    ewt: Ewt


class TenantStatistics(BaseModel):
    queues: list[QueueStatistics]
    agents: dict[str, int] = Field(description="the tenant's agents by global state")
