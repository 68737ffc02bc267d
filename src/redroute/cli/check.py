"""`redroute check`: verifies the invariants (redroute.checks.invariants) of one
tenant, or of every tenant listed in rr:tenants, on a live Redis.

Exit status: 0 when every tenant checked holds them, 1 when any violation
is found or a tenant named is not registered, 2 when the check could not run
(no Redis URL, Redis unavailable).

A live system keeps changing while the check reads it key by key, so a
reading can catch a change half-read. When the first reading of a tenant
finds violations the check reads it again after --settle seconds and
reports what that second reading finds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .. import validation
from ..backend import connect
from ..checks.invariants import Report, check
from ..engine import Engine
from ..errors import REDIS_DOWN, ConfigError, ValidationError
from ..keys import TENANTS
from ..settings import check_redis_url
from .options import HELP, common


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="verify the invariants on a live Redis (exit 1 on a violation)",
                       description=__doc__.split("\n\n")[0], formatter_class=HELP)
    common(p)
    p.add_argument("--tenant", action="append", default=None,
                   help="tenant to check (repeatable); none: every tenant in rr:tenants")
    p.add_argument("--no-events", action="store_true",
                   help="skip the check that the event stream carries every task's and agent's state (default: off)")
    p.add_argument("--overdue-ms", type=int, default=None,
                   help="also report deadlines overdue by more than this (is a timer worker running?)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds before reading a tenant again when the first reading finds violations")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text (default: off)")
    p.set_defaults(func=cmd_check)


async def check_tenant(engine: Engine, *, events: bool, overdue_ms: int | None,
                       settle: float) -> Report:
    report = await check(engine, events=events, overdue_ms=overdue_ms)
    if not report.ok and settle > 0:
        await asyncio.sleep(settle)
        report = await check(engine, events=events, overdue_ms=overdue_ms)
    return report


async def _run(args: argparse.Namespace) -> tuple[dict[str, Report], list[str]]:
    """Reports of the tenants checked, and the tenants named that are not
    registered (nothing of theirs to check: a typo, or the wrong Redis)."""
    redis = connect(args.redis_url)
    try:
        registered = set(await redis.smembers(TENANTS))
        tenants = args.tenant or sorted(registered)
        for t in tenants:
            validation.check_tenant(t)
        out: dict[str, Report] = {}
        for t in tenants:
            if t in registered:
                out[t] = await check_tenant(Engine(redis, t), events=not args.no_events,
                                            overdue_ms=args.overdue_ms, settle=args.settle)
        return out, [t for t in tenants if t not in registered]
    finally:
        await redis.aclose()


def cmd_check(args: argparse.Namespace) -> int:
    if not args.redis_url:
        raise ConfigError("needs a live Redis: set REDIS_URL or --redis-url")
    check_redis_url(args.redis_url)
    try:
        reports, unknown = asyncio.run(_run(args))
    except REDIS_DOWN as e:
        print(f"redroute check: Redis is unavailable: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        print(f"redroute check: {e.detail}", file=sys.stderr)
        return 2
    bad = sum(len(r.violations) for r in reports.values())
    if args.json:
        tenants: dict[str, Any] = {t: {"ok": False, "registered": False} for t in unknown}
        tenants.update({t: {"ok": r.ok, "violations": r.violations,
                            "tasksLive": r.tasks_live, "tasksClosed": r.tasks_closed,
                            "agents": r.agents} for t, r in reports.items()})
        print(json.dumps({"ok": bad == 0 and not unknown, "violations": bad,
                          "tenants": tenants}, indent=2))
    else:
        if not reports and not unknown:
            print("no tenant to check (rr:tenants is empty)")
        for t in unknown:
            print(f"tenant {t}: not registered (not in {TENANTS}): nothing to check")
        for t, r in reports.items():
            counts = f"{r.tasks_live} live tasks, {r.tasks_closed} closed, {r.agents} agents"
            if r.ok:
                print(f"tenant {t}: OK ({counts})")
            else:
                print(f"tenant {t}: {len(r.violations)} violation(s) ({counts})")
                for v in r.violations:
                    print(f"  - {v}")
    return 1 if bad or unknown else 0
