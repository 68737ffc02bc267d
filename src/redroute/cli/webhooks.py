"""`redroute webhooks`: list a tenant's webhooks, list a webhook's FAILED
deliveries, retry one; and the dispatcher options `redroute serve` and
`redroute worker` share (--webhooks-allow-private and the delivery timings)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from ..engine import Engine
from ..errors import RedrouteError
from ..settings import Settings
from ..webhooks.model import DeliverySettings
from .options import HELP, common, setting, switch_off, switch_on


def add_dispatch_arguments(p: argparse.ArgumentParser) -> None:
    """The webhook dispatcher's options (serve and worker)."""
    switch_off(p, "--no-webhooks", "webhooks", "run no webhook dispatcher in this process")
    switch_on(p, "--webhooks-allow-private", "webhooks_allow_private",
              "let webhooks target loopback, private and link-local addresses (refused "
              "by default)")
    setting(p, "--webhooks-timeout", "webhooks_timeout", "seconds a delivery attempt may take",
            type=float)
    setting(p, "--webhooks-backoff-ms", "webhooks_backoff_ms",
            "wait before a delivery's first retry, doubling per attempt", type=int)
    setting(p, "--webhooks-max-backoff-ms", "webhooks_max_backoff_ms",
            "longest wait between two attempts", type=int)
    setting(p, "--webhooks-give-up-ms", "webhooks_give_up_ms",
            "after this long a delivery is kept as FAILED", type=int)
    setting(p, "--webhooks-claim-idle-ms", "webhooks_claim_idle_ms",
            "events a dead dispatcher had read are taken over after this", type=int)


def webhook_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The dispatcher's Settings fields, from the flags above."""
    return {name: getattr(args, name) for name in (
        "webhooks", "webhooks_allow_private", "webhooks_timeout", "webhooks_backoff_ms",
        "webhooks_max_backoff_ms", "webhooks_give_up_ms", "webhooks_claim_idle_ms")}


def delivery_settings(cfg: Settings) -> DeliverySettings:
    return DeliverySettings(
        attempt_timeout=cfg.webhooks_timeout, backoff_ms=cfg.webhooks_backoff_ms,
        max_backoff_ms=cfg.webhooks_max_backoff_ms, give_up_ms=cfg.webhooks_give_up_ms,
        allow_private=cfg.webhooks_allow_private, claim_idle_ms=cfg.webhooks_claim_idle_ms,
        poll_interval=min(1.0, cfg.webhooks_backoff_ms / 1000))


async def _run(args: argparse.Namespace) -> int:
    from .events import _open

    redis = _open(args.redis_url)
    engine = Engine(redis, args.tenant)
    try:
        if args.action == "list":
            cursor = None
            while True:
                page = await engine.list_webhooks(limit=1000, cursor=cursor)
                for w in page.items:
                    print(json.dumps(w.to_dict()))
                if page.next is None:
                    return 0
                cursor = page.next
        if args.action == "deliveries":
            cursor = None
            while True:
                page = await engine.list_deliveries(args.webhook_id, status=args.status,
                                                    limit=1000, cursor=cursor)
                for d in page.items:
                    print(json.dumps(d.to_dict()))
                if page.next is None:
                    return 0
                cursor = page.next
        d = await engine.retry_delivery(args.webhook_id, args.delivery_id)
        print(json.dumps(d.to_dict()))
        return 0
    except RedrouteError as e:
        print(f"redroute webhooks: {e.code}: {e.detail}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


def cmd_webhooks(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def add_parser(sub: argparse._SubParsersAction) -> None:
    wh = sub.add_parser("webhooks", help="list webhooks and failed deliveries; retry one",
                        description=__doc__.split("\n\n")[0], formatter_class=HELP)
    whsub = wh.add_subparsers(dest="action", required=True)
    tenant = os.environ.get("REDROUTE_TENANT", "default")
    tenant_help = "tenant (env REDROUTE_TENANT, default 'default')"
    ls = whsub.add_parser("list", help="the tenant's webhooks, one JSON line each (no secrets)",
                          formatter_class=HELP)
    dl = whsub.add_parser("deliveries", help="a webhook's deliveries by status, one JSON line each",
                          formatter_class=HELP)
    dl.add_argument("webhook_id")
    dl.add_argument("--status", default="FAILED", choices=["FAILED"])
    rt = whsub.add_parser("retry", help="send a FAILED delivery again", formatter_class=HELP)
    rt.add_argument("webhook_id")
    rt.add_argument("delivery_id")
    for p in (ls, dl, rt):
        common(p)
        p.add_argument("--tenant", default=tenant, help=tenant_help)
        p.set_defaults(func=cmd_webhooks)
