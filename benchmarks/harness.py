"""What every benchmark of the suite shares: a private redis-server on a free
port pinned to one core, the CPU split, Redis-side counters (INFO
commandstats and INFO cpu), percentiles, and raw pipelined script calls.

CPU split: Redis runs on core 0 (taskset); this process and every process it
starts (HTTP servers, load generators, timer worker, consumers) run on the
other cores (sched_setaffinity, inherited by children). With 2 cores that is
one core for Redis and one for everything else.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as syncredis
import redis.asyncio as aioredis

from redroute import Engine
from redroute.limits import DEFAULT_EVENTS_MAXLEN, DEFAULT_RETENTION_MS
from redroute.scripts import default_runner

ROOT = Path(__file__).resolve().parent
# The repository root, for localredis (shared with the tests, not shipped).
sys.path.insert(0, str(ROOT.parent))
from localredis import free_port  # noqa: E402

RESULTS = ROOT / "results"
REDIS_CORE = 0


def cpu_split() -> dict[str, Any]:
    """Pins this process (and so its children) off the Redis core."""
    cpus = sorted(os.sched_getaffinity(0))
    pinned = bool(shutil.which("taskset")) and len(cpus) >= 2 and REDIS_CORE in cpus
    rest = [c for c in cpus if c != REDIS_CORE] if pinned else cpus
    if pinned:
        os.sched_setaffinity(0, rest)
    return {"cpus": len(cpus), "redis_cores": [REDIS_CORE] if pinned else cpus,
            "load_and_server_cores": rest, "pinned": pinned}


def describe_split(split: dict[str, Any]) -> str:
    if not split["pinned"]:
        return (f"{split['cpus']} CPU(s): NOT pinned (taskset missing or one core); Redis, load and "
                "servers share every core")
    return (f"{split['cpus']} CPUs: redis-server pinned to core {split['redis_cores']} (taskset); "
            f"load generators, HTTP servers, workers and this process on cores "
            f"{split['load_and_server_cores']}")


def machine(split: dict[str, Any]) -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024} GiB"
                break
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_model": model, "cpus": os.cpu_count(), "memory": mem,
            "redis_server": out.strip(), "split": split, "split_text": describe_split(split)}


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    workdir: str
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(pinned: bool = True) -> RedisServer:
    """A private redis-server on a free port of 127.0.0.1 (never 6379)."""
    exe = shutil.which("redis-server")
    if not exe:
        sys.exit("redis-server is not on PATH")
    for _ in range(5):
        port = free_port()
        if port == 6379:
            continue
        workdir = tempfile.mkdtemp(prefix="redroute-bench-")
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--notify-keyspace-events", "Ex", "--dir", workdir, "--protected-mode", "yes",
                "--maxclients", "10000", "--tcp-backlog", "1024"]
        if pinned and shutil.which("taskset"):
            args = ["taskset", "-c", str(REDIS_CORE), *args]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if syncredis.Redis(port=port, socket_connect_timeout=0.2).ping():
                    return RedisServer(port, proc, workdir)
            except syncredis.ConnectionError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit("could not start redis-server")


def _cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v) - idle) / tick, sum(v) / tick


def _own_cpu() -> float:
    import resource

    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class MachineLoad:
    """How much CPU other processes took while the benchmark ran: the
    machine's busy time (/proc/stat) minus this process and every child it
    waited for (Redis, servers, load generators)."""

    def start(self) -> None:
        self.busy0, self.total0 = _cpu_busy()
        self.own0 = _own_cpu()
        self.load0 = os.getloadavg()

    def stop(self) -> dict[str, Any]:
        busy, total = _cpu_busy()
        own = _own_cpu() - self.own0
        wall_cores = total - self.total0
        foreign = max(0.0, (busy - self.busy0) - own)
        return {"cpu_seconds_available": wall_cores, "cpu_seconds_benchmark": own,
                "cpu_seconds_other_processes": foreign,
                "other_processes_share": foreign / wall_cores if wall_cores else float("nan"),
                "loadavg_start": self.load0, "loadavg_end": os.getloadavg()}


def wait_quiet(timeout: float, threshold: float = 0.15) -> dict[str, Any]:
    """Waits (up to timeout s) until the machine is under `threshold` busy for
    3 s in a row; returns what it saw."""
    start = time.monotonic()
    quiet = 0
    last = 1.0
    while time.monotonic() - start < timeout:
        b0, t0 = _cpu_busy()
        time.sleep(1.0)
        b1, t1 = _cpu_busy()
        last = (b1 - b0) / max(t1 - t0, 1e-9)
        quiet = quiet + 1 if last < threshold else 0
        if quiet >= 3:
            break
    return {"waited_s": round(time.monotonic() - start, 1), "busy_share_last_second": last,
            "quiet": quiet >= 3}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    if values[hi] == float("inf"):  # timed out requests sort last
        return values[hi] if k > lo else values[lo]
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def clean_json(x: Any) -> Any:
    """inf/nan (timeouts, empty samples) as null, so the file is strict JSON."""
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: clean_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean_json(v) for v in x]
    return x


def summary_ms(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of latencies given in ms."""
    return {"n": len(values), "p50_ms": percentile(values, 50), "p90_ms": percentile(values, 90),
            "p99_ms": percentile(values, 99), "p999_ms": percentile(values, 99.9),
            "max_ms": max(values) if values else float("nan"),
            "mean_ms": sum(values) / len(values) if values else float("nan")}


# The commands that call a script: FCALL as the Engine calls them, EVALSHA
# on a Redis without functions (and the bare handler's no-op).
SCRIPT_CALLS = ("fcall", "evalsha")


def script_stats(commands: dict[str, dict[str, float]]) -> dict[str, float]:
    """calls, usec and usec_per_call of the script calls (SCRIPT_CALLS) among
    commands (INFO commandstats, keyed by command name)."""
    calls = sum(commands.get(c, {}).get("calls", 0) for c in SCRIPT_CALLS)
    usec = sum(commands.get(c, {}).get("usec", 0.0) for c in SCRIPT_CALLS)
    return {"calls": calls, "usec": usec, "usec_per_call": usec / calls if calls else 0.0}


class RedisCounters:
    """Server-side cost of a phase: script calls and µs/call (INFO
    commandstats; the script's own run time) and the redis-server process's
    CPU time (INFO cpu: everything Redis spent, parsing and replies too)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.cpu0 = 0.0
        self.t0 = 0.0

    async def start(self) -> None:
        await self.redis.config_resetstat()
        cpu = await self.redis.info("cpu")
        self.cpu0 = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        self.t0 = time.perf_counter()

    async def stop(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.t0
        cpu = await self.redis.info("cpu")
        cpu_s = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]) - self.cpu0
        stats = await self.redis.info("commandstats")
        cmds = {k.removeprefix("cmdstat_"): {"calls": int(v["calls"]),
                                             "usec": float(v["usec"]),
                                             "usec_per_call": float(v["usec_per_call"])}
                for k, v in stats.items()}
        ev = script_stats(cmds)
        # The config_resetstat and info calls themselves are negligible.
        return {"seconds": elapsed, "redis_cpu_s": cpu_s, "redis_cpu_util": cpu_s / elapsed,
                "script_calls": ev["calls"], "script_usec_per_call": ev["usec_per_call"],
                "commands": cmds}


def bench_engine(redis: aioredis.Redis, tenant: str = "bench", **kw: Any) -> Engine:
    return Engine(redis, tenant, **kw)


class RawScripts:
    """redroute's scripts called as Engine.call calls them (FCALL, or EVALSHA
    on a Redis without functions; known once the engine has made a call),
    with the same arguments, for pipelines (the Engine facade sends one
    call per round trip)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runner = engine.runner or default_runner()

    def add(self, pipe: Any, script: str, *args: Any) -> None:
        self.runner.add(pipe, self.engine.redis, script, [self.engine.prefix],
                        [self.engine.events_maxlen, self.engine.retention_ms, *args])

    async def release_agents(self, agents: list[str]) -> tuple[Any, list[str]]:
        """A reset between rounds, not measured: each agent NOT_READY
        (pending while it holds a task), and the tasks they hold closed on
        the pipeline returned (which the caller may add to, then execute);
        also the ids of those tasks."""
        redis = self.engine.redis
        pipe = redis.pipeline(transaction=False)
        for a in agents:
            self.add(pipe, "set_agent_state", a, "NOT_READY", "", "")
            pipe.smembers(self.engine.keys.agent_tasks(a))
        held = [tid for x in (await pipe.execute())[1::2] for tid in x]
        pipe = redis.pipeline(transaction=False)
        for tid in held:
            self.add(pipe, "set_task_state", tid, "CLOSED", "FORCE_CLOSED")
        return pipe, held

    def push(self, pipe: Any, cid: str, queue: str, ttl_ms: int | str = "", priority: int = 1) -> None:
        self.add(pipe, "push_task", queue, cid, priority, ttl_ms, "{}", "{}", "INBOUND")

    def accept(self, pipe: Any, task_id: str, media_id: str, agent: str = "") -> None:
        self.add(pipe, "accept_task", task_id, media_id, agent)

    def close(self, pipe: Any, task_id: str, media_id: str) -> None:
        self.add(pipe, "close_media", task_id, media_id)

    def noop(self, pipe: Any) -> None:
        self.add(pipe, "noop")


async def run_alone(name: str, run: Any, table: Any, quick: bool, **kw: Any) -> None:
    """A section run on its own (python benchmarks/<name>_bench.py): its own
    pinned redis-server, the table printed, the result in results/<name>[-quick].json."""
    split = cpu_split()
    server = start_redis(split["pinned"])
    try:
        result = await run(server.url, quick, **kw)
    finally:
        server.stop()
    result.update(benchmark=name, date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  mode="quick" if quick else "full", machine=machine(split))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(result, indent=2))
    print(describe_split(split))
    print(table(result))
    print(f"written to {path}")


async def load_scripts(redis: aioredis.Redis) -> None:
    await default_runner().load_all(redis)


async def pipelined(redis: aioredis.Redis, items: list[Any], build: Any, depth: int,
                    concurrency: int) -> list[Any]:
    """Sends build(pipe, item) for every item, `depth` per pipeline, over
    `concurrency` connections at once; returns the replies in item order."""
    out: list[Any] = [None] * len(items)
    chunks = [(i, items[i:i + depth]) for i in range(0, len(items), depth)]
    chunks.reverse()

    async def worker() -> None:
        while chunks:
            start, chunk = chunks.pop()
            pipe = redis.pipeline(transaction=False)
            for it in chunk:
                build(pipe, it)
            replies = await pipe.execute(raise_on_error=True)
            out[start:start + len(chunk)] = replies

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return out


def task_ids(raw: str) -> tuple[str, str, str | None, str]:
    """(task id, media id, assignedTo, media state) from a task JSON reply."""
    t = json.loads(raw)
    m = t["activeMedia"][0]
    return t["id"], m["id"], t.get("assignedTo"), m["state"]


__all__ = ["DEFAULT_EVENTS_MAXLEN", "DEFAULT_RETENTION_MS"]
