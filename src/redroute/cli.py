"""The `redroute` command. Each subcommand lives with what it runs; this
module only wires them to the command line. Settings come from flags, or
from environment variables of the same name (REDIS_URL, …)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from . import check_cli, events_cli
from .backend import connect
from .server import add_arguments as add_serve_arguments
from .server import cmd_serve
from .timers import TimerWorker


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None,
                   help="Redis URL (env REDIS_URL); the embedded backend when unset")
    p.add_argument("--log-level", default=os.environ.get("REDROUTE_LOG_LEVEL", "INFO"))


async def _run_worker(args: argparse.Namespace) -> None:
    redis = connect(args.redis_url)
    worker = TimerWorker(redis, batch=args.batch, max_sleep=args.max_sleep)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    logging.getLogger("redroute").info("timer worker %s started", worker.id)
    try:
        await worker.run()
    finally:
        await redis.aclose()


def cmd_worker(args: argparse.Namespace) -> int:
    asyncio.run(_run_worker(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redroute", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run the timer worker (RONA, TTL, wrap-up deadlines)")
    _common(w)
    w.add_argument("--batch", type=int, default=int(os.environ.get("REDROUTE_TIMER_BATCH", 50)),
                   help="most deadlines fired per script call (each call blocks Redis while it runs)")
    w.add_argument("--max-sleep", type=float,
                   default=float(os.environ.get("REDROUTE_TIMER_MAX_SLEEP", 1.0)),
                   help="longest pause between sweeps, seconds")
    w.set_defaults(func=cmd_worker)

    sv = sub.add_parser("serve", help="run the HTTP API with an in-process timer worker")
    _common(sv)
    add_serve_arguments(sv)
    sv.set_defaults(func=cmd_serve)

    events_cli.add_parser(sub, _common)
    check_cli.add_parser(sub, _common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
