"""RFC 9457 problem documents: the one error shape of the API.

`code` is always one of the codes of docs/api.md, Errors (VALIDATION_ERROR, NOT_FOUND,
INVALID_TRANSITION, QUEUE_FULL, REDIS_UNAVAILABLE), UNAUTHORIZED/FORBIDDEN when API keys
are configured, plus INTERNAL for a 5xx that is a bug; the HTTP status says the rest (e.g. 413 or 415 carry VALIDATION_ERROR).
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from aiohttp import web

from ..errors import (
    BY_CODE,
    InvalidTransition,
    NotFound,
    RedisUnavailable,
    RedrouteError,
    ValidationError,
)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://redroute.dev/problems/"

VALIDATION_ERROR = ValidationError.code
NOT_FOUND = NotFound.code
INVALID_TRANSITION = InvalidTransition.code
REDIS_UNAVAILABLE = RedisUnavailable.code
INTERNAL = RedrouteError.code
UNAUTHORIZED = "UNAUTHORIZED"  # 401: no or an invalid API key
FORBIDDEN = "FORBIDDEN"  # 403: the API key does not give access to the tenant

_TITLES = {
    **{code: cls.title for code, cls in BY_CODE.items()},
    INTERNAL: RedrouteError.title,
    UNAUTHORIZED: "Unauthorized",
    FORBIDDEN: "Forbidden",
}


class Problem(Exception):
    """Raised anywhere in the HTTP layer; the middleware renders it."""

    def __init__(
        self, status: int, code: str, detail: str, *, title: str | None = None,
        extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or _TITLES.get(code, "Error")
        self.extra = extra or {}
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": TYPE_BASE + self.code.lower().replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }

    def response(self) -> web.Response:
        body = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False, default=str)
        return web.Response(status=self.status, body=body.encode(), content_type=PROBLEM_JSON,
                            headers=self.headers)


def bad_request(detail: str, status: int = 400, **extra: Any) -> Problem:
    return Problem(status, VALIDATION_ERROR, detail, extra=extra or None)


def invalid(detail: str, **extra: Any) -> Problem:
    return Problem(422, VALIDATION_ERROR, detail, extra=extra or None)


def bad_id(what: str, value: str) -> Problem:
    return bad_request(f"{what} must be 1-128 characters of letters, digits and _.@+- "
                       f"starting with a letter or digit; got {value!r:.80}", status=422)


def from_validation_error(e: pydantic.ValidationError, where: str = "body") -> Problem:
    """A pydantic error as a 422 listing each invalid field under `errors`."""
    errors = []
    for err in e.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        errors.append({"loc": f"{where}.{loc}" if loc else where, "msg": err["msg"],
                       "type": err["type"]})
    detail = "; ".join(f"{x['loc']}: {x['msg']}" for x in errors[:5])
    return Problem(422, VALIDATION_ERROR, detail, extra={"errors": errors})


def from_http_exception(exc: web.HTTPException) -> Problem:
    """aiohttp's own 4xx/5xx (no route, wrong method, body too large …)."""
    status = exc.status
    if status == 404:
        code = NOT_FOUND
    elif status in (502, 503, 504):
        code = REDIS_UNAVAILABLE if status == 503 else INTERNAL
    elif 400 <= status < 500:
        code = VALIDATION_ERROR
    else:
        code = INTERNAL
    headers = {}
    if status == 405 and "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    detail = exc.text if exc.text and exc.text != exc.reason else f"{status}: {exc.reason}"
    if status == 404:
        detail = "no such resource"
    return Problem(status, code, detail, title=exc.reason, headers=headers)
