"""What-if variants of the Lua scripts, measured: how much of a script's
time a part of it costs, found by making that part free and measuring again
(Redis 7.0 scripts have no clock to profile with). The variants are built
from the real lua/ sources in memory; lua/ itself is never changed.

  prologue          the script's includes only (all the local functions
                    defined, nothing run): the fixed cost of every call
  task_json free    task_json() returns '{}' (the task JSON built for the
                    events and the reply)
  agent_json free   agent_json() returns '{}' (the agent JSON of
                    AGENT_STATE_CHANGED)
  no XADD           emit() appends nothing (the JSON is still built)
  no events         all three: neither built nor appended
  XADD no MAXLEN    the event XADD without MAXLEN ~

and a counting variant: how many times each Lua function runs per call.
A variant whose anchor is not found (the Lua changed) is skipped, not failed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from harness import RedisCounters, pipelined, task_ids

from redroute.keys import tenant_prefix
from redroute.limits import DAY_MS, DEFAULT_EVENTS_MAXLEN, DEFAULT_RETENTION_MS
from redroute.scripts import Script, load_scripts

MAXLEN, RETENTION = DEFAULT_EVENTS_MAXLEN, DEFAULT_RETENTION_MS


def _first_statement(src: str, fn: str, stmt: str) -> str | None:
    m = re.search(rf"local function {fn}\([^)]*\)\n", src)
    if not m:
        return None
    return src[:m.end()] + f"  {stmt}\n" + src[m.end():]


def _body_start(src: str) -> int:
    return src.rindex("return run(")


def make_variants(src: str) -> dict[str, str | None]:
    v: dict[str, str | None] = {"baseline": src}
    v["prologue"] = src[:_body_start(src)] + "return 1\n"
    v["task_json free"] = _first_statement(src, "task_json", "do return '{}' end")
    v["agent_json free"] = _first_statement(src, "agent_json", "do return '{}' end")
    v["no XADD"] = _first_statement(src, "emit", "do return end")
    s = v["task_json free"] and _first_statement(v["task_json free"], "agent_json", "do return '{}' end")
    v["no events"] = s and _first_statement(s, "emit", "do return end")
    maxlen = "'MAXLEN', '~', MAXLEN, "
    v["XADD no MAXLEN"] = src.replace(maxlen, "") if maxlen in src else None
    return v


def counting(src: str) -> str:
    """Counts the calls of every local function; returns {name, n, …}."""
    names = re.findall(r"local function (\w+)\(", src)
    out = "local __C = {}\n" + src
    for n in set(names):
        out = re.sub(rf"(local function {n}\([^)]*\)\n)",
                     lambda m, n=n: m.group(1) + f"  __C['{n}'] = (__C['{n}'] or 0) + 1\n", out)
    i = out.rindex("return run(")
    out = out[:i] + "local __r = run(" + out[i + len("return run("):]
    out += ("\nlocal __o = {}\nfor k, v in pairs(__C) do __o[#__o + 1] = k; __o[#__o + 1] = v end\n"
            "return __o\n")
    return out


def _script(name: str, source: str) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


class Tenant:
    """A fresh tenant set up with the real scripts."""

    def __init__(self, redis: aioredis.Redis, scripts: dict[str, Script], name: str) -> None:
        self.redis = redis
        self.scripts = scripts
        self.prefix = tenant_prefix(name)

    def add(self, pipe: Any, script: str | Script, *args: Any) -> None:
        s = self.scripts[script] if isinstance(script, str) else script
        pipe.evalsha(s.sha, 1, self.prefix, MAXLEN, RETENTION, *args)

    async def call(self, script: str, *args: Any) -> Any:
        pipe = self.redis.pipeline(transaction=False)
        self.add(pipe, script, *args)
        return (await pipe.execute())[0]

    async def config(self, agents: int, max_requests: int = 4) -> None:
        await self.call("put_mrd", "chat", max_requests, 0, 0, 60000)
        # No steps (A[7..10]), no routeToLastAgent (A[11]): the queue as before skills.
        await self.call("put_queue", "q", "chat", DAY_MS, DAY_MS, "LONGEST_AVAILABLE", 20000,
                        "", "", "", "", "")

        def agent(p: Any, i: int) -> None:
            self.add(p, "put_agent", f"a{i}", '["q"]', "{}", "{}")
            self.add(p, "set_agent_state", f"a{i}", "READY", "", "")

        if agents:
            await pipelined(self.redis, list(range(agents)), agent, 64, 1)


# Each op: (script, setup(tenant, k) -> per-call argument lists)
Setup = Callable[[Tenant, int], Awaitable[list[list[Any]]]]


async def _push_reserves(t: Tenant, k: int) -> list[list[Any]]:
    await t.config(k // 4 + 8)
    return [["q", f"c-{i}", 1, "", "{}", "{}", "INBOUND"] for i in range(k)]


async def _push_parks(t: Tenant, k: int) -> list[list[Any]]:
    await t.config(0)
    return [["q", f"c-{i}", 1, "", "{}", "{}", "INBOUND"] for i in range(k)]


async def _reserved(t: Tenant, k: int) -> list[tuple[str, str, str | None, str]]:
    await t.config(k // 4 + 8)
    replies = await pipelined(t.redis, list(range(k)), lambda p, i: t.add(
        p, "push_task", "q", f"c-{i}", 1, "", "{}", "{}", "INBOUND"), 64, 1)
    return [task_ids(r) for r in replies]


async def _accept(t: Tenant, k: int) -> list[list[Any]]:
    return [[tid, mid, ""] for tid, mid, _, _ in await _reserved(t, k)]


async def _close(t: Tenant, k: int) -> list[list[Any]]:
    ts = await _reserved(t, k)
    await pipelined(t.redis, ts, lambda p, x: t.add(p, "accept_task", x[0], x[1], ""), 64, 1)
    return [[tid, mid] for tid, mid, _, _ in ts]


async def _ready(t: Tenant, k: int) -> list[list[Any]]:
    await t.config(0, max_requests=1)
    await pipelined(t.redis, list(range(k)), lambda p, i: t.add(
        p, "push_task", "q", f"w-{i}", 1, "", "{}", "{}", "INBOUND"), 64, 1)
    await pipelined(t.redis, list(range(k)), lambda p, i: t.add(
        p, "put_agent", f"r{i}", '["q"]', "{}", "{}"), 64, 1)
    return [[f"r{i}", "READY", "", ""] for i in range(k)]


OPS: list[tuple[str, str, Setup]] = [
    ("push_task (reserves)", "push_task", _push_reserves),
    ("push_task (parks)", "push_task", _push_parks),
    ("accept_task", "accept_task", _accept),
    ("close_media (frees the agent)", "close_media", _close),
    ("set_agent_state READY (takes a task)", "set_agent_state", _ready),
]


async def _measure(redis: aioredis.Redis, scripts: dict[str, Script], script: str, variant: Script,
                   setup: Setup, k: int, tag: str) -> float:
    await redis.flushall()
    t = Tenant(redis, scripts, tag)
    calls = await setup(t, k)
    await redis.script_load(variant.source)
    c = RedisCounters(redis)
    await c.start()
    await pipelined(redis, calls, lambda p, a: t.add(p, variant, *a), 32, 1)
    r = await c.stop()
    # Redis' CPU time per call, not the script's wall time: another process
    # taking Redis' core stretches the latter, not the former.
    return r["redis_cpu_s"] * 1e6 / len(calls)


async def run(redis: aioredis.Redis, k: int, reps: int) -> dict[str, Any]:
    scripts = load_scripts()
    for s in scripts.values():
        await redis.script_load(s.source)
    out: dict[str, Any] = {"calls_per_measure": k, "repetitions": reps, "ops": []}
    for label, script, setup in OPS:
        src = scripts[script].source
        row: dict[str, Any] = {"op": label, "script": script, "us": {}, "skipped": []}
        for vname, vsrc in make_variants(src).items():
            if vsrc is None:
                row["skipped"].append(vname)
                continue
            v = _script(script, vsrc)
            # The lowest of `reps` measures: noise only ever adds.
            row["us"][vname] = min([await _measure(redis, scripts, script, v, setup, k, f"wi{r}")
                                    for r in range(reps)])
        base = row["us"]["baseline"]
        row["saved_us"] = {n: base - u for n, u in row["us"].items() if n not in ("baseline", "prologue")}
        # How often each function runs per call.
        c = _script(script, counting(src))
        await redis.flushall()
        t = Tenant(redis, scripts, "count")
        calls = (await setup(t, 20))[:10]
        await redis.script_load(c.source)
        totals: dict[str, float] = {}
        for a in calls:
            pipe = redis.pipeline(transaction=False)
            t.add(pipe, c, *a)
            flat = (await pipe.execute())[0]
            for i in range(0, len(flat), 2):
                totals[flat[i]] = totals.get(flat[i], 0) + int(flat[i + 1]) / len(calls)
        row["calls_per_run"] = dict(sorted(totals.items(), key=lambda x: -x[1]))
        out["ops"].append(row)
    await redis.flushall()
    return out


SHOWN = ("task_json", "agent_json", "emit", "task_save", "task_get", "agent_get", "timer_add",
         "timer_del", "now_ms", "jstr", "key")


def table(r: dict[str, Any]) -> str:
    names = ["baseline", "prologue", "task_json free", "agent_json free", "no XADD", "no events",
             "XADD no MAXLEN"]
    lines = ["    what-if (Redis CPU µs per call; lowest of repeats): " + " | ".join(names)]
    for row in r["ops"]:
        vals = " | ".join(f"{row['us'][n]:.0f}" if n in row["us"] else "-" for n in names)
        lines.append(f"      {row['op']:38} {vals}")
        c = row["calls_per_run"]
        hot = ", ".join(f"{k} x{c[k]:g}" for k in SHOWN if k in c)
        lines.append(f"        calls per run: {hot}")
    return "\n".join(lines)
