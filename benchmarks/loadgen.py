"""An open-loop HTTP/1.1 load generator (asyncio, keep-alive connections).

Open loop: request i of a step is due at t0 + i / rate whatever happened to
the ones before it, and its latency is measured from that scheduled time, so
a server that falls behind shows it as latency (no coordinated omission).
Requests wait for a free connection when every connection is busy; that wait
counts too. A closed-loop step (`"closed": <connections>`) instead sends
back to back on each connection, to find the saturation throughput.

It runs in its own process (run by http_bench.py) and speaks raw HTTP/1.1
over asyncio protocols, because an HTTP client library would cost more CPU
than the server it measures on a small machine.

    python loadgen.py < spec.json > result.json

spec: {"host", "port", "kind": "push"|"accept"|"bare", "tenant", "queue",
       "items": path of a JSON list of [taskId, mediaId, agentId] (accept),
       "connections": max connections, "timeout": s,
       "steps": [{"rate": req/s, "duration": s, "warmup": s} |
                 {"closed": connections, "duration": s, "warmup": s}]}
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections import deque
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of process pid so far; of this one for None."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return float("nan")


class CpuMeter:
    """CPU µs per request of the server under test and of this generator."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.server0 = cpu_seconds(pid) if pid else float("nan")
        self.self0 = cpu_seconds(None)

    def per_request(self, n: int) -> dict[str, float]:
        server = cpu_seconds(self.pid) - self.server0 if self.pid else float("nan")
        own = cpu_seconds(None) - self.self0
        return {"server_cpu_us_per_request": server * 1e6 / max(n, 1),
                "loadgen_cpu_us_per_request": own * 1e6 / max(n, 1)}


class Conn(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this load generator")
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[:end + 4 + length]
        if self.waiter and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: deque[Conn] = deque()
        self.count = 0
        self.waiting: deque[asyncio.Future[Conn]] = deque()
        self.opened = 0

    async def _open(self) -> Conn:
        loop = asyncio.get_running_loop()
        self.count += 1
        self.opened += 1
        try:
            _, conn = await loop.create_connection(lambda: Conn(self), self.host, self.port)
        except BaseException:
            self.count -= 1
            raise
        return conn

    async def warm(self, n: int) -> None:
        conns = await asyncio.gather(*[self._open() for _ in range(min(n, self.limit))])
        self.idle.extend(conns)

    async def get(self) -> Conn:
        while self.idle:
            c = self.idle.popleft()
            if not c.closed:
                return c
            self.count -= 1
        if self.count < self.limit:
            return await self._open()
        fut: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        return await fut

    def put(self, c: Conn, ok: bool) -> None:
        if not ok or c.closed:
            if c.transport:
                c.transport.abort()
            self.count -= 1
            if self.waiting:
                w = self.waiting.popleft()
                asyncio.ensure_future(self._handoff(w))
            return
        while self.waiting:
            w = self.waiting.popleft()
            if not w.done():
                w.set_result(c)
                return
        self.idle.append(c)

    async def _handoff(self, w: asyncio.Future[Conn]) -> None:
        try:
            c = await self._open()
        except OSError as e:
            if not w.done():
                w.set_exception(e)
            return
        if w.done():
            self.put(c, True)
        else:
            w.set_result(c)

    def close(self) -> None:
        for c in self.idle:
            if c.transport:
                c.transport.abort()
        self.idle.clear()


class Exhausted(Exception):
    """Every prepared accept item was used."""


class Requests:
    """The bytes of request i of the run (each index used once)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind = spec["kind"]
        self.host = f"{spec['host']}:{spec['port']}"
        self.tenant = spec.get("tenant", "default")
        self.queue = spec.get("queue", "sales")
        self.run_id = spec.get("run_id", str(int(time.time())))
        self.items: list[list[str]] = []
        if self.kind == "accept":
            with open(spec["items"]) as f:
                self.items = json.load(f)
        self.next = 0

    def _http(self, method: str, path: str, body: bytes) -> bytes:
        return (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nX-Tenant: {self.tenant}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def take(self, n: int) -> list[bytes]:
        out = []
        for i in range(self.next, self.next + n):
            if self.kind == "accept":
                if i >= len(self.items):
                    raise Exhausted(f"accept: only {len(self.items)} reserved tasks were prepared")
                tid, mid, agent = self.items[i]
                body = json.dumps({"state": "ACTIVE", "agentId": agent}).encode()
                out.append(self._http("PUT", f"/v1/tasks/{tid}/media/{mid}/state", body))
            else:
                body = json.dumps({"conversationId": f"lg-{self.run_id}-{i}",
                                   "queueId": self.queue}).encode()
                path = "/v1/tasks" if self.kind == "push" else "/bare"
                out.append(self._http("POST", path, body))
        self.next += n
        return out


async def one(pool: Pool, data: bytes, timeout: float) -> int:
    conn = await pool.get()
    ok = False
    try:
        status = await asyncio.wait_for(conn.request(data), timeout)
        ok = True
        return status
    finally:
        pool.put(conn, ok)


async def open_step(pool: Pool, reqs: Requests, rate: float, duration: float, warmup: float,
                    timeout: float, pid: int | None = None) -> dict[str, Any]:
    n_warm = int(rate * warmup)
    n = int(rate * duration)
    data = reqs.take(n_warm + n)
    loop = asyncio.get_running_loop()
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    kinds: dict[str, int] = {}
    done_times: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def send(i: int, due: float) -> None:
        nonlocal errors
        try:
            status = await one(pool, data[i], timeout)
        except (TimeoutError, OSError, ConnectionError) as e:
            errors += 1
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
            if i >= n_warm:
                lat.append(float("inf"))
            return
        now = loop.time()
        if i >= n_warm:
            lat.append((now - due) * 1000)
            done_times.append(now)
            statuses[status] = statuses.get(status, 0) + 1

    meter = CpuMeter(pid)
    t0 = loop.time() + 0.01
    total = n_warm + n
    i = 0
    send_lag_max = 0.0
    while i < total:
        now = loop.time()
        due = t0 + i / rate
        if due > now:
            await asyncio.sleep(due - now)
            now = loop.time()
        # Everything due by now goes out (rates above the timer's resolution).
        while i < total and t0 + i / rate <= now:
            d = t0 + i / rate
            send_lag_max = max(send_lag_max, now - d)
            tasks.append(loop.create_task(send(i, d)))
            i += 1
    start_measured = t0 + n_warm / rate
    end_sched = t0 + total / rate
    await asyncio.gather(*tasks)
    end = max(done_times) if done_times else end_sched
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    cpu = meter.per_request(total)
    return {**cpu, "offered_rps": rate, "requests": n, "completed_2xx": ok, "statuses": statuses,
            "errors": errors, "error_kinds": kinds,
            "achieved_rps": ok / max(end - start_measured, 1e-9),
            "schedule_lag_max_ms": send_lag_max * 1000,
            "drain_ms": max(0.0, (end - end_sched) * 1000),
            "latencies_ms": lat}


async def closed_step(pool: Pool, reqs: Requests, conns: int, duration: float, warmup: float,
                      timeout: float, pid: int | None = None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + warmup + duration
    measure_from = loop.time() + warmup
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    batch: list[bytes] = []

    def next_req() -> bytes:
        nonlocal batch
        if not batch:
            try:
                batch = reqs.take(256)
            except Exhausted:
                n = len(reqs.items) - reqs.next
                if n <= 0:
                    raise
                batch = reqs.take(n)
            batch.reverse()
        return batch.pop()

    sent = 0

    ended = stop_at

    async def worker() -> None:
        nonlocal errors, sent, ended
        while loop.time() < stop_at:
            try:
                data = next_req()
            except Exhausted:  # the step ends early; the rate uses the time it ran
                ended = min(ended, loop.time())
                return
            sent += 1
            t = loop.time()
            try:
                status = await one(pool, data, timeout)
            except (TimeoutError, OSError, ConnectionError):
                errors += 1
                continue
            now = loop.time()
            if t >= measure_from and now <= stop_at:
                lat.append((now - t) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    meter = CpuMeter(pid)
    await asyncio.gather(*[worker() for _ in range(conns)])
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    ran = max(1e-3, min(duration, ended - measure_from))
    return {**meter.per_request(sent), "closed_connections": conns, "requests": len(lat), "completed_2xx": ok,
            "statuses": statuses, "errors": errors, "achieved_rps": ok / ran,
            "latencies_ms": lat}


async def main() -> None:
    spec = json.load(sys.stdin)
    reqs = Requests(spec)
    pool = Pool(spec["host"], spec["port"], spec.get("connections", 256))
    await pool.warm(spec.get("warm_connections", 32))
    timeout = spec.get("timeout", 5.0)
    out = []
    for step in spec["steps"]:
        if "closed" in step:
            r = await closed_step(pool, reqs, step["closed"], step["duration"], step.get("warmup", 0.5),
                                  timeout, spec.get("server_pid"))
        else:
            r = await open_step(pool, reqs, step["rate"], step["duration"], step.get("warmup", 0.5),
                                timeout, spec.get("server_pid"))
        r["statuses"] = {str(k): v for k, v in r["statuses"].items()}
        out.append(r)
        await asyncio.sleep(step.get("pause", 0.3))
    pool.close()
    json.dump({"steps": out, "used": reqs.next, "connections_opened": pool.opened}, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
