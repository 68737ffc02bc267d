"""redroute: a Redis-native, in-memory routing engine for contact-center tasks."""

from .engine import Engine
from .errors import (
    InvalidTransition,
    NotFound,
    QueueFull,
    RedisUnavailable,
    RedrouteError,
    ValidationError,
)
from .model import Agent, Media, Mrd, Queue, Task

__all__ = [
    "Agent",
    "Engine",
    "InvalidTransition",
    "Media",
    "Mrd",
    "NotFound",
    "Queue",
    "QueueFull",
    "RedisUnavailable",
    "RedrouteError",
    "Task",
    "ValidationError",
]

__version__ = "0.1.0"
