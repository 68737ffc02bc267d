"""The suite itself: in CI a missing redis-server, or a missing browser for
the web page's tests, is a failure, not a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_one_browser_test(ci: str, tmp_path: Path) -> subprocess.CompletedProcess:
    # redis-server alone on PATH: no chromium, no chromium-driver
    redis = shutil.which("redis-server")
    if redis is None:
        pytest.skip("redis-server is not on PATH")
    (tmp_path / "redis-server").symlink_to(redis)
    env = {**os.environ, "PATH": str(tmp_path), "CI": ci}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/http/test_wallboard.py::test_a_team_board_shows_the_queues_its_url_names"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_missing_browser_fails_the_run_in_ci(tmp_path: Path):
    r = run_one_browser_test("true", tmp_path)
    assert r.returncode != 0
    assert "chromium and chromium-driver not on PATH" in r.stdout


def test_missing_browser_skips_outside_ci(tmp_path: Path):
    r = run_one_browser_test("", tmp_path)
    assert r.returncode == 0, r.stdout
    assert "1 skipped" in r.stdout
