"""Loads the Lua scripts of lua/, resolves their includes, and calls them by
SHA with a NOSCRIPT fallback (a restarted or failed-over Redis has an empty
script cache)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

_INCLUDE = re.compile(r'^--- @include "([^"]+)"[ \t]*$', re.MULTILINE)
# A top-level function of a fragment: from "local function name(" at the
# start of a line to the first line that is just "end".
_FUNCTION = re.compile(r"^local function ([A-Za-z_][A-Za-z0-9_]*)\(.*?^end[ \t]*$\n?",
                       re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _resolve(folder: Traversable, text: str, here: str, seen: set[str]) -> str:
    """Replaces each include line by the fragment, once per script."""

    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        path = name if "/" in name else f"{here}/{name}" if here else name
        if path in seen:
            return ""
        seen.add(path)
        node = folder
        for part in f"{path}.lua".split("/"):
            node = node / part
        return _resolve(folder, node.read_text(), path.rpartition("/")[0], seen)

    return _INCLUDE.sub(include, text)


def _names(code: str) -> set[str]:
    return set(_NAME.findall(_COMMENT.sub(" ", code)))


def _prune(source: str) -> str:
    """Drops the fragments' top-level functions that the script never reaches.

    Redis runs a script's whole body on every call, so each included
    "local function" is a closure created per call, used or not: with every
    fragment included that was a fixed 15-20 µs per call. What is kept is
    found from the rest of the script (its body and top-level statements) by
    name, transitively; a name that only looks like a reference (a local of
    the same name) keeps a function, never drops one that is used."""
    functions = {m.group(1): m for m in _FUNCTION.finditer(source)}
    rest = _FUNCTION.sub("", source)
    wanted: set[str] = set()
    todo = [n for n in _names(rest) if n in functions]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(n for n in _names(functions[name].group(0)) if n in functions and n not in wanted)
    return _FUNCTION.sub(lambda m: m.group(0) if m.group(1) in wanted else "", source)


def lua_folder() -> Traversable:
    """lua/ as installed in the wheel (redroute/lua), else the source tree's."""
    installed = files("redroute") / "lua"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "lua"


def compose(text: str, folder: Traversable | None = None) -> str:
    """A script's source as Redis runs it: its includes resolved from lua/
    (or folder), the functions it never reaches pruned."""
    return _prune(_resolve(folder or lua_folder(), text, "", set()))


def load_scripts(folder: Traversable | None = None) -> dict[str, Script]:
    folder = folder or lua_folder()
    out: dict[str, Script] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and entry.is_file():
            name = entry.name[:-4]
            source = compose(entry.read_text(), folder)
            out[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return out


class ScriptRunner:
    """Calls scripts by name; shared by every Engine of a process."""

    def __init__(self, scripts: dict[str, Script] | None = None) -> None:
        self.scripts = scripts or load_scripts()

    async def load_all(self, redis: Any) -> None:
        for s in self.scripts.values():
            await redis.script_load(s.source)

    async def call(self, redis: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        s = self.scripts[name]
        try:
            return await redis.evalsha(s.sha, len(keys), *keys, *args)
        except NoScriptError:
            pass
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        # EVAL is routed like EVALSHA (by KEYS[1] on a Redis Cluster), so the
        # script runs on, and stays cached by, the very node that lacked it,
        # in one round trip; redis-py's SCRIPT LOAD on a cluster goes to every
        # primary and fails when any one is down.
        return await redis.eval(s.source, len(keys), *keys, *args)
