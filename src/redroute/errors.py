"""Errors with the codes and HTTP statuses of docs/api.md, Errors."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class RedrouteError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "INTERNAL"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationError(RedrouteError):
    code = "VALIDATION_ERROR"
    status = 422
    title = "Invalid request"


class NotFound(RedrouteError):
    code = "NOT_FOUND"
    status = 404
    title = "Not found"


class InvalidTransition(RedrouteError):
    code = "INVALID_TRANSITION"
    status = 409
    title = "Invalid transition"


class QueueFull(RedrouteError):
    """A PUSH to a queue that already has its maxWaiting tasks waiting and
    no overflow queue to take the request."""

    code = "QUEUE_FULL"
    status = 409
    title = "Queue full"


class RedisUnavailable(RedrouteError):
    code = "REDIS_UNAVAILABLE"
    status = 503
    title = "Redis unavailable"


# Each error by its code: the API's codes (problem documents) and a script's
# error replies "<CODE> <detail>" name them the same way.
BY_CODE: dict[str, type[RedrouteError]] = {
    cls.code: cls for cls in (ValidationError, NotFound, InvalidTransition, QueueFull, RedisUnavailable)}
# What a script may answer with: the domain errors.
_SCRIPT_CODES = (ValidationError.code, NotFound.code, InvalidTransition.code, QueueFull.code)

# What a call raises when Redis cannot be reached: redis-py's connection and
# timeout errors, a socket's own OSError, and RedisUnavailable, which the
# Engine raises for them.
REDIS_DOWN = (RedisUnavailable, RedisConnectionError, RedisTimeoutError, OSError)


def from_reply(message: str) -> RedrouteError | None:
    """The domain error of a script's error reply "<CODE> <detail>", if it is one."""
    code, _, detail = message.partition(" ")
    return BY_CODE[code](detail) if code in _SCRIPT_CODES else None


class StartupError(Exception):
    """A process cannot start (the port is taken, Redis does not answer): the
    command prints the message, one line, and exits with exit_code."""

    exit_code = 1


class ConfigError(StartupError, ValueError):
    """The configuration itself is wrong (flags, environment, key file)."""

    exit_code = 2
