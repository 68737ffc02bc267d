"""Timers, fired by `redroute worker` (a separate process, as deployed):

* fire lag: with thousands of live deadlines (far-away TTLs), timed TTL
  deadlines spread over a few seconds; lag = when the deadline fired -
  when it was due, both on the Redis clock (the closed task's updatedAt and
  its ttlDeadline, read back from the event stream);
* throughput: a backlog of due TTL deadlines (queued tasks, no agent) and of
  due RONA deadlines (reserved tasks never accepted) is built with no worker
  running, then a worker starts: deadlines fired per second (first to last
  fire, Redis clock), the Redis µs per fired deadline, and the longest single
  fire_due call (SLOWLOG), which blocks Redis while it runs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import redis.asyncio as aioredis
from harness import RawScripts, load_scripts, pipelined, script_stats, summary_ms
from http_bench import redroute_command

from redroute import Engine
from redroute.limits import DAY_MS


def start_worker(redis_url: str) -> subprocess.Popen:
    return subprocess.Popen([*redroute_command(), "worker", "--redis-url", redis_url,
                             "--log-level", "WARNING"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    elif proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"redroute worker exited with {proc.returncode}: {err[-2000:]}")


async def closed_events(redis: aioredis.Redis, engine: Engine, reason: str,
                        after: str = "-") -> tuple[list[dict[str, Any]], str]:
    """TASK_STATE_CHANGED events that closed a task with `reason`."""
    out = []
    last = after
    mark = f'"state":{{"name":"CLOSED","reasonCode":"{reason}"}}'
    while True:
        start = "-" if last == "-" else f"({last}"
        page = await redis.xrange(engine.events_key, start, "+", count=5000)
        if not page:
            return out, last
        for _entry_id, f in page:
            if f.get("type") == "TASK_STATE_CHANGED" and mark in f.get("data", ""):
                out.append(json.loads(f["data"])["task"])
        last = page[-1][0]


async def wait_for(redis: aioredis.Redis, engine: Engine, reason: str, n: int,
                   timeout: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    last = "-"
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        more, last = await closed_events(redis, engine, reason, last)
        got.extend(more)
    return got


async def fire_lag(redis: aioredis.Redis, url: str, live: int, timed: int,
                   spread_ms: int) -> dict[str, Any]:
    await redis.flushall()
    await load_scripts(redis)
    engine = Engine(redis, "timers")
    raw = RawScripts(engine)
    await engine.put_mrd("chat", max_requests=1)
    await engine.put_queue("q", mrd_id="chat", agent_request_ttl_ms=3_600_000)
    await pipelined(redis, list(range(live)), lambda p, i: raw.push(p, f"far-{i}", "q"), 64, 4)
    worker = start_worker(url)
    try:
        await asyncio.sleep(1.0)
        # The timed deadlines, due from 300 ms on over spread_ms.
        await pipelined(redis, list(range(timed)), lambda p, i: raw.push(
            p, f"near-{i}", "q", 300 + (i * spread_ms) // timed), 64, 2)
        fired = await wait_for(redis, engine, "NO_AGENT_AVAILABLE", timed, spread_ms / 1000 + 15)
    finally:
        stop_worker(worker)
    lags = [t["updatedAt"] - t["ttlDeadline"] for t in fired]
    if len(lags) < timed:
        raise RuntimeError(f"timer lag: {len(lags)} of {timed} deadlines fired")
    return {"live_deadlines": live + timed, "timed": timed, "spread_ms": spread_ms,
            "lag": summary_ms(lags), "lags_ms": sorted(lags)}


def _cmd(entry: dict[str, Any]) -> str:
    c = entry.get("command", "")
    return c.decode(errors="replace") if isinstance(c, bytes) else str(c)


async def drained(redis: aioredis.Redis, engine: Engine, timeout: float) -> float:
    """Polls (every 2 ms) until no deadline due within the hour is left;
    returns that wall-clock time in ms."""
    key = engine.keys.timers
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time() * 1000
        if await redis.zcount(key, "-inf", now + 3_600_000) == 0:
            return now
        await asyncio.sleep(0.002)
    raise RuntimeError("the timer backlog did not drain")


async def backlog(redis: aioredis.Redis, url: str, kind: str, n: int) -> dict[str, Any]:
    """n due deadlines of one kind, then a worker: how fast it clears them."""
    await redis.flushall()
    await load_scripts(redis)
    engine = Engine(redis, "timers")
    raw = RawScripts(engine)
    per_agent = 50
    await engine.put_mrd("chat", max_requests=per_agent)
    await engine.put_queue("q", mrd_id="chat", agent_request_ttl_ms=DAY_MS, agent_sla_ms=200)
    if kind == "RONA":
        # Exactly enough capacity: a RONA'd task is re-queued (no agent left
        # free), so each deadline fires once.
        agents = n // per_agent
        n = agents * per_agent
        pipe = redis.pipeline(transaction=False)
        for i in range(agents):
            raw.add(pipe, "put_agent", f"a{i}", '["q"]', "{}", "{}")
            raw.add(pipe, "set_agent_state", f"a{i}", "READY", "", "")
        await pipe.execute()
        replies = await pipelined(redis, list(range(n)), lambda p, i: raw.push(p, f"r-{i}", "q"), 64, 4)
        if any('"state":"RESERVED"' not in r for r in replies):
            raise RuntimeError("RONA backlog: a task was not reserved")
        reason = "RONA"
    else:
        replies = await pipelined(redis, list(range(n)), lambda p, i: raw.push(p, f"t-{i}", "q", 200),
                                  64, 4)
        reason = "NO_AGENT_AVAILABLE"
    await asyncio.sleep(0.4)  # every deadline is due now
    await redis.config_set("slowlog-log-slower-than", 5000)
    await redis.slowlog_reset()
    await redis.config_resetstat()
    worker = start_worker(url)
    try:
        done_ms = await drained(redis, engine, 60)
        fired = await wait_for(redis, engine, reason, n, 10)
    finally:
        stop_worker(worker)
    stats = await redis.info("commandstats")
    ev = script_stats({k.removeprefix("cmdstat_"): v for k, v in stats.items()})
    slow = await redis.slowlog_get(128)
    longest = max((e["duration"] for e in slow if _cmd(e).upper().startswith(("EVALSHA", "FCALL"))),
                  default=0)
    await redis.config_set("slowlog-log-slower-than", 10000)
    if len(fired) < n:
        raise RuntimeError(f"{kind} backlog: {len(fired)} of {n} fired")
    # From the first fire (Redis clock; one clock on this machine) to the
    # moment the last due deadline was gone (polled every 2 ms).
    span_ms = max(1.0, done_ms - min(t["updatedAt"] for t in fired))
    return {"kind": kind, "deadlines": n, "fired": len(fired), "span_ms": span_ms,
            "per_second": len(fired) / (span_ms / 1000),
            "redis_script_us_per_fired": ev["usec"] / len(fired),
            "script_calls": ev["calls"], "longest_fire_due_call_ms": longest / 1000}


async def run(url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(url, decode_responses=True)
    try:
        lag = await fire_lag(redis, url, 2_000 if quick else 20_000, 300 if quick else 3_000,
                             1_500 if quick else 6_000)
        ttl = await backlog(redis, url, "TTL", 1_000 if quick else 10_000)
        rona = await backlog(redis, url, "RONA", 1_000 if quick else 10_000)
        await redis.flushall()
    finally:
        await redis.aclose()
    return {"fire_lag": lag, "ttl_backlog": ttl, "rona_backlog": rona}


def table(r: dict[str, Any]) -> str:
    lag = r["fire_lag"]
    a = lag["lag"]
    lines = [f"  fire lag, {lag['timed']} deadlines over {lag['spread_ms']} ms among "
             f"{lag['live_deadlines']} live: p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms, "
             f"max {a['max_ms']:.0f} ms (1 ms resolution, Redis clock)"]
    for k in ("ttl_backlog", "rona_backlog"):
        b = r[k]
        lines.append(f"  {b['kind']:4} backlog of {b['deadlines']}: {b['per_second']:.0f}/s handled, "
                     f"{b['redis_script_us_per_fired']:.0f} µs of script per deadline, longest "
                     f"fire_due call {b['longest_fire_due_call_ms']:.1f} ms")
    return "\n".join(lines)
