"""Flags shared by the commands, and flags backed by a Settings field: each
takes its default from the field's environment variable when set, else from
Settings, and its help names both (every parser of the command uses
argparse's ArgumentDefaultsHelpFormatter)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..settings import DEFAULTS, ENV


class HELP(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; a switch (--no-timers,
    --json) says its own, as "default: off" reads better than "False"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 and action.option_strings:
            return action.help
        return super()._get_help_string(action)

_TRUE = ("1", "true", "yes", "on")


def setting(p: argparse.ArgumentParser, flag: str, name: str, help: str, **kw: Any) -> None:
    """A flag for Settings field `name`. A default read from the environment
    is a string: argparse converts it with `type` like a value given on the
    command line, so a malformed one is a usage error naming the flag."""
    env = ENV[name]
    raw = os.environ.get(env) or None
    p.add_argument(flag, dest=name, default=DEFAULTS[name] if raw is None else raw,
                   help=f"{help} [env {env}]", **kw)


def switch_off(p: argparse.ArgumentParser, flag: str, name: str, help: str) -> None:
    """--no-<thing> for a boolean Settings field that is on by default."""
    _switch(p, flag, name, help, "store_false", "0")


def switch_on(p: argparse.ArgumentParser, flag: str, name: str, help: str) -> None:
    """--<thing> for a boolean Settings field that is off by default."""
    _switch(p, flag, name, help, "store_true", "1")


def _switch(p: argparse.ArgumentParser, flag: str, name: str, help: str, action: str,
            env_value: str) -> None:
    env = ENV[name]
    raw = os.environ.get(env) or None
    on = DEFAULTS[name] if raw is None else raw.strip().lower() in _TRUE
    p.add_argument(flag, dest=name, action=action, default=on,
                   help=f"{help} [env {env}={env_value}] (default: {_state(name, on)})")


def _state(name: str, on: bool) -> str:
    return f"{name.replace('_', ' ')} {'on' if on else 'off'}"


def common(p: argparse.ArgumentParser) -> None:
    """--redis-url and --log-level, on every command."""
    setting(p, "--redis-url", "redis_url",
            "Redis URL (redis://, rediss://, unix://, redis+cluster://); none: the embedded "
            "backend, in this process only")
    setting(p, "--log-level", "log_level", "DEBUG, INFO, WARNING or ERROR",
            type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def stream_settings(p: argparse.ArgumentParser, *, note: str = "") -> None:
    """The event stream's cap and closed tasks' retention: what every script
    call of a process is given, so serve and worker must agree on them."""
    setting(p, "--events-maxlen", "events_maxlen",
            "approximate MAXLEN of each tenant's event stream" + note, type=int)
    setting(p, "--retention-ms", "retention_ms", "how long closed tasks stay readable" + note,
            type=int)
