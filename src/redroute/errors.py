"""Errors with the codes and HTTP statuses of docs/api.md, Errors."""

from __future__ import annotations


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


class RedisUnavailable(RedrouteError):
    code = "REDIS_UNAVAILABLE"
    status = 503
    title = "Redis unavailable"


_BY_CODE = {cls.code: cls for cls in (ValidationError, NotFound, InvalidTransition)}


def from_reply(message: str) -> RedrouteError | None:
    """The domain error of a script's error reply "<CODE> <detail>", if it is one."""
    code, _, detail = message.partition(" ")
    cls = _BY_CODE.get(code)
    return cls(detail) if cls else None


class StartupError(Exception):
    """A process cannot start (the port is taken, Redis does not answer): the
    command prints the message, one line, and exits with exit_code."""

    exit_code = 1


class ConfigError(StartupError, ValueError):
    """The configuration itself is wrong (flags, environment, key file)."""

    exit_code = 2
