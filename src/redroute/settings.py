"""The settings of a redroute process: one object for `redroute serve`, the
HTTP application it runs and `redroute worker`. Each field has its default
here and, when a flag sets it, the environment variable that sets it too
(ENV); cli/ builds the flags from both."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .errors import ConfigError
from .limits import DEFAULT_EVENTS_MAXLEN, DEFAULT_RETENTION_MS


@dataclass
class Settings:
    # Where `serve` listens: loopback unless told otherwise (the image sets 0.0.0.0)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # processes sharing the port (SO_REUSEPORT)
    redis_url: str | None = None  # None: the embedded backend (serve only)
    # Timer worker: serve's in-process one, or `redroute worker`
    timers: bool = True
    timer_batch: int = 50  # deadlines fired per script call (each call blocks Redis)
    timer_max_sleep: float = 1.0  # longest pause between sweeps, seconds
    # Engine
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN  # approximate MAXLEN of each event stream
    retention_ms: int = DEFAULT_RETENTION_MS  # closed tasks stay readable this long
    # HTTP
    max_body_bytes: int = 256 * 1024
    sse_keepalive: float = 15.0  # seconds between keep-alive comments
    sse_queue_size: int = 1024  # entries buffered per SSE client before it is dropped
    sse_block_ms: int = 1000  # XREAD BLOCK; below the Redis socket timeout
    require_timer_worker: bool = True  # /healthz fails without a worker heartbeat
    tenant_cache: int = 4096
    # API key -> tenant (http/auth.py); None/empty: no authentication at all
    api_keys: dict[str, str] | None = field(default=None, repr=False)
    protect_ops: bool = False  # /healthz and /metrics need a key too (any tenant's)
    # Webhooks: the dispatcher of serve and worker (webhooks/model.py DeliverySettings)
    webhooks: bool = True
    webhooks_allow_private: bool = False  # loopback, private, link-local targets
    webhooks_timeout: float = 10.0  # seconds an attempt may take
    webhooks_backoff_ms: int = 1000  # before the first retry, doubling per attempt
    webhooks_max_backoff_ms: int = 5 * 60 * 1000
    webhooks_give_up_ms: int = 24 * 3600 * 1000  # then a delivery is kept FAILED
    webhooks_claim_idle_ms: int = 30_000  # a dead dispatcher's events are taken over after
    # Process
    shutdown_timeout: float = 30.0  # seconds in-flight requests get on SIGTERM
    access_log: bool = True
    log_level: str = "INFO"
    log_format: str = "json"


# The environment variable of each field a flag sets.
ENV = {
    "host": "REDROUTE_HOST",
    "port": "REDROUTE_PORT",
    "workers": "REDROUTE_WORKERS",
    "redis_url": "REDIS_URL",
    "timers": "REDROUTE_TIMERS",
    "timer_batch": "REDROUTE_TIMER_BATCH",
    "timer_max_sleep": "REDROUTE_TIMER_MAX_SLEEP",
    "events_maxlen": "REDROUTE_EVENTS_MAXLEN",
    "retention_ms": "REDROUTE_RETENTION_MS",
    "max_body_bytes": "REDROUTE_MAX_BODY_BYTES",
    "sse_keepalive": "REDROUTE_SSE_KEEPALIVE",
    "sse_queue_size": "REDROUTE_SSE_QUEUE_SIZE",
    "protect_ops": "REDROUTE_PROTECT_OPS",
    "webhooks": "REDROUTE_WEBHOOKS",
    "webhooks_allow_private": "REDROUTE_WEBHOOKS_ALLOW_PRIVATE",
    "webhooks_timeout": "REDROUTE_WEBHOOKS_TIMEOUT",
    "webhooks_backoff_ms": "REDROUTE_WEBHOOKS_BACKOFF_MS",
    "webhooks_max_backoff_ms": "REDROUTE_WEBHOOKS_MAX_BACKOFF_MS",
    "webhooks_give_up_ms": "REDROUTE_WEBHOOKS_GIVE_UP_MS",
    "webhooks_claim_idle_ms": "REDROUTE_WEBHOOKS_CLAIM_IDLE_MS",
    "shutdown_timeout": "REDROUTE_SHUTDOWN_TIMEOUT",
    "access_log": "REDROUTE_ACCESS_LOG",
    "log_level": "REDROUTE_LOG_LEVEL",
    "log_format": "REDROUTE_LOG_FORMAT",
}
DEFAULTS = {f.name: f.default for f in fields(Settings)}

# What redis-py and backend.parse_cluster_url accept.
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def check_redis_url(url: str) -> str:
    """The URL, or ConfigError saying in one line what is wrong with it."""
    from redis.connection import parse_url

    from .backend import parse_cluster_url

    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        raise ConfigError(f"REDIS_URL {url!r} has no scheme redroute knows: expected "
                          f"{', '.join(s + '://' for s in REDIS_SCHEMES)}")
    try:
        if parse_cluster_url(url) is None:
            parse_url(url)
    except ValueError as e:
        raise ConfigError(f"REDIS_URL {url!r}: {e}") from None
    return url


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
