"""The key schema has one Python home (redroute.keys) that agrees with the
keys the Lua headers declare and the scripts build, and one helper per key
encoding that agrees with Lua's."""

from __future__ import annotations

import inspect
import re

import pytest

from redroute import keys
from redroute.engine import Engine
from redroute.scripts import compose, lua_folder

# A declared key: a header line that starts with it ("Keys:" allowed first).
_DECLARED = re.compile(r"^\s*(?:Keys:\s*)?(rr:\S+)\s", re.MULTILINE)
_HEADER = re.compile(r"\A(?:--- @include[^\n]*\n)*--\[\[(.*?)\]\]", re.DOTALL)
# A key() call in a body: key('q', qid, 'waiting') -> q:<>:waiting
_KEY_CALL = re.compile(r"\bkey\(('[^)]*)\)")


def _lua_files() -> dict[str, str]:
    root = lua_folder()
    files = {e.name: e.read_text() for e in root.iterdir() if e.name.endswith(".lua")}
    files |= {f"includes/{e.name}": e.read_text() for e in (root / "includes").iterdir()
              if e.name.endswith(".lua")}
    return files


def _normal(pattern: str) -> str:
    return re.sub(r"<[^>]*>", "<>", pattern)


def _lua_declared() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, text in _lua_files().items():
        header = _HEADER.match(text)
        assert header, f"lua/{name} has no header"
        for k in _DECLARED.findall(header.group(1)):
            assert _normal(k) not in out, f"{k} declared in lua/{name} and lua/{out[_normal(k)]}"
            out[_normal(k)] = name
    return out


def _python_tenant_patterns() -> set[str]:
    """Every key TenantKeys names, with <> for its id."""
    k = keys.TenantKeys.of("t")
    out = set()
    for name, member in vars(keys.TenantKeys).items():
        if isinstance(member, property):
            out.add(getattr(k, name))
        elif inspect.isfunction(member) and not name.startswith("_"):
            n = len(inspect.signature(member).parameters) - 1
            out.add(getattr(k, name)(*["<>"] * n))
    return out


def test_lua_headers_and_keys_py_declare_the_same_tenant_keys():
    lua = {p for p in _lua_declared() if p.startswith("rr:{t}:")}
    py = _python_tenant_patterns()
    assert sorted(lua - py) == [], "declared in Lua, missing from redroute/keys.py"
    assert sorted(py - lua) == [], "in redroute/keys.py, declared in no Lua header"


def test_global_keys_the_scripts_use_are_in_keys_py():
    lua = {p for p in _lua_declared() if not p.startswith("rr:{t}:")}
    assert lua == {keys.WAKE_CHANNEL}
    assert {keys.TENANTS, keys.WAKE_CHANNEL, keys.HEARTBEAT} <= {
        v for n, v in vars(keys).items() if n.isupper()}


def _key_part(arg: str) -> str:
    """A key() argument as a pattern: 'waiting' as is, an id as <>, and
    'waiting:' .. k (a numbered key, e.g. per step) as waiting:<>."""
    m = re.fullmatch(r"'([^']*)'\s*\.\.\s*[\w.]+", arg)
    if m:
        return m.group(1) + "<>"
    return arg.strip("'") if arg.startswith("'") else "<>"


def test_every_key_a_script_builds_is_declared():
    declared = set(_lua_declared())
    for name, text in _lua_files().items():
        for args in _KEY_CALL.findall(text):
            parts = [a.strip() for a in args.split(",")]
            pattern = "rr:{t}:" + ":".join(_key_part(p) for p in parts)
            assert pattern in declared, f"lua/{name}: key({args}) is declared in no header"


@pytest.mark.parametrize("task_id", ["t-1", "t-10", "t-900", "t-123456789012345"])
async def test_waiting_members_encode_like_lua(redis, task_id):
    src = compose('--- @include "includes/routing"\n'
                  "return {wait_member({id = A[1]}), member_task_id(A[2])}").source
    member = keys.waiting_member(task_id)
    lua_member, lua_id = await redis.eval(src, 1, "rr:{t}:", 1000, 1000, task_id, member)
    assert lua_member == member
    assert lua_id == keys.waiting_task_id(member) == task_id


async def test_engine_keys_name_what_the_scripts_write(engine: Engine):
    await engine.put_mrd("chat")
    await engine.put_queue("q", mrd_id="chat")
    t = await engine.push_task("c-1", "q")
    k, r = engine.keys, engine.redis
    assert await r.zrange(k.q_waiting("q"), 0, -1) == [keys.waiting_member(t.id)]
    assert await r.zrange(k.timers, 0, -1) == [keys.timer_member("ttl", t.id)]
    assert await r.sismember(k.live, t.id)
    assert await r.exists(k.task(t.id), k.conv("c-1"), k.mrd("chat"), k.queue("q"), k.events) == 5
    assert [x async for x in r.scan_iter(match=keys.task_match(k))] == [k.task(t.id)]
    assert keys.task_id_of_key(k, k.task(t.id)) == t.id


def test_a_wake_key_names_its_tenant():
    assert keys.tenant_of_timer_key(keys.TenantKeys.of("acme").tmr_wake) == "acme"
    assert keys.tenant_of_timer_key(keys.TenantKeys.of("acme").task("t-1")) is None
    assert keys.tenant_of_timer_key(b"rr:{acme}:tmr:wake") is None
