"""Hostile input over HTTP: a generated corpus of several hundred requests
across every endpoint (malformed JSON and MessagePack, huge bodies, deep
nesting, unknown enums, negative and enormous numbers, ids and tenants with
hash-tag braces, ':', '*', newlines, unicode, empty strings, in the path,
the body and X-Tenant). Every one must answer 4xx application/problem+json
and change nothing in Redis: every key (SCAN + TYPE + DUMP) and the event
stream's length are compared before and after the whole corpus."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import msgpack
from yarl import URL

from redroute.http.routes import ROUTES
from tests.support.http import Server, full_snapshot, server_fixture  # noqa: F401

J = "application/json"
M = "application/msgpack"

# ids: each is invalid as an id (docs/api.md, Limits: 1-128 of letters, digits, _.@+-,
# starting with a letter or digit)
BAD_IDS = [
    "", " ", "{", "}", "{}", "a{b", "a}b", "{default}", "x{default}y", "a:b", ":", "rr:{default}:*",
    "*", "a*", "?", "a\nb", "\n", "a\r\n", "a\tb", "\x00", "a\x00", "é", "日本", "😀", "\u202e",
    "a b", "-a", ".a", "_a", "a" * 129, "%", "a%00", "a;b", "a\"b", "a'b", "a\\b",
]
# tenants: invalid as a tenant (1-64 of letters, digits, _.- ); no CR/LF
# (the HTTP parser rejects those before the application sees them) and no
# edge whitespace (the parser strips it, leaving a valid tenant)
BAD_TENANTS = ["", "{", "}", "{default}", "a{b}", "a:b", ":", "*", "a*b", "é", "日本", "😀",
               "a b", "a" * 65, "a/b", "rr:{x}:*", "a;b", "a,b"]
BAD_NUMBERS = ["1e309", "-1e309", "-1", "18446744073709551616", "-18446744073709551616",
               "9223372036854775808", "1e30", "1.5", "-0.5", '"1"', "true", "[]", "{}",
               "100000000000000000000000000000000000000000000000000"]
BAD_ENUMS = ['""', '"ready"', '"UNKNOWN"', '"READY\\n"', '" READY"', "1", "[]", '"{x}"',
             '"\\u00e9"']
DEEP = 10_000


def raw_json(fields: dict[str, str]) -> bytes:
    """A JSON object whose values are given as raw JSON text (so 1e309 and
    2**64 reach the server as written)."""
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}").encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_msgpack(depth: int) -> bytes:
    return b"\x91" * depth + b"\x90"  # fixarray(1) ... fixarray(0)


class Corpus:
    def __init__(self, task: str, media: str) -> None:
        self.path_ids = {"mrdId": "chat", "queueId": "sales", "agentId": "a1",
                         "conversationId": "c1", "taskId": task, "mediaId": media,
                         "webhookId": "wh", "deliveryId": "1-0"}
        # A valid body for each operation: a request made hostile in one
        # place only (path, X-Tenant) is rejected for that place.
        self.valid: dict[str, dict[str, Any]] = {
            "putMrd": {"maxRequests": 2},
            "putQueue": {"mrdId": "chat"},
            "putAgent": {"queues": ["sales"]},
            "setAgentState": {"state": "NOT_READY"},
            "pushTask": {"conversationId": "c2", "queueId": "sales"},
            "pullTask": {"conversationId": "c3", "mrdId": "chat"},
            "conference": {"queueId": "sales"},
            "transfer": {"fromAgentId": "a1", "queueId": "sales"},
            "setMediaState": {"state": "ACTIVE", "agentId": "a1"},
            "setTaskState": {"name": "CLOSED"},
            "putWebhook": {"url": "https://hooks.example.com/in", "secret": "s"},
            "setTaskPriority": {"priority": 5},
        }
        # Fields (by kind) that each body operation has
        self.ids = {"putQueue": ["mrdId"], "setAgentState": ["mrdId"],
                    "pushTask": ["conversationId", "queueId"],
                    "pullTask": ["conversationId", "mrdId"],
                    "conference": ["queueId", "agentId", "mrdId"],
                    "transfer": ["fromAgentId", "queueId", "agentId"],
                    "setMediaState": ["agentId"]}
        self.numbers = {"putMrd": ["maxRequests"], "putQueue": ["agentRequestTtlMs", "agentSlaMs",
                                                                "serviceLevelThresholdMs",
                                                                "priorityUnitMs", "maxWaiting"],
                        "setTaskPriority": ["priority"],
                        "pushTask": ["priority", "agentRequestTtlMs"],
                        "conference": ["agentSlaMs", "priority"], "transfer": ["agentSlaMs"]}
        self.enums = {"putQueue": ["agentSelectionPolicy"], "setAgentState": ["state"],
                      "pullTask": ["direction"], "setMediaState": ["state"],
                      "setTaskState": ["name", "reasonCode"]}
        self.objects = {"putAgent": ["attributes"], "pushTask": ["metadata", "requestSession"],
                        "pullTask": ["metadata", "requestSession"],
                        "conference": ["metadata", "requestSession"], "transfer": ["metadata"]}

    def path(self, op_path: str, override: dict[str, str] | None = None) -> str:
        ids = {**self.path_ids, **(override or {})}
        return op_path.format(**{k: quote(v, safe="") for k, v in ids.items()})

    def __iter__(self) -> Iterator[tuple[str, str, str, dict[str, str], bytes | None]]:
        """(label, method, path, headers, body)"""
        for op in ROUTES:
            valid = self.valid.get(op.op_id)
            vbody = json.dumps(valid).encode() if valid is not None else None
            hj = {"Content-Type": J} if valid is not None else {}
            params = [p.strip("{}") for p in op.path.split("/") if p.startswith("{")]
            # hostile ids in the path, one parameter at a time
            for param in params:
                for bad in BAD_IDS:
                    yield (f"{op.op_id} path {param}={bad!r:.20}", op.method,
                           self.path(op.path, {param: bad}), hj, vbody)
            # hostile tenants
            for bad in BAD_TENANTS:
                yield (f"{op.op_id} X-Tenant {bad!r:.20}", op.method, self.path(op.path),
                       {**hj, "X-Tenant": bad.encode().decode("latin-1")}, vbody)
            if valid is None:
                continue
            path = self.path(op.path)
            # malformed and hostile bodies
            for label, data, ctype in [
                ("malformed JSON", b'{"a": ', J), ("JSON null", b"null", J),
                ("JSON array", b"[]", J), ("JSON number", b"1e309", J),
                ("invalid UTF-8", b'{"\xff": 1}', J), ("BOM", b"\xef\xbb\xbf[1]", J),
                ("NaN", raw_json({**{k: json.dumps(v) for k, v in valid.items()}, "x": "NaN"}), J),
                ("deep JSON", nested(DEEP).encode(), J),
                ("huge JSON", b'{"x": "' + b"y" * 400_000 + b'"}', J),
                ("huge msgpack", msgpack.packb({"x": "y" * 400_000}), M),
                ("malformed msgpack", b"\xc1", M), ("truncated msgpack", b"\x82\xa1a", M),
                ("msgpack nil", msgpack.packb(None), M),
                ("msgpack trailing", msgpack.packb(valid) + b"\x00", M),
                ("msgpack deep", nested_msgpack(DEEP), M),
                ("msgpack ext", msgpack.packb({"x": msgpack.ExtType(1, b"x")}), M),
                ("msgpack bin key", msgpack.packb({b"maxRequests": 1}, use_bin_type=True), M),
                ("text/xml", b"<x/>", "text/xml"), ("form", b"a=1", "application/x-www-form-urlencoded"),
                ("unknown field", json.dumps({**valid, "{x}": 1}).encode(), J),
            ]:
                yield f"{op.op_id} {label}", op.method, path, {"Content-Type": ctype}, data
            base = {k: json.dumps(v) for k, v in valid.items()}
            for field in self.ids.get(op.op_id, []):
                for bad in BAD_IDS:
                    fields = {**base, field: json.dumps(bad)}
                    if field == "agentId" and op.op_id in ("conference", "transfer"):
                        fields.pop("queueId", None)  # one target only
                    yield (f"{op.op_id} body {field}={bad!r:.20}", op.method, path,
                           {"Content-Type": J}, raw_json(fields))
                yield (f"{op.op_id} msgpack {field}=bytes", op.method, path, {"Content-Type": M},
                       msgpack.packb({**valid, field: b"a{1}:*"}, use_bin_type=True))
            for field in self.numbers.get(op.op_id, []):
                for bad in BAD_NUMBERS:
                    yield (f"{op.op_id} body {field}={bad:.20}", op.method, path,
                           {"Content-Type": J}, raw_json({**base, field: bad}))
                for big in (2**64 - 1, -(2**63), 2**63, -1):
                    yield (f"{op.op_id} msgpack {field}={big}", op.method, path,
                           {"Content-Type": M}, msgpack.packb({**valid, field: big}))
                yield (f"{op.op_id} msgpack {field}=inf", op.method, path,
                       {"Content-Type": M}, msgpack.packb({**valid, field: float("inf")}))
            for field in self.enums.get(op.op_id, []):
                for bad in BAD_ENUMS:
                    yield (f"{op.op_id} body {field}={bad:.20}", op.method, path,
                           {"Content-Type": J}, raw_json({**base, field: bad}))
            for field in self.objects.get(op.op_id, []):
                for label, value in [("deep", nested(DEEP)), ("deep 2000", nested(2000)),
                                     ("deep object", '{"a":' * DEEP + "1" + "}" * DEEP),
                                     ("array", "[1]"), ("string", '"x"'), ("NaN", "NaN"),
                                     ("big", json.dumps({"x": "y" * 70_000}))]:
                    yield (f"{op.op_id} body {field} {label}", op.method, path,
                           {"Content-Type": J}, raw_json({**base, field: value}))
                for depth in (1020, DEEP):  # past the JSON encoder's, then msgpack's limit
                    yield (f"{op.op_id} msgpack {field} deep {depth}", op.method, path,
                           {"Content-Type": M},
                           _msgpack_with(valid, field, b"\x81\xa1x" + nested_msgpack(depth)))
        # the configuration lists: hostile query parameters
        for op in ROUTES:
            if op.query is None:
                continue
            for query in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1.5", "limit=",
                          "limit=%EF%BC%91", "limit=99999999999999999999", "cursor=", "cursor=!!",
                          "cursor=a%20b", "cursor=YTo", "cursor=" + "x" * 200, "cursor=%7Bx%7D",
                          "limt=5"):
                yield f"{op.op_id} ?{query:.30}", op.method, f"{op.path}?{query}", {}, None
        # the event stream: hostile query parameters
        for name in ("agentId", "queueId", "conversationId"):
            for bad in BAD_IDS:
                if bad:
                    yield (f"events {name}={bad!r:.20}", "GET",
                           f"/v1/events?{name}={quote(bad, safe='')}", {}, None)
        for bad in ("UNKNOWN", "task.created,nope", "{x}", "é"):
            yield f"events type={bad}", "GET", f"/v1/events?type={quote(bad)}", {}, None
        for bad in ("x", "1-", "-1-0", "18446744073709551616-0", "1-18446744073709551616", "{}",
                    "1-0 x"):
            yield (f"events Last-Event-ID {bad!r}", "GET",
                   f"/v1/events?lastEventId={quote(bad, safe='')}", {}, None)


def _msgpack_with(valid: dict[str, Any], field: str, raw_value: bytes) -> bytes:
    """A msgpack map of valid's fields plus field set to raw_value (packed)."""
    items = {k: v for k, v in valid.items() if k != field}
    out = bytearray()
    n = len(items) + 1
    out += bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    for k, v in items.items():
        out += msgpack.packb(k) + msgpack.packb(v)
    out += msgpack.packb(field) + raw_value
    return bytes(out)


async def test_hostile_corpus_changes_nothing(server: Server) -> None:
    c = server.client
    await c.put_mrd("chat")
    await c.put_queue("sales", mrd_id="chat")
    await c.put_agent("a1", queues=["sales"])
    await c.set_agent_state("a1", "READY")
    t = await c.push_task("c1", "sales")
    corpus = list(Corpus(t.id, t.media.id))
    before = await full_snapshot(server)
    stream_len = await server.redis.xlen(server.engine.events_key)
    assert before and stream_len > 0
    failures: list[str] = []
    statuses: dict[int, int] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        for label, method, path, headers, data in corpus:
            try:
                async with s.request(method, URL(server.url + path, encoded=True), data=data,
                                     headers=headers) as r:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    text = await r.text(errors="replace")
                    if not 400 <= r.status < 500:
                        failures.append(f"{label}: {r.status} {text[:200]}")
                        continue
                    if r.content_type != "application/problem+json":
                        failures.append(f"{label}: {r.status} {r.content_type}")
                        continue
                    p = json.loads(text)
                    if p.get("status") != r.status or not p.get("code") or not p.get("detail"):
                        failures.append(f"{label}: not a problem document: {text[:200]}")
            except (aiohttp.ClientError, TimeoutError) as e:
                failures.append(f"{label}: {type(e).__name__}: {e}")
    after = await full_snapshot(server)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    print(f"\nhostile inputs tried: {len(corpus)}; statuses: {dict(sorted(statuses.items()))}; "
          f"failures: {len(failures)}; keys changed: {len(changed)}")
    assert len(corpus) >= 300
    assert not failures, f"{len(failures)} of {len(corpus)} failed:\n" + "\n".join(failures[:50])
    assert not changed, f"hostile input changed Redis keys: {changed[:20]}"
    assert await server.redis.xlen(server.engine.events_key) == stream_len
    # the server is still healthy and the state reads back
    assert (await c.get_task(t.id)).id == t.id
