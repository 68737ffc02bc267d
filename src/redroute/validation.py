"""Checks on untrusted input that reaches Redis keys or scripts. The HTTP
layer validates shapes with its schemas; these guard the engine itself, so
no caller can reach another tenant's keys or break a script."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, TypeVar

from .errors import ValidationError
from .limits import MAX_JSON_BYTES, MAX_SECRET_BYTES, MAX_WEBHOOK_QUEUES, PAGE_LIMIT, PRIORITY
from .model import ID_PATTERN, REASON_PATTERN, TENANT_PATTERN, EventType

E = TypeVar("E", bound=StrEnum)

CURSOR_PATTERN = re.compile(r"^[A-Za-z0-9_.@+|\-]+$")


def check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValidationError(
            f"{kind} must be 1-128 characters of letters, digits and _.@+- "
            f"starting with a letter or digit; got {value!r:.80}"
        )
    return value


def check_optional_id(kind: str, value: Any) -> str:
    """An id that may be left out (None): '' then, as scripts take it."""
    return "" if value is None else check_id(kind, value)


def check_tenant(value: Any) -> str:
    if not isinstance(value, str) or not TENANT_PATTERN.fullmatch(value):
        raise ValidationError(
            f"tenant must be 1-64 characters of letters, digits and _.- ; got {value!r:.80}"
        )
    return value


def check_int(kind: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{kind} must be an integer from {low} to {high}; got {value!r:.40}")
    return value


def check_priority(value: Any) -> int:
    return check_int("priority", value, *PRIORITY)


def check_enum(kind: str, cls: type[E], value: Any, allowed: tuple[E, ...] | None = None) -> E:
    try:
        member = cls(value)
    except ValueError:
        member = None
    if member is None or (allowed is not None and member not in allowed):
        names = ", ".join(m.value for m in (allowed or tuple(cls)))
        raise ValidationError(f"{kind} must be one of {names}; got {value!r:.40}")
    return member


def check_reason(value: Any) -> str:
    if not isinstance(value, str) or not REASON_PATTERN.fullmatch(value):
        raise ValidationError(f"reasonCode must be an UPPER_CASE code; got {value!r:.40}")
    return value


def json_object(kind: str, value: Any) -> str:
    """A JSON object, encoded compactly for a script to pass through as is."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValidationError(f"{kind} must be a JSON object")
    try:
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise ValidationError(f"{kind} is not valid JSON: {e}") from None
    if len(raw.encode()) > MAX_JSON_BYTES:
        raise ValidationError(f"{kind} is larger than {MAX_JSON_BYTES} bytes")
    return raw


MAX_QUEUE_FILTER = MAX_WEBHOOK_QUEUES
MAX_PAGE = PAGE_LIMIT[1]


def check_secret(value: Any) -> str:
    """A webhook's signing secret. Never echoed back: the message names
    what is wrong, not the value."""
    if not isinstance(value, str) or not value:
        raise ValidationError("secret must be a non-empty string")
    if len(value.encode()) > MAX_SECRET_BYTES:
        raise ValidationError(f"secret must be at most {MAX_SECRET_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("secret must not contain control characters")
    return value


def check_event_types(value: Any) -> list[str] | None:
    """A webhook's type filter: distinct event types, or None for all."""
    if value is None:
        return None
    names = [t.value for t in EventType]
    if not isinstance(value, list | tuple) or not value:
        raise ValidationError(f"types must be a non-empty list of {', '.join(names)} (or absent)")
    return list(dict.fromkeys(check_enum("types[]", EventType, t).value for t in value))


def check_id_list(kind: str, value: Any, most: int) -> list[str] | None:
    """A non-empty list of ids, or None."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not 0 < len(value) <= most:
        raise ValidationError(f"{kind} must be a list of 1 to {most} ids (or absent)")
    return list(dict.fromkeys(check_id(f"{kind}[]", x) for x in value))


def check_cursor(value: Any) -> str:
    """A list cursor: '' for the first page, else the `next` a page gave
    (ids, stream ids and failure members: no spaces or control characters)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > 256 or not CURSOR_PATTERN.fullmatch(value):
        raise ValidationError(f"cursor must be the `next` value of a previous page; got {value!r:.40}")
    return value
