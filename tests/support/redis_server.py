"""Private redis-server processes for the suite: started from PATH on a free
port with keyspace notifications on, never a Redis the suite did not start.
With CI=true a missing redis-server fails the run instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as syncredis

from localredis import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class RedisProcess:
    """A redis-server this test run owns."""

    port: int
    proc: subprocess.Popen
    dir: Path
    args: list[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> syncredis.Redis:
        return syncredis.Redis(port=self.port, decode_responses=True)

    def stop(self, sig: int | None = None) -> None:
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            self.proc.wait(10)

    def start(self) -> None:
        self.proc = _spawn(self.args, self.dir)
        _wait_ready(self.port)


def _spawn(args: list[str], workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if syncredis.Redis(port=port, socket_timeout=0.5).ping():
                return
        except syncredis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not start")


def start_redis(*extra: str) -> RedisProcess:
    """Starts a private redis-server; extra arguments go on its command line."""
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "redis-server is not on PATH"
        if IN_CI:
            pytest.fail(f"{msg}: CI must test against real Redis", pytrace=False)
        pytest.skip(msg)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="redroute-redis-"))
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--notify-keyspace-events", "Ex", "--dir", str(workdir), *extra]
    rp = RedisProcess(port, _spawn(args, workdir), workdir, args)
    _wait_ready(port)
    return rp
