"""`redroute worker`: a timer worker (RONA, TTL, wrap-up deadlines) and a
webhook dispatcher, without HTTP, beside `redroute serve --no-timers` or any number of other workers, on the
Redis they share (REDIS_URL). SIGTERM/SIGINT stop it after the current pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
from typing import Any

from redis.exceptions import RedisError

from ..errors import ConfigError
from ..keys import WEBHOOK_TENANTS
from ..logs import setup_logging
from ..settings import Settings, check_redis_url
from .options import HELP, common, setting, stream_settings
from .startup import open_redis
from .webhooks import add_dispatch_arguments, delivery_settings, webhook_settings

log = logging.getLogger("redroute.worker")


def add_parser(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="run the timer worker (RONA, TTL, wrap-up deadlines) and "
                                      "a webhook dispatcher",
                       description=__doc__.split("\n\n")[0], formatter_class=HELP)
    common(w)
    setting(w, "--batch", "timer_batch",
            "most deadlines fired per script call (each call blocks Redis while it runs)",
            type=int)
    setting(w, "--max-sleep", "timer_max_sleep", "longest pause between sweeps, seconds",
            type=float)
    stream_settings(w, note=" (as `serve` has it)")
    setting(w, "--log-format", "log_format", "log lines as JSON objects or plain text",
            choices=("json", "text"))
    add_dispatch_arguments(w)
    w.set_defaults(func=cmd_worker)


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not args.redis_url:
        raise ConfigError("no REDIS_URL (or --redis-url): a worker fires the deadlines of a "
                          "Redis that servers share; alone on an embedded backend of its own "
                          "it would have none to fire")
    return Settings(redis_url=check_redis_url(args.redis_url), timer_batch=args.timer_batch,
                    timer_max_sleep=args.timer_max_sleep, events_maxlen=args.events_maxlen,
                    retention_ms=args.retention_ms, log_level=args.log_level,
                    log_format=args.log_format, **webhook_settings(args))


async def run_worker(cfg: Settings) -> None:
    from ..engine import Engine
    from ..timers import TimerWorker

    redis, scripts = await open_redis(cfg)
    worker = TimerWorker(redis, batch=cfg.timer_batch, max_sleep=cfg.timer_max_sleep,
                         engine_factory=lambda t: Engine(
                             redis, t, runner=scripts, events_maxlen=cfg.events_maxlen,
                             retention_ms=cfg.retention_ms))
    dispatcher: Any = None
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        worker.stop()
        if dispatcher is not None:
            dispatcher.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
    log.info("timer worker %s started", worker.id)
    timers = asyncio.create_task(worker.run())
    try:
        if cfg.webhooks and await _webhooks_exist(redis, timers):
            # Imported in a thread while the timer worker runs, and only
            # once some tenant has a webhook: its HTTP client costs the start.
            module = await asyncio.to_thread(importlib.import_module, "redroute.webhooks.dispatcher")
            if not stopping:
                dispatcher = module.Dispatcher(redis, settings=delivery_settings(cfg),
                                               engine_factory=worker._engine_factory)
                log.info("webhook dispatcher %s started", dispatcher.name)
                await dispatcher.run()
        await timers
    finally:
        await redis.aclose()
    log.info("timer worker %s stopped", worker.id)


async def _webhooks_exist(redis: Any, timers: asyncio.Task[None], every: float = 2.0) -> bool:
    """Waits until some tenant has a webhook (True), or the timer worker
    stops (False)."""
    while not timers.done():
        with contextlib.suppress(RedisError, OSError):
            if await redis.scard(WEBHOOK_TENANTS):
                return True
        await asyncio.wait({timers}, timeout=every)
    return False


def cmd_worker(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    setup_logging(cfg.log_level, cfg.log_format)
    asyncio.run(run_worker(cfg))
    return 0
