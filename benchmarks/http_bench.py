"""HTTP under open-loop load: POST /v1/tasks and the accept call
(PUT /v1/tasks/{id}/media/{mid}/state), beside a bare aiohttp handler that
makes the same single Redis round trip (bare_server.py), in the same run.

For each target: a closed-loop probe (32 connections back to back) finds the
saturation throughput S, then open-loop steps at fixed fractions of S give
throughput and p50/p99/p99.9 latency from the scheduled send time
(loadgen.py, a separate process). The servers run as subprocesses:
`redroute serve` with REDIS_URL, and bare_server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from harness import ROOT, RawScripts, free_port, load_scripts, pipelined, summary_ms, task_ids

from redroute import Engine
from redroute.keys import TenantKeys
from redroute.limits import DAY_MS

TENANT = "default"


def redroute_command() -> list[str]:
    exe = Path(sys.executable).parent / "redroute"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("redroute")
    return [found] if found else [sys.executable, "-m", "redroute"]


async def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


class Server:
    """A server subprocess on a free loopback port (logs to a temp file)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives as long as the server)
            prefix=f"redroute-bench-{name}-", suffix=".log", delete=False)
        self.cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        try:
            await wait_http(self.base + "/healthz", self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; its log:\n{self.tail()}") from None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def redroute_server(redis_url: str, wrap: tuple[str, ...] = ()) -> Server:
    """wrap: a command the server runs under (valgrind, for tools/)."""
    return Server("redroute", [*wrap, *redroute_command(), "serve", "--host", "127.0.0.1", "--port",
                               "{port}", "--no-access-log", "--log-level", "WARNING", "--log-format",
                               "text"],
                  env={"REDIS_URL": redis_url})


def bare_server(redis_url: str, wrap: tuple[str, ...] = ()) -> Server:
    return Server("bare", [*wrap, sys.executable, str(ROOT / "bare_server.py"), "--port", "{port}",
                           "--redis-url", redis_url])


MAX_REQUESTS = 1000  # the API's limit per agent and MRD


async def add_agents(base: str, first: int, count: int) -> None:
    """Agents h{first}..h{first+count-1}, READY on the "sales" queue, through
    the HTTP API (which also makes the server count this tenant's events, as
    in production). The MRD and queue are created on the first call."""
    conn = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(base, connector=conn) as s:
        async def call(method: str, path: str, body: dict[str, Any]) -> None:
            async with s.request(method, path, json=body) as r:
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: {r.status} {await r.text()}")

        if first == 0:
            await call("PUT", "/v1/mrds/chat", {"maxRequests": MAX_REQUESTS})
            await call("PUT", "/v1/queues/sales", {"mrdId": "chat", "agentSlaMs": DAY_MS,
                                                   "agentRequestTtlMs": 7 * DAY_MS})

        async def agent(i: int) -> None:
            await call("PUT", f"/v1/agents/h{i}", {"queues": ["sales"]})
            await call("POST", f"/v1/agents/h{i}/state", {"state": "READY"})

        end = first + count
        for i in range(first, end, 16):
            await asyncio.gather(*[agent(j) for j in range(i, min(i + 16, end))])


async def reserved_tasks(redis: aioredis.Redis, n: int, tag: str) -> list[list[str]]:
    """n tasks reserved to the agents, pushed straight into Redis (pipelined)."""
    raw = RawScripts(Engine(redis, TENANT))
    replies = await pipelined(redis, list(range(n)), lambda p, i: raw.push(p, f"pre-{tag}-{i}", "sales"),
                              64, 4)
    out = []
    for r in replies:
        tid, mid, agent, state = task_ids(r)
        if state != "RESERVED":
            raise RuntimeError("preload: a task was not reserved (not enough agent capacity)")
        out.append([tid, mid, agent])
    return out


async def loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "loadgen.py"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await proc.communicate(json.dumps(spec).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode()[-2000:]}")
    return json.loads(out)


async def settle_cpu(pid: int, idle_s: float = 0.3, timeout: float = 20.0) -> None:
    """Waits until process pid used < 5% of a core over idle_s."""
    from loadgen import cpu_seconds

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c0 = cpu_seconds(pid)
        await asyncio.sleep(idle_s)
        if cpu_seconds(pid) - c0 < 0.05 * idle_s:
            return


def step_summary(step: dict[str, Any]) -> dict[str, Any]:
    lat = step.pop("latencies_ms")
    step.update(summary_ms(lat))
    step["timeouts"] = sum(1 for x in lat if x == float("inf"))
    return step


class Target:
    """One server and call under load: closed-loop probes and the open-loop
    ladder, each run preloading what it needs (the accept call's tasks)."""

    def __init__(self, name: str, server: Server, kind: str, items: Any = None) -> None:
        self.name, self.server, self.kind, self.items = name, server, kind, items
        self.spec: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "kind": kind,
                                     "tenant": TENANT, "queue": "sales", "connections": 64,
                                     "timeout": 5.0, "server_pid": server.proc.pid}
        self.probes: list[dict[str, Any]] = []

    async def run(self, steps: list[dict[str, Any]], need: int) -> dict[str, Any]:
        spec = {**self.spec, "steps": steps, "run_id": f"{self.kind}{time.time_ns()}"}
        if not self.items:
            return await loadgen(spec)
        fd, tmp = tempfile.mkstemp(suffix=".json", prefix="redroute-bench-items-")
        os.close(fd)
        try:
            with open(tmp, "w") as f:
                json.dump(await self.items(need), f)
            # Let the server finish with the preloaded tasks' work first.
            await settle_cpu(self.server.proc.pid)
            return await loadgen({**spec, "items": tmp})
        finally:
            os.unlink(tmp)

    async def probe(self, seconds: float) -> dict[str, Any]:
        """Closed loop, 32 connections back to back: the saturation."""
        need = int(self.items.capacity * (seconds + 0.5)) if self.items else 0
        r = await self.run([{"closed": 32, "duration": seconds, "warmup": 0.5}], need)
        p = step_summary(r["steps"][0])
        self.probes.append(p)
        return p

    async def ladder(self, fractions: list[float], probe_s: float, step_s: float,
                     warm_s: float) -> dict[str, Any]:
        """A probe, then open-loop steps at fractions of its throughput."""
        p = await self.probe(probe_s)
        sat = p["achieved_rps"]
        steps = [{"rate": max(20.0, f * sat), "duration": step_s, "warmup": warm_s} for f in fractions]
        need = int(sum(s["rate"] * (s["duration"] + s["warmup"]) for s in steps) * 1.05) + 100
        result = await self.run(steps, need)
        open_steps = [step_summary(s) for s in result["steps"]]
        for f, s in zip(fractions, open_steps, strict=True):
            s["fraction_of_saturation"] = f
        best = max([sat] + [s["achieved_rps"] for s in open_steps if s["errors"] == 0])
        half = min(open_steps, key=lambda s: abs(s["fraction_of_saturation"] - 0.5))
        return {"name": self.name, "kind": self.kind, "probe": p, "saturation_rps": sat,
                "max_achieved_rps": best, "steps": open_steps,
                "half_saturation": {"offered_rps": half["offered_rps"], "p50_ms": half["p50_ms"],
                                    "p99_ms": half["p99_ms"], "p999_ms": half["p999_ms"]}}

    def median(self, key: str) -> float:
        return statistics.median(p[key] for p in self.probes)


class AcceptItems:
    """Reserved tasks prepared (in Redis, pipelined) just before each run.

    Every task pushed so far (by the push ladder too) still holds its agent's
    capacity, and how many a run needs follows from the measured saturation,
    so agents are added first whenever the free capacity would not cover the
    batch: a preload that ran out of agents would leave tasks queued."""

    def __init__(self, redis: aioredis.Redis, base: str, agents: int, capacity: float) -> None:
        self.redis = redis
        self.base = base
        self.agents = agents
        self.capacity = capacity
        self.batch = 0

    async def __call__(self, n: int) -> list[list[str]]:
        self.batch += 1
        live = await self.redis.scard(TenantKeys.of(TENANT).live)
        short = int(n * 1.1) + live - self.agents * MAX_REQUESTS
        if short > 0:
            more = -(-short // MAX_REQUESTS)
            await add_agents(self.base, self.agents, more)
            self.agents += more
        return await reserved_tasks(self.redis, n, f"b{self.batch}")


async def run(redis_url: str, quick: bool) -> dict[str, Any]:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    await redis.flushall()
    await load_scripts(redis)
    fractions = [0.5, 1.0] if quick else [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2]
    probe_s, step_s, warm_s = (1.0, 1.0, 0.3) if quick else (2.5, 3.0, 0.5)
    agents = 20 if quick else 200
    rounds = 1 if quick else 3
    out: dict[str, Any] = {"fractions": fractions, "probe_seconds": probe_s, "step_seconds": step_s,
                           "warmup_seconds": warm_s, "agents": agents, "agent_max_requests": 1000}
    bare = bare_server(redis_url)
    rr = redroute_server(redis_url)
    try:
        await bare.ready()
        await rr.ready()
        await add_agents(rr.base, 0, agents)
        tb = Target("bare", bare, "bare")
        tp = Target("POST /v1/tasks", rr, "push")
        ta = Target("PUT /v1/tasks/{id}/media/{mid}/state (accept)", rr, "accept")
        b = await tb.ladder(fractions, probe_s, step_s, warm_s)
        push = await tp.ladder(fractions, probe_s, step_s, warm_s)
        ta.items = AcceptItems(redis, rr.base, agents, max(b["saturation_rps"], 200) * 1.3)
        accept = await ta.ladder(fractions, probe_s, step_s, warm_s)
        # The ratios' probes, in turns (see the module's docstring).
        for _ in range(rounds):
            for t in (tb, tp, ta):
                await t.probe(probe_s)
        if rr.proc.poll() is not None:
            raise RuntimeError(f"redroute serve died:\n{rr.tail()}")
    finally:
        rr.stop()
        bare.stop()
        await redis.aclose()
    for res, t in ((b, tb), (push, tp), (accept, ta)):
        res["probes_rps"] = [p["achieved_rps"] for p in t.probes]
        res["probes_server_cpu_us_per_request"] = [p["server_cpu_us_per_request"] for p in t.probes]
        res["median_saturation_rps"] = t.median("achieved_rps")
    for res, t in ((push, tp), (accept, ta)):
        res["throughput_ratio_to_bare"] = t.median("achieved_rps") / tb.median("achieved_rps")
        # The server process's CPU per request at saturation (it falls as load
        # rises and the event loop batches more).
        res["cpu_ratio_to_bare"] = (tb.median("server_cpu_us_per_request")
                                    / t.median("server_cpu_us_per_request"))
    out.update(bare=b, push=push, accept=accept, ratio_rounds=rounds)
    return out


def table(r: dict[str, Any]) -> str:
    lines = []
    for key in ("bare", "push", "accept"):
        t = r[key]
        ratio = (f", {t['throughput_ratio_to_bare']:.2f} x bare's by the medians (by server CPU per "
                 f"request at saturation: bare's ÷ this one's = {t['cpu_ratio_to_bare']:.2f})"
                 if "throughput_ratio_to_bare" in t else "")
        probes = ", ".join(f"{x:.0f}" for x in t.get("probes_rps", []))
        lines.append(f"  {t['name']}: saturation {t['saturation_rps']:.0f} req/s (closed loop, 32 conns; "
                     f"probes {probes}, median {t.get('median_saturation_rps', 0):.0f}){ratio}")
        lines.append(f"    {'offered/s':>10} {'achieved/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
                     f"{'errors':>6} {'server CPU µs/req':>17} {'loadgen µs/req':>14}")
        for s in t["steps"]:
            lines.append(f"    {s['offered_rps']:10.0f} {s['achieved_rps']:10.0f} {s['p50_ms']:8.2f} "
                         f"{s['p99_ms']:8.2f} {s['p999_ms']:9.2f} {s['errors']:6d} "
                         f"{s['server_cpu_us_per_request']:17.0f} {s['loadgen_cpu_us_per_request']:14.0f}")
    return "\n".join(lines)
