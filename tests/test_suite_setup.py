"""The suite itself: in CI a missing redis-server is a failure, not a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one_redis_test(ci: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": "", "CI": ci}  # no redis-server to be found
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/engine/test_push.py::test_request_ttl_can_be_set_per_request"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_missing_redis_server_fails_the_run_in_ci():
    r = run_one_redis_test("true")
    assert r.returncode != 0
    assert "redis-server is not on PATH" in r.stdout
    assert "1 passed" in r.stdout  # the embedded backend still ran


def test_missing_redis_server_skips_outside_ci():
    r = run_one_redis_test("")
    assert r.returncode == 0, r.stdout
    assert "1 passed, 1 skipped" in r.stdout
