"""`redroute serve`: the HTTP server and an in-process timer worker, in one
process or in N processes sharing the port (SO_REUSEPORT).

Settings come from flags or the environment variables named in --help.
Logs are JSON lines. SIGTERM/SIGINT stop accepting connections, end SSE
streams, let in-flight requests finish (up to --shutdown-timeout) and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..engine import DEFAULT_EVENTS_MAXLEN, DEFAULT_RETENTION_MS

log = logging.getLogger("redroute.serve")

# The attributes every LogRecord has; anything else came in `extra=` and is
# emitted as a field of the JSON line.
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ServeConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    redis_url: str | None = None
    timers: bool = True
    timer_max_sleep: float = 1.0
    max_body_bytes: int = 256 * 1024
    sse_keepalive: float = 15.0
    sse_queue_size: int = 1024
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN
    retention_ms: int = DEFAULT_RETENTION_MS
    shutdown_timeout: float = 30.0
    access_log: bool = True
    log_level: str = "INFO"
    log_format: str = "json"
    api_keys: dict[str, str] | None = None  # API key -> tenant (http/auth.py)
    protect_ops: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--host", default=env("REDROUTE_HOST", "0.0.0.0"), help="env REDROUTE_HOST")
    p.add_argument("--port", type=int, default=int(env("REDROUTE_PORT", "8080")),
                   help="env REDROUTE_PORT (default 8080)")
    p.add_argument("--workers", type=int, default=int(env("REDROUTE_WORKERS", "1")),
                   help="processes sharing the port with SO_REUSEPORT (env REDROUTE_WORKERS); "
                        "forced to 1 on the embedded backend")
    p.add_argument("--no-timers", dest="timers", action="store_false",
                   default=_env_bool("REDROUTE_TIMERS", True),
                   help="run no in-process timer worker (run `redroute worker` elsewhere); "
                        "env REDROUTE_TIMERS=0")
    p.add_argument("--timer-max-sleep", type=float,
                   default=float(env("REDROUTE_TIMER_MAX_SLEEP", "1.0")))
    p.add_argument("--max-body-bytes", type=int,
                   default=int(env("REDROUTE_MAX_BODY_BYTES", str(256 * 1024))))
    p.add_argument("--sse-keepalive", type=float, default=float(env("REDROUTE_SSE_KEEPALIVE", "15")),
                   help="seconds between SSE keep-alive comments")
    p.add_argument("--sse-queue-size", type=int, default=int(env("REDROUTE_SSE_QUEUE_SIZE", "1024")),
                   help="events buffered per SSE client before a slow one is dropped")
    p.add_argument("--events-maxlen", type=int,
                   default=int(env("REDROUTE_EVENTS_MAXLEN", str(DEFAULT_EVENTS_MAXLEN))),
                   help="approximate MAXLEN of each tenant's event stream")
    p.add_argument("--retention-ms", type=int,
                   default=int(env("REDROUTE_RETENTION_MS", str(DEFAULT_RETENTION_MS))),
                   help="how long closed tasks stay readable")
    p.add_argument("--shutdown-timeout", type=float,
                   default=float(env("REDROUTE_SHUTDOWN_TIMEOUT", "30")),
                   help="seconds in-flight requests get to finish on SIGTERM")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   default=_env_bool("REDROUTE_ACCESS_LOG", True))
    p.add_argument("--api-keys-file", default=None,
                   help='bearer API keys: a JSON object {"<key>": "<tenant>", ...} '
                        "(env REDROUTE_API_KEYS_FILE); env REDROUTE_API_KEYS="
                        '"tenantA:key1,tenantB:key2" adds keys. Without keys there is '
                        "no authentication")
    p.add_argument("--protect-ops", dest="protect_ops", action="store_true",
                   default=_env_bool("REDROUTE_PROTECT_OPS", False),
                   help="/healthz and /metrics need an API key too (env REDROUTE_PROTECT_OPS=1)")
    p.add_argument("--log-format", choices=("json", "text"),
                   default=env("REDROUTE_LOG_FORMAT", "json"))


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    from ..http.auth import load_api_keys

    return ServeConfig(
        api_keys=load_api_keys(getattr(args, "api_keys_file", None)) or None,
        protect_ops=getattr(args, "protect_ops", False),
        host=args.host, port=args.port, workers=max(1, args.workers), redis_url=args.redis_url,
        timers=args.timers, timer_max_sleep=args.timer_max_sleep,
        max_body_bytes=args.max_body_bytes, sse_keepalive=args.sse_keepalive,
        events_maxlen=args.events_maxlen, retention_ms=args.retention_ms,
        sse_queue_size=args.sse_queue_size, shutdown_timeout=args.shutdown_timeout,
        access_log=args.access_log, log_level=args.log_level, log_format=args.log_format,
    )


def redis_client(url: str | None) -> Any:
    """The server's Redis client. A real Redis gets one retry on a broken
    connection, so the pooled connections a Redis restart left stale
    reconnect instead of each failing one request. Timeouts are not retried:
    the script may have run, and running it twice would not be safe."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    from .. import backend

    url = url if url is not None else os.environ.get("REDIS_URL") or None
    if not url:
        return backend.connect(None)
    # A cluster client has its own retry policy (topology refreshes).
    parse_cluster = getattr(backend, "parse_cluster_url", None)
    if parse_cluster is not None and parse_cluster(url) is not None:
        return backend.connect(url)
    return backend.connect(url, retry=Retry(NoBackoff(), 1, (RedisConnectionError,)))


async def serve(cfg: ServeConfig, index: int = 0) -> None:
    """One server process: HTTP plus (unless disabled) a timer worker."""
    # Imported here: prometheus-client must see PROMETHEUS_MULTIPROC_DIR
    # (set by the parent for several workers) before it is first imported.
    from aiohttp import web
    from aiohttp.abc import AbstractAccessLogger
    from redis.exceptions import RedisError

    from ..backend import is_embedded
    from ..engine import Engine, default_runner
    from ..http import Settings, create_app
    from ..http.auth import TENANT_KEY
    from ..timers import TimerWorker

    class AccessLog(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            self.logger.info("%s %s %s", request.method, request.path, response.status, extra={
                "method": request.method, "path": request.path, "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "tenant": request.get(TENANT_KEY)
                or request.headers.get("X-Tenant", "default"),
                "remote": request.remote,
            })

    redis = redis_client(cfg.redis_url)
    runner_scripts = default_runner()
    try:
        await runner_scripts.load_all(redis)
    except (RedisError, OSError) as e:
        # Not fatal: requests answer 503 until Redis is back, and scripts
        # load on first use (NOSCRIPT fallback).
        log.warning("Redis unavailable at start: %s", e)
    settings = Settings(max_body_bytes=cfg.max_body_bytes, sse_keepalive=cfg.sse_keepalive,
                        sse_queue_size=cfg.sse_queue_size, events_maxlen=cfg.events_maxlen, retention_ms=cfg.retention_ms,
                        api_keys=cfg.api_keys, protect_ops=cfg.protect_ops)
    if not cfg.api_keys:
        log.warning("no API keys configured: the HTTP API is open to anyone who can reach it "
                    "and X-Tenant selects any tenant (set --api-keys-file or REDROUTE_API_KEYS)")
    worker = TimerWorker(redis, max_sleep=cfg.timer_max_sleep, engine_factory=lambda t: Engine(
        redis, t, runner=runner_scripts, events_maxlen=cfg.events_maxlen,
        retention_ms=cfg.retention_ms)) if cfg.timers else None
    app = create_app(redis, settings=settings, runner=runner_scripts, timer_worker=worker)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=cfg.shutdown_timeout,
                           access_log_class=AccessLog,
                           access_log=logging.getLogger("redroute.access") if cfg.access_log
                           else None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_port=cfg.workers > 1, backlog=1024)
    await site.start()
    log.info("listening on http://%s:%d", cfg.host, cfg.port, extra={
        "worker_index": index, "backend": "embedded" if is_embedded(redis) else "redis",
        "timer_worker": worker is not None})
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


def _child(cfg_dict: dict[str, Any], index: int) -> None:
    cfg = ServeConfig(**cfg_dict)
    setup_logging(cfg.log_level, cfg.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    asyncio.run(serve(cfg, index))


def _supervise(cfg: ServeConfig) -> int:
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


def add_parser(sub: argparse._SubParsersAction,
               common: Callable[[argparse.ArgumentParser], None]) -> None:
    sv = sub.add_parser("serve", help="run the HTTP API with an in-process timer worker")
    common(sv)
    add_arguments(sv)
    sv.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..http.auth import ApiKeyError

    try:
        cfg = config_from_args(args)
    except (ApiKeyError, OSError) as e:
        print(f"redroute serve: API keys: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level, cfg.log_format)
    if not cfg.redis_url and cfg.workers > 1:
        log.warning("the embedded backend lives inside one process: running 1 worker, not %d "
                    "(set REDIS_URL to run several)", cfg.workers)
        cfg.workers = 1
    if cfg.workers == 1:
        asyncio.run(serve(cfg))
        return 0
    return _supervise(cfg)
