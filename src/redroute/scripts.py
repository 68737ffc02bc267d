"""Loads the Lua scripts of lua/, resolves their includes, and calls them by
SHA with a NOSCRIPT fallback (a restarted or failed-over Redis has an empty
script cache).

The conventions the loader relies on are in lua/README.md: an include is a
line `--- @include "name"`; a fragment's top-level functions are written
`local function name(` at the start of a line. A script is composed line by
line, each line remembering the file and line it came from, so an error
Redis reports at a line of the composed script is reported at its source.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

_INCLUDE = re.compile(r'^--- @include "([^"]+)"[ \t]*$')
_FUNCTION = re.compile(r"^local function ([A-Za-z_][A-Za-z0-9_]*)\(")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Where Redis (user_script:N) and the embedded backend ([string "…"]:N)
# place an error in the composed script.
_ERROR_LINE = re.compile(r'(?:@?user_script|\[string "[^"]*"\]):(\d+)')

Line = tuple[str, str, int]  # text, file (relative to lua/), line number


class ScriptError(Exception):
    """A script the loader cannot compose (a missing include, an include
    cycle, a top-level function it cannot delimit), named by file and line."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    # (file, line) of each line of source: where an error really is.
    origins: tuple[tuple[str, int], ...] = ()

    def locate(self, message: str) -> str:
        """message with each composed-script line number it names replaced by
        the source file and line, e.g. lua/includes/task.lua:42."""

        def where(m: re.Match[str]) -> str:
            n = int(m.group(1))
            if not self.origins or n < 1:
                return m.group(0)
            # Past the last line: the end of the file, where Lua reports an
            # unfinished statement.
            path, line = self.origins[min(n, len(self.origins)) - 1]
            return f"lua/{path}:{line + max(0, n - len(self.origins))}"

        return _ERROR_LINE.sub(where, message)


def _read(folder: Traversable, path: str) -> str:
    node = folder
    for part in path.split("/"):
        node = node / part
    return node.read_text()


def _resolve(folder: Traversable, path: str, text: str, done: set[str], stack: list[str]) -> list[Line]:
    """The lines of text (file path) with each include replaced by the
    fragment's lines; a fragment comes in once per script, where it is first
    included. An include of a fragment that is still being resolved (a
    cycle) is refused: its functions would follow their users."""
    here = path.rpartition("/")[0]
    out: list[Line] = []
    for i, line in enumerate(text.splitlines(), 1):
        m = _INCLUDE.match(line)
        if not m:
            out.append((line, path, i))
            continue
        name = m.group(1)
        target = (name if "/" in name or not here else f"{here}/{name}") + ".lua"
        if target in stack:
            cycle = " -> ".join([*stack[stack.index(target):], target])
            raise ScriptError(f"lua/{path}:{i}: include cycle {cycle}")
        if target in done:
            continue
        try:
            fragment = _read(folder, target)
        except OSError as e:
            raise ScriptError(f"lua/{path}:{i}: cannot include {name!r}: {e}") from None
        done.add(target)
        out += _resolve(folder, target, fragment, done, [*stack, target])
    return out


# Lua's lexical elements that matter for finding where a function ends.
_TOKEN = re.compile(
    r"--\[(?P<cl>=*)\[|--[^\n]*|\[(?P<sl>=*)\[|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"
    r"|[A-Za-z_][A-Za-z0-9_]*|[\"']"
)
_OPENS = {"function": 1, "if": 1, "do": 1, "repeat": 1, "end": -1, "until": -1}


def _function_end(lines: list[Line], start: int) -> int:
    """The index of the line where the function opening at lines[start]
    closes: blocks counted (function, if, do, repeat against end, until),
    skipping strings and comments. Refuses what it cannot delimit."""
    text = "\n".join(line[0] for line in lines[start:]) + "\n"
    _, path, lineno = lines[start]
    name = _FUNCTION.match(lines[start][0]).group(1)
    depth, pos = 0, 0
    while True:
        m = _TOKEN.search(text, pos)
        if m is None:
            raise ScriptError(f"lua/{path}:{lineno}: function {name} has no end")
        tok, pos = m.group(0), m.end()
        if m.group("cl") is not None or m.group("sl") is not None:
            level = m.group("cl") if m.group("cl") is not None else m.group("sl")
            close = text.find("]" + level + "]", pos)
            if close < 0:
                raise ScriptError(f"lua/{path}:{lineno}: function {name}: a long string or comment "
                                  "that does not close")
            pos = close + len(level) + 2
        elif tok in ('"', "'"):
            raise ScriptError(f"lua/{path}:{lineno}: function {name}: a string that does not close "
                              "on its line")
        elif tok in _OPENS:
            depth += _OPENS[tok]
            if depth == 0:
                last = start + text.count("\n", 0, pos)
                rest = text[pos:text.find("\n", pos)]
                if rest.strip() and not rest.strip().startswith("--"):
                    raise ScriptError(
                        f"lua/{lines[last][1]}:{lines[last][2]}: code after the end of function "
                        f"{name} on the same line: start it on a line of its own")
                return last


def _names(lines: list[Line]) -> set[str]:
    """Every name the lines mention outside comments."""
    out: set[str] = set()
    text = "\n".join(line[0] for line in lines)
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() < pos:
            continue
        tok = m.group(0)
        if m.group("cl") is not None:
            close = text.find("]" + m.group("cl") + "]", m.end())
            pos = len(text) if close < 0 else close
        elif not tok.startswith("--") and _NAME.fullmatch(tok):
            out.add(tok)
    return out


def _prune(lines: list[Line]) -> list[Line]:
    """Drops the top-level functions that the script never reaches.

    Redis runs a script's whole body on every call, so each included
    "local function" is a closure created per call, used or not. What is
    kept is found from the rest of the script (its body and top-level
    statements) by name, transitively; a name that only looks like a
    reference (a local of the same name) keeps a function, never drops one
    that is used."""
    functions: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(lines):
        m = _FUNCTION.match(lines[i][0])
        if m:
            end = _function_end(lines, i)
            functions[m.group(1)] = (i, end)
            i = end + 1
        else:
            i += 1
    inside = {n for a, b in functions.values() for n in range(a, b + 1)}
    rest = [line for n, line in enumerate(lines) if n not in inside]
    wanted: set[str] = set()
    todo = [n for n in _names(rest) if n in functions]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        a, b = functions[name]
        todo.extend(n for n in _names(lines[a:b + 1]) if n in functions and n not in wanted)
    dropped = {n for name, (a, b) in functions.items() if name not in wanted for n in range(a, b + 1)}
    return [line for n, line in enumerate(lines) if n not in dropped]


def lua_folder() -> Traversable:
    """lua/ as installed in the wheel (redroute/lua), else the source tree's."""
    installed = files("redroute") / "lua"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "lua"


def compose(text: str, folder: Traversable | None = None, *, name: str = "<script>") -> Script:
    """A script as Redis runs it: its includes resolved from lua/ (or
    folder), the functions it never reaches pruned."""
    lines = _prune(_resolve(folder or lua_folder(), f"{name}.lua", text, set(), [f"{name}.lua"]))
    source = "".join(line[0] + "\n" for line in lines)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest(),
                  tuple((path, n) for _, path, n in lines))


def load_scripts(folder: Traversable | None = None) -> dict[str, Script]:
    folder = folder or lua_folder()
    out: dict[str, Script] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and entry.is_file():
            name = entry.name[:-4]
            out[name] = compose(entry.read_text(), folder, name=name)
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
            try:
                return await redis.evalsha(s.sha, len(keys), *keys, *args)
            except NoScriptError:
                pass
            except ResponseError as e:
                if not str(e).startswith("NOSCRIPT"):
                    raise
            # EVAL is routed like EVALSHA (by KEYS[1] on a Redis Cluster), so
            # the script runs on, and stays cached by, the very node that
            # lacked it, in one round trip; redis-py's SCRIPT LOAD on a cluster
            # goes to every primary and fails when any one is down.
            return await redis.eval(s.source, len(keys), *keys, *args)
        except ResponseError as e:
            located = s.locate(str(e))
            if located == str(e):
                raise
            raise type(e)(located) from e


_RUNNER: ScriptRunner | None = None


def default_runner() -> ScriptRunner:
    """The process's runner: lua/ loaded once."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = ScriptRunner()
    return _RUNNER
