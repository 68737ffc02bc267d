"""Request and response bodies in JSON or MessagePack, chosen by
Content-Type (requests) and Accept (responses)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
from aiohttp import web

from .. import jsoncodec
from .problem import Problem, bad_request

JSON = "application/json"
MSGPACK = "application/msgpack"
_MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python would accept them.
    raise ValueError(f"{name} is not valid JSON")


def decode_body(content_type: str, raw: bytes) -> Any:
    """The parsed body; 400 when it is not well-formed, 415 for another type.
    A missing Content-Type is read as JSON (curl without -H)."""
    ctype = content_type.lower()
    if ctype in _MSGPACK_TYPES:
        if not raw:
            raise bad_request("the request body is empty; a MessagePack map is required")
        try:
            # strict_map_key=False lets non-string keys through to validation
            # (a 422 naming the field) instead of failing the whole decode.
            return msgpack.unpackb(raw, raw=False, strict_map_key=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise bad_request(f"malformed MessagePack body: {e}") from None
        except Exception as e:  # msgpack raises a few other kinds on garbage
            raise bad_request(f"malformed MessagePack body: {type(e).__name__}") from None
    if ctype in ("", JSON, "application/octet-stream", "text/plain") or ctype.endswith("+json"):
        if not raw.strip():
            raise bad_request("the request body is empty; a JSON object is required")
        try:
            return jsoncodec.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise bad_request(f"malformed JSON body: {e}") from None
    raise Problem(415, "VALIDATION_ERROR", f"unsupported Content-Type {content_type!r}; "
                  f"use {JSON} or {MSGPACK}", title="Unsupported Media Type")


def _quality(accept: str, media: str) -> float:
    """The q value Accept gives media (exact type, type/*, */*), 0 when none."""
    main = media.split("/")[0]
    best, best_rank = 0.0, -1
    for part in accept.split(","):
        fields = part.strip().split(";")
        name = fields[0].strip().lower()
        q = 1.0
        for p in fields[1:]:
            k, _, val = p.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if name == media:
            rank = 2
        elif name == f"{main}/*":
            rank = 1
        elif name == "*/*":
            rank = 0
        else:
            continue
        if rank > best_rank:
            best, best_rank = q, rank
    return best


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    if "msgpack" not in accept:
        return False
    mp = max(_quality(accept, t) for t in _MSGPACK_TYPES)
    return mp > 0 and mp >= _quality(accept, JSON) if "json" in accept else mp > 0


@dataclass(frozen=True, slots=True)
class RawJson:
    """A document the engine already encoded (a script's reply, which is the
    API's JSON): sent as it is, decoded only for a MessagePack response."""

    text: str
    id: str | None = None  # the resource's id, for a Location header


def encode(request: web.Request, status: int, payload: Any) -> web.Response:
    if isinstance(payload, RawJson):
        if not wants_msgpack(request):
            return web.Response(status=status, body=payload.text.encode(), content_type=JSON)
        payload = json.loads(payload.text)
    if wants_msgpack(request):
        return web.Response(status=status, body=msgpack.packb(payload, use_bin_type=True),
                            content_type=MSGPACK)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return web.Response(status=status, body=body.encode(), content_type=JSON)
