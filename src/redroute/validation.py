"""Checks on untrusted input that reaches Redis keys or scripts. The HTTP
layer validates shapes with its schemas; these guard the engine itself, so
no caller can reach another tenant's keys or break a script."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, TypeVar

from .errors import ValidationError
from .limits import MAX_JSON_BYTES, PRIORITY
from .model import ID_PATTERN, REASON_PATTERN, TENANT_PATTERN

E = TypeVar("E", bound=StrEnum)


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
