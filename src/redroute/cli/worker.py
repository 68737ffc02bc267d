"""`redroute worker`: a timer worker alone (RONA, TTL, wrap-up deadlines),
beside `redroute serve --no-timers` or any number of other workers, on the
Redis they share (REDIS_URL). SIGTERM/SIGINT stop it after the current pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from ..errors import ConfigError
from ..logs import setup_logging
from ..settings import Settings, check_redis_url
from .options import HELP, common, setting
from .startup import open_redis

log = logging.getLogger("redroute.worker")


def add_parser(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="run the timer worker (RONA, TTL, wrap-up deadlines)",
                       description=__doc__.split("\n\n")[0], formatter_class=HELP)
    common(w)
    setting(w, "--batch", "timer_batch",
            "most deadlines fired per script call (each call blocks Redis while it runs)",
            type=int)
    setting(w, "--max-sleep", "timer_max_sleep", "longest pause between sweeps, seconds",
            type=float)
    setting(w, "--events-maxlen", "events_maxlen",
            "approximate MAXLEN of each tenant's event stream (as `serve` has it)", type=int)
    setting(w, "--retention-ms", "retention_ms",
            "how long closed tasks stay readable (as `serve` has it)", type=int)
    setting(w, "--log-format", "log_format", "log lines as JSON objects or plain text",
            choices=("json", "text"))
    w.set_defaults(func=cmd_worker)


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not args.redis_url:
        raise ConfigError("no REDIS_URL (or --redis-url): a worker fires the deadlines of a "
                          "Redis that servers share; alone on an embedded backend of its own "
                          "it would have none to fire")
    return Settings(redis_url=check_redis_url(args.redis_url), timer_batch=args.timer_batch,
                    timer_max_sleep=args.timer_max_sleep, events_maxlen=args.events_maxlen,
                    retention_ms=args.retention_ms, log_level=args.log_level,
                    log_format=args.log_format)


async def run_worker(cfg: Settings) -> None:
    from ..engine import Engine
    from ..timers import TimerWorker

    redis, scripts = await open_redis(cfg)
    worker = TimerWorker(redis, batch=cfg.timer_batch, max_sleep=cfg.timer_max_sleep,
                         engine_factory=lambda t: Engine(
                             redis, t, runner=scripts, events_maxlen=cfg.events_maxlen,
                             retention_ms=cfg.retention_ms))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.stop)
    log.info("timer worker %s started", worker.id)
    try:
        await worker.run()
    finally:
        await redis.aclose()
    log.info("timer worker %s stopped", worker.id)


def cmd_worker(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    setup_logging(cfg.log_level, cfg.log_format)
    asyncio.run(run_worker(cfg))
    return 0
