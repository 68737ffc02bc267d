"""The script loader (redroute.scripts): includes, pruning of the functions a
script never reaches, what it refuses, and errors reported at their source
file and line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.exceptions import ResponseError

from redroute.scripts import ScriptError, ScriptRunner, compose, load_scripts


def lua_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def functions_in(source: str) -> list[str]:
    return [line.split()[2].split("(")[0] for line in source.splitlines()
            if line.startswith("local function ")]


def test_an_include_is_replaced_by_the_fragment_once_per_script(tmp_path):
    root = lua_tree(tmp_path, {
        "includes/a.lua": "local A = 1\n",
        "includes/b.lua": '--- @include "a"\nlocal B = A + 1\n',
        "includes/c.lua": '--- @include "a"\nlocal C = A + 2\n',
    })
    s = compose('--- @include "includes/b"\n--- @include "includes/c"\nreturn B + C\n', root)
    assert s.source == "local A = 1\nlocal B = A + 1\nlocal C = A + 2\nreturn B + C\n"


def test_functions_the_script_never_reaches_are_pruned(tmp_path):
    root = lua_tree(tmp_path, {"includes/f.lua": (
        "local function leaf()\n  return 1\nend\n"
        "local function used()\n  return leaf()\nend\n"
        "local function unused()\n  return leaf()\nend\n")})
    s = compose('--- @include "includes/f"\nreturn used()\n', root)
    assert functions_in(s.source) == ["leaf", "used"]


def test_one_line_functions_are_delimited(tmp_path):
    root = lua_tree(tmp_path, {"includes/f.lua": (
        "local function one(x) return x end\n"
        "local function two(x)\n  if x then return 'end' end -- the end\n  return 2\nend\n"
        "local function three(x) if x then return 3 end return nil end\n")})
    assert functions_in(compose('--- @include "includes/f"\nreturn one(1)\n', root).source) == ["one"]
    s = compose('--- @include "includes/f"\nreturn {two(true), three(true)}\n', root)
    assert functions_in(s.source) == ["two", "three"]
    assert "return 'end' end -- the end" in s.source


def test_blocks_strings_and_comments_do_not_end_a_function_early(tmp_path):
    body = ("local function f(t)\n"
            "  for i = 1, 2 do\n    while false do end\n  end\n"
            "  repeat local x = 1 until true\n"
            "  local s = [[\nend\n]] .. \"end\" .. 'end'\n"
            "  --[[\nend\n]]\n"
            "  return function() return s end\n"
            "end\n"
            "local function g() return 1 end\n")
    root = lua_tree(tmp_path, {"includes/f.lua": body})
    s = compose('--- @include "includes/f"\nreturn g()\n', root)
    assert s.source == "local function g() return 1 end\nreturn g()\n"


def test_code_after_a_function_end_on_its_line_is_refused(tmp_path):
    root = lua_tree(tmp_path, {"includes/f.lua": "local x = 0\nlocal function f() return 1 end x = 2\n"})
    with pytest.raises(ScriptError, match=r"lua/includes/f\.lua:2: code after the end of function f"):
        compose('--- @include "includes/f"\nreturn f()\n', root)


def test_a_function_with_no_end_is_refused(tmp_path):
    root = lua_tree(tmp_path, {"includes/f.lua": "\nlocal function f()\n  return 1\n"})
    with pytest.raises(ScriptError, match=r"lua/includes/f\.lua:2: function f has no end"):
        compose('--- @include "includes/f"\nreturn f()\n', root)


def test_an_include_cycle_is_refused(tmp_path):
    root = lua_tree(tmp_path, {
        "includes/a.lua": '--- @include "b"\nlocal A = 1\n',
        "includes/b.lua": 'local B = 1\n--- @include "a"\n',
    })
    with pytest.raises(ScriptError, match=r"lua/includes/b\.lua:2: include cycle "
                                          r"includes/a\.lua -> includes/b\.lua -> includes/a\.lua"):
        compose('--- @include "includes/a"\nreturn A\n', root)


def test_a_missing_include_is_refused_at_its_line(tmp_path):
    with pytest.raises(ScriptError, match=r"lua/s\.lua:2: cannot include 'includes/nope'"):
        compose('local x = 1\n--- @include "includes/nope"\n', lua_tree(tmp_path, {}), name="s")


ERRORS = {
    "includes/f.lua": "local function helper(t)\n  local x = 1\n  return t.missing.field\nend\n",
    "runtime.lua": '-- header\n--- @include "includes/f"\nreturn helper({})\n',
    "raised.lua": "local x = 1\nlocal y = 2\nerror('boom')\n",
    "broken.lua": '--- @include "includes/f"\nlocal x = helper\nlocal y = = 2\nreturn x\n',
    "unclosed.lua": 'local x = 1\nreturn (\n',
}


@pytest.mark.parametrize(("script", "where"), [
    ("runtime", "includes/f.lua:3"),
    ("raised", "raised.lua:3"),
    ("broken", "broken.lua:3"),
    ("unclosed", "unclosed.lua:3"),  # Lua reports the end of the file: the line after the last
])
async def test_an_error_names_the_source_file_and_line(redis, tmp_path, script, where):
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, ERRORS)))
    with pytest.raises(ResponseError) as err:
        await runner.call(redis, script, ["rr:{t}:"], [])
    assert f"lua/{where}" in str(err.value)  # where, under lua/


def test_every_script_of_lua_composes():
    scripts = load_scripts()
    assert "push_task" in scripts
    for s in scripts.values():
        assert len(s.origins) == len(s.source.splitlines())


# The function library: every script one function, loaded once (FUNCTION
# LOAD), called by FCALL; EVALSHA where functions are missing.

STATE = {
    "includes/s.lua": ("local SEEN = {}\nlocal NOW\nlocal COUNT = 0\n"
                       "local function see(x)\n  SEEN[#SEEN + 1] = x\n  NOW = NOW or x\n"
                       "  COUNT = COUNT + 1\n  return #SEEN\nend\n"),
    "seen.lua": '--- @include "includes/s"\nsee(ARGV[1])\nreturn {see(ARGV[1]), NOW, COUNT, KEYS[1]}\n',
}


async def test_every_script_is_a_function_of_one_library(redis):
    runner = ScriptRunner()
    await runner.load_all(redis)
    assert runner.uses_functions(redis) is True
    listed = str(await redis.function_list(library=runner.library.name))
    assert all(f in listed for f in runner.library.functions.values())
    assert set(runner.library.functions) == set(runner.scripts)


async def test_a_call_starts_with_the_fragments_state_as_the_script_does(redis, tmp_path):
    # Top-level statements other than functions run on every call: a second
    # call sees none of the first one's state.
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, STATE)))
    for n in ("1", "2"):
        assert await runner.call(redis, "seen", ["k"], [n]) == [2, n, 2, "k"]
    assert runner.uses_functions(redis) is True


KEPT = {
    "includes/k.lua": ("--- @library\nlocal KEPT = {n = 0,\n  start = 0}\nlocal CALLS = 0\n"
                       "local function keep()\n  KEPT.n = KEPT.n + 1\n  CALLS = CALLS + 1\n"
                       "  return KEPT.n\nend\n"),
    "kept.lua": '--- @include "includes/k"\nreturn {keep(), CALLS}\n',
    "also.lua": '--- @include "includes/k"\nreturn {keep(), CALLS}\n',
}


async def test_a_local_marked_library_is_made_once_and_kept_between_calls(redis, tmp_path):
    # ... by every script that includes it: one local of the library.
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, KEPT)))
    assert runner.library.code.count("local KEPT = {n = 0,") == 1
    assert await runner.call(redis, "kept", ["k"], []) == [1, 1]
    assert await runner.call(redis, "also", ["k"], []) == [2, 1]
    assert await runner.call(redis, "kept", ["k"], []) == [3, 1]


async def test_a_local_marked_library_lives_one_call_under_evalsha(redis, tmp_path):
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, KEPT)))
    old = NoFunctions(redis)
    for _ in range(2):
        assert await runner.call(old, "kept", ["k"], []) == [1, 1]


def test_a_library_marker_not_followed_by_a_top_level_local_is_refused(tmp_path):
    root = lua_tree(tmp_path, {"includes/k.lua": "--- @library\nKEPT = {}\n",
                               "kept.lua": '--- @include "includes/k"\nreturn 1\n'})
    with pytest.raises(ScriptError, match="includes/k.lua:2"):
        load_scripts(root)


async def test_a_flushed_library_is_loaded_again_on_first_use(redis, tmp_path):
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, STATE)))
    assert await runner.call(redis, "seen", ["k"], ["1"]) == [2, "1", 2, "k"]
    await redis.function_flush()
    assert await runner.call(redis, "seen", ["k"], ["1"]) == [2, "1", 2, "k"]


class NoFunctions:
    """A client of a Redis before 7.0: no FUNCTION, no FCALL."""

    def __init__(self, redis):
        self.redis = redis

    def __getattr__(self, name):
        return getattr(self.redis, name)

    async def fcall(self, *args):
        raise ResponseError("unknown command 'FCALL', with args beginning with: ")

    async def function_load(self, *args, **kwargs):
        raise ResponseError("unknown command 'FUNCTION', with args beginning with: 'LOAD'")


async def test_a_redis_without_functions_is_called_by_evalsha(redis, tmp_path):
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, STATE)))
    old = NoFunctions(redis)
    assert await runner.call(redis=old, name="seen", keys=["k"], args=["1"]) == [2, "1", 2, "k"]
    assert runner.uses_functions(old) is False
    assert await runner.call(old, "seen", ["k"], ["2"]) == [2, "2", 2, "k"]


async def test_a_library_that_does_not_load_falls_back_to_evalsha_and_says_where(redis, tmp_path, caplog):
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, {**STATE, **ERRORS})))
    assert await runner.call(redis, "seen", ["k"], ["1"]) == [2, "1", 2, "k"]
    assert runner.uses_functions(redis) is False
    broken = "broken.lua:3"  # (a file of tmp_path's tree)
    assert f"lua/{broken}" in caplog.text


async def test_an_error_in_a_function_names_the_source_file_and_line(redis, tmp_path):
    files = {k: v for k, v in ERRORS.items() if k not in ("broken.lua", "unclosed.lua")}
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, files)))
    for script, where in (("runtime", "includes/f.lua:3"), ("raised", "raised.lua:3")):
        with pytest.raises(ResponseError) as err:
            await runner.call(redis, script, ["rr:{t}:"], [])
        assert f"lua/{where}" in str(err.value)
    assert runner.uses_functions(redis) is True


async def test_calls_that_meet_a_missing_library_together_load_it_once(redis, tmp_path):
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, STATE)))
    assert await runner.call(redis, "seen", ["k"], ["1"]) == [2, "1", 2, "k"]
    await redis.function_flush()
    loads = 0
    load = runner.load_library

    async def counted(*args, **kwargs):
        nonlocal loads
        loads += 1
        return await load(*args, **kwargs)

    runner.load_library = counted
    results = await asyncio.gather(*(runner.call(redis, "seen", ["k"], [str(i)]) for i in range(20)))
    assert results == [[2, str(i), 2, "k"] for i in range(20)]
    assert loads == 1


# "--- @once": statements of a fragment the library runs once, when it
# loads (constant tables, the AT_END registrations); a script runs them on
# every call as before.

ONCE = {
    "includes/o.lua": ("local HOOKS = {}\n--- @once\nlocal DONE = {}\n\n--- @once\n"
                       "DONE[#DONE + 1] = function()\n  return 1\nend\n\nlocal CALLS = {}\n"),
    "hooks.lua": '--- @include "includes/o"\nCALLS[#CALLS + 1] = ARGV[1]\nreturn {#DONE, #CALLS}\n',
}


async def test_what_a_fragment_marks_once_runs_once_in_the_library_and_per_call_in_a_script(redis, tmp_path):
    scripts = load_scripts(lua_tree(tmp_path, ONCE))
    prelude = [text for text, _, _ in scripts["hooks"].prelude]
    begin = prelude.index("local function begin_call(keys, args)")
    assert prelude.index("DONE = {}") < begin < prelude.index("CALLS = {}")
    assert prelude.index("DONE[#DONE + 1] = function()") < begin
    runner = ScriptRunner(scripts)
    old = NoFunctions(redis)
    for n in ("1", "2"):
        assert await runner.call(redis, "hooks", ["k"], [n]) == [1, 1]
        assert await runner.call(old, "hooks", ["k"], [n]) == [1, 1]
    assert runner.uses_functions(redis) is True
    assert runner.uses_functions(old) is False


@pytest.mark.parametrize(("fragment", "message"), [
    ("--- @once\nlocal function f() return 1 end\n", r"o\.lua:1: @once marks a function"),
    ("--- @once\n\nlocal X = 1\n", r"o\.lua:1: @once marks no statement"),
    ("--- @once\nlocal F = function()\n\n  return 1\nend\n", r"o\.lua:1: the statements @once marks do not close"),
])
def test_what_once_cannot_mark_is_refused(tmp_path, fragment, message):
    root = lua_tree(tmp_path, {"includes/o.lua": fragment})
    with pytest.raises(ScriptError, match=message):
        compose('--- @include "includes/o"\nreturn 1\n', root, name="s")


def test_a_script_marks_nothing_once(tmp_path):
    with pytest.raises(ScriptError, match=r"lua/s\.lua:1: @once is for fragments"):
        compose('--- @once\nlocal X = {}\n\nreturn X\n', lua_tree(tmp_path, {}), name="s")


def test_every_deferred_work_of_lua_is_registered_once():
    # A registration run per call would add to AT_END on every call of the
    # library: each is marked @once, as is the list itself.
    from redroute.scripts import _once_lines, lua_folder

    folder = lua_folder()
    seen = 0
    for entry in (folder / "includes").iterdir():
        text = entry.read_text()
        once = _once_lines(f"includes/{entry.name}", text)
        for n, line in enumerate(text.splitlines(), 1):
            if line.startswith(("AT_END", "local AT_END")):
                seen += 1
                assert n in once, f"lua/includes/{entry.name}:{n}"
    assert seen >= 5


async def test_istr_memo_is_kept_between_calls_and_stays_bounded(redis):
    # istr's memo (base, @library) is kept between calls: the same
    # strings come back, and it never holds more than ISTR_MAX entries.
    text = ('--- @include "includes/base"\n'
            "local out = {}\n"
            "for i = 1, 300 do out[i] = istr(i * 1000003 + tonumber(A[1])) end\n"
            "out[#out + 1] = istr('12') .. istr(12) .. istr(1796380509689)\n"
            "out[#out + 1] = ISTR_N\n"
            "return out\n")
    runner = ScriptRunner({"memo": compose(text, name="memo")})
    for first in ("0", "7"):
        got = await runner.call(redis, "memo", ["rr:{t}:"], ["", "", first])
        assert got[:300] == [str(i * 1000003 + int(first)) for i in range(1, 301)]
        assert got[300] == "12121796380509689"
        assert 0 < got[301] <= 256


async def test_agent_memos_are_kept_between_calls_and_stay_bounded(redis):
    # agent's memos (@library): decoded queues/max by JSON text, counts by
    # their text; the same values come back from the second call, a decoded
    # list is one table for one text, and neither holds more than 256.
    text = ('--- @include "includes/agent"\n'
            "local out = {}\n"
            "for i = 1, 300 do\n"
            "  local s = tostring(i + tonumber(A[1]))\n"
            "  out[#out + 1] = agent_count(s) + (AGENT_COUNT[s] or 0)\n"
            "  out[#out + 1] = agent_decoded('[\"q' .. s .. '\"]')[1]\n"
            "end\n"
            "out[#out + 1] = tostring(agent_decoded('[\"x\"]') == agent_decoded('[\"x\"]'))\n"
            "out[#out + 1] = AGENT_COUNT_N\n"
            "out[#out + 1] = AGENT_DECODED_N\n"
            "return out\n")
    runner = ScriptRunner({"memo": compose(text, name="memo")})
    for first in ("0", "0", "9"):
        got = await runner.call(redis, "memo", ["rr:{t}:"], ["", "", first])
        n = int(first)
        assert got[:600:2] == [2 * (i + n) for i in range(1, 301)]
        assert got[1:600:2] == [f"q{i + n}" for i in range(1, 301)]
        assert got[600] == "true"
        assert 0 < got[601] <= 256 and 0 < got[602] <= 256


GLOBALS_AS_LOCALS = {
    "includes/g.lua": ("local G = _G\n"
                       "local redis, tonumber = G.redis, G.tonumber\n"
                       "local function get(k) return redis.call('GET', k) end\n"),
    "g.lua": '--- @include "includes/g"\nreturn {get(KEYS[1]) or "none", tonumber(ARGV[1]) + 1}\n',
}


async def test_a_fragment_may_declare_its_own_redis_in_the_library_and_under_evalsha(redis, tmp_path):
    # A block declaring `redis` (as base does, for the call's API) still
    # registers its function: the library takes register_function first.
    runner = ScriptRunner(load_scripts(lua_tree(tmp_path, GLOBALS_AS_LOCALS)))
    await redis.set("gk", "v")
    assert await runner.call(redis, "g", ["gk"], ["1"]) == ["v", 2]
    assert runner.uses_functions(redis) is True
    assert await ScriptRunner(load_scripts(tmp_path)).call(NoFunctions(redis), "g", ["nk"], ["4"]) == ["none", 5]


# key() written out as a concatenation where it cannot change what it gives.

KEY_BASE = ("local P = KEYS[1]\n"
            "local function key(a, b, c)\n"
            "  if c then return P .. a .. ':' .. b .. ':' .. c end\n"
            "  if b then return P .. a .. ':' .. b end\n"
            "  return P .. a\nend\n")


def test_key_calls_with_quoted_ends_are_written_out(tmp_path):
    root = lua_tree(tmp_path, {"includes/base.lua": KEY_BASE})
    body = ('--- @include "includes/base"\n'
            "local k, id, t = 'x', 'a1', {id = 'q1', n = 2}\n"
            "-- key('in', 'a comment') stays\n"
            "local s = \"key('in', 'a string')\"\n"
            "return {key('events'), key(\"tmr\", 'wake'), key('q', t.id, 'avail:' .. t.n),\n"
            "  key('q', k == 'x' and 'y' or 'z', 'w'), key('agent', id), key(k), key('agent', id,\n"
            "  'tasks'), s}\n")
    s = compose(body, root, name="s")
    lines = s.source.splitlines()
    assert len(lines) == len(s.origins)
    assert ("return {(P .. 'events'), (P .. 'tmr:wake'), (P .. 'q:' .. t.id .. ':avail:' .. t.n),"
            in s.source)
    assert "(P .. 'q:' .. (k == 'x' and 'y' or 'z') .. ':w'), key('agent', id), key(k), key('agent', id," in s.source
    assert "-- key('in', 'a comment') stays" in s.source
    assert "local s = \"key('in', 'a string')\"" in s.source


async def test_written_out_keys_are_the_keys_key_makes(redis, tmp_path):
    root = lua_tree(tmp_path, {"includes/base.lua": KEY_BASE})
    body = ('--- @include "includes/base"\n'
            "local t, n = {id = 'q1', step = 3}, 4\n"
            "return {key('events'), key('tmr', 'wake'), key('q', t.id, 'waiting:' .. t.step),\n"
            "  key('st', t.id, 'h' .. n), key('q', t.id, 'avail:' .. 1), key('agent', t.id)}\n")
    runner = ScriptRunner({"s": compose(body, root, name="s")})
    assert await runner.call(redis, "s", ["rr:{t}:"], []) == [
        "rr:{t}:events", "rr:{t}:tmr:wake", "rr:{t}:q:q1:waiting:3", "rr:{t}:st:q1:h4",
        "rr:{t}:q:q1:avail:1", "rr:{t}:agent:q1"]


def test_a_script_with_its_own_key_keeps_its_calls(tmp_path):
    root = lua_tree(tmp_path, {"includes/base.lua": KEY_BASE})
    body = ('--- @include "includes/base"\n'
            "local function key(a) return a end\n"
            "return key('events')\n")
    assert "return key('events')" in compose(body, root, name="s").source
