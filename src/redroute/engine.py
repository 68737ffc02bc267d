"""The Engine facade: one typed method per Lua script, decoded results,
domain errors as exceptions. It holds no state beyond its connection, so any
number of engines and processes can run side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from . import statistics as stats
from . import validation as v
from .errors import REDIS_DOWN, NotFound, RedisUnavailable, from_reply
from .events.model import Event, decode_entries
from .events.stream import create_group
from .expressions import compile_steps
from .keys import TENANTS, WEBHOOK_TENANTS, TenantKeys
from .limits import (
    AGENT_REQUEST_TTL_MS,
    AGENT_SLA_MS,
    DEFAULT_AGENT_REQUEST_TTL_MS,
    DEFAULT_AGENT_SLA_MS,
    DEFAULT_EVENTS_MAXLEN,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_PAGE_LIMIT,
    DEFAULT_PRIORITY,
    DEFAULT_RETENTION_MS,
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
    PRIORITY_UNIT_MS,
    ROUTE_TO_LAST_AGENT_MS,
    SERVICE_LEVEL_THRESHOLD_MS,
    STEP_TIMEOUT_MS,
    WINDOW_MINUTES,
    WRAP_UP_TIMEOUT_MS,
)
from .model import (
    Agent,
    AgentState,
    Direction,
    MediaState,
    Mrd,
    Overflow,
    Page,
    Queue,
    QueueEwt,
    ReasonCode,
    RoutingExplanation,
    SelectionPolicy,
    Step,
    Task,
    TaskPosition,
    TaskStateName,
    cursor_after,
    page_cursor,
)
from .scripts import ScriptRunner, default_runner
from .webhooks.model import (
    GROUP,
    Delivery,
    DeliverySettings,
    Webhook,
    delivery_page,
    webhook_page,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """An attempt a dispatcher claimed: its to make, until the lease ends."""

    webhook_id: str
    delivery_id: str
    url: str
    secret: str
    attempt: int
    body: bytes


@dataclass(frozen=True, slots=True)
class FireResult:
    fired: int  # deadlines that changed a task
    processed: int  # due deadlines taken, stale ones included
    next_deadline: int  # ms, or -1 when none is left
    now: int  # the Redis clock, ms
    lags_ms: list[int]  # how late each fired deadline fired


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _sla_arg(sla_ms: int | None) -> int | str:
    """A named agent's time to accept as a script argument: '' for the default."""
    return "" if sla_ms is None else v.check_int("agentSlaMs", sla_ms, *AGENT_SLA_MS)
def _overflow(value: Overflow | dict[str, Any] | None) -> Overflow | None:
    """A queue's overflow, checked: afterMs in OVERFLOW_AFTER_MS and a queue id."""
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != {"afterMs", "queueId"}:
            raise v.ValidationError("overflow must be an object {afterMs, queueId}")
        value = Overflow(value["afterMs"], value["queueId"])
    if not isinstance(value, Overflow):
        raise v.ValidationError("overflow must be an object {afterMs, queueId}")
    v.check_int("overflow.afterMs", value.after_ms, *OVERFLOW_AFTER_MS)
    v.check_id("overflow.queueId", value.queue_id)
    return value


class Engine:
    """Routing operations for one tenant on one Redis connection."""

    def __init__(
        self,
        redis: Any,
        tenant: str = "default",
        *,
        runner: ScriptRunner | None = None,
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
        retention_ms: int = DEFAULT_RETENTION_MS,
    ) -> None:
        self.redis = redis
        self.tenant = v.check_tenant(tenant)
        self.keys = TenantKeys.of(tenant)
        self.prefix = self.keys.prefix
        self.runner = runner or default_runner()
        self.events_maxlen = events_maxlen
        self.retention_ms = retention_ms
        self._registered = False

    def for_tenant(self, tenant: str) -> Engine:
        return Engine(self.redis, tenant, runner=self.runner, events_maxlen=self.events_maxlen,
                      retention_ms=self.retention_ms)

    @property
    def events_key(self) -> str:
        return self.keys.events

    async def call(self, script: str, *args: Any) -> Any:
        try:
            return await self.runner.call(
                self.redis, script, [self.prefix], [self.events_maxlen, self.retention_ms, *args]
            )
        except ResponseError as e:
            err = from_reply(str(e))
            if err is None:
                raise
            raise err from None
        except REDIS_DOWN as e:
            raise RedisUnavailable(f"Redis is unavailable: {e}") from None

    async def _register_tenant(self) -> None:
        # The timer worker sweeps the tenants listed here. Once per engine is
        # enough: on a Redis Cluster the registry is one key on one shard, and
        # a tenant already registered stays configurable while that shard is
        # down. (A worker puts back tenants a lost registry forgot.)
        if self._registered:
            return
        try:
            await self.redis.sadd(TENANTS, self.tenant)
        except REDIS_DOWN as e:
            raise RedisUnavailable(f"Redis is unavailable: {e}") from None
        self._registered = True

    # Configuration

    async def put_mrd(
        self, mrd_id: str, *, max_requests: int = DEFAULT_MAX_REQUESTS, auto_join: bool = False,
        wrap_up_enabled: bool = False, wrap_up_timeout_ms: int = DEFAULT_WRAP_UP_TIMEOUT_MS,
        blocks: list[str] | tuple[str, ...] | None = None,
    ) -> Mrd:
        """blocks: the MRDs an agent holding an open media of this one is
        offered no new task of (each must exist; not this one)."""
        v.check_id("mrdId", mrd_id)
        v.check_int("maxRequests", max_requests, *MAX_REQUESTS)
        v.check_int("wrapUp.timeoutMs", wrap_up_timeout_ms, *WRAP_UP_TIMEOUT_MS)
        blocks_arg = ""
        if blocks is not None:
            if not isinstance(blocks, list | tuple) or len(blocks) > MAX_BLOCKS:
                raise v.ValidationError(f"blocks must be a list of at most {MAX_BLOCKS} mrd ids")
            ids = sorted(dict.fromkeys(v.check_id("blocks[]", b) for b in blocks))
            if mrd_id in ids:
                raise v.ValidationError(f"mrd {mrd_id} cannot block itself (maxRequests limits it)")
            blocks_arg = _compact(ids) if ids else ""  # none: as if unset
        await self._register_tenant()
        raw = await self.call("put_mrd", mrd_id, max_requests, int(bool(auto_join)),
                              int(bool(wrap_up_enabled)), wrap_up_timeout_ms, blocks_arg)
        return Mrd.from_dict(json.loads(raw))

    async def get_mrd(self, mrd_id: str) -> Mrd:
        return Mrd.from_dict(json.loads(await self.call("get_mrd", v.check_id("mrdId", mrd_id))))

    async def put_queue(
        self, queue_id: str, *, mrd_id: str,
        agent_request_ttl_ms: int = DEFAULT_AGENT_REQUEST_TTL_MS,
        agent_sla_ms: int = DEFAULT_AGENT_SLA_MS,
        agent_selection_policy: SelectionPolicy | str = SelectionPolicy.LONGEST_AVAILABLE,
        service_level_threshold_ms: int = DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
        steps: list[Step] | list[dict[str, Any]] | None = None,
        route_to_last_agent_ms: int | None = None,
        priority_unit_ms: int | None = None, max_waiting: int | None = None,
        overflow: Overflow | dict[str, Any] | None = None, statistics_enabled: bool = True,
    ) -> Queue:
        """steps: up to 10 (expression, timeoutMs on every step but the
        last); route_to_last_agent_ms: routeToLastAgent's timeoutMs.
        Routing policies: priority_unit_ms (aging: waiting tasks ordered by
        enqueueTime - priority * priority_unit_ms), max_waiting (a PUSH
        beyond it is QUEUE_FULL or overflows), overflow (afterMs, queueId:
        a task still waiting afterMs after its enqueueTime moves there).
        statistics_enabled False: the queue counts no statistics minutes
        (its realtime figures stay)."""
        v.check_id("queueId", queue_id)
        v.check_id("mrdId", mrd_id)
        v.check_int("agentRequestTtlMs", agent_request_ttl_ms, *AGENT_REQUEST_TTL_MS)
        v.check_int("agentSlaMs", agent_sla_ms, *AGENT_SLA_MS)
        v.check_int("serviceLevelThresholdMs", service_level_threshold_ms, *SERVICE_LEVEL_THRESHOLD_MS)
        policy = v.check_enum("agentSelectionPolicy", SelectionPolicy, agent_selection_policy)
        step_args: list[Any] = ["", "", "", ""]
        if steps is not None:
            checked, code, offsets, names = compile_steps(steps, STEP_TIMEOUT_MS[1])
            step_args = [_compact([s.to_dict() for s in checked]), _compact(offsets), code,
                         _compact(names)]
        if route_to_last_agent_ms is not None:
            v.check_int("routeToLastAgent.timeoutMs", route_to_last_agent_ms, *ROUTE_TO_LAST_AGENT_MS)
        if priority_unit_ms is not None:
            v.check_int("priorityUnitMs", priority_unit_ms, *PRIORITY_UNIT_MS)
        if max_waiting is not None:
            v.check_int("maxWaiting", max_waiting, *MAX_WAITING)
        ovf = _overflow(overflow)
        if not isinstance(statistics_enabled, bool):
            raise v.ValidationError("statisticsEnabled must be true or false")
        await self._register_tenant()
        raw = await self.call("put_queue", queue_id, mrd_id, agent_request_ttl_ms, agent_sla_ms,
                              policy.value, service_level_threshold_ms, *step_args,
                              "" if route_to_last_agent_ms is None else route_to_last_agent_ms,
                              "" if priority_unit_ms is None else priority_unit_ms,
                              "" if max_waiting is None else max_waiting,
                              *(("", "") if ovf is None else (ovf.after_ms, ovf.queue_id)),
                              int(statistics_enabled))
        return Queue.from_dict(json.loads(raw))

    async def get_queue(self, queue_id: str) -> Queue:
        raw = await self.call("get_queue", v.check_id("queueId", queue_id))
        return Queue.from_dict(json.loads(raw))

    async def put_agent(
        self, agent_id: str, *, queues: list[str] | tuple[str, ...] = (),
        attributes: dict[str, Any] | None = None, max_requests: dict[str, int] | None = None,
    ) -> Agent:
        v.check_id("agentId", agent_id)
        if not isinstance(queues, list | tuple) or len(queues) > MAX_AGENT_QUEUES:
            raise v.ValidationError(f"queues must be a list of at most {MAX_AGENT_QUEUES} queue ids")
        queue_ids = list(dict.fromkeys(v.check_id("queues[]", q) for q in queues))
        overrides = max_requests or {}
        if not isinstance(overrides, dict):
            raise v.ValidationError("maxRequests must be an object of mrdId: {}..{}".format(*MAX_REQUESTS))
        for mrd_id, n in overrides.items():
            v.check_id("maxRequests key", mrd_id)
            v.check_int(f"maxRequests.{mrd_id}", n, *MAX_REQUESTS)
        await self._register_tenant()
        raw = await self.call("put_agent", agent_id, json.dumps(queue_ids),
                              v.json_object("attributes", attributes),
                              json.dumps(overrides, separators=(",", ":")))
        return Agent.from_dict(json.loads(raw))

    async def get_agent(self, agent_id: str) -> Agent:
        raw = await self.call("get_agent", v.check_id("agentId", agent_id))
        return Agent.from_dict(json.loads(raw))

    # Lists and deletion. A list is a page in id order (byte-wise); pass
    # its `next` as cursor for the following page.

    async def list_mrds(self, limit: int = DEFAULT_PAGE_LIMIT, cursor: str | None = None) -> Page[Mrd]:
        return await self._list("mrds", Mrd.from_dict, limit, cursor)

    async def list_queues(self, limit: int = DEFAULT_PAGE_LIMIT,
                          cursor: str | None = None) -> Page[Queue]:
        """Each queue with its live statistics, as get_queue returns it."""
        return await self._list("queues", Queue.from_dict, limit, cursor)

    async def list_agents(self, limit: int = DEFAULT_PAGE_LIMIT,
                          cursor: str | None = None) -> Page[Agent]:
        return await self._list("agents", Agent.from_dict, limit, cursor)

    async def _list(self, kind: str, decode: Any, limit: int, cursor: str | None) -> Page[Any]:
        v.check_int("limit", limit, *PAGE_LIMIT)
        after = ""
        if cursor is not None:
            after = cursor_after(cursor) or ""
            if not after:
                raise v.ValidationError(f"cursor is not one a list returned; got {cursor!r:.80}")
        d = json.loads(await self.call("list_config", kind, limit, after))
        return Page([decode(x) for x in d[kind]], None if d["next"] is None else page_cursor(d["next"]))

    async def delete_mrd(self, mrd_id: str) -> None:
        """Refused (InvalidTransition) while a queue uses the MRD or an
        agent holds tasks on it."""
        await self.call("delete_mrd", v.check_id("mrdId", mrd_id))

    async def delete_queue(self, queue_id: str) -> None:
        """Refused (InvalidTransition) while an agent lists the queue or a
        task waits in it or is reserved from it."""
        await self.call("delete_queue", v.check_id("queueId", queue_id))

    async def delete_agent(self, agent_id: str) -> None:
        """Logs the agent out first; refused (InvalidTransition) while it
        holds tasks."""
        await self.call("delete_agent", v.check_id("agentId", agent_id))

    async def set_agent_state(
        self, agent_id: str, state: AgentState | str, *, mrd_id: str | None = None,
        reason_code: str | None = None,
    ) -> Agent:
        v.check_id("agentId", agent_id)
        if mrd_id is None:
            st = v.check_enum("state", AgentState, state)
        else:
            v.check_id("mrdId", mrd_id)
            st = v.check_enum("state", AgentState, state, (AgentState.READY, AgentState.NOT_READY))
        if reason_code is not None:
            v.check_reason(reason_code)
        raw = await self.call("set_agent_state", agent_id, st.value, mrd_id or "", reason_code or "")
        return Agent.from_dict(json.loads(raw))

    # Tasks

    async def push_task(
        self, conversation_id: str, queue_id: str, *, priority: int = DEFAULT_PRIORITY,
        agent_request_ttl_ms: int | None = None, request_session: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None, direction: Direction | str = Direction.INBOUND,
        preferred_agent_id: str | None = None, preferred_agent_timeout_ms: int | None = None,
    ) -> Task:
        """preferred_agent_id: offered to that agent only until enqueueTime +
        preferred_agent_timeout_ms (default limits.DEFAULT_PREFERRED_AGENT_TIMEOUT_MS), then routed as any other."""
        raw = await self._push(None, conversation_id, queue_id, priority, agent_request_ttl_ms,
                               request_session, metadata, direction, preferred_agent_id,
                               preferred_agent_timeout_ms)
        return Task.from_json(raw)

    async def push_task_idempotent(
        self, idempotency_key: str, conversation_id: str, queue_id: str, *, priority: int = DEFAULT_PRIORITY,
        agent_request_ttl_ms: int | None = None, request_session: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None, direction: Direction | str = Direction.INBOUND,
        preferred_agent_id: str | None = None, preferred_agent_timeout_ms: int | None = None,
    ) -> tuple[Task, bool]:
        """push_task that is safe to retry: the first call with a key creates
        the task; a later one with the same key (within the retention
        period, for the same queue and conversation) creates nothing and
        returns that task as it is now. Returns the task and whether this
        call created it."""
        v.check_id("idempotencyKey", idempotency_key)
        status, raw = await self._push(idempotency_key, conversation_id, queue_id, priority,
                                       agent_request_ttl_ms, request_session, metadata, direction,
                                       preferred_agent_id, preferred_agent_timeout_ms)
        return Task.from_json(raw), int(status) == 201

    async def _push(self, idempotency_key: str | None, conversation_id: str, queue_id: str,
                    priority: int, agent_request_ttl_ms: int | None,
                    request_session: dict[str, Any] | None, metadata: dict[str, Any] | None,
                    direction: Direction | str, preferred_agent_id: str | None = None,
                    preferred_agent_timeout_ms: int | None = None) -> Any:
        v.check_id("conversationId", conversation_id)
        v.check_id("queueId", queue_id)
        v.check_priority(priority)
        if agent_request_ttl_ms is not None:
            v.check_int("agentRequestTtlMs", agent_request_ttl_ms, *AGENT_REQUEST_TTL_MS)
        d = v.check_enum("direction", Direction, direction,
                         (Direction.INBOUND, Direction.DIRECT_CONFERENCE))
        if preferred_agent_id is not None:
            v.check_id("preferredAgentId", preferred_agent_id)
        if preferred_agent_timeout_ms is not None:
            v.check_int("preferredAgentTimeoutMs", preferred_agent_timeout_ms, *PREFERRED_AGENT_TIMEOUT_MS)
        return await self.call(
            "push_task", queue_id, conversation_id, priority,
            "" if agent_request_ttl_ms is None else agent_request_ttl_ms,
            v.json_object("requestSession", request_session), v.json_object("metadata", metadata),
            d.value, idempotency_key or "", preferred_agent_id or "",
            "" if preferred_agent_timeout_ms is None else preferred_agent_timeout_ms,
        )

    async def set_task_priority(self, task_id: str, priority: int) -> Task:
        """A waiting task's new priority: it takes its new place in its
        queue (INVALID_TRANSITION for a task that is not waiting)."""
        v.check_id("taskId", task_id)
        v.check_priority(priority)
        return Task.from_json(await self.call("set_task_priority", task_id, priority))

    async def accept(self, task_id: str, media_id: str, agent_id: str | None = None) -> Task:
        v.check_id("taskId", task_id)
        v.check_id("mediaId", media_id)
        if agent_id is not None:
            v.check_id("agentId", agent_id)
        return Task.from_json(await self.call("accept_task", task_id, media_id, agent_id or ""))

    async def close_media(self, task_id: str, media_id: str) -> Task:
        v.check_id("taskId", task_id)
        v.check_id("mediaId", media_id)
        return Task.from_json(await self.call("close_media", task_id, media_id))

    async def set_media_state(
        self, task_id: str, media_id: str, state: MediaState | str, agent_id: str | None = None
    ) -> Task:
        st = v.check_enum("state", MediaState, state, (MediaState.ACTIVE, MediaState.CLOSED))
        if st is MediaState.ACTIVE:
            return await self.accept(task_id, media_id, agent_id)
        return await self.close_media(task_id, media_id)

    async def set_task_state(
        self, task_id: str, name: TaskStateName | str, reason_code: str | None = None
    ) -> Task:
        v.check_id("taskId", task_id)
        st = v.check_enum("name", TaskStateName, name, (TaskStateName.WRAP_UP, TaskStateName.CLOSED))
        if reason_code is not None:
            v.check_enum("reasonCode", ReasonCode, reason_code)
        return Task.from_json(await self.call("set_task_state", task_id, st.value, reason_code or ""))

    async def pull_task(
        self, agent_id: str, conversation_id: str, mrd_id: str, *,
        direction: Direction | str = Direction.INBOUND,
        request_session: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        """PULL mode / OUTBOUND. Returns the task and whether it was created."""
        v.check_id("agentId", agent_id)
        v.check_id("conversationId", conversation_id)
        v.check_id("mrdId", mrd_id)
        d = v.check_enum("direction", Direction, direction, (Direction.INBOUND, Direction.OUTBOUND))
        status, raw = await self.call(
            "pull_task", agent_id, conversation_id, mrd_id, d.value,
            v.json_object("requestSession", request_session), v.json_object("metadata", metadata),
        )
        return Task.from_json(raw), int(status) == 201

    async def conference(
        self, conversation_id: str, *, queue_id: str | None = None, agent_id: str | None = None,
        mrd_id: str | None = None, sla_ms: int | None = None, priority: int = DEFAULT_PRIORITY,
        request_session: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
    ) -> Task:
        """A direct queue conference (queue_id) or a named-agent one (agent_id)."""
        if (queue_id is None) == (agent_id is None):
            raise v.ValidationError("give exactly one of queueId and agentId")
        if queue_id is not None:
            return await self.push_task(
                conversation_id, queue_id, priority=priority, request_session=request_session,
                metadata=metadata, direction=Direction.DIRECT_CONFERENCE,
            )
        raw = await self.call(
            "conference_agent", v.check_id("conversationId", conversation_id),
            v.check_id("agentId", agent_id), v.check_optional_id("mrdId", mrd_id), _sla_arg(sla_ms),
            v.json_object("requestSession", request_session), v.json_object("metadata", metadata),
        )
        return Task.from_json(raw)

    async def transfer(
        self, conversation_id: str, from_agent_id: str, *, queue_id: str | None = None,
        agent_id: str | None = None, sla_ms: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Task:
        """A direct queue transfer (queue_id) or a named agent transfer (agent_id)."""
        v.check_id("conversationId", conversation_id)
        v.check_id("fromAgentId", from_agent_id)
        if (queue_id is None) == (agent_id is None):
            raise v.ValidationError("give exactly one of queueId and agentId")
        raw = await self.call(
            "transfer_task", conversation_id, from_agent_id, v.check_optional_id("queueId", queue_id),
            v.check_optional_id("agentId", agent_id), _sla_arg(sla_ms),
            "" if metadata is None else v.json_object("metadata", metadata),
        )
        return Task.from_json(raw)

    # Reads

    async def get_task(self, task_id: str) -> Task:
        return Task.from_json(await self.call("get_task", v.check_id("taskId", task_id)))

    async def task_routing(self, task_id: str) -> RoutingExplanation:
        """Why a task waits, or why it went to its agent: the candidates of
        its queue (and its preferred agent), each with a reason."""
        raw = await self.call("get_routing", v.check_id("taskId", task_id))
        return RoutingExplanation.from_dict(json.loads(raw))

    async def task_position(self, task_id: str) -> TaskPosition:
        """A waiting task's place in its queue's order (1: the next one
        handed out) and its expected wait from now (INVALID_TRANSITION for
        a task that does not wait)."""
        raw = await self.call("get_position", v.check_id("taskId", task_id))
        return TaskPosition.from_dict(json.loads(raw))

    async def queue_ewt(self, queue_id: str, window_minutes: int = DEFAULT_WINDOW_MINUTES) -> QueueEwt:
        """A queue's estimated wait for a request pushed now, and the
        accuracy of the predictions answered in the current minute and the
        window_minutes - 1 before it (lua/includes/ewt.lua)."""
        v.check_id("queueId", queue_id)
        v.check_int("windowMinutes", window_minutes, *WINDOW_MINUTES)
        return QueueEwt.from_dict(json.loads(await self.call("get_ewt", queue_id, window_minutes)))

    async def conversation_tasks(self, conversation_id: str) -> list[Task]:
        raw = await self.call("list_tasks", "conversation", v.check_id("conversationId", conversation_id))
        return [Task.from_dict(t) for t in json.loads(raw)["tasks"]]

    async def agent_tasks(self, agent_id: str) -> list[Task]:
        raw = await self.call("list_tasks", "agent", v.check_id("agentId", agent_id))
        return [Task.from_dict(t) for t in json.loads(raw)["tasks"]]

    # Statistics (docs/api.md, Statistics)

    async def queue_statistics(self, queue_id: str,
                               window_minutes: int = DEFAULT_WINDOW_MINUTES) -> dict[str, Any]:
        """A queue's statistics as the API shows them: `realtime` (what it
        holds now), `window` (what was counted in the current minute and the
        window_minutes - 1 before it) and `ewt`."""
        v.check_id("queueId", queue_id)
        v.check_int("windowMinutes", window_minutes, *WINDOW_MINUTES)
        raw = json.loads(await self.call("get_statistics", queue_id, window_minutes))
        return stats.queue_statistics(raw, window_minutes)

    async def statistics(self, window_minutes: int = DEFAULT_WINDOW_MINUTES) -> dict[str, Any]:
        """The tenant's: {"queues": [each queue's statistics, in id
        order], "agents": {global state: count}}."""
        v.check_int("windowMinutes", window_minutes, *WINDOW_MINUTES)
        d = json.loads(await self.call("get_tenant_statistics"))
        queues = []
        for qid in d["queueIds"]:
            try:
                queues.append(await self.queue_statistics(qid, window_minutes))
            except NotFound:  # deleted meanwhile
                continue
        return {"queues": queues, "agents": d["agents"]}

    # Timers and events

    async def fire_due(self, limit: int = 500) -> FireResult:
        """Fires up to `limit` due deadlines of this tenant, each exactly once."""
        fired, processed, nxt, now, *lags = await self.call("fire_due", limit)
        return FireResult(int(fired), int(processed), int(nxt), int(now), [int(x) for x in lags])

    async def advance_clock(self, ms: int) -> None:
        """Moves this tenant's clock forward (tests only; a tenant with a
        virtual clock moves it with set_clock)."""
        await self.redis.incrby(self.keys.clock_offset, ms)

    async def set_clock(self, at_ms: int) -> int:
        """Gives this tenant a virtual clock at at_ms, or moves it forward
        (INVALID_TRANSITION backwards): every script of the tenant then reads
        that time, and it stands still between calls. For simulations
        (redroute.sim); no other tenant's clock changes."""
        v.check_int("clock", at_ms, 0, 2**53 - 1)
        return int(await self.call("set_clock", at_ms))

    async def clock(self) -> int:
        """This tenant's clock now, ms: its virtual clock when it has one,
        else the Redis clock plus its offset."""
        virtual, offset = await self.redis.mget(self.keys.clock_virtual, self.keys.clock_offset)
        if virtual is not None:
            return int(virtual)
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000 + int(offset or 0)

    async def events(self, after: str = "-", count: int | None = None) -> list[Event]:
        """The tenant's events after stream id `after` ('-' for all)."""
        start = "-" if after == "-" else f"({after}"
        return decode_entries(await self.redis.xrange(self.events_key, start, "+", count=count))

    # Webhooks (docs/api.md, Webhooks): configuration

    async def put_webhook(
        self, webhook_id: str, *, url: str, secret: str, types: list[str] | None = None,
        queue_ids: list[str] | None = None, enabled: bool = True, allow_private: bool = False,
    ) -> Webhook:
        """Creates or replaces a webhook. allow_private: the operator lets
        webhooks call loopback, private and link-local addresses."""
        from .webhooks.ssrf import check_url

        v.check_id("webhookId", webhook_id)
        v.check_secret(secret)
        type_filter = v.check_event_types(types)
        queue_filter = v.check_id_list("queueIds", queue_ids, v.MAX_QUEUE_FILTER)
        if not isinstance(enabled, bool):
            raise v.ValidationError("enabled must be true or false")
        await check_url(url, allow_private)
        await self._register_tenant()
        await self._register_webhook_tenant()
        # The group exists before the webhook does, so every event after it
        # is the group's to deliver.
        try:
            await create_group(self.redis, self.events_key, GROUP, "$")
        except REDIS_DOWN as e:
            raise RedisUnavailable(f"Redis is unavailable: {e}") from None
        raw = await self.call("put_webhook", webhook_id, url, secret,
                              "" if type_filter is None else json.dumps(type_filter),
                              "" if queue_filter is None else json.dumps(queue_filter),
                              int(enabled))
        return Webhook.from_dict(json.loads(raw))

    async def _register_webhook_tenant(self) -> None:
        try:
            await self.redis.sadd(WEBHOOK_TENANTS, self.tenant)
        except REDIS_DOWN as e:
            raise RedisUnavailable(f"Redis is unavailable: {e}") from None

    async def get_webhook(self, webhook_id: str) -> Webhook:
        raw = await self.call("get_webhook", v.check_id("webhookId", webhook_id))
        return Webhook.from_dict(json.loads(raw))

    async def delete_webhook(self, webhook_id: str) -> None:
        """Deletes it with its pending and failed deliveries: nothing more
        is sent to it."""
        await self.call("delete_webhook", v.check_id("webhookId", webhook_id))

    async def list_webhooks(self, *, limit: int = 100, cursor: str | None = None) -> Page:
        """A page of webhooks in id order; Page.next is the next page's cursor."""
        v.check_int("limit", limit, 1, v.MAX_PAGE)
        return webhook_page(await self.call("list_webhooks", v.check_cursor(cursor), limit))

    async def list_deliveries(self, webhook_id: str, *, status: str = "FAILED", limit: int = 100,
                              cursor: str | None = None) -> Page:
        """A page of a webhook's FAILED deliveries, oldest failure first."""
        v.check_id("webhookId", webhook_id)
        if status != "FAILED":
            raise v.ValidationError(f"status must be FAILED; got {status!r:.40}")
        v.check_int("limit", limit, 1, v.MAX_PAGE)
        return delivery_page(await self.call("list_deliveries", webhook_id, v.check_cursor(cursor),
                                             limit))

    async def retry_delivery(self, webhook_id: str, delivery_id: str) -> Delivery:
        """A FAILED delivery sent again (PENDING, due now)."""
        raw = await self.call("retry_delivery", v.check_id("webhookId", webhook_id),
                              v.check_id("deliveryId", delivery_id))
        return Delivery.from_dict(json.loads(raw))

    # Webhooks: the dispatcher's steps (redroute.webhooks.dispatcher)

    async def add_deliveries(self, event: Event, body: bytes, settings: DeliverySettings,
                             busy: list[str] | None) -> list[Claim]:
        """Records the event's deliveries; claims the first attempt of those
        whose webhook is not in `busy` (None: claim none)."""
        rows = await self.call("add_deliveries", event.id, event.type.value,
                               json.dumps(list(event.queue_ids)), body, settings.lease_ms,
                               "*" if busy is None else json.dumps(busy))
        return [Claim(w, event.id, url, secret, int(n), body) for w, url, secret, n in rows]

    async def claim_deliveries(self, settings: DeliverySettings, total: int,
                               busy: list[str]) -> tuple[list[Claim], int]:
        """Due attempts claimed, and in how many ms the tenant's next one is
        due (-1 for none)."""
        *rows, nxt, now = await self.call("claim_deliveries", total, settings.per_webhook,
                                          settings.lease_ms, json.dumps(busy))
        claims = [Claim(w, d, url, secret, int(n), body.encode() if isinstance(body, str) else body)
                  for w, d, url, secret, n, body in rows]
        return claims, -1 if int(nxt) < 0 else max(0, int(nxt) - int(now))

    async def finish_delivery(self, claim: Claim, settings: DeliverySettings, *, delivered: bool,
                              status: int | None = None, error: str | None = None) -> str:
        """Records an attempt's outcome: DELIVERED, RETRY, FAILED or STALE."""
        return await self.call("finish_delivery", claim.webhook_id, claim.delivery_id,
                               claim.attempt, int(delivered), "" if status is None else status,
                               (error or "")[:500], settings.backoff_ms, settings.max_backoff_ms,
                               settings.give_up_ms)

    async def record_lost_events(self, delivery_id: str, event_id: str | None, before_ms: int,
                                 what: str) -> int:
        """Events trimmed before the dispatcher read them, recorded as a
        FAILED delivery of every enabled webhook that existed by before_ms."""
        return int(await self.call("record_lost_events", delivery_id, event_id or "", before_ms,
                                   what))
