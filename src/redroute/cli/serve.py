"""`redroute serve`: the HTTP server and an in-process timer worker, in one
process or in N processes sharing the port (SO_REUSEPORT).

Settings come from flags or the environment variables named in --help.
SIGTERM/SIGINT stop accepting connections, end SSE streams, let in-flight
requests finish (up to --shutdown-timeout) and stop. A server that cannot
start (port taken, Redis not answering, bad configuration) says why in one
line and exits 1 (2 for a configuration error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Coroutine
from dataclasses import asdict, replace
from typing import Any

from ..errors import ConfigError, StartupError
from ..logs import setup_logging
from ..settings import Settings, check_redis_url
from .options import HELP, common, setting, stream_settings, switch_off, switch_on
from .startup import open_redis
from .webhooks import add_dispatch_arguments, delivery_settings, webhook_settings

log = logging.getLogger("redroute.serve")


def add_parser(sub: argparse._SubParsersAction) -> None:
    sv = sub.add_parser("serve", help="run the HTTP API with an in-process timer worker",
                        description=__doc__.split("\n\n")[0], formatter_class=HELP)
    common(sv)
    add_arguments(sv)
    sv.set_defaults(func=cmd_serve)


def add_arguments(p: argparse.ArgumentParser) -> None:
    setting(p, "--host", "host", "address to listen on; 0.0.0.0 for every interface")
    setting(p, "--port", "port", "TCP port", type=int)
    setting(p, "--workers", "workers", "processes sharing the port (SO_REUSEPORT); "
            "1 on the embedded backend", type=int)
    switch_off(p, "--no-timers", "timers",
               "run no in-process timer worker (run `redroute worker` beside it)")
    setting(p, "--timer-max-sleep", "timer_max_sleep",
            "longest pause of the timer worker between sweeps, seconds", type=float)
    setting(p, "--max-body-bytes", "max_body_bytes", "largest request body accepted",
            type=int)
    setting(p, "--sse-keepalive", "sse_keepalive", "seconds between SSE keep-alive comments",
            type=float)
    setting(p, "--sse-queue-size", "sse_queue_size",
            "events buffered per SSE client before a slow one is dropped", type=int)
    stream_settings(p)
    setting(p, "--shutdown-timeout", "shutdown_timeout",
            "seconds in-flight requests get to finish on SIGTERM", type=float)
    switch_off(p, "--no-access-log", "access_log", "log no line per request")
    p.add_argument("--api-keys-file", default=os.environ.get("REDROUTE_API_KEYS_FILE") or None,
                   help='bearer API keys: a JSON object {"<key>": "<tenant>", ...}; env '
                        'REDROUTE_API_KEYS="tenantA:key1,tenantB:key2" adds keys; without '
                        "keys there is no authentication [env REDROUTE_API_KEYS_FILE]")
    switch_on(p, "--protect-ops", "protect_ops", "/healthz and /metrics need an API key too")
    setting(p, "--log-format", "log_format", "log lines as JSON objects or plain text",
            choices=("json", "text"))
    add_dispatch_arguments(p)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The flags as Settings; ConfigError (one line) when they are wrong."""
    from ..http.auth import load_api_keys

    if args.redis_url:
        check_redis_url(args.redis_url)
    try:
        keys = load_api_keys(getattr(args, "api_keys_file", None)) or None
    except OSError as e:
        raise ConfigError(f"API keys file: {e.strerror}: {e.filename}") from None
    return Settings(
        host=args.host, port=args.port, workers=max(1, args.workers),
        redis_url=args.redis_url or None, timers=args.timers,
        timer_max_sleep=args.timer_max_sleep, max_body_bytes=args.max_body_bytes,
        sse_keepalive=args.sse_keepalive, sse_queue_size=args.sse_queue_size,
        events_maxlen=args.events_maxlen, retention_ms=args.retention_ms,
        shutdown_timeout=args.shutdown_timeout, access_log=args.access_log,
        api_keys=keys, protect_ops=args.protect_ops,
        log_level=args.log_level, log_format=args.log_format, **webhook_settings(args),
    )


async def serve(cfg: Settings, index: int = 0) -> None:
    """One server process: HTTP plus (unless disabled) a timer worker."""
    # Imported here: prometheus-client must see PROMETHEUS_MULTIPROC_DIR
    # (set by the parent for several workers) before it is first imported.
    from aiohttp import web

    from ..backend import is_embedded
    from ..engine import Engine
    from ..http import create_app
    from ..http.access_log import AccessLog
    from ..timers import TimerWorker
    from ..webhooks.dispatcher import Dispatcher

    redis, scripts = await open_redis(cfg)
    worker = TimerWorker(redis, max_sleep=cfg.timer_max_sleep, batch=cfg.timer_batch,
                         engine_factory=lambda t: Engine(
                             redis, t, runner=scripts, events_maxlen=cfg.events_maxlen,
                             retention_ms=cfg.retention_ms)) if cfg.timers else None
    dispatcher = Dispatcher(redis, settings=delivery_settings(cfg), engine_factory=lambda t: Engine(
        redis, t, runner=scripts, events_maxlen=cfg.events_maxlen,
        retention_ms=cfg.retention_ms)) if cfg.webhooks else None
    app = create_app(redis, settings=cfg, runner=scripts, timer_worker=worker,
                     dispatcher=dispatcher)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=cfg.shutdown_timeout,
                           access_log_class=AccessLog,
                           access_log=logging.getLogger("redroute.access") if cfg.access_log
                           else None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_port=cfg.workers > 1, backlog=1024)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()  # stops the timer worker the application started
        await redis.aclose()
        raise _cannot_listen(cfg, e) from None
    log.info("listening on http://%s:%d", cfg.host, cfg.port, extra={
        "worker_index": index, "backend": "embedded" if is_embedded(redis) else "redis",
        "timer_worker": worker is not None, "webhook_dispatcher": dispatcher is not None})
    if not cfg.api_keys:
        log.warning("no API keys configured: the HTTP API is open to anyone who can reach it "
                    "and X-Tenant selects any tenant (set --api-keys-file or REDROUTE_API_KEYS)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight requests")
    await runner.cleanup()
    await redis.aclose()
    log.info("stopped")


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Runs the server on uvloop where it is installed (a dependency except
    on Windows): it takes ~11% off a request's CPU (benchmarks/RESULTS.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _cannot_listen(cfg: Settings, e: OSError) -> StartupError:
    why = os.strerror(e.errno) if e.errno else str(e)
    return StartupError(f"cannot listen on {cfg.host}:{cfg.port}: {why}")


def _child(cfg_dict: dict[str, Any], index: int) -> None:
    cfg = Settings(**cfg_dict)
    setup_logging(cfg.log_level, cfg.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    try:
        run_loop(serve(cfg, index))
    except StartupError as e:
        log.error("%s", e)
        sys.exit(e.exit_code)


def preflight(cfg: Settings) -> None:
    """What would stop every worker process, found before any starts, so it
    is said once: the port taken, Redis not answering."""
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((cfg.host, cfg.port))
        except OSError as e:
            raise _cannot_listen(cfg, e) from None

    async def ping() -> None:
        redis, _ = await open_redis(cfg)
        await redis.aclose()

    asyncio.run(ping())


def _supervise(cfg: Settings) -> int:
    """Starts cfg.workers processes and forwards SIGTERM/SIGINT to them."""
    metrics_dir = tempfile.mkdtemp(prefix="redroute-metrics-")
    # Every process writes its metrics here and any of them answers a
    # scrape for all (prometheus-client multiprocess mode).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    ctx = multiprocessing.get_context("spawn")  # fresh imports see the env above
    procs = [ctx.Process(target=_child, args=(asdict(cfg), i), name=f"redroute-{i}")
             for i in range(cfg.workers)]
    for p in procs:
        p.start()
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    try:
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(0.5)
                if not p.is_alive() and p.exitcode not in (0, None) and not stopping:
                    log.error("worker %s exited with %s; stopping the others", p.name, p.exitcode)
                    code = 1
                    forward(signal.SIGTERM, None)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = settings_from_args(args)
    setup_logging(cfg.log_level, cfg.log_format)
    if not cfg.redis_url and cfg.workers > 1:
        log.warning("the embedded backend lives inside one process: running 1 worker, not %d "
                    "(set REDIS_URL to run several)", cfg.workers)
        cfg = replace(cfg, workers=1)
    if cfg.workers == 1:
        run_loop(serve(cfg))
        return 0
    preflight(cfg)
    return _supervise(cfg)
