"""Limits and defaults have one home, redroute.limits: the Engine, the HTTP
schemas, the client and the Lua scripts agree with it."""

from __future__ import annotations

import inspect

from redroute import limits
from redroute.client import Client
from redroute.engine import Engine
from redroute.http import schemas
from redroute.scripts import compose


async def test_the_scripts_defaults_are_the_python_ones(redis):
    names = ("DEFAULT_AGENT_SLA_MS", "DEFAULT_PREFERRED_AGENT_TIMEOUT_MS")
    src = compose('--- @include "includes/config"\nreturn {' + ", ".join(names) + "}\n").source
    assert await redis.eval(src, 1, "rr:{t}:", 1000, 1000) == [getattr(limits, n) for n in names]


def _defaults(fn) -> dict[str, object]:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_engine_and_client_share_their_defaults():
    for name in ("put_mrd", "put_queue", "push_task", "push_task_idempotent", "conference"):
        engine, client = _defaults(getattr(Engine, name)), _defaults(getattr(Client, name))
        shared = engine.keys() & client.keys()
        assert shared, name
        assert {k: engine[k] for k in shared} == {k: client[k] for k in shared}, name


def test_http_bodies_default_to_the_engine_defaults():
    queue = schemas.QueueBody(mrdId="m")
    mrd = schemas.MrdBody()
    engine_queue, engine_mrd = _defaults(Engine.put_queue), _defaults(Engine.put_mrd)
    assert queue.agentRequestTtlMs == engine_queue["agent_request_ttl_ms"]
    assert queue.agentSlaMs == engine_queue["agent_sla_ms"]
    assert queue.serviceLevelThresholdMs == engine_queue["service_level_threshold_ms"]
    assert mrd.maxRequests == engine_mrd["max_requests"]
    assert mrd.wrapUp.timeoutMs == engine_mrd["wrap_up_timeout_ms"]
