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

import asyncio
import bisect
import functools
import hashlib
import logging
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

log = logging.getLogger(__name__)

_INCLUDE = re.compile(r'^--- @include "([^"]+)"[ \t]*$')
# Before a fragment's top-level local: the local is the library's, made once
# when the library loads and kept between calls (library()).
_LIBRARY = re.compile(r"^--- @library[ \t]*$")
_FUNCTION = re.compile(r"local function ([A-Za-z_][A-Za-z0-9_]*)\(")
# Where Redis (user_script:N) and the embedded backend ([string "…"]:N)
# place an error in the composed script.
_ERROR_LINE = re.compile(r'(?:@?user_script|@?user_function|\[string "[^"]*"\]):(\d+)')

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
    # The script as a block of the function library (library()): the
    # fragments' functions and what they mark @once, made once when the
    # library loads, and begin_call, their other top-level statements, run
    # at each call's start (prelude); then the script's own lines, the
    # function's body.
    prelude: tuple[Line, ...] = ()
    body: tuple[Line, ...] = ()
    # The fragments' locals marked --- @library: in the library, made once
    # before every block and shared by all of them.
    shared: tuple[Line, ...] = ()

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


def _resolve(folder: Traversable, path: str, text: str, done: dict[str, str],
             stack: list[str]) -> list[Line]:
    """The lines of text (file path) with each include replaced by the
    fragment's lines; a fragment comes in once per script, where it is first
    included. An include of a fragment that is still being resolved (a
    cycle) is refused: its functions would follow their users. done maps
    each file taken in to its text."""
    done[path] = text
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
        out += _resolve(folder, target, fragment, done, [*stack, target])
    return out


# Lua's lexical elements that matter for finding where a function ends:
# long comments and strings, comments, quoted strings, names.
_TOKEN = re.compile(
    r"--\[(?P<cl>=*)\[|--[^\n]*|\[(?P<sl>=*)\[|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"
    r"|[A-Za-z_][A-Za-z0-9_]*|[\"']"
)
_OPENS = {"function": 1, "if": 1, "do": 1, "repeat": 1, "end": -1, "until": -1}


def _tokens(text: str, where: Callable[[int], str]) -> list[tuple[int, str]]:
    """The names and keywords of text outside strings and comments, with
    their offsets."""
    out: list[tuple[int, str]] = []
    pos = 0
    while (m := _TOKEN.search(text, pos)) is not None:
        tok, pos = m.group(0), m.end()
        level = m.group("cl") if m.group("cl") is not None else m.group("sl")
        if level is not None:
            close = text.find("]" + level + "]", pos)
            if close < 0:
                raise ScriptError(f"{where(m.start())}: a long string or comment that does not close")
            pos = close + len(level) + 2
        elif tok in ('"', "'"):
            raise ScriptError(f"{where(m.start())}: a string that does not close on its line")
        elif tok[0] not in "-\"'":
            out.append((m.start(), tok))
    return out


Outline = tuple[dict[str, tuple[int, int, frozenset[str]]], frozenset[str]]


@functools.lru_cache(maxsize=256)
def _outline(path: str, text: str) -> Outline:
    """A file's top-level functions, name -> (first line, last line, the
    names in it), and the names outside them. A top-level function starts a
    line with "local function name(" and ends where its blocks close
    (function, if, do, repeat against end, until); what cannot be delimited
    (no end, code after the end on the same line) is refused."""
    source = text if text.endswith("\n") else text + "\n"
    starts = [0, *(i + 1 for i, c in enumerate(source) if c == "\n")]

    def line_of(offset: int) -> int:  # 1-based
        return bisect.bisect_right(starts, offset)

    def where(offset: int) -> str:
        return f"lua/{path}:{line_of(offset)}"

    tokens = _tokens(source, where)
    functions: dict[str, tuple[int, int, frozenset[str]]] = {}
    rest: set[str] = set()
    i = 0
    while i < len(tokens):
        offset, tok = tokens[i]
        first = line_of(offset)
        m = _FUNCTION.match(source, offset) if tok == "local" and offset == starts[first - 1] else None
        if m is None:
            rest.add(tok)
            i += 1
            continue
        name, depth, j, body = m.group(1), 0, i + 1, set()
        while True:
            if j == len(tokens):
                raise ScriptError(f"{where(offset)}: function {name} has no end")
            end_offset, t = tokens[j]
            body.add(t)
            depth += _OPENS.get(t, 0)
            j += 1
            if depth == 0 and t in ("end", "until"):
                break
        last = line_of(end_offset)
        after = source[end_offset + 3:starts[last] - 1].strip()
        if after and not after.startswith("--"):
            raise ScriptError(f"{where(end_offset)}: code after the end of function {name} on the "
                              "same line: start it on a line of its own")
        functions[name] = (first, last, frozenset(body))
        i = j
    return functions, frozenset(rest)


def _prune(lines: list[Line], sources: dict[str, str]) -> list[Line]:
    """Drops the top-level functions that the script never reaches.

    Redis runs a script's whole body on every call, so each included
    "local function" is a closure created per call, used or not. What is
    kept is found from the rest of the script (its body and top-level
    statements) by name, transitively; a name that only looks like a
    reference (a local of the same name) keeps a function, never drops one
    that is used."""
    functions: dict[str, tuple[str, int, int, frozenset[str]]] = {}
    rest: set[str] = set()
    for path, text in sources.items():
        outline, outside = _outline(path, text)
        functions.update({name: (path, *span) for name, span in outline.items()})
        rest |= outside
    wanted: set[str] = set()
    todo = [n for n in rest if n in functions]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(n for n in functions[name][3] if n in functions and n not in wanted)
    dropped = {(path, n) for name, (path, a, b, _) in functions.items() if name not in wanted
               for n in range(a, b + 1)}
    return [line for line in lines if (line[1], line[2]) not in dropped]


_LOCAL = re.compile(r"local\s+([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)(.*)$")


@functools.lru_cache(maxsize=256)
def _code_starts(path: str, text: str) -> frozenset[int]:
    """The lines of text that start (column 0) with the keyword local
    outside comments and strings."""
    source = text if text.endswith("\n") else text + "\n"
    starts = {0, *(i + 1 for i, c in enumerate(source) if c == "\n")}
    return frozenset(source.count("\n", 0, offset) + 1
                     for offset, tok in _tokens(source, lambda o: f"lua/{path}")
                     if tok == "local" and offset in starts)


_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|--.*$")


def _open_brackets(text: str) -> int:
    """How many brackets a line of Lua opens and leaves open (negative:
    closes), outside strings and comments."""
    code = _STRING.sub("", text)
    return sum(code.count(c) for c in "({[") - sum(code.count(c) for c in ")}]")


_ONCE = re.compile(r"^--- @once[ \t]*$")


@functools.lru_cache(maxsize=256)
def _once_lines(path: str, text: str) -> frozenset[int]:
    """The lines of text that a library runs once, when it loads: each
    statement after a line "--- @once", up to the next blank line (see
    lua/README.md). Refused: a marked span that is empty, holds a
    top-level function, or does not close its blocks."""
    lines = text.splitlines()
    functions = [(a, b) for a, b, _ in _outline(path, text)[0].values()]
    out: set[int] = set()
    for i, line in enumerate(lines, 1):
        if not _ONCE.match(line):
            continue
        end = i
        while end < len(lines) and lines[end].strip():
            end += 1
        span = range(i + 1, end + 1)
        if not span:
            raise ScriptError(f"lua/{path}:{i}: @once marks no statement")
        if any(a <= n <= b for a, b in functions for n in span):
            raise ScriptError(f"lua/{path}:{i}: @once marks a function, which is made once anyway")
        chunk = "\n".join(lines[i:end]) + "\n"
        where = f"lua/{path}:{i}"
        depth = sum(_OPENS.get(tok, 0) for _, tok in _tokens(chunk, lambda _, w=where: w))
        if depth != 0:
            raise ScriptError(f"lua/{path}:{i}: the statements @once marks do not close their "
                              "blocks before the blank line that ends them")
        out.update(span)
    return frozenset(out)


def _block(name: str, lines: list[Line], sources: dict[str, str]) -> tuple[list[Line], list[Line], list[Line]]:
    """Script name as a block of the function library: its prelude, its
    body and its library-level locals (see Script).

    Redis runs an EVALSHA script's whole chunk on every call; a library's
    chunk runs once, at FUNCTION LOAD, and its functions on every FCALL. So
    the fragments' top-level functions are made here once, and the rest of
    the fragments' top-level statements (per-call state such as TASKS = {})
    runs at the start of every call, as it does in the script: their
    locals are declared at the top of the block, so every function shares
    them, and assigned per call. What a fragment marks "--- @once"
    (constant tables, the AT_END registrations) runs once, after the
    block's functions, when the library loads. The script's own lines run
    as they are, in the function's body, with KEYS and ARGV its arguments.
    A fragment's top-level local on the line after "--- @library" is the
    library's instead (state kept between calls): made once, before every
    block, so it must name nothing but globals."""
    own = f"{name}.lua"
    spans: dict[str, list[tuple[int, int]]] = {}
    for path, text in sources.items():
        spans[path] = [(a, b) for a, b, _ in _outline(path, text)[0].values()]
    declared: list[str] = []
    functions: list[Line] = []
    once: list[Line] = []
    per_call: list[Line] = []
    body: list[Line] = []
    shared: list[Line] = []
    # After a marker: None, then the brackets the marked statement leaves open.
    marked: int | None = None
    if _once_lines(own, sources[own]):
        first = min(_once_lines(own, sources[own])) - 1
        raise ScriptError(f"lua/{own}:{first}: @once is for fragments: a script's lines run per call")
    for text, path, n in lines:
        if path == own:
            body.append((text, path, n))
        elif any(a <= n <= b for a, b in spans[path]):
            functions.append((text, path, n))
        elif marked is not None:
            if marked == 0 and not (n in _code_starts(path, sources[path]) and _LOCAL.match(text)):
                raise ScriptError(f"lua/{path}:{n}: --- @library is not followed by a top-level local")
            marked += _open_brackets(text)
            shared.append((text, path, n))
            if marked <= 0:
                marked = None
        elif _LIBRARY.match(text):
            marked = 0
        else:
            if n in _code_starts(path, sources[path]):
                m = _LOCAL.match(text)
                if m is None:
                    raise ScriptError(f"lua/{path}:{n}: a top-level local that is not a name list")
                names, rest = m.group(1), m.group(2)
                declared.extend(x.strip() for x in names.split(","))
                if not rest.lstrip().startswith("="):
                    rest = " = nil" + rest  # a declaration alone starts each call unset
                text = names + rest
            (once if n in _once_lines(path, sources[path]) else per_call).append((text, path, n))
    here = (own, 0)
    prelude: list[Line] = [("local KEYS, ARGV", *here)]
    for i in range(0, len(declared), 50):
        prelude.append(("local " + ", ".join(declared[i:i + 50]), *here))
    prelude += functions
    prelude += once
    prelude.append(("local function begin_call(keys, args)", *here))
    prelude.append(("KEYS, ARGV = keys, args", *here))
    prelude += per_call
    prelude.append(("end", *here))
    return prelude, body, shared


# key(a, b, c) of base.lua written out where it is called: a Lua function call
# costs Redis about as much as the concatenation it makes. A call is
# written out when it is on one line, its first part is a quoted string and
# its last part is one too, or one followed by ".." and a name or number
# (so never nil: key() reads a missing last part as no part, which the
# concatenation would not); other calls stay calls.
_KEY_BASE = "includes/base.lua"
_LITERAL = r"'[^'\\\n]*'|\"[^\"\\\n]*\""
_KEY_FIRST = re.compile(rf"^(?:{_LITERAL})$")
_KEY_LAST = re.compile(rf"^(?P<lit>{_LITERAL})(?:\s*\.\.\s*(?P<rest>[A-Za-z_][A-Za-z0-9_.]*|[0-9]+))?$")
_KEY_PLAIN = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.]*|A\[[0-9]+\])$")
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _key_args(text: str, start: int) -> tuple[list[str], int] | None:
    """The arguments of the call whose "(" is at start, and the offset after
    its ")"; None when it does not close on its line."""
    stack, args, i, arg = [], [], start + 1, start + 1
    while i < len(text):
        c = text[i]
        if c == "\n":
            return None
        if c in "'\"":
            j = i + 1
            while j < len(text) and text[j] != c:
                if text[j] in "\\\n":
                    return None
                j += 1
            i = j + 1
            continue
        if c in _CLOSE:
            stack.append(_CLOSE[c])
        elif stack and c == stack[-1]:
            stack.pop()
        elif not stack and c == ")":
            args.append(text[arg:i].strip())
            return args, i + 1
        elif not stack and c == ",":
            args.append(text[arg:i].strip())
            arg = i + 1
        i += 1
    return None


def _key_inline(args: list[str]) -> str | None:
    """key(*args) as a concatenation, or None when it is to stay a call."""
    if not 1 <= len(args) <= 3 or not _KEY_FIRST.match(args[0]):
        return None
    last = _KEY_LAST.match(args[-1])
    if last is None:
        return None
    parts: list[tuple[bool, str]] = [(False, "P")]  # (literal, text)

    def add(literal: bool, value: str) -> None:
        if literal and parts[-1][0]:
            parts[-1] = (True, parts[-1][1] + value)
        else:
            parts.append((literal, value))

    add(True, args[0][1:-1])
    if len(args) == 3:
        add(True, ":")
        add(False, args[1] if _KEY_PLAIN.match(args[1]) else f"({args[1]})")
    if len(args) >= 2:
        add(True, ":" + last.group("lit")[1:-1])
        if last.group("rest"):
            add(False, last.group("rest"))
    return "(" + " .. ".join(f"'{v}'" if lit else v for lit, v in parts) + ")"


@functools.lru_cache(maxsize=256)
def _inline_keys(path: str, text: str) -> str:
    """text with the key() calls it can write out written out (see above)."""
    out, end = [], 0
    tokens = _tokens(text, lambda o: f"lua/{path}")
    for i, (offset, tok) in enumerate(tokens):
        if tok != "key" or (i and tokens[i - 1][1] == "function"):
            continue
        before = text[:offset].rstrip()
        if before.endswith((".", ":")):
            continue
        after = offset + 3
        while after < len(text) and text[after] in " \t":
            after += 1
        if after >= len(text) or text[after] != "(":
            continue
        found = _key_args(text, after)
        inline = found and _key_inline(found[0])
        if found is None or inline is None:
            continue
        out += [text[end:offset], inline]
        end = found[1]
    return "".join(out) + text[end:]


def _declares_key(text: str) -> bool:
    tokens = _tokens(text, lambda o: "")
    return any(tok == "key" and tokens[i - 1][1] in ("function", "local") for i, (_, tok) in enumerate(tokens)
               if i)


def lua_folder() -> Traversable:
    """lua/ as installed in the wheel (redroute/lua), else the source tree's."""
    installed = files("redroute") / "lua"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "lua"


def compose(text: str, folder: Traversable | None = None, *, name: str = "<script>") -> Script:
    """A script as Redis runs it: its includes resolved from lua/ (or
    folder), the functions it never reaches pruned."""
    sources: dict[str, str] = {}
    lines = _resolve(folder or lua_folder(), f"{name}.lua", text, sources, [f"{name}.lua"])
    if _KEY_BASE in sources and not any(_declares_key(t) for p, t in sources.items() if p != _KEY_BASE):
        # (Written out line for line: each line keeps its place.)
        sources = {p: _inline_keys(p, t) for p, t in sources.items()}
        written = {p: t.splitlines() for p, t in sources.items()}
        lines = [(written[p][n - 1], p, n) for _, p, n in lines]
    lines = _prune(lines, sources)
    source = "".join(line[0] + "\n" for line in lines)
    prelude, body, shared = _block(name, lines, sources)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest(),
                  tuple((path, n) for _, path, n in lines), tuple(prelude), tuple(body), tuple(shared))


def load_scripts(folder: Traversable | None = None) -> dict[str, Script]:
    folder = folder or lua_folder()
    out: dict[str, Script] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and entry.is_file():
            name = entry.name[:-4]
            out[name] = compose(entry.read_text(), folder, name=name)
    return out


@dataclass(frozen=True, slots=True)
class Library:
    """Every script as one Redis Functions library (FUNCTION LOAD once,
    FCALL per call). Its name and its functions' names carry a hash of the
    scripts, so two versions of redroute on one Redis each call their own."""

    name: str
    code: str
    functions: dict[str, str]  # script name -> function name
    origins: tuple[tuple[str, int], ...]

    def locate(self, message: str) -> str:
        return Script(self.name, self.code, "", self.origins).locate(message)


def library(scripts: dict[str, Script]) -> Library:
    """scripts as one library: the fragments' library-level locals (each
    once, however many scripts include it), then a do … end block per
    script, its prelude then its function, registered as <script>_<tag>."""
    tag = hashlib.sha1("".join(scripts[n].sha for n in sorted(scripts)).encode()).hexdigest()[:12]
    name = f"redroute_{tag}"
    # The load-time API's register_function, held before any block: a block
    # may declare its own `redis` (base.lua's local of the call's API).
    lines: list[Line] = [(f"#!lua name={name}", "", 0),
                         ("local register_function = redis.register_function", "", 0)]
    seen: set[tuple[str, int]] = set()
    for n in sorted(scripts):
        for text, path, line in scripts[n].shared:
            if (path, line) not in seen:
                seen.add((path, line))
                lines.append((text, path, line))
    functions: dict[str, str] = {}
    for n in sorted(scripts):
        s = scripts[n]
        functions[n] = f"{n}_{tag}"
        here = (f"{n}.lua", 0)
        lines += [("do", *here), *s.prelude,
                  (f"register_function('{functions[n]}', function(KEYS, ARGV)", *here),
                  ("begin_call(KEYS, ARGV)", *here), *s.body, ("end)", *here), ("end", *here)]
    code = "".join(text + "\n" for text, _, _ in lines)
    return Library(name, code, functions, tuple((path, n) for _, path, n in lines))


# Where a Redis without functions (before 7.0) or a library that does not
# load leaves the runner: EVALSHA of each script, as before 7.0.
_NO_FUNCTIONS = ("unknown command", "ERR unknown subcommand")


class ScriptRunner:
    """Calls scripts by name; shared by every Engine of a process.

    On a Redis with functions (7.0 and later, and the embedded backend) a
    call is an FCALL of the script's function in the library (library()),
    loaded on first need: its fragments' functions are made once there,
    not on every call as an EVALSHA script's are. A client that lacks
    FUNCTION, or on which the library does not load, is called by EVALSHA
    instead (logged once)."""

    def __init__(self, scripts: dict[str, Script] | None = None, lib: Library | None = None) -> None:
        """lib: the library of scripts when already composed (library())."""
        self.scripts = scripts or load_scripts()
        self.library = lib or library(self.scripts)
        # Clients known to take FCALL (True) or not (False), and those told
        # to use EVALSHA whatever they take (use_eval).
        self._functions: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._eval_only: weakref.WeakSet[Any] = weakref.WeakSet()
        # Per client and node: a lock and how many loads it has made, so the
        # many calls of one pipelined batch that all meet "Function not
        # found" load the library once (each load blocks Redis ~60 ms).
        self._reloads: weakref.WeakKeyDictionary[Any, dict[str | None, tuple[asyncio.Lock, list[int]]]] = (
            weakref.WeakKeyDictionary())

    def uses_functions(self, redis: Any) -> bool | None:
        return self._functions.get(redis)

    def use_eval(self, redis: Any) -> None:
        """Calls scripts on redis by EVALSHA from now on, as on a Redis
        without functions."""
        self._eval_only.add(redis)
        self._functions[redis] = False

    async def load_all(self, redis: Any) -> None:
        for s in self.scripts.values():
            await redis.script_load(s.source)
        await self.load_library(redis)

    async def load_library(self, redis: Any, key: str | None = None) -> bool:
        """Loads the library on redis (on a cluster, on the node of key, or
        on every primary); whether FCALL can be used there. A library of the
        same name is the same code (the name carries its hash), so one that
        is there already is not compiled again."""
        if redis in self._eval_only:
            return False
        try:
            if key is not None and hasattr(redis, "get_node_from_key"):
                await redis.execute_command("FUNCTION LOAD", self.library.code,
                                            target_nodes=redis.get_node_from_key(key))
            else:
                await redis.function_load(self.library.code)
            ok = True
        except ResponseError as e:
            message = str(e)
            ok = "already exists" in message
            if not ok and not message.startswith(_NO_FUNCTIONS):
                log.warning("redroute's function library did not load (%s); calling scripts by "
                            "EVALSHA", self.library.locate(message))
        self._functions[redis] = ok
        return ok

    def add(self, pipe: Any, redis: Any, name: str, keys: list[str], args: list[Any]) -> None:
        """Queues a call of script name on pipe, a pipeline of redis whose
        scripts and library are loaded (load_all)."""
        if self._functions.get(redis):
            pipe.fcall(self.library.functions[name], len(keys), *keys, *args)
        else:
            pipe.evalsha(self.scripts[name].sha, len(keys), *keys, *args)

    def locate(self, redis: Any, name: str, message: str) -> str:
        if self._functions.get(redis):
            return self.library.locate(message)
        return self.scripts[name].locate(message)

    async def call(self, redis: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        if self._functions.get(redis, True):
            function = self.library.functions[name]
            try:
                try:
                    return await redis.fcall(function, len(keys), *keys, *args)
                except ResponseError as e:
                    if "Function not found" not in str(e) and not str(e).startswith(_NO_FUNCTIONS):
                        raise
                    # A Redis that restarted empty, or failed over, or one
                    # this process has not called yet.
                    if not await self._reload(redis, keys[0] if keys else None):
                        return await self._eval(redis, name, keys, args)
                return await redis.fcall(function, len(keys), *keys, *args)
            except ResponseError as e:
                located = self.library.locate(str(e))
                if located == str(e):
                    raise
                raise type(e)(located) from e
        return await self._eval(redis, name, keys, args)

    def _reload_state(self, redis: Any, key: str | None) -> tuple[asyncio.Lock, list[int]]:
        node = None
        if key is not None and hasattr(redis, "get_node_from_key"):
            try:
                node = redis.get_node_from_key(key).name
            except Exception:  # no topology yet: one state for the client
                node = None
        nodes = self._reloads.setdefault(redis, {})
        if node not in nodes:
            nodes[node] = (asyncio.Lock(), [0])
        return nodes[node]

    async def _reload(self, redis: Any, key: str | None) -> bool:
        """Loads the library for a call that met "Function not found",
        unless another call loads or has loaded it since; whether FCALL can
        be used. (The calls of one batch meet it within a few loop turns,
        well before a load ends.)"""
        lock, loads = self._reload_state(redis, key)
        seen = loads[0]
        async with lock:
            if loads[0] != seen:
                return bool(self._functions.get(redis))
            ok = await self.load_library(redis, key)
            loads[0] += 1
            return ok

    async def _eval(self, redis: Any, name: str, keys: list[str], args: list[Any]) -> Any:
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
