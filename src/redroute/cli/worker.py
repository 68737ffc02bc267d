"""`redroute worker`: a timer worker alone (RONA, TTL, wrap-up deadlines),
beside `redroute serve --no-timers` or any number of other workers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from ..backend import connect
from ..timers import TimerWorker


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


def add_parser(sub: argparse._SubParsersAction,
               common: Callable[[argparse.ArgumentParser], None]) -> None:
    w = sub.add_parser("worker", help="run the timer worker (RONA, TTL, wrap-up deadlines)")
    common(w)
    w.add_argument("--batch", type=int, default=int(os.environ.get("REDROUTE_TIMER_BATCH", 50)),
                   help="most deadlines fired per script call (each call blocks Redis while it runs)")
    w.add_argument("--max-sleep", type=float,
                   default=float(os.environ.get("REDROUTE_TIMER_MAX_SLEEP", 1.0)),
                   help="longest pause between sweeps, seconds")
    w.set_defaults(func=cmd_worker)
