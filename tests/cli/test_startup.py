"""A command that cannot start says why in one line on stderr and exits with
a code (2: the configuration is wrong, 1: the port is taken or Redis does
not answer): never a hang, never a traceback. And what a user reads before
starting: --version, every flag's environment variable and default."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import redroute
from redroute.cli import build_parser
from redroute.settings import ENV
from tests.support.redis_server import RedisProcess, free_port


def redroute_cmd(*args: str, env: dict[str, str] | None = None,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ENV.values() and not k.startswith("REDROUTE_")}
    return subprocess.run([sys.executable, "-m", "redroute", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_serve_on_a_taken_port_exits_1_on_the_embedded_backend(taken_port: int) -> None:
    line = one_line_error(redroute_cmd("serve", "--port", str(taken_port)), 1)
    assert line == f"redroute serve: cannot listen on 127.0.0.1:{taken_port}: Address already in use"


def test_serve_on_a_taken_port_exits_1_on_real_redis(taken_port: int,
                                                     redis_server: RedisProcess) -> None:
    line = one_line_error(redroute_cmd("serve", "--port", str(taken_port),
                                       env={"REDIS_URL": redis_server.url}), 1)
    assert line == f"redroute serve: cannot listen on 127.0.0.1:{taken_port}: Address already in use"


def test_serve_with_several_workers_on_a_taken_port_says_it_once(
        taken_port: int, redis_server: RedisProcess) -> None:
    line = one_line_error(redroute_cmd("serve", "--port", str(taken_port), "--workers", "2",
                                       env={"REDIS_URL": redis_server.url}), 1)
    assert line == f"redroute serve: cannot listen on 127.0.0.1:{taken_port}: Address already in use"


@pytest.mark.parametrize("command", ["serve", "worker", "check"])
def test_a_redis_url_without_a_scheme_exits_2(command: str) -> None:
    line = one_line_error(redroute_cmd(command, env={"REDIS_URL": "localhost:6379"}), 2)
    assert line.startswith(f"redroute {command}: REDIS_URL 'localhost:6379' has no scheme")
    assert "redis://" in line


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unreachable_redis_exits_1(command: str) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    line = one_line_error(redroute_cmd(command, env={"REDIS_URL": url}), 1)
    assert line.startswith(f"redroute {command}: Redis at redis://:***@127.0.0.1:")
    assert "does not answer" in line and "secret" not in line


@pytest.mark.parametrize("content,why", [
    ("not json", "not JSON"),
    ('["k"]', "expected a JSON object"),
    ('{"has space": "acme"}', "without whitespace"),
    ('{"k-1": "bad{tenant}"}', "tenant"),
])
def test_a_malformed_api_key_file_exits_2(tmp_path: Path, content: str, why: str) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(content)
    line = one_line_error(redroute_cmd("serve", "--api-keys-file", str(keys),
                                       "--port", str(free_port())), 2)
    assert line.startswith(f"redroute serve: {keys}: ") and why in line


def test_a_missing_api_key_file_exits_2(tmp_path: Path) -> None:
    line = one_line_error(redroute_cmd("serve", "--api-keys-file", str(tmp_path / "nope.json")), 2)
    assert line == f"redroute serve: API keys file: No such file or directory: {tmp_path}/nope.json"


def test_malformed_api_keys_in_the_environment_exit_2() -> None:
    line = one_line_error(redroute_cmd("serve", env={"REDROUTE_API_KEYS": "acme-no-colon"}), 2)
    assert line == "redroute serve: REDROUTE_API_KEYS entry 1: expected tenant:key"


def test_a_worker_without_redis_url_refuses_to_start_and_says_why() -> None:
    line = one_line_error(redroute_cmd("worker"), 2)
    assert line.startswith("redroute worker: no REDIS_URL (or --redis-url)")
    assert "embedded backend" in line


def test_a_malformed_environment_value_is_a_usage_error_naming_the_flag() -> None:
    done = redroute_cmd("serve", env={"REDROUTE_PORT": "eighty"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "argument --port: invalid int value: 'eighty'" in done.stderr


def test_version() -> None:
    done = redroute_cmd("--version")
    assert done.returncode == 0
    assert done.stdout == f"redroute {redroute.__version__}\n"


def test_serve_listens_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDROUTE_HOST", raising=False)
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    monkeypatch.setenv("REDROUTE_HOST", "0.0.0.0")
    assert build_parser().parse_args(["serve"]).host == "0.0.0.0"


def parsers(parser: argparse.ArgumentParser, name: str = "redroute"
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_flag_help_shows_its_default_and_settings_flags_their_env_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ENV.values():
        monkeypatch.delenv(env, raising=False)
    seen = set()
    for name, parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            text = formatter._get_help_string(action) or ""
            assert "(default: " in text, (name, action.option_strings, text)
            if action.dest in ENV:
                assert f"[env {ENV[action.dest]}" in text, (name, action.option_strings, text)
                seen.add(action.dest)
        assert parser.format_help()
    assert seen == set(ENV), "a Settings variable no flag sets"


def test_serve_and_worker_help_name_their_environment_variables() -> None:
    out = redroute_cmd("serve", "--help").stdout
    for env in ("REDIS_URL", "REDROUTE_HOST", "REDROUTE_PORT", "REDROUTE_WORKERS",
                "REDROUTE_API_KEYS_FILE", "REDROUTE_LOG_FORMAT"):
        assert env in out
    assert "(default: 127.0.0.1)" in out and "(default: 8080)" in out
    out = redroute_cmd("worker", "--help").stdout
    assert "REDROUTE_TIMER_BATCH" in out and "(default: 50)" in out
