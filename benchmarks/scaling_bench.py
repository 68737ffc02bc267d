"""Scaling: the cost of one routing decision as the waiting tasks and the
agents grow, and the Redis memory each waiting task and each agent takes.

* waiting tasks W (100 … 100k): the decision is an agent's READY that takes
  the best waiting task (set_agent_state -> route_agent -> reserve). Each
  round: K agents go READY (measured); then (not measured) they go
  NOT_READY, the tasks they took are closed and as many new ones queued, so
  W stays put and every round takes tasks of fresh conversations (a
  conversation's closed tasks are read by every decision about it: see
  lua_profile's "push vs closed tasks in the conversation"). Also the cost
  of a push that parks a task in the queue.
* agents A (10 … 10k), all READY with spare capacity, nothing waiting: the
  decision is a push that reserves the best agent at once.

Cost = Redis-side µs per call: INFO commandstats (the script's run time) and
INFO cpu (the redis-server process's CPU, parsing and replies included),
the lowest of several rounds (medians are kept beside). Tasks and agents are loaded with pipelined calls.
Memory: INFO used_memory before/after loading each level, split into the
event stream (MEMORY USAGE of the stream key) and the rest (state).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from harness import RawScripts, RedisCounters, load_scripts, pipelined

from redroute import Engine
from redroute.limits import DAY_MS


async def used_memory(redis: aioredis.Redis, engine: Engine) -> tuple[int, int]:
    info = await redis.info("memory")
    stream = await redis.memory_usage(engine.events_key, samples=0) or 0
    return int(info["used_memory"]), int(stream)


async def round_cost(redis: aioredis.Redis, send: Any) -> dict[str, float]:
    c = RedisCounters(redis)
    await c.start()
    n = await send()
    r = await c.stop()
    return {"script_us": r["script_usec_per_call"], "redis_cpu_us": r["redis_cpu_s"] * 1e6 / n}


def median_cost(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """script_us/redis_cpu_us: the lowest round (a round's average is only
    ever pushed up, by other processes taking Redis' core); medians beside."""
    return {"script_us": min(r["script_us"] for r in rounds),
            "redis_cpu_us": min(r["redis_cpu_us"] for r in rounds),
            "script_us_median": statistics.median(r["script_us"] for r in rounds),
            "redis_cpu_us_median": statistics.median(r["redis_cpu_us"] for r in rounds),
            "rounds": rounds}


def mem_delta(before: tuple[int, int], after: tuple[int, int], n: int) -> dict[str, float]:
    total = (after[0] - before[0]) / n
    stream = (after[1] - before[1]) / n
    return {"bytes_total": total, "bytes_stream": stream, "bytes_state": total - stream, "added": n}


async def one_queue(engine: Engine) -> None:
    """The plain configuration: MRD chat (maxRequests 1), queue q, strict priority."""
    await engine.put_mrd("chat", max_requests=1)
    await engine.put_queue("q", mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS)


def push_to_q(raw: RawScripts, pipe: Any, cid: str, i: int) -> None:
    raw.push(pipe, cid, "q")


async def waiting_sweep(redis: aioredis.Redis, levels: list[int], rounds: int,
                        k_max: int, settle: float, *,
                        configure: Callable[[Engine], Awaitable[None]] = one_queue,
                        queues: tuple[str, ...] = ("q",),
                        add_task: Callable[[RawScripts, Any, str, int], None] = push_to_q,
                        tenant: str = "scale-w") -> list[dict[str, Any]]:
    """configure: the tenant's MRDs and queues; queues: those every agent
    serves (the waiting tasks are spread over them by add_task(raw, pipe, cid, i))."""
    await redis.flushall()
    await load_scripts(redis)
    engine = Engine(redis, tenant)
    raw = RawScripts(engine)
    await configure(engine)
    k_all = k_max
    pipe = redis.pipeline(transaction=False)
    for i in range(k_all):
        raw.add(pipe, "put_agent", f"d{i}", json.dumps(list(queues)), "{}", "{}")
    await pipe.execute()
    out = []
    loaded = 0
    for w in levels:
        before = await used_memory(redis, engine)
        await pipelined(redis, list(range(loaded, w)), lambda p, i: add_task(raw, p, f"w-{i}", i), 128, 4)
        mem = mem_delta(before, await used_memory(redis, engine), w - loaded)
        loaded = w
        await asyncio.sleep(settle)  # let Redis finish growing its tables (incremental rehash)
        k = max(10, min(k_max, w // 2))
        agents = [f"d{i}" for i in range(k)]

        async def ready(agents: list[str] = agents) -> int:
            pipe = redis.pipeline(transaction=False)
            for a in agents:
                raw.add(pipe, "set_agent_state", a, "READY", "", "")
            replies = await pipe.execute()
            if any('"activeTasks":1' not in r for r in replies):
                raise RuntimeError("waiting sweep: an agent did not take a task")
            return len(agents)

        ready_rounds = []
        for r in range(rounds):
            ready_rounds.append(await round_cost(redis, ready))
            # Reset, not measured: each agent goes NOT_READY (pending while it
            # holds its task), its task is closed (the agent is NOT_READY then,
            # so it takes nothing), and as many new tasks join the queue's tail:
            # the next round takes the next tasks, of fresh conversations.
            pipe, held = await raw.release_agents(agents)
            for i in range(len(held)):
                add_task(raw, pipe, f"w-{w}-{r}-{i}", i)
            await pipe.execute()
        waiting = sum([await redis.zcard(engine.keys.q_waiting(q)) for q in queues])
        if waiting != w:
            raise RuntimeError(f"waiting sweep: {waiting} tasks wait, expected {w}")

        push_rounds = []
        for r in range(rounds):
            async def push(r: int = r, w: int = w, k: int = k) -> int:
                pipe = redis.pipeline(transaction=False)
                for i in range(k):
                    add_task(raw, pipe, f"x-{w}-{r}-{i}", i)
                await pipe.execute()
                return k

            push_rounds.append(await round_cost(redis, push))
        loaded += rounds * k
        out.append({"waiting": w, "decisions_per_round": k, "ready_takes_task": median_cost(ready_rounds),
                    "push_enqueues": median_cost(push_rounds), "memory_per_waiting_task": mem})
    return out


async def agent_sweep(redis: aioredis.Redis, levels: list[int], rounds: int,
                      k: int, settle: float) -> list[dict[str, Any]]:
    await redis.flushall()
    await load_scripts(redis)
    engine = Engine(redis, "scale-a")
    raw = RawScripts(engine)
    await engine.put_mrd("chat", max_requests=1000)
    await engine.put_queue("q", mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS)
    out = []
    loaded = 0
    for a in levels:
        before = await used_memory(redis, engine)

        def add(p: Any, i: int) -> None:
            raw.add(p, "put_agent", f"g{i}", '["q"]', "{}", "{}")
            raw.add(p, "set_agent_state", f"g{i}", "READY", "", "")

        await pipelined(redis, list(range(loaded, a)), add, 64, 4)
        mem = mem_delta(before, await used_memory(redis, engine), a - loaded)
        loaded = a
        await asyncio.sleep(settle)
        avail = await redis.zcard(engine.keys.q_avail("q"))
        if avail != a:
            raise RuntimeError(f"agent sweep: {avail} agents available, expected {a}")
        push_rounds = []
        for r in range(rounds):
            async def push(r: int = r, a: int = a) -> int:
                pipe = redis.pipeline(transaction=False)
                for i in range(k):
                    raw.push(pipe, f"p-{a}-{r}-{i}", "q")
                replies = await pipe.execute()
                if any('"state":"RESERVED"' not in x for x in replies):
                    raise RuntimeError("agent sweep: a push did not reserve")
                return k

            push_rounds.append(await round_cost(redis, push))
        out.append({"agents": a, "decisions_per_round": k, "push_reserves": median_cost(push_rounds),
                    "memory_per_agent": mem})
    return out


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True)
    try:
        if quick:
            w = await waiting_sweep(redis, [100, 1_000, 5_000], 2, 50, 0.2)
            a = await agent_sweep(redis, [10, 100, 1_000], 2, 100, 0.2)
        else:
            w = await waiting_sweep(redis, [100, 1_000, 10_000, 100_000], 7, 200, 1.0)
            a = await agent_sweep(redis, [10, 100, 1_000, 10_000], 7, 300, 1.0)
        await redis.flushall()
    finally:
        await redis.aclose()
    ws, ag = w, a
    res: dict[str, Any] = {"waiting": ws, "agents": ag}
    res["ratio_waiting"] = {
        "from": ws[0]["waiting"], "to": ws[-1]["waiting"],
        "ready_takes_task_script": ws[-1]["ready_takes_task"]["script_us"] / ws[0]["ready_takes_task"]["script_us"],
        "ready_takes_task_cpu": ws[-1]["ready_takes_task"]["redis_cpu_us"] / ws[0]["ready_takes_task"]["redis_cpu_us"],
        "push_enqueues_script": ws[-1]["push_enqueues"]["script_us"] / ws[0]["push_enqueues"]["script_us"],
    }
    res["ratio_agents"] = {
        "from": ag[0]["agents"], "to": ag[-1]["agents"],
        "push_reserves_script": ag[-1]["push_reserves"]["script_us"] / ag[0]["push_reserves"]["script_us"],
        "push_reserves_cpu": ag[-1]["push_reserves"]["redis_cpu_us"] / ag[0]["push_reserves"]["redis_cpu_us"],
    }
    big_w, big_a = ws[-1]["memory_per_waiting_task"], ag[-1]["memory_per_agent"]
    res["memory"] = {"per_waiting_task": big_w, "per_agent": big_a}
    return res


def table(r: dict[str, Any]) -> str:
    lines = [f"    {'waiting':>8} {'READY takes task µs':>20} {'(CPU µs)':>9} {'push enqueues µs':>17} "
             f"{'B/task (state+stream)':>22}"]
    for x in r["waiting"]:
        m = x["memory_per_waiting_task"]
        lines.append(f"    {x['waiting']:8d} {x['ready_takes_task']['script_us']:20.1f} "
                     f"{x['ready_takes_task']['redis_cpu_us']:9.1f} {x['push_enqueues']['script_us']:17.1f} "
                     f"{m['bytes_state']:10.0f} + {m['bytes_stream']:8.0f}")
    lines.append(f"    {'agents':>8} {'push reserves µs':>20} {'(CPU µs)':>9} {'B/agent (state+stream)':>40}")
    for x in r["agents"]:
        m = x["memory_per_agent"]
        lines.append(f"    {x['agents']:8d} {x['push_reserves']['script_us']:20.1f} "
                     f"{x['push_reserves']['redis_cpu_us']:9.1f} {m['bytes_state']:28.0f} + {m['bytes_stream']:8.0f}")
    rw, ra = r["ratio_waiting"], r["ratio_agents"]
    lines.append(f"  ratio {rw['to']} vs {rw['from']} waiting: READY decision x{rw['ready_takes_task_script']:.2f} "
                 f"(CPU x{rw['ready_takes_task_cpu']:.2f}); push enqueue x{rw['push_enqueues_script']:.2f}")
    lines.append(f"  ratio {ra['to']} vs {ra['from']} agents: push decision x{ra['push_reserves_script']:.2f} "
                 f"(CPU x{ra['push_reserves_cpu']:.2f})")
    return "\n".join(lines)
