"""`redroute events`: follow a tenant's events in a terminal (tail), check
that its stream rebuilds its live state (replay), and write a day's request
lifecycle as JSONL for the simulator (export)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any

from ..backend import connect, is_embedded
from ..checks.invariants import statistics_differences
from ..checks.projection import compare, replay
from ..engine import Engine
from ..events.model import Event
from ..events.stream import StreamGap, StreamReader, parse_id
from ..model import EventType
from ..sim.replay import export_lines
from .options import HELP, common


def _open(url: str | None) -> Any:
    redis = connect(url)
    if is_embedded(redis):
        print("redroute: no --redis-url or REDIS_URL: reading this process's own embedded "
              "backend, which holds no events", file=sys.stderr)
    return redis


def _state(doc: dict[str, Any]) -> str:
    st = doc["state"]
    return st["name"] + (f"/{st['reasonCode']}" if st.get("reasonCode") else "")


_DELETED = {EventType.MRD_DELETED: ("mrd", "mrdId"), EventType.QUEUE_DELETED: ("queue", "queueId"),
            EventType.AGENT_DELETED: ("agent", "agentId")}


def describe(e: Event) -> str:
    """What the event says, in one line."""
    if e.type is EventType.AGENT_STATE_CHANGED:
        a = e.data["agent"]
        mrds = " ".join(
            f"{m['mrdId']}={m['state']}" + (f"({m['reasonCode']})" if m["reasonCode"] else "")
            + f" {m['activeTasks']}/{m['maxRequests']}" for m in a["mrdStates"])
        return f"agent {a['id']} {_state(a)} {mrds}".rstrip()
    if e.type in _DELETED:
        kind, field = _DELETED[e.type]
        return f"{kind} {e.data[field]} deleted"
    t = e.data["task"]
    where = f"conv {t['conversationId']}" + (f" queue {t['queueId']}" if t.get("queueId") else "")
    if e.type is EventType.AGENT_RESERVED:
        return f"task {t['id']} -> agent {e.data['agentId']} ({where})"
    media = ",".join(m["state"] for m in t["activeMedia"])
    line = f"task {t['id']} {where} {_state(t)} media {media}"
    if t.get("assignedTo"):
        line += f" agent {t['assignedTo']}"
    if e.type is EventType.TASK_STATE_CHANGED and e.data.get("mediaStateChanges"):
        line += f" changed {','.join(e.data['mediaStateChanges'])}"
    return line


def format_line(e: Event) -> str:
    when = datetime.fromtimestamp(parse_id(e.id)[0] / 1000).strftime("%H:%M:%S.%f")[:-3]
    return f"{when} {e.id} {e.type.value:<19} {describe(e)}"


async def _tail(args: argparse.Namespace) -> int:
    redis = _open(args.redis_url)
    reader = StreamReader(redis, args.tenant, after=args.start)
    types = frozenset(args.type) if args.type else None
    printed = 0
    try:
        while args.count is None or printed < args.count:
            try:
                events = await reader.read(block_ms=1000)
            except StreamGap as gap:
                # Said out loud, then on from the oldest event retention kept.
                print(f"redroute: {gap}; going on from there", file=sys.stderr, flush=True)
                reader.skip_gap(gap)
                continue
            for e in events:
                if not e.matches(types, args.agent, args.queue, args.conversation):
                    continue
                if args.json:
                    print(json.dumps({"id": e.id, "type": e.type.value, "data": e.data}), flush=True)
                else:
                    print(format_line(e), flush=True)
                printed += 1
                if args.count is not None and printed >= args.count:
                    break
    finally:
        await redis.aclose()
    return 0


async def _replay(args: argparse.Namespace) -> int:
    redis = _open(args.redis_url)
    try:
        engine = Engine(redis, args.tenant)
        try:
            projection = await replay(engine)
        except StreamGap as gap:
            print(f"cannot rebuild the state from the stream: {gap}", file=sys.stderr)
            return 2
        diffs = await compare(projection, engine)
        # The statistics' minutes, recomputed from the same stream.
        diffs += await statistics_differences(engine, await engine.events())
    finally:
        await redis.aclose()
    for d in diffs:
        print(d)
    live = len(projection.live_tasks())
    print(f"replayed {projection.seen} events up to {projection.last_id}: {len(projection.tasks)} "
          f"tasks ({live} live), {len(projection.agents)} agents, {len(projection.queue_ids())} "
          f"queues; {len(diffs)} difference{'' if len(diffs) == 1 else 's'} with Redis")
    return 1 if diffs else 0


async def _export(args: argparse.Namespace) -> int:
    redis = _open(args.redis_url)
    after, written = args.start, 0
    try:
        engine = Engine(redis, args.tenant)
        while True:
            events = await engine.events(after, count=5000)
            if not events:
                break
            lines = [json.dumps(rec, separators=(",", ":")) for rec in export_lines(events)]
            if lines:
                sys.stdout.write("\n".join(lines) + "\n")
                written += len(lines)
            after = events[-1].id
    finally:
        await redis.aclose()
    sys.stdout.flush()
    print(f"redroute: exported {written} records of tenant {args.tenant} up to {after}",
          file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    return asyncio.run(_export(args))


def cmd_tail(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_tail(args))
    except KeyboardInterrupt:
        return 0


def cmd_replay(args: argparse.Namespace) -> int:
    return asyncio.run(_replay(args))


def add_parser(sub: Any) -> None:
    """Adds `events tail` and `events replay` to the redroute command."""
    ev = sub.add_parser("events", help="follow the event stream, or check it against the state",
                        formatter_class=HELP)
    evsub = ev.add_subparsers(dest="events_command", required=True)
    tenant_help = "tenant [env REDROUTE_TENANT]"
    tenant = os.environ.get("REDROUTE_TENANT", "default")

    t = evsub.add_parser("tail", help="print events as they are appended, one line each",
                         formatter_class=HELP)
    common(t)
    t.add_argument("--tenant", default=tenant, help=tenant_help)
    t.add_argument("--type", action="append", choices=[x.value for x in EventType],
                   help="only this type (repeatable)")
    t.add_argument("--agent", help="only events about this agent")
    t.add_argument("--queue", help="only events about this queue (its tasks, its agents)")
    t.add_argument("--conversation", help="only events about this conversation's tasks")
    t.add_argument("--from", dest="start", default="$", metavar="ID",
                   help="start after this stream id; '0' for every retained event, "
                        "'$' for new ones only")
    t.add_argument("--count", type=int, help="exit after printing this many events")
    t.add_argument("--json", action="store_true", help="print each event as JSON (default: off)")
    t.set_defaults(func=cmd_tail)

    r = evsub.add_parser(
        "replay", help="rebuild tasks, agents, queues and the queues' statistics from the stream "
                       "and compare with Redis",
        description="Exit status: 0 when the stream rebuilds the state and every counted "
                    "statistics minute exactly, 1 when they differ (each difference is printed), "
                    "2 when retention trimmed the stream.",
        formatter_class=HELP)
    common(r)
    r.add_argument("--tenant", default=tenant, help=tenant_help)
    r.set_defaults(func=cmd_replay)

    x = evsub.add_parser(
        "export", help="write the PUSH requests' arrivals, reservations, accepts, wrap-ups and "
                       "closes as JSONL, for redroute simulate --replay",
        description="One JSON line per moment of a request's life, in stream order, with its "
                    "time (docs/simulation.md, Replaying a recorded day).",
        formatter_class=HELP)
    common(x)
    x.add_argument("--tenant", default=tenant, help=tenant_help)
    x.add_argument("--from", dest="start", default="-", metavar="ID",
                   help="start after this stream id; '-' for every retained event")
    x.set_defaults(func=cmd_export)
