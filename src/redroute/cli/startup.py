"""What `serve` and `worker` do first: connect to Redis and load the
scripts, or fail with one line (StartupError) when Redis does not answer."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from ..backend import close_quietly, connect_service
from ..engine import default_runner
from ..errors import StartupError
from ..settings import Settings, redact_url


async def open_redis(cfg: Settings) -> tuple[Any, Any]:
    """The process's Redis client and script runner, the scripts loaded;
    StartupError when Redis does not answer."""
    redis = connect_service(cfg.redis_url)
    scripts = default_runner()
    try:
        await scripts.load_all(redis)
    except (RedisError, OSError) as e:
        await close_quietly(redis)
        where = redact_url(cfg.redis_url or "the embedded backend")
        raise StartupError(f"Redis at {where} does not answer: {e}") from None
    return redis, scripts
