"""The script loader (redroute.scripts): includes, pruning of the functions a
script never reaches, what it refuses, and errors reported at their source
file and line."""

from __future__ import annotations

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
