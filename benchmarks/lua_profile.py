"""Where a script's time goes, from Redis' own counters.

For each operation, K calls on a fresh tenant, INFO commandstats reset
before: Redis counts the commands a script makes (redis.call) in their own
entries as well as in EVALSHA's, so per call we get how many of each
command it made and their µs, and the rest of EVALSHA's time: Lua itself
(cjson, building JSON strings, tables) plus the cost of crossing from Lua
to Redis on each redis.call. Also the events it appends (count, bytes).

Then micro-benchmarks of the pieces, each a Lua loop inside one EVAL: an
XADD of a task-sized event with and without MAXLEN ~, cjson decode+encode
of a task document, a redis.call round trip of a trivial command, and the
close path's cost as the agent holds more tasks.
"""

from __future__ import annotations

from typing import Any

import lua_whatif
import redis.asyncio as aioredis
from harness import SCRIPT_CALLS, RawScripts, load_scripts, pipelined, task_ids

from redroute import Engine
from redroute.limits import DAY_MS

SKIP = {"config|resetstat", "info", "config", "xlen", "xrevrange"}


async def _stream_bytes(redis: aioredis.Redis, engine: Engine, n: int) -> float:
    if n <= 0:
        return 0.0
    entries = await redis.xrevrange(engine.events_key, "+", "-", count=n)
    return sum(len(f.get("data", "")) + len(f.get("type", "")) for _, f in entries) / max(1, len(entries))


async def profile(redis: aioredis.Redis, name: str, engine: Engine, k: int, build: Any,
                  per: int | None = None) -> dict[str, Any]:
    """Runs build(pipe, i) for i < k (32 per pipeline) and splits the cost.
    per: what to divide by (default k calls)."""
    xlen0 = await redis.xlen(engine.events_key)
    await redis.config_resetstat()
    replies = await pipelined(redis, list(range(k)), build, 32, 1)
    stats = await redis.info("commandstats")
    xlen1 = await redis.xlen(engine.events_key)
    div = per or k
    cmds = {}
    inner_us = 0.0
    inner_calls = 0.0
    ev = {"calls": 0, "usec": 0.0}
    for key, v in stats.items():
        c = key.removeprefix("cmdstat_")
        if c in SKIP:
            continue
        if c in SCRIPT_CALLS:
            ev = {"calls": ev["calls"] + v["calls"], "usec": ev["usec"] + v["usec"]}
            continue
        cmds[c] = {"per_call": v["calls"] / div, "us_per_call": v["usec"] / div,
                   "us_each": v["usec_per_call"]}
        inner_us += v["usec"] / div
        inner_calls += v["calls"] / div
    total = ev["usec"] / div
    events = (xlen1 - xlen0) / div
    return {"op": name, "calls": k, "per": div, "script_us": total, "redis_calls": inner_calls,
            "redis_calls_us": inner_us, "lua_us": total - inner_us,
            "events": events, "event_bytes": await _stream_bytes(redis, engine, int(xlen1 - xlen0)),
            "commands": dict(sorted(cmds.items(), key=lambda x: -x[1]["us_per_call"])),
            "_replies": replies}


async def fresh(redis: aioredis.Redis, tenant: str, agents: int, max_requests: int = 4) -> tuple[Engine, RawScripts]:
    engine = Engine(redis, tenant)
    raw = RawScripts(engine)
    await engine.put_mrd("chat", max_requests=max_requests)
    await engine.put_queue("q", mrd_id="chat", agent_sla_ms=200, agent_request_ttl_ms=DAY_MS)
    if agents:
        await pipelined(redis, list(range(agents)), lambda p, i: (
            raw.add(p, "put_agent", f"a{i}", '["q"]', "{}", "{}"),
            raw.add(p, "set_agent_state", f"a{i}", "READY", "", "")), 64, 1)
    return engine, raw


async def script_profiles(redis: aioredis.Redis, k: int) -> list[dict[str, Any]]:
    await redis.flushall()
    await load_scripts(redis)
    out = []
    e, raw = await fresh(redis, "p-noop", 0)
    out.append(await profile(redis, "noop", e, k, lambda p, i: raw.noop(p)))

    e, raw = await fresh(redis, "p-life", k // 4 + 8)
    out.append(await profile(redis, "push_task (reserves)", e, k,
                             lambda p, i: raw.push(p, f"c-{i}", "q", DAY_MS)))
    tasks = [task_ids(r) for r in out[-1]["_replies"]]
    out.append(await profile(redis, "accept_task", e, k, lambda p, i: raw.accept(p, tasks[i][0], tasks[i][1])))
    out.append(await profile(redis, "close_media (frees the agent)", e, k,
                             lambda p, i: raw.close(p, tasks[i][0], tasks[i][1])))

    e, raw = await fresh(redis, "p-wait", 0)
    out.append(await profile(redis, "push_task (parks in queue)", e, k,
                             lambda p, i: raw.push(p, f"w-{i}", "q", 300)))
    pipe = redis.pipeline(transaction=False)
    for i in range(k):
        raw.add(pipe, "put_agent", f"r{i}", '["q"]', "{}", "{}")
    await pipe.execute()
    out.append(await profile(redis, "set_agent_state READY (takes a waiting task)", e, k,
                             lambda p, i: raw.add(p, "set_agent_state", f"r{i}", "READY", "", "")))

    # Timers: k due TTL deadlines (queued tasks), then k due RONA deadlines.
    e, raw = await fresh(redis, "p-ttl", 0)
    await pipelined(redis, list(range(k)), lambda p, i: raw.push(p, f"t-{i}", "q", 1), 64, 1)
    await _sleep(0.05)
    out.append(await profile(redis, "fire_due TTL (per deadline, 100 per call)", e, (k + 99) // 100,
                             lambda p, i: raw.add(p, "fire_due", 100), per=k))
    e, raw = await fresh(redis, "p-rona", k // 4)
    await pipelined(redis, list(range(k)), lambda p, i: raw.push(p, f"r-{i}", "q", DAY_MS), 64, 1)
    await _sleep(0.3)
    out.append(await profile(redis, "fire_due RONA (per deadline, 100 per call)", e, (k + 99) // 100,
                             lambda p, i: raw.add(p, "fire_due", 100), per=k))
    return out


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


MICRO = {
    "redis.call('EXISTS', key) round trip from Lua": (
        "for i=1,@N@ do redis.call('EXISTS', 'rr:{micro}:x') end return 1"),
    "XADD MAXLEN ~ 1e6, 600 B data": (
        "local d=string.rep('x',600) for i=1,@N@ do redis.call('XADD','rr:{micro}:s1','MAXLEN','~',1000000,"
        "'*','type','TASK_STATE_CHANGED','data',d) end return 1"),
    "XADD no MAXLEN, 600 B data": (
        "local d=string.rep('x',600) for i=1,@N@ do redis.call('XADD','rr:{micro}:s2','*','type',"
        "'TASK_STATE_CHANGED','data',d) end return 1"),
    "cjson.decode + cjson.encode of a task document": (
        "local s=ARGV[1] for i=1,@N@ do local t=cjson.decode(s) s=cjson.encode(t) end return 1"),
    "GET + SET of a 500 B task document": (
        "local s=ARGV[1] for i=1,@N@ do redis.call('SET','rr:{micro}:t',s) "
        "s=redis.call('GET','rr:{micro}:t') end return 1"),
    "TIME + GET clock offset (now_ms)": (
        "for i=1,@N@ do local t=redis.call('TIME') local o=redis.call('GET','rr:{micro}:off') end return 1"),
    "HGETALL of an agent hash (12 fields)": (
        "redis.call('HSET','rr:{micro}:a','st','READY','rc','','t','1','queues','[\"q\"]','attrs','{}',"
        "'max','{}','chat|st','READY','chat|rc','','chat|n','1','chat|t','1','chat|la','1','x','y') "
        "for i=1,@N@ do local h=redis.call('HGETALL','rr:{micro}:a') end return 1"),
}

TASK_DOC = ('{"id":"t-1","requestId":"r-1","conversationId":"c-1","state":"ACTIVE","direction":"INBOUND",'
            '"mode":"QUEUE","queueId":"sales","mrdId":"chat","priority":1,"enqueueTime":1795480000000,'
            '"ttlDeadline":1795480300000,"createdAt":1795480000000,"updatedAt":1795480000123,'
            '"metadata":"{}","assignedTo":"a17","media":[{"id":"m-1","mrdId":"chat","state":"RESERVED",'
            '"queueId":"sales","enqueueTime":1795480000000,"session":"{}"}]}')


async def micro(redis: aioredis.Redis, n: int = 2000) -> dict[str, float]:
    out = {}
    for name, body in MICRO.items():
        src = body.replace("@N@", str(n))
        await redis.config_resetstat()
        await redis.eval(src, 0, TASK_DOC)
        st = (await redis.info("commandstats"))["cmdstat_eval"]
        out[name] = st["usec"] / n
    await redis.delete("rr:{micro}:s1", "rr:{micro}:s2")
    return out


async def close_vs_held(redis: aioredis.Redis, helds: list[int], k: int = 50) -> list[dict[str, Any]]:
    """close_media's cost when the closing agent holds `held` live tasks
    (route_agent reads every task the agent holds)."""
    return [await _close_held(redis, held, k) for held in helds]


async def _close_held(redis: aioredis.Redis, held: int, k: int) -> dict[str, Any]:
    await redis.flushall()
    await load_scripts(redis)
    e, raw = await fresh(redis, f"held-{held}", 1, max_requests=max(held + k, 1))
    replies = await pipelined(redis, list(range(held + k)),
                              lambda p, i: raw.push(p, f"h-{i}", "q", DAY_MS), 64, 1)
    ts = [task_ids(r) for r in replies][:k]
    await pipelined(redis, ts, lambda p, t: raw.accept(p, t[0], t[1]), 64, 1)
    r = await profile(redis, f"close_media, agent holds {held + k}..{held + 1}", e, k,
                      lambda p, i: raw.close(p, ts[i][0], ts[i][1]))
    return {"held": held, "script_us": r["script_us"], "redis_calls": r["redis_calls"]}


async def push_vs_conversation(redis: aioredis.Redis, sizes: list[int], k: int = 50) -> list[dict[str, Any]]:
    """push_task's cost (it reserves) when its conversation already has n
    closed tasks (kept for the retention period: re-routes, transfers,
    conferences and earlier requests of the conversation all add some)."""
    return [await _push_conv(redis, n, k) for n in sizes]


async def _push_conv(redis: aioredis.Redis, n: int, k: int) -> dict[str, Any]:
    await redis.flushall()
    await load_scripts(redis)
    e, raw = await fresh(redis, f"conv-{n}", k // 4 + 8)
    for _ in range(n):
        replies = await pipelined(redis, list(range(k)), lambda p, j: raw.push(p, f"conv-{j}", "q", DAY_MS),
                                  64, 1)
        ids = [task_ids(r)[0] for r in replies]
        await pipelined(redis, ids, lambda p, tid: raw.add(p, "set_task_state", tid, "CLOSED", "CANCELLED"),
                        64, 1)
    r = await profile(redis, f"push_task, {n} closed tasks in the conversation", e, k,
                      lambda p, j: raw.push(p, f"conv-{j}", "q", DAY_MS))
    return {"closed_in_conversation": n, "script_us": r["script_us"], "redis_calls": r["redis_calls"],
            "gets": r["commands"].get("get", {}).get("per_call", 0.0)}


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True)
    try:
        scripts = await script_profiles(redis, 200 if quick else 1000)
        m = await micro(redis, 500 if quick else 3000)
        held = await close_vs_held(redis, [0, 10, 100] if quick else [0, 10, 100, 900])
        conv = await push_vs_conversation(redis, [0, 10] if quick else [0, 3, 10, 30])
        whatif = await lua_whatif.run(redis, 100 if quick else 500, 1 if quick else 3)
        await redis.flushall()
    finally:
        await redis.aclose()
    for x in scripts:
        x.pop("_replies", None)
    return {"scripts": scripts, "micro_us": m, "close_vs_held": held, "push_vs_conversation": conv,
            "whatif": whatif}


def table(r: dict[str, Any]) -> str:
    lines = [f"    {'script':46} {'µs':>7} {'calls':>6} {'in calls':>8} {'Lua+glue':>8} {'events':>6} {'B/event':>7}"]
    for s in r["scripts"]:
        lines.append(f"    {s['op']:46} {s['script_us']:7.1f} {s['redis_calls']:6.1f} {s['redis_calls_us']:8.1f} "
                     f"{s['lua_us']:8.1f} {s['events']:6.1f} {s['event_bytes']:7.0f}")
        top = list(s["commands"].items())[:6]
        if top:
            lines.append("      " + ", ".join(f"{c} x{v['per_call']:.1f} {v['us_per_call']:.1f}µs" for c, v in top))
    lines.append("    micro (µs each, inside one EVAL):")
    for k, v in r["micro_us"].items():
        lines.append(f"      {k:52} {v:6.2f}")
    lines.append("    close_media vs tasks the agent holds: " + ", ".join(
        f"{h['held']}: {h['script_us']:.0f} µs ({h['redis_calls']:.0f} calls)" for h in r["close_vs_held"]))
    lines.append("    push_task (reserves) vs closed tasks already in its conversation: " + ", ".join(
        f"{c['closed_in_conversation']}: {c['script_us']:.0f} µs ({c['gets']:.0f} GETs)"
        for c in r["push_vs_conversation"]))
    lines.append(lua_whatif.table(r["whatif"]))
    return "\n".join(lines)
