"""An async Python client for the HTTP API (aiohttp). Its methods mirror
redroute.Engine's and return the same redroute.model objects; errors come
back as the same redroute.errors exceptions, with the problem document in
`.problem` and the HTTP status in `.http_status`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgpack

from . import limits
from .errors import BY_CODE, RedrouteError
from .events.model import Event, decode_entry
from .limits import DEFAULT_PAGE_LIMIT
from .model import Agent, Mrd, Overflow, Page, Queue, RoutingExplanation, Step, Task, TaskPosition
from .webhooks.model import Delivery, Webhook

MSGPACK = "application/msgpack"


def _push_body(conversation_id: str, queue_id: str, priority: int, ttl_ms: int | None,
               request_session: dict[str, Any] | None,
               metadata: dict[str, Any] | None, preferred_agent_id: str | None = None,
               preferred_agent_timeout_ms: int | None = None) -> dict[str, Any]:
    return _drop_none({"conversationId": conversation_id, "queueId": queue_id,
                       "priority": priority, "agentRequestTtlMs": ttl_ms,
                       "requestSession": request_session, "metadata": metadata,
                       "preferredAgentId": preferred_agent_id,
                       "preferredAgentTimeoutMs": preferred_agent_timeout_ms})


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _query(**params: Any) -> str:
    """?a=1&b=2 of the parameters that are not None."""
    given = _drop_none(params)
    return "?" + urlencode(given) if given else ""


class Client:
    """`async with Client("http://127.0.0.1:8080", tenant="acme") as c: ...`

    With api_key, every request carries `Authorization: Bearer <key>`: on a
    server with API keys the key decides the tenant (X-Tenant must match it
    or be left out)."""

    def __init__(
        self, base_url: str, *, tenant: str = "default", use_msgpack: bool = False,
        session: aiohttp.ClientSession | None = None, timeout: float = 30.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        self.api_key = api_key
        self.use_msgpack = use_msgpack
        self._own = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def for_tenant(self, tenant: str) -> Client:
        """Another tenant on the same connection pool."""
        return Client(self.base_url, tenant=tenant, use_msgpack=self.use_msgpack,
                      session=self.session, api_key=self.api_key)

    def _headers(self, accept: str | None = None) -> dict[str, str]:
        h = {"X-Tenant": self.tenant,
             "Accept": accept or (MSGPACK if self.use_msgpack else "application/json")}
        if self.api_key is not None:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {**self._headers(), **(headers or {})}
        data = None
        if body is not None:
            if self.use_msgpack:
                data = msgpack.packb(body, use_bin_type=True)
                headers["Content-Type"] = MSGPACK
            else:
                data = json.dumps(body, separators=(",", ":")).encode()
                headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base_url + path, data=data,
                                        headers=headers) as resp:
            raw = await resp.read()
            ctype = resp.content_type
            payload: Any
            if ctype == MSGPACK:
                payload = msgpack.unpackb(raw, raw=False)
            elif ctype.endswith("json"):
                payload = json.loads(raw) if raw else None
            else:
                payload = raw.decode()
            if resp.status >= 400:
                raise self._error(resp.status, payload)
            return resp.status, payload

    @staticmethod
    def _error(status: int, payload: Any) -> RedrouteError:
        problem = payload if isinstance(payload, dict) else {"detail": str(payload)}
        cls = BY_CODE.get(str(problem.get("code")), RedrouteError)
        err = cls(str(problem.get("detail", f"HTTP {status}")))
        err.problem = problem  # type: ignore[attr-defined]
        err.http_status = status  # type: ignore[attr-defined]
        return err

    # Configuration

    async def put_mrd(self, mrd_id: str, *, max_requests: int = limits.DEFAULT_MAX_REQUESTS,
                      auto_join: bool = False, wrap_up_enabled: bool = False,
                      wrap_up_timeout_ms: int = limits.DEFAULT_WRAP_UP_TIMEOUT_MS,
                      blocks: list[str] | None = None) -> Mrd:
        body: dict[str, Any] = {
            "maxRequests": max_requests, "autoJoin": auto_join,
            "wrapUp": {"enabled": wrap_up_enabled, "timeoutMs": wrap_up_timeout_ms}}
        if blocks is not None:
            body["blocks"] = list(blocks)
        _, d = await self.request("PUT", f"/v1/mrds/{mrd_id}", body)
        return Mrd.from_dict(d)

    async def get_mrd(self, mrd_id: str) -> Mrd:
        return Mrd.from_dict((await self.request("GET", f"/v1/mrds/{mrd_id}"))[1])

    async def put_queue(self, queue_id: str, *, mrd_id: str,
                        agent_request_ttl_ms: int = limits.DEFAULT_AGENT_REQUEST_TTL_MS,
                        agent_sla_ms: int = limits.DEFAULT_AGENT_SLA_MS,
                        agent_selection_policy: str = "LONGEST_AVAILABLE",
                        service_level_threshold_ms: int = limits.DEFAULT_SERVICE_LEVEL_THRESHOLD_MS,
                        steps: list[Step] | list[dict[str, Any]] | None = None,
                        route_to_last_agent_ms: int | None = None,
                        priority_unit_ms: int | None = None, max_waiting: int | None = None,
                        overflow: Overflow | dict[str, Any] | None = None,
                        statistics_enabled: bool = True) -> Queue:
        body: dict[str, Any] = {
            "mrdId": mrd_id, "agentRequestTtlMs": agent_request_ttl_ms, "agentSlaMs": agent_sla_ms,
            "agentSelectionPolicy": str(agent_selection_policy),
            "serviceLevelThresholdMs": service_level_threshold_ms}
        if steps is not None:
            body["steps"] = [s.to_dict() if isinstance(s, Step) else s for s in steps]
        if route_to_last_agent_ms is not None:
            body["routeToLastAgent"] = {"timeoutMs": route_to_last_agent_ms}
        if priority_unit_ms is not None:
            body["priorityUnitMs"] = priority_unit_ms
        if max_waiting is not None:
            body["maxWaiting"] = max_waiting
        if overflow is not None:
            body["overflow"] = overflow.to_dict() if isinstance(overflow, Overflow) else overflow
        if not statistics_enabled:
            body["statisticsEnabled"] = False
        _, d = await self.request("PUT", f"/v1/queues/{queue_id}", body)
        return Queue.from_dict(d)

    async def get_queue(self, queue_id: str) -> Queue:
        return Queue.from_dict((await self.request("GET", f"/v1/queues/{queue_id}"))[1])

    async def put_agent(self, agent_id: str, *, queues: list[str] | tuple[str, ...] = (),
                        attributes: dict[str, Any] | None = None,
                        max_requests: dict[str, int] | None = None) -> Agent:
        _, d = await self.request("PUT", f"/v1/agents/{agent_id}", {
            "queues": list(queues), "attributes": attributes or {},
            "maxRequests": max_requests or {}})
        return Agent.from_dict(d)

    async def get_agent(self, agent_id: str) -> Agent:
        return Agent.from_dict((await self.request("GET", f"/v1/agents/{agent_id}"))[1])

    # Statistics: the API's JSON objects (docs/api.md, Statistics)

    async def queue_statistics(self, queue_id: str,
                               window_minutes: int = limits.DEFAULT_WINDOW_MINUTES) -> dict[str, Any]:
        path = f"/v1/queues/{queue_id}/statistics" + _query(windowMinutes=window_minutes)
        return (await self.request("GET", path))[1]

    async def statistics(self, window_minutes: int = limits.DEFAULT_WINDOW_MINUTES) -> dict[str, Any]:
        return (await self.request("GET", "/v1/statistics" + _query(windowMinutes=window_minutes)))[1]

    # Lists (pages in id order: pass `next` as cursor) and deletion

    async def list_mrds(self, limit: int = DEFAULT_PAGE_LIMIT,
                        cursor: str | None = None) -> Page[Mrd]:
        return await self._list("mrds", Mrd.from_dict, limit, cursor)

    async def list_queues(self, limit: int = DEFAULT_PAGE_LIMIT,
                          cursor: str | None = None) -> Page[Queue]:
        return await self._list("queues", Queue.from_dict, limit, cursor)

    async def list_agents(self, limit: int = DEFAULT_PAGE_LIMIT,
                          cursor: str | None = None) -> Page[Agent]:
        return await self._list("agents", Agent.from_dict, limit, cursor)

    async def _list(self, kind: str, decode: Any, limit: int, cursor: str | None) -> Page[Any]:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor is not None else "")
        _, d = await self.request("GET", f"/v1/{kind}{query}")
        return Page([decode(x) for x in d[kind]], d["next"])

    async def delete_mrd(self, mrd_id: str) -> None:
        await self.request("DELETE", f"/v1/mrds/{mrd_id}")

    async def delete_queue(self, queue_id: str) -> None:
        await self.request("DELETE", f"/v1/queues/{queue_id}")

    async def delete_agent(self, agent_id: str) -> None:
        await self.request("DELETE", f"/v1/agents/{agent_id}")

    async def set_agent_state(self, agent_id: str, state: str, *, mrd_id: str | None = None,
                              reason_code: str | None = None) -> Agent:
        _, d = await self.request("POST", f"/v1/agents/{agent_id}/state", {
            "state": str(state), "mrdId": mrd_id, "reasonCode": reason_code})
        return Agent.from_dict(d)

    # Tasks

    async def push_task(self, conversation_id: str, queue_id: str, *, priority: int = limits.DEFAULT_PRIORITY,
                        agent_request_ttl_ms: int | None = None,
                        request_session: dict[str, Any] | None = None,
                        metadata: dict[str, Any] | None = None,
                        preferred_agent_id: str | None = None,
                        preferred_agent_timeout_ms: int | None = None) -> Task:
        _, d = await self.request("POST", "/v1/tasks", _push_body(
            conversation_id, queue_id, priority, agent_request_ttl_ms, request_session, metadata,
            preferred_agent_id, preferred_agent_timeout_ms))
        return Task.from_dict(d)

    async def push_task_idempotent(
        self, idempotency_key: str, conversation_id: str, queue_id: str, *, priority: int = limits.DEFAULT_PRIORITY,
        agent_request_ttl_ms: int | None = None, request_session: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        """push_task, safe to retry with the same key (see Engine's):
        returns the task and whether this call created it."""
        status, d = await self.request("POST", "/v1/tasks", _push_body(
            conversation_id, queue_id, priority, agent_request_ttl_ms, request_session, metadata),
            headers={"Idempotency-Key": idempotency_key})
        return Task.from_dict(d), status == 201

    async def pull_task(self, agent_id: str, conversation_id: str, mrd_id: str, *,
                        direction: str = "INBOUND", request_session: dict[str, Any] | None = None,
                        metadata: dict[str, Any] | None = None) -> tuple[Task, bool]:
        status, d = await self.request("POST", f"/v1/agents/{agent_id}/tasks", _drop_none({
            "conversationId": conversation_id, "mrdId": mrd_id, "direction": str(direction),
            "requestSession": request_session, "metadata": metadata}))
        return Task.from_dict(d), status == 201

    async def conference(self, conversation_id: str, *, queue_id: str | None = None,
                         agent_id: str | None = None, mrd_id: str | None = None,
                         sla_ms: int | None = None, priority: int = limits.DEFAULT_PRIORITY,
                         request_session: dict[str, Any] | None = None,
                         metadata: dict[str, Any] | None = None) -> Task:
        _, d = await self.request("POST", f"/v1/conversations/{conversation_id}/conference",
                                  _drop_none({
                                      "queueId": queue_id, "agentId": agent_id, "mrdId": mrd_id,
                                      "agentSlaMs": sla_ms, "priority": priority,
                                      "requestSession": request_session, "metadata": metadata}))
        return Task.from_dict(d)

    async def transfer(self, conversation_id: str, from_agent_id: str, *,
                       queue_id: str | None = None, agent_id: str | None = None,
                       sla_ms: int | None = None, metadata: dict[str, Any] | None = None) -> Task:
        _, d = await self.request("POST", f"/v1/conversations/{conversation_id}/transfer",
                                  _drop_none({
                                      "fromAgentId": from_agent_id, "queueId": queue_id,
                                      "agentId": agent_id, "agentSlaMs": sla_ms,
                                      "metadata": metadata}))
        return Task.from_dict(d)

    async def set_media_state(self, task_id: str, media_id: str, state: str,
                              agent_id: str | None = None) -> Task:
        _, d = await self.request("PUT", f"/v1/tasks/{task_id}/media/{media_id}/state",
                                  _drop_none({"state": str(state), "agentId": agent_id}))
        return Task.from_dict(d)

    async def accept(self, task_id: str, media_id: str, agent_id: str | None = None) -> Task:
        return await self.set_media_state(task_id, media_id, "ACTIVE", agent_id)

    async def close_media(self, task_id: str, media_id: str) -> Task:
        return await self.set_media_state(task_id, media_id, "CLOSED")

    async def set_task_state(self, task_id: str, name: str,
                             reason_code: str | None = None) -> Task:
        _, d = await self.request("PUT", f"/v1/tasks/{task_id}/state",
                                  _drop_none({"name": str(name), "reasonCode": reason_code}))
        return Task.from_dict(d)

    async def set_task_priority(self, task_id: str, priority: int) -> Task:
        """A waiting task's new priority (409 INVALID_TRANSITION if not waiting)."""
        _, d = await self.request("PUT", f"/v1/tasks/{task_id}/priority", {"priority": priority})
        return Task.from_dict(d)

    async def get_task(self, task_id: str) -> Task:
        return Task.from_dict((await self.request("GET", f"/v1/tasks/{task_id}"))[1])

    async def task_routing(self, task_id: str) -> RoutingExplanation:
        """Why a task waits, or why it went to its agent."""
        return RoutingExplanation.from_dict((await self.request("GET", f"/v1/tasks/{task_id}/routing"))[1])

    async def task_position(self, task_id: str) -> TaskPosition:
        """A waiting task's place in its queue and expected wait (409 if not waiting)."""
        return TaskPosition.from_dict((await self.request("GET", f"/v1/tasks/{task_id}/position"))[1])

    async def conversation_tasks(self, conversation_id: str) -> list[Task]:
        _, d = await self.request("GET", f"/v1/conversations/{conversation_id}/tasks")
        return [Task.from_dict(t) for t in d["tasks"]]

    async def agent_tasks(self, agent_id: str) -> list[Task]:
        _, d = await self.request("GET", f"/v1/agents/{agent_id}/tasks")
        return [Task.from_dict(t) for t in d["tasks"]]

    # Webhooks (v2)

    async def put_webhook(self, webhook_id: str, *, url: str, secret: str,
                          types: list[str] | None = None, queue_ids: list[str] | None = None,
                          enabled: bool = True) -> Webhook:
        _, d = await self.request("PUT", f"/v1/webhooks/{webhook_id}", _drop_none({
            "url": url, "secret": secret, "types": types, "queueIds": queue_ids,
            "enabled": enabled}))
        return Webhook.from_dict(d)

    async def get_webhook(self, webhook_id: str) -> Webhook:
        return Webhook.from_dict((await self.request("GET", f"/v1/webhooks/{webhook_id}"))[1])

    async def delete_webhook(self, webhook_id: str) -> None:
        await self.request("DELETE", f"/v1/webhooks/{webhook_id}")

    async def list_webhooks(self, *, limit: int = 100, cursor: str | None = None) -> Page:
        _, d = await self.request("GET", "/v1/webhooks" + _query(limit=limit, cursor=cursor))
        return Page([Webhook.from_dict(w) for w in d["webhooks"]], d["next"])

    async def list_deliveries(self, webhook_id: str, *, status: str = "FAILED", limit: int = 100,
                              cursor: str | None = None) -> Page:
        _, d = await self.request("GET", f"/v1/webhooks/{webhook_id}/deliveries"
                                  + _query(status=status, limit=limit, cursor=cursor))
        return Page([Delivery.from_dict(x) for x in d["deliveries"]], d["next"])

    async def retry_delivery(self, webhook_id: str, delivery_id: str) -> Delivery:
        _, d = await self.request(
            "POST", f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
        return Delivery.from_dict(d)

    # Operations

    async def healthz(self) -> dict[str, Any]:
        async with self.session.get(self.base_url + "/healthz") as resp:
            return await resp.json()

    async def metrics(self) -> str:
        return (await self.request("GET", "/metrics"))[1]

    async def openapi(self) -> dict[str, Any]:
        return (await self.request("GET", "/openapi.json"))[1]

    # Events

    async def events(
        self, *, after: str | None = None, types: list[str] | None = None,
        agent_id: str | None = None, queue_id: str | None = None,
        conversation_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """The tenant's events as they come (after stream id `after`, else
        from now on), until the caller stops iterating or the server ends
        the stream. Resume with after=<the last event's id>."""
        params = _drop_none({"type": ",".join(types) if types else None, "agentId": agent_id,
                             "queueId": queue_id, "conversationId": conversation_id})
        headers = self._headers("text/event-stream")
        if after is not None:
            headers["Last-Event-ID"] = after
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.base_url + "/v1/events", params=params,
                                    headers=headers, timeout=timeout,
                                    # An event line holds a whole task (its
                                    # client JSON up to 64 KiB twice).
                                    read_bufsize=1 << 20) as resp:
            if resp.status >= 400:
                raise self._error(resp.status, await resp.json(content_type=None))
            async for entry_id, etype, data in parse_sse(resp.content):
                yield decode_entry(entry_id, {"type": etype, "data": data})


async def parse_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str, str]]:
    """(id, event, data) of each event of a text/event-stream."""
    entry_id, etype, data = "", "message", []
    async for raw in content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield entry_id, etype, "\n".join(data)
            etype, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            entry_id = value
        elif name == "event":
            etype = value
        elif name == "data":
            data.append(value)
