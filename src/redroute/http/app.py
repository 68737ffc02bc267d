"""The aiohttp application: the route table (routes.py) of docs/api.md served
over redroute.Engine, with the middleware and the endpoints outside the table's
request-response shape (SSE events, health, metrics, the OpenAPI document).

The adapter here validates what every operation shares (path ids, tenant,
body schema) before a handler (handlers.py) runs; every decision is made by
the Lua scripts behind the Engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiohttp import web
from redis.exceptions import RedisError

from .. import validation as v
from ..engine import Engine, default_runner
from ..errors import REDIS_DOWN, RedisUnavailable, RedrouteError
from ..keys import HEARTBEAT
from ..model import ID_PATTERN
from ..scripts import ScriptRunner
from ..settings import Settings
from ..timers import TimerWorker
from ..webhooks.dispatcher import Dispatcher
from . import schemas as s
from .auth import TENANT_KEY, KeyRing, auth_middleware, security_components
from .handlers import WEBHOOKS_ALLOW_PRIVATE, Ctx
from .metrics import Metrics
from .negotiation import RawJson, decode_body, encode
from .openapi import document
from .problem import (
    REDIS_UNAVAILABLE,
    Problem,
    bad_id,
    bad_request,
    from_http_exception,
    from_validation_error,
)
from .routes import ROUTES, Operation
from .sse import EventHub, Filter, gap_event, stream, trimmed_after
from .wallboard import wallboard

log = logging.getLogger("redroute.http")


@dataclass
class State:
    redis: Any
    runner: ScriptRunner
    settings: Settings
    metrics: Metrics
    hub: EventHub
    worker: TimerWorker | None = None
    dispatcher: Dispatcher | None = None
    engines: OrderedDict[str, Engine] = field(default_factory=OrderedDict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def engine(self, tenant: str) -> Engine:
        e = self.engines.get(tenant)
        if e is None:
            # Bounded: the tenant comes from a header anyone can set.
            e = Engine(self.redis, v.check_tenant(tenant), runner=self.runner,
                       events_maxlen=self.settings.events_maxlen,
                       retention_ms=self.settings.retention_ms)
            self.engines[tenant] = e
            if len(self.engines) > self.settings.tenant_cache:
                self.engines.popitem(last=False)
        else:
            self.engines.move_to_end(tenant)
        return e


STATE = web.AppKey("redroute", State)


# Plumbing

def _tenant(request: web.Request) -> str:
    # With API keys the authenticated key decides (auth.py); else the header.
    tenant = request.get(TENANT_KEY)
    return tenant if tenant is not None else request.headers.get("X-Tenant", "default")


def _path(request: web.Request) -> dict[str, str]:
    out = {}
    for name, value in request.match_info.items():
        # The pattern the schemas' Id type declares, matched directly: this
        # runs on every request.
        if ID_PATTERN.fullmatch(value):
            out[name] = value
        else:
            raise bad_id(f"path parameter {name}", value)
    return out


def endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        st = request.app[STATE]
        engine = st.engine(_tenant(request))
        path = _path(request)
        body = None
        if op.body is not None:
            data = decode_body(request.content_type, await request.read())
            if not isinstance(data, dict):
                raise bad_request("the request body must be an object")
            try:
                body = op.body.model_validate(data)
            except pydantic.ValidationError as e:
                raise from_validation_error(e) from None
        query = None
        if op.query is not None:
            try:
                query = op.query.model_validate(dict(request.query))
            except pydantic.ValidationError as e:
                raise from_validation_error(e, "query") from None
        status, payload = await op.fn(Ctx(request, engine, path, body, query))
        if status == 204:
            return web.Response(status=204)
        resp = encode(request, status, payload)
        created = payload.id if isinstance(payload, RawJson) else (
            payload.get("id") if isinstance(payload, dict) else None)
        if status == 201 and created:
            resp.headers["Location"] = f"/v1/tasks/{created}"
        return resp

    handle.__name__ = op.op_id
    return handle


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def problems_and_metrics(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error becomes a problem document; every request is timed."""
    started = time.perf_counter()
    st = request.app[STATE]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    # Metric labels: a method a client made up counts as OTHER, so no client
    # can grow the label sets.
    method = request.method if request.method in METHODS else "OTHER"
    status = 500
    try:
        resp = await handler(request)
    except Problem as p:
        resp = p.response()
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = from_http_exception(e).response()
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client has gone: nothing to answer
    except REDIS_DOWN as e:
        st.metrics.redis_errors.labels("http").inc()
        # The engine's RedisUnavailable already says so; a client error does not.
        detail = e.detail if isinstance(e, RedisUnavailable) else f"Redis is unavailable: {e}"
        resp = Problem(503, REDIS_UNAVAILABLE, detail, headers={"Retry-After": "1"}).response()
    except RedrouteError as e:
        resp = Problem(e.status, e.code, e.detail, title=e.title).response()
    except RedisError as e:
        log.exception("Redis error on %s %s", request.method, request.path)
        resp = Problem(500, "INTERNAL", f"Redis error: {type(e).__name__}").response()
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        resp = Problem(500, "INTERNAL", "internal error; see the server log").response()
    status = resp.status
    if route != "/v1/events":  # a stream's duration is not a request latency
        st.metrics.route_latency(method, route).observe(time.perf_counter() - started)
    st.metrics.route_responses(method, route, status).inc()
    return resp


# Operations outside the route table's shape


async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/events: the tenant's events as Server-Sent Events."""
    st = request.app[STATE]
    engine = st.engine(_tenant(request))
    q = request.query
    types: frozenset[str] | None = None
    if "type" in q:
        names = [n.strip() for raw in q.getall("type") for n in raw.split(",") if n.strip()]
        bad = [n for n in names if n not in s.EVENT_TYPES]
        if bad:
            raise bad_request(f"type must be among {', '.join(s.EVENT_TYPES)}; got {bad[0]!r:.40}",
                              status=422)
        types = frozenset(names)
    ids = {k: _query_value(s.ID_ADAPTER, q[k], f"query.{k}")
           for k in ("agentId", "queueId", "conversationId") if k in q}
    after: str | None = None
    if request.headers.get("Last-Event-ID"):
        after = _query_value(STREAM_ID, request.headers["Last-Event-ID"].strip(),
                             "header Last-Event-ID")
    elif q.get("lastEventId"):
        after = _query_value(STREAM_ID, q["lastEventId"].strip(), "query.lastEventId")
    wants = Filter(types, ids.get("agentId"), ids.get("queueId"), ids.get("conversationId"))
    feed = st.hub.feed(engine.tenant, engine.events_key)
    # The first Redis read comes before the response starts, so an
    # unavailable Redis is still a 503 problem document.
    start = after if after is not None else await feed.tail()
    gap = await trimmed_after(st.redis, engine.events_key, after) if after is not None else None
    first = await feed.range_after(start, 500)
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # proxies must not buffer the stream
    })
    await resp.prepare(request)
    st.metrics.sse_clients.inc()
    reason = "closed"
    try:
        await resp.write(b"retry: 1000\n\n")
        if gap is not None:
            await resp.write(gap_event(after, gap))
        reason = await stream(feed, wants, start, resp.write, queue_size=st.settings.sse_queue_size,
                              keepalive=st.settings.sse_keepalive, first_page=first,
                              on_drop=lambda: _close(request), gone=lambda: _gone(request))
    except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
        reason = "client left"
    except REDIS_DOWN + (RedisError,) as e:
        st.metrics.redis_errors.labels("sse").inc()
        reason = f"redis: {e}"  # the client reconnects with Last-Event-ID
    finally:
        st.metrics.sse_clients.dec()
        log.debug("SSE stream ended: %s", reason)
    with contextlib.suppress(Exception):
        await resp.write_eof()
    return resp


STREAM_ID = pydantic.TypeAdapter(s.StreamId)


def _query_value(adapter: pydantic.TypeAdapter[Any], value: str, where: str) -> Any:
    """A query parameter or header validated; a 422 naming it when invalid."""
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as e:
        raise from_validation_error(e, where) from None


def _gone(request: web.Request) -> bool:
    transport = request.transport  # None once the connection is lost
    return transport is None or transport.is_closing()


def _close(request: web.Request) -> None:
    # abort, not close: close() waits to flush a buffer the client never reads.
    transport = request.transport
    if transport is not None:
        transport.abort()


async def healthz(request: web.Request) -> web.Response:
    """Redis reachable, scripts loaded, a timer worker alive."""
    st = request.app[STATE]
    h = {"status": "unavailable", "redis": False, "scripts": False, "timerWorker": False}
    try:
        await st.redis.ping()
        h["redis"] = True
        shas = [sc.sha for sc in st.runner.scripts.values()]
        if not all(await st.redis.script_exists(*shas)):
            await st.runner.load_all(st.redis)  # e.g. Redis restarted: heal now
        h["scripts"] = all(await st.redis.script_exists(*shas))
        beat = bool(await st.redis.exists(HEARTBEAT))
        # An in-process worker must also be running here, not just somewhere.
        local = any(t.get_name() == "timer-worker" and not t.done() for t in st.tasks)
        h["timerWorker"] = beat and (st.worker is None or local)
    except (RedisError, OSError) as e:
        st.metrics.redis_errors.labels("healthz").inc()
        h["detail"] = f"Redis is unavailable: {e}"
    ok = h["redis"] and h["scripts"] and (h["timerWorker"] or not st.settings.require_timer_worker)
    if ok:
        h["status"] = "ok"
    return web.json_response(h, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if st.worker is not None:
        st.metrics.pump_timer(st.worker)
    body, ctype = await st.metrics.render(st.redis, st.engine)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


async def openapi(request: web.Request) -> web.Response:
    doc = document()
    if request.app[STATE].settings.api_keys:
        doc = copy.deepcopy(doc)  # document() is cached: never mutate it
        doc["components"]["securitySchemes"] = security_components()
        doc["security"] = [{"bearerAuth": []}]
        for p in ("/openapi.json", "/wallboard"):
            doc["paths"][p]["get"]["security"] = []
        if not request.app[STATE].settings.protect_ops:
            for p in ("/healthz", "/metrics"):
                doc["paths"][p]["get"]["security"] = []
    return web.json_response(doc)


# Background work tied to the application's lifetime


async def _background(app: web.Application) -> AsyncIterator[None]:
    st = app[STATE]
    if st.worker is not None:
        st.tasks.append(asyncio.create_task(st.worker.run(), name="timer-worker"))
        st.tasks.append(asyncio.create_task(_pump_timer(st), name="timer-metrics"))
    if st.dispatcher is not None:
        st.tasks.append(asyncio.create_task(st.dispatcher.run(), name="webhook-dispatcher"))
    yield
    if st.worker is not None:
        st.worker.stop()
    if st.dispatcher is not None:
        st.dispatcher.stop()
    for t in st.tasks:
        if t.get_name() not in ("timer-worker", "webhook-dispatcher"):
            t.cancel()
    for t in st.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(t, 5)
    st.tasks.clear()
    await st.hub.close()


async def _pump_timer(st: State) -> None:
    assert st.worker is not None
    while True:
        await asyncio.sleep(1.0)
        st.metrics.pump_timer(st.worker)


async def _on_shutdown(app: web.Application) -> None:
    # Ends SSE streams first, so the graceful shutdown only waits for
    # ordinary requests.
    await app[STATE].hub.close()


def create_app(
    redis: Any,
    *,
    settings: Settings | None = None,
    runner: ScriptRunner | None = None,
    timer_worker: TimerWorker | None = None,
    dispatcher: Dispatcher | None = None,
) -> web.Application:
    """The HTTP application on a Redis client (real or embedded). With a
    timer_worker (a webhook dispatcher) it runs that worker (dispatcher) for
    the application's lifetime."""
    settings = settings or Settings()
    runner = runner or default_runner()
    m = Metrics()
    hub = EventHub(redis, block_ms=settings.sse_block_ms, queue_size=settings.sse_queue_size,
                   on_redis_error=lambda e: m.redis_errors.labels("stream").inc(),
                   on_drop=m.sse_dropped.inc)
    middlewares: list[Any] = [problems_and_metrics]
    if settings.api_keys:
        middlewares.append(auth_middleware(KeyRing.from_map(settings.api_keys),
                                           protect_ops=settings.protect_ops))
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[STATE] = State(redis, runner, settings, m, hub, timer_worker, dispatcher)
    app[WEBHOOKS_ALLOW_PRIVATE] = settings.webhooks_allow_private
    for op in ROUTES:
        # Any segment matches, braces included, so a malformed id is a 422
        # from validation rather than a 404 from the router.
        route_path = re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", op.path)
        app.router.add_route(op.method, route_path, endpoint(op), name=op.op_id)
    app.router.add_get("/v1/events", events, name="events")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/wallboard", wallboard, name="wallboard")
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_on_shutdown)
    return app
