"""The endpoint functions of the route table, one per operation.

Each gets the request already validated (path ids, tenant, body schema) as a
Ctx, calls one Engine method and returns (status, payload); every decision is
made by the Lua scripts behind the Engine. routes.py says which URL reaches
which function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web

from ..engine import Engine
from ..model import ID_PATTERN, Page, Task
from . import schemas as s
from .negotiation import RawJson
from .problem import bad_id, from_validation_error


@dataclass
class Ctx:
    request: web.Request
    engine: Engine
    path: dict[str, str]
    body: Any
    query: Any = None  # the route's query model, validated


Handler = Callable[[Ctx], Awaitable[tuple[int, Any]]]


def _task(t: Task) -> RawJson | dict[str, Any]:
    if t.raw_json is not None:
        return RawJson(t.raw_json, t.id)
    return t.to_dict()


def _tasks(ts: list[Any]) -> dict[str, Any]:
    return {"tasks": [t.to_dict() for t in ts]}


def _page(kind: str, page: Page[Any]) -> tuple[int, Any]:
    return 200, {kind: [x.to_dict() for x in page.items], "next": page.next}


DELETED = (204, None)


# Configuration

async def put_mrd(c: Ctx) -> tuple[int, Any]:
    b: s.MrdBody = c.body
    m = await c.engine.put_mrd(c.path["mrdId"], max_requests=b.maxRequests, auto_join=b.autoJoin,
                               wrap_up_enabled=b.wrapUp.enabled,
                               wrap_up_timeout_ms=b.wrapUp.timeoutMs, blocks=b.blocks)
    return 200, m.to_dict()


async def get_mrd(c: Ctx) -> tuple[int, Any]:
    return 200, (await c.engine.get_mrd(c.path["mrdId"])).to_dict()


async def put_queue(c: Ctx) -> tuple[int, Any]:
    b: s.QueueBody = c.body
    q = await c.engine.put_queue(
        c.path["queueId"], mrd_id=b.mrdId, agent_request_ttl_ms=b.agentRequestTtlMs,
        agent_sla_ms=b.agentSlaMs, agent_selection_policy=b.agentSelectionPolicy,
        service_level_threshold_ms=b.serviceLevelThresholdMs,
        steps=None if b.steps is None else [x.model_dump(exclude_none=True) for x in b.steps],
        route_to_last_agent_ms=b.routeToLastAgent.timeoutMs if b.routeToLastAgent else None,
        priority_unit_ms=b.priorityUnitMs, max_waiting=b.maxWaiting,
        overflow=b.overflow.model_dump() if b.overflow else None,
        statistics_enabled=b.statisticsEnabled)
    return 200, q.to_dict()


async def get_queue(c: Ctx) -> tuple[int, Any]:
    return 200, (await c.engine.get_queue(c.path["queueId"])).to_dict()


async def queue_statistics(c: Ctx) -> tuple[int, Any]:
    return 200, await c.engine.queue_statistics(c.path["queueId"], c.query.windowMinutes)


async def statistics(c: Ctx) -> tuple[int, Any]:
    return 200, await c.engine.statistics(c.query.windowMinutes)


async def put_agent(c: Ctx) -> tuple[int, Any]:
    b: s.AgentBody = c.body
    a = await c.engine.put_agent(c.path["agentId"], queues=b.queues, attributes=b.attributes,
                                 max_requests=b.maxRequests)
    return 200, a.to_dict()


async def get_agent(c: Ctx) -> tuple[int, Any]:
    return 200, (await c.engine.get_agent(c.path["agentId"])).to_dict()


# Configuration lists and deletion

async def list_mrds(c: Ctx) -> tuple[int, Any]:
    return _page("mrds", await c.engine.list_mrds(c.query.limit, c.query.cursor))


async def list_queues(c: Ctx) -> tuple[int, Any]:
    return _page("queues", await c.engine.list_queues(c.query.limit, c.query.cursor))


async def list_agents(c: Ctx) -> tuple[int, Any]:
    return _page("agents", await c.engine.list_agents(c.query.limit, c.query.cursor))


async def delete_mrd(c: Ctx) -> tuple[int, Any]:
    await c.engine.delete_mrd(c.path["mrdId"])
    return DELETED


async def delete_queue(c: Ctx) -> tuple[int, Any]:
    await c.engine.delete_queue(c.path["queueId"])
    return DELETED


async def delete_agent(c: Ctx) -> tuple[int, Any]:
    await c.engine.delete_agent(c.path["agentId"])
    return DELETED


# Agents

async def set_agent_state(c: Ctx) -> tuple[int, Any]:
    b: s.AgentStateBody = c.body
    a = await c.engine.set_agent_state(c.path["agentId"], b.state, mrd_id=b.mrdId,
                                       reason_code=b.reasonCode)
    return 200, a.to_dict()


async def agent_tasks(c: Ctx) -> tuple[int, Any]:
    return 200, _tasks(await c.engine.agent_tasks(c.path["agentId"]))


# Tasks

IDEMPOTENCY_KEY = "Idempotency-Key"


async def push_task(c: Ctx) -> tuple[int, Any]:
    b: s.PushBody = c.body
    args = dict(priority=b.priority, agent_request_ttl_ms=b.agentRequestTtlMs,
                request_session=b.requestSession, metadata=b.metadata,
                preferred_agent_id=b.preferredAgentId,
                preferred_agent_timeout_ms=b.preferredAgentTimeoutMs)
    key = c.request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return 201, _task(await c.engine.push_task(b.conversationId, b.queueId, **args))
    if not ID_PATTERN.fullmatch(key):
        raise bad_id(f"header {IDEMPOTENCY_KEY}", key)
    t, created = await c.engine.push_task_idempotent(key, b.conversationId, b.queueId, **args)
    return (201 if created else 200), _task(t)


async def pull_task(c: Ctx) -> tuple[int, Any]:
    b: s.PullBody = c.body
    t, created = await c.engine.pull_task(c.path["agentId"], b.conversationId, b.mrdId,
                                          direction=b.direction,
                                          request_session=b.requestSession, metadata=b.metadata)
    return (201 if created else 200), _task(t)


async def conference(c: Ctx) -> tuple[int, Any]:
    b: s.ConferenceBody = c.body
    t = await c.engine.conference(c.path["conversationId"], queue_id=b.queueId,
                                  agent_id=b.agentId, mrd_id=b.mrdId, sla_ms=b.agentSlaMs,
                                  priority=b.priority, request_session=b.requestSession,
                                  metadata=b.metadata)
    return 201, _task(t)


async def transfer(c: Ctx) -> tuple[int, Any]:
    b: s.TransferBody = c.body
    t = await c.engine.transfer(c.path["conversationId"], b.fromAgentId, queue_id=b.queueId,
                                agent_id=b.agentId, sla_ms=b.agentSlaMs, metadata=b.metadata)
    return 201, _task(t)


async def conversation_tasks(c: Ctx) -> tuple[int, Any]:
    return 200, _tasks(await c.engine.conversation_tasks(c.path["conversationId"]))


async def set_media_state(c: Ctx) -> tuple[int, Any]:
    b: s.MediaStateBody = c.body
    t = await c.engine.set_media_state(c.path["taskId"], c.path["mediaId"], b.state, b.agentId)
    return 200, _task(t)


async def set_task_state(c: Ctx) -> tuple[int, Any]:
    b: s.TaskStateBody = c.body
    reason = b.reasonCode.value if b.reasonCode is not None else None
    return 200, _task(await c.engine.set_task_state(c.path["taskId"], b.name, reason))


async def set_task_priority(c: Ctx) -> tuple[int, Any]:
    b: s.TaskPriorityBody = c.body
    return 200, _task(await c.engine.set_task_priority(c.path["taskId"], b.priority))


async def get_task(c: Ctx) -> tuple[int, Any]:
    return 200, _task(await c.engine.get_task(c.path["taskId"]))


async def get_task_routing(c: Ctx) -> tuple[int, Any]:
    return 200, (await c.engine.task_routing(c.path["taskId"])).to_dict()


async def get_task_position(c: Ctx) -> tuple[int, Any]:
    return 200, (await c.engine.task_position(c.path["taskId"])).to_dict()


# Webhooks (v2)

# The operator's --webhooks-allow-private, set by create_app.
WEBHOOKS_ALLOW_PRIVATE = web.AppKey("webhooks_allow_private", bool)


def _query(c: Ctx, model: type[s.PageQuery]) -> s.PageQuery:
    try:
        return model.model_validate(dict(c.request.query))
    except pydantic.ValidationError as e:
        raise from_validation_error(e, "query") from None


async def put_webhook(c: Ctx) -> tuple[int, Any]:
    b: s.WebhookBody = c.body
    w = await c.engine.put_webhook(
        c.path["webhookId"], url=b.url, secret=b.secret,
        types=None if b.types is None else [t.value for t in b.types], queue_ids=b.queueIds,
        enabled=b.enabled, allow_private=c.request.app.get(WEBHOOKS_ALLOW_PRIVATE, False))
    return 200, w.to_dict()


async def get_webhook(c: Ctx) -> tuple[int, Any]:
    return 200, (await c.engine.get_webhook(c.path["webhookId"])).to_dict()


async def delete_webhook(c: Ctx) -> tuple[int, Any]:
    await c.engine.delete_webhook(c.path["webhookId"])
    return 204, None


async def list_webhooks(c: Ctx) -> tuple[int, Any]:
    q = _query(c, s.PageQuery)
    page = await c.engine.list_webhooks(limit=q.limit, cursor=q.cursor)
    return 200, {"webhooks": [w.to_dict() for w in page.items], "next": page.next}


async def list_deliveries(c: Ctx) -> tuple[int, Any]:
    q = _query(c, s.DeliveryQuery)
    page = await c.engine.list_deliveries(c.path["webhookId"], status=q.status, limit=q.limit,
                                          cursor=q.cursor)
    return 200, {"deliveries": [d.to_dict() for d in page.items], "next": page.next}


async def retry_delivery(c: Ctx) -> tuple[int, Any]:
    d = await c.engine.retry_delivery(c.path["webhookId"], c.path["deliveryId"])
    return 200, d.to_dict()
