"""Skills: what queue steps cost, side by side in one run.

* decision cost with 10 steps, small (10 agents, 100 waiting tasks) vs
  large (10,000 agents, 100,000 waiting tasks; --quick: 1,000 / 10,000),
  each in its own tenant on the same redis-server:
    - ready_takes_task: an agent going READY takes the best waiting task
      across the waiting sets of the steps it may serve (every task waits
      at step 10; the agents' first steps are spread over steps 1-10);
    - step_change_reserves: a task reaching step 10 is routed across the
      availability indexes of steps 1-10 (agents spread over them, all
      available): one due deadline fired per fire_due call. (The deadline
      is a preferred-agent window of 1 ms ending at age >= 10 ms: the same
      script path as a step change, task_restep, at step 10.)
  Cost = the script's Redis µs per call (INFO commandstats), lowest of the
  rounds (medians beside); ratio large / small.
* lifecycle on a queue with 3 steps vs a queue without steps, same run:
  push (reserved at once at step 1) -> accept -> close through the Engine,
  16 callers; rounds interleaved, median lifecycles/s each, and the Redis
  µs per lifecycle (commandstats), as ratios stepped / plain.

    python benchmarks/skills_bench.py [--quick]   # alone; run.py runs it as section "skills"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import redis.asyncio as aioredis
from harness import (
    RESULTS,
    RawScripts,
    RedisCounters,
    load_scripts,
    pipelined,
    script_stats,
    start_redis,
)

from redroute import Engine

DAY_MS = 24 * 3600 * 1000
TEN_STEPS = [{"expression": f"lvl >= {11 - k}", "timeoutMs": 1} for k in range(1, 10)] + [
    {"expression": "lvl >= 1"}]
THREE_STEPS = [{"expression": "lvl >= 3", "timeoutMs": 20_000},
               {"expression": "lvl >= 2", "timeoutMs": 40_000}, {"expression": ""}]


def lowest(rounds: list[float]) -> dict[str, Any]:
    return {"script_us": min(rounds), "script_us_median": statistics.median(rounds), "rounds": rounds}


async def timed(redis: aioredis.Redis, send: Any) -> float:
    c = RedisCounters(redis)
    await c.start()
    await send()
    return (await c.stop())["script_usec_per_call"]


async def decision_costs(redis: aioredis.Redis, tenant: str, agents: int, tasks: int,
                         rounds: int, k: int) -> dict[str, Any]:
    """Both decisions at one size, in tenant `tenant`."""
    engine = Engine(redis, tenant)
    raw = RawScripts(engine)
    await engine.put_mrd("chat", max_requests=1000)
    # Waiting side: queue w, tasks pushed before it has steps (so that the
    # steps, set next, put every one at step 10 in one call), members NOT_READY.
    await engine.put_queue("w", mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS)
    await pipelined(redis, list(range(agents)), lambda p, i: raw.add(
        p, "put_agent", f"w{i}", '["w"]', json.dumps({"lvl": 1 + i % 10}), '{"chat":1}'), 128, 4)
    await pipelined(redis, list(range(tasks)), lambda p, i: raw.push(p, f"cw-{i}", "w"), 128, 4)
    await engine.advance_clock(20)
    t0 = time.perf_counter()
    await engine.put_queue("w", mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS,
                           steps=TEN_STEPS)
    restep_s = time.perf_counter() - t0
    if await redis.zcard(engine.keys.q_waiting_step("w", 10)) != tasks:
        raise RuntimeError("skills: the waiting tasks are not all at step 10")
    await pipelined(redis, list(range(agents)), lambda p, i: raw.add(
        p, "set_agent_state", f"w{i}", "LOGIN", "", ""), 128, 4)
    ready_rounds = []
    for r in range(rounds):
        batch = [f"w{(r * k + j) % agents}" for j in range(k)]

        async def ready(batch: list[str] = batch) -> None:
            pipe = redis.pipeline(transaction=False)
            for a in batch:
                raw.add(pipe, "set_agent_state", a, "READY", "", "")
            if any('"activeTasks":1' not in x for x in await pipe.execute()):
                raise RuntimeError("skills: an agent did not take a task")

        ready_rounds.append(await timed(redis, ready))
        # Reset, not measured: NOT_READY, and the task each took closed.
        pipe, _ = await raw.release_agents(batch)
        await pipe.execute()

    # Agents side: queue a, agents spread over the 10 step indexes, READY.
    await engine.put_queue("a", mrd_id="chat", agent_request_ttl_ms=7 * DAY_MS, agent_sla_ms=DAY_MS,
                           steps=TEN_STEPS)
    await engine.put_agent("pp", queues=[])
    await pipelined(redis, list(range(agents)), lambda p, i: raw.add(
        p, "put_agent", f"a{i}", '["a"]', json.dumps({"lvl": 1 + i % 10}), "{}"), 128, 4)
    await pipelined(redis, list(range(agents)), lambda p, i: raw.add(
        p, "set_agent_state", f"a{i}", "READY", "", ""), 128, 4)
    step_rounds = []
    for r in range(rounds):
        pipe = redis.pipeline(transaction=False)
        for j in range(k):
            raw.add(pipe, "push_task", "a", f"ca-{r}-{j}", 1, "", "{}", "{}", "INBOUND", "", "pp", 1)
        await pipe.execute()
        await engine.advance_clock(20)

        async def fire() -> None:
            pipe = redis.pipeline(transaction=False)
            for _ in range(k):
                raw.add(pipe, "fire_due", 1)
            if any(int(x[0]) != 1 for x in await pipe.execute()):
                raise RuntimeError("skills: a step change did not fire")

        step_rounds.append(await timed(redis, fire))
    if await redis.zcard(engine.keys.q_age("a")):
        raise RuntimeError("skills: a task at step 10 was not reserved")
    return {"agents": agents, "waiting_tasks": tasks, "put_queue_restep_s": restep_s,
            "ready_takes_task": lowest(ready_rounds),
            "step_change_reserves": lowest(step_rounds)}


async def lifecycles(redis: aioredis.Redis, rounds: int, n: int, concurrency: int = 16) -> dict[str, Any]:
    engine = Engine(redis, "skills-life")
    await engine.put_mrd("chat", max_requests=4)
    await engine.put_queue("plain", mrd_id="chat")
    await engine.put_queue("stepped", mrd_id="chat", steps=THREE_STEPS)
    for i in range(concurrency):
        await engine.put_agent(f"p{i}", queues=["plain"], attributes={"lvl": 3})
        await engine.put_agent(f"s{i}", queues=["stepped"], attributes={"lvl": 3})
        await engine.set_agent_state(f"p{i}", "READY")
        await engine.set_agent_state(f"s{i}", "READY")
    counter = iter(range(10**9))

    async def run(queue: str) -> tuple[float, float]:
        async def caller() -> None:
            for _ in range(n // concurrency):
                t = await engine.push_task(f"c{next(counter)}", queue)
                if t.assigned_to is None:
                    raise RuntimeError(f"skills: a push to {queue} was not reserved")
                await engine.accept(t.id, t.media.id)
                await engine.close_media(t.id, t.media.id)

        c = RedisCounters(redis)
        await c.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        stats = await c.stop()
        done = (n // concurrency) * concurrency
        ev = script_stats(stats["commands"])
        return done / elapsed, ev["usec"] / done

    out: dict[str, list[tuple[float, float]]] = {"plain": [], "stepped": []}
    for _ in range(rounds):
        for q in ("plain", "stepped"):
            out[q].append(await run(q))
    med = {q: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for q, v in out.items()}
    return {"lifecycles": n // concurrency * concurrency, "concurrency": concurrency,
            "plain": {"per_s": med["plain"][0], "redis_us": med["plain"][1], "rounds": out["plain"]},
            "stepped": {"per_s": med["stepped"][0], "redis_us": med["stepped"][1],
                        "rounds": out["stepped"]},
            "throughput_ratio": med["stepped"][0] / med["plain"][0],
            "redis_cost_ratio": med["stepped"][1] / med["plain"][1]}


async def run(url: str, quick: bool) -> dict[str, Any]:
    # A PUT of a queue's steps re-steps every waiting task in one script:
    # with 100k waiting that call takes seconds (reported), hence the timeout.
    redis = aioredis.from_url(url, decode_responses=True, socket_timeout=600)
    try:
        await redis.flushall()
        await load_scripts(redis)
        big = (1_000, 10_000) if quick else (10_000, 100_000)
        rounds, k = (5, 20) if quick else (9, 100)
        small = await decision_costs(redis, "skills-s", 10, 100, rounds, min(k, 10))
        large = await decision_costs(redis, "skills-l", big[0], big[1], rounds, k)
        ratio = {key: large[key]["script_us"] / small[key]["script_us"]
                 for key in ("ready_takes_task", "step_change_reserves")}
        life = await lifecycles(redis, 3, 480 if quick else 4_000)
        return {"steps": 10, "small": small, "large": large, "ratio": ratio, "lifecycle": life}
    finally:
        await redis.aclose()


def table(r: dict[str, Any]) -> str:
    s, g, life = r["small"], r["large"], r["lifecycle"]
    lines = [
        "| decision (10 steps) | small: agents / waiting | µs | large: agents / waiting | µs | large ÷ small |",
        "| --- | --- | --- | --- | --- | --- |"]
    for key, label in (("ready_takes_task", "agent READY takes the best task"),
                       ("step_change_reserves", "task reaches step 10, reserved")):
        lines.append(f"| {label} | {s['agents']} / {s['waiting_tasks']} | {s[key]['script_us']:.1f} | "
                     f"{g['agents']} / {g['waiting_tasks']} | {g[key]['script_us']:.1f} | "
                     f"{r['ratio'][key]:.2f}x |")
    lines += ["", "| lifecycle (push, accept, close) | per s | Redis µs per lifecycle |", "| --- | --- | --- |",
              f"| queue without steps | {life['plain']['per_s']:.0f} | {life['plain']['redis_us']:.1f} |",
              f"| queue with 3 steps | {life['stepped']['per_s']:.0f} | {life['stepped']['redis_us']:.1f} |",
              f"| ratio with steps ÷ without | {life['throughput_ratio']:.3f}x | "
              f"{life['redis_cost_ratio']:.3f}x |",
              "", f"PUT of 10 steps re-stepping {g['waiting_tasks']} waiting tasks: "
              f"{g['put_queue_restep_s']:.1f} s in one script ({s['waiting_tasks']}: "
              f"{s['put_queue_restep_s'] * 1000:.0f} ms)"]
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    server = start_redis()
    try:
        result = await run(server.url, args.quick)
    finally:
        server.stop()
    print(table(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"skills{'-quick' if args.quick else ''}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
