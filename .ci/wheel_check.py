"""What users get, checked the way they use it: the wheel, built and
installed by the two commands the Dockerfile runs (tests/support/wheel.py),
in a fresh venv, run from outside the source tree.

1. The wheel holds every package, its package data (the wallboard page) and
   every Lua script of the source tree.
2. `redroute serve` from it, on the embedded backend: a whole lifecycle over
   HTTP (MRD, queue, agent READY, push, accept, close), an SSE event read and
   the wallboard page (GET /wallboard, read from the installed package),
   then SIGTERM and exit 0.
3. `redroute serve --no-timers` and `redroute worker` from it, on a real Redis
   this script starts: a task whose TTL passes stays open until the worker
   runs, which closes it NO_AGENT_AVAILABLE.

Run from the repository root by .ci/run: `.venv/bin/python .ci/wheel_check.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.http import stop_process, wait_healthy  # noqa: E402
from tests.support.redis_server import free_port, start_redis  # noqa: E402
from tests.support.wheel import INSTALL, build, contents_problems, run_pip, wheel_names  # noqa: E402


def say(msg: str) -> None:
    print(f"wheel check: {msg}", flush=True)


def call(base: str, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def expect(base: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    got, doc = call(base, method, path, body)
    assert got == status, f"{method} {path}: {got} {doc}"
    return doc


@contextmanager
def process(venv: Path, cwd: Path, name: str, *args: str, env: dict[str, str] | None = None,
            ) -> Iterator[subprocess.Popen[bytes]]:
    """`redroute <args>` from the venv, in cwd, with none of the source tree's
    paths; SIGTERM at the end, which must end it with 0."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "REDIS_URL", "VIRTUAL_ENV") and not k.startswith("REDROUTE_")}
    log = cwd / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "redroute"), *args], cwd=cwd,
                                env={**clean, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    except BaseException:
        print(log.read_text(), file=sys.stderr)
        raise
    finally:
        stopped = stop_process(proc)
    assert stopped, f"{name} did not stop on SIGTERM"
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{log.read_text()}"


def wait_serving(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            status, health = call(base, "GET", "/healthz")
            assert status == 503 and health["redis"] and not health["timerWorker"], health
            return
        except OSError:
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)


def read_sse_event(base: str, wanted: str) -> dict[str, Any]:
    """Reads GET /v1/events from the first retained event until one of type wanted."""
    req = urllib.request.Request(base + "/v1/events", headers={"Last-Event-ID": "0"})
    fields: dict[str, str] = {}
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for raw in r:
            line = raw.decode().rstrip("\n")
            if not line:
                if fields.get("event") == wanted:
                    return {"id": fields["id"], **json.loads(fields["data"])}
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
    raise AssertionError(f"the stream ended before a {wanted} event")


def read_wallboard(base: str) -> bytes:
    """GET /wallboard: the page, from the package data of the installed wheel."""
    with urllib.request.urlopen(base + "/wallboard", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html"), r.headers
        assert r.headers["Content-Security-Policy"], r.headers
        page = r.read()
    assert b"<title>redroute wallboard</title>" in page and b"/v1/statistics" in page
    return page


def lifecycle_on_the_embedded_backend(venv: Path, cwd: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with process(venv, cwd, "serve-embedded", "serve", "--port", str(port),
                 "--log-format", "text") as proc:
        assert wait_healthy(base, proc, 30), "the server never became healthy"
        expect(base, "PUT", "/v1/mrds/chat", {"maxRequests": 1})
        expect(base, "PUT", "/v1/queues/sales", {"mrdId": "chat"})
        expect(base, "PUT", "/v1/agents/a1", {"queues": ["sales"]})
        agent = expect(base, "POST", "/v1/agents/a1/state", {"state": "READY"})
        assert agent["state"]["name"] == "READY", agent
        task = expect(base, "POST", "/v1/tasks", {"conversationId": "c-1", "queueId": "sales"},
                      status=201)
        assert task["assignedTo"] == "a1", task
        media = task["activeMedia"][0]["id"]
        task = expect(base, "PUT", f"/v1/tasks/{task['id']}/media/{media}/state",
                      {"state": "ACTIVE", "agentId": "a1"})
        task = expect(base, "PUT", f"/v1/tasks/{task['id']}/media/{media}/state",
                      {"state": "CLOSED"})
        assert task["state"] == {"name": "CLOSED", "reasonCode": "DONE"}, task
        event = read_sse_event(base, "AGENT_RESERVED")
        assert event["agentId"] == "a1" and event["task"]["id"] == task["id"], event
        page = read_wallboard(base)
    say(f"serve on the embedded backend: lifecycle over HTTP, SSE event {event['id']} read, "
        f"GET /wallboard ({len(page)} bytes), SIGTERM, exit 0")


def ttl_closed_by_the_worker(venv: Path, cwd: Path) -> None:
    redis = start_redis()
    try:
        env = {"REDIS_URL": redis.url}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with process(venv, cwd, "serve-redis", "serve", "--no-timers", "--port", str(port),
                     "--log-format", "text", env=env) as proc:
            wait_serving(base, proc)  # not healthy: no timer worker anywhere yet
            expect(base, "PUT", "/v1/mrds/chat", {})
            expect(base, "PUT", "/v1/queues/sales", {"mrdId": "chat", "agentRequestTtlMs": 1000})
            task = expect(base, "POST", "/v1/tasks", {"conversationId": "c-1", "queueId": "sales"},
                          status=201)
            time.sleep(1.5)  # past its TTL, with no worker to fire it
            waiting = expect(base, "GET", f"/v1/tasks/{task['id']}")
            assert waiting["state"]["name"] != "CLOSED", waiting
            with process(venv, cwd, "worker", "worker", "--log-format", "text", env=env):
                deadline = time.monotonic() + 15
                while True:
                    task = expect(base, "GET", f"/v1/tasks/{task['id']}")
                    if task["state"]["name"] == "CLOSED" or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert task["state"] == {"name": "CLOSED", "reasonCode": "NO_AGENT_AVAILABLE"}, task
                # the worker's heartbeat makes serve healthy
                assert wait_healthy(base, proc, 30), "serve not healthy with the worker"
    finally:
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)
    say("serve --no-timers + worker on a real Redis: TTL closed NO_AGENT_AVAILABLE by the "
        "worker; SIGTERM, exit 0 for both")


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redroute-wheel-") as tmp:
        tmp_path = Path(tmp)
        dist = tmp_path / "dist"
        wheel = build(sys.executable, dist)
        names = wheel_names(wheel)
        problems = contents_problems(names)
        assert not problems, "\n".join(problems)
        code = sorted(n for n in names if n.endswith((".py", ".lua")))
        data = sorted(n for n in names if n.startswith("redroute/") and n.endswith(".html"))
        say(f"{wheel.name}: {sum(n.endswith('.py') for n in code)} modules of "
            f"{sum(n.endswith('/__init__.py') for n in code)} packages, "
            f"{sum(n.endswith('.lua') for n in code)} Lua scripts and package data "
            f"{', '.join(data)}, as in the source tree")

        venv = tmp_path / "venv"
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)],
                       check=True)
        run_pip(INSTALL, venv / "bin" / "python", dist, "--quiet")
        away = tmp_path / "elsewhere"
        away.mkdir()
        where = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import redroute, sys; print(redroute.__file__); "
                                "print(sys.version.split()[0])"],
                               cwd=away, env={"PATH": os.environ["PATH"]}, capture_output=True,
                               text=True, check=True).stdout.split()
        assert "/site-packages/redroute/" in where[0] and str(ROOT) not in where[0], where
        version = subprocess.run([str(venv / "bin" / "redroute"), "--version"], cwd=away,
                                 capture_output=True, text=True, check=True).stdout.strip()
        say(f"installed with the constraints of requirements.lock on Python {where[1]}: "
            f"{where[0]} ({version})")

        lifecycle_on_the_embedded_backend(venv, away)
        ttl_closed_by_the_worker(venv, away)
    say(f"passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
