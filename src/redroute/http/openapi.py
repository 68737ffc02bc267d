"""GET /openapi.json: OpenAPI 3.1, generated from the route table and the
same pydantic schemas that validate requests."""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..model import ID_PATTERN, TENANT_PATTERN
from . import schemas as s
from .negotiation import JSON, MSGPACK
from .problem import PROBLEM_JSON
from .routes import ROUTES

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{(\w+)\}")

_REASONS = {200: "OK", 201: "Created", 204: "No content", 400: "Malformed body", 404: "Not found",
            409: "Invalid transition", 413: "Body too large", 415: "Unsupported media type",
            422: "Invalid values", 503: "Redis unavailable"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _problem(status: int) -> dict[str, Any]:
    return {"description": _REASONS.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": _ref("ProblemDoc")}}}


def _body_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}, MSGPACK: {"schema": schema}}


TENANT_PARAM = {
    "name": "X-Tenant", "in": "header", "required": False,
    "description": "the tenant (default `default`)",
    "schema": {"type": "string", "pattern": TENANT_PATTERN.pattern, "maxLength": 64},
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": 128}}


def _query_id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": 128}}


def _query_params(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    out = []
    schema = model.model_json_schema()
    for name, prop in schema["properties"].items():
        description = prop.pop("description", "")
        prop.pop("title", None)
        # An optional parameter is absent, never null.
        prop = next((p for p in prop.pop("anyOf", []) if p.get("type") != "null"), prop)
        out.append({"name": name, "in": "query", "required": name in schema.get("required", ()),
                    "description": description, "schema": prop})
    return out


@functools.cache
def document() -> dict[str, Any]:
    bodies = {op.body for op in ROUTES if op.body is not None}
    responses = {op.response for op in ROUTES if op.response is not None}
    models = ([(m, "validation") for m in sorted(bodies, key=lambda m: m.__name__)]
              + [(m, "serialization") for m in sorted(responses, key=lambda m: m.__name__)]
              + [(s.ProblemDoc, "serialization"), (s.Health, "serialization")])
    _, defs = models_json_schema(models, ref_template=REF)
    schemas = defs.get("$defs", {})

    paths: dict[str, dict[str, Any]] = {}
    for op in ROUTES:
        item: dict[str, Any] = {
            "operationId": op.op_id, "summary": op.summary, "tags": [op.tag],
            "parameters": ([_path_param(p) for p in _PARAM.findall(op.path)] + [TENANT_PARAM]
                           + list(op.headers) + _query_params(op.query)),
            "responses": {},
        }
        if op.body is not None:
            item["requestBody"] = {"required": True,
                                   "content": _body_content(_ref(op.body.__name__))}
        ok_schema = _ref(op.response.__name__) if op.response else {}
        for status in op.statuses:
            item["responses"][str(status)] = {"description": _REASONS.get(status, "OK")}
            if status != 204:  # No Content
                item["responses"][str(status)]["content"] = _body_content(ok_schema)
        for status in op.errors:
            item["responses"][str(status)] = _problem(status)
        paths.setdefault(op.path, {})[op.method.lower()] = item

    paths["/v1/events"] = {"get": {
        "operationId": "events", "tags": ["events"],
        "summary": "The tenant's events as Server-Sent Events (id = stream entry id, "
                   "event = type, data = JSON); resumes after Last-Event-ID",
        "parameters": [
            TENANT_PARAM,
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": s.STREAM_ID_PATTERN}},
            {"name": "lastEventId", "in": "query", "required": False,
             "description": "as the Last-Event-ID header (the header wins)",
             "schema": {"type": "string", "pattern": s.STREAM_ID_PATTERN}},
            {"name": "type", "in": "query", "required": False,
             "description": "event types, comma-separated",
             "schema": {"type": "string",
                        "pattern": "^(%s)(,(%s))*$" % (("|".join(s.EVENT_TYPES),) * 2)}},
            _query_id("agentId", "events concerning this agent"),
            _query_id("queueId", "events of this queue's tasks and agents"),
            _query_id("conversationId", "events of this conversation's tasks"),
        ],
        "responses": {"200": {"description": "an endless event stream",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      "422": _problem(422), "503": _problem(503)},
    }}
    paths["/healthz"] = {"get": {
        "operationId": "healthz", "tags": ["operations"],
        "summary": "Redis reachable, scripts loaded, a timer worker alive",
        "responses": {code: {"description": d, "content": {JSON: {"schema": _ref("Health")}}}
                      for code, d in (("200", "healthy"), ("503", "unhealthy"))},
    }}
    paths["/metrics"] = {"get": {
        "operationId": "metrics", "tags": ["operations"], "summary": "Prometheus metrics",
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      "503": _problem(503)},
    }}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "tags": ["operations"], "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {JSON: {"schema": {"type": "object"}}}}},
    }}
    paths["/wallboard"] = {"get": {
        "operationId": "wallboard", "tags": ["operations"],
        "summary": "The live wallboard: a self-contained HTML page with a tile per queue; it "
                   "holds no data (its script reads /v1/statistics and /v1/events)",
        "responses": {"200": {"description": "the page",
                              "content": {"text/html": {"schema": {"type": "string"}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "redroute", "version": __version__,
                 "description": "Redis-native routing engine for contact-center tasks. Errors "
                                "are application/problem+json; request bodies with unknown "
                                "fields are rejected (422)."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
