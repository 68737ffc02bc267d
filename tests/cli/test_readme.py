"""The curl examples of README.md's API section work as written against a
fresh `redroute serve` on the embedded backend (only the port differs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.http import serve_process as serve

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("<!-- api:start -->"):text.index("<!-- api:end -->")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for b in blocks for line in b.splitlines()
            if line.strip() and not line.startswith("#")]


def test_readme_curl_examples_work_as_written() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    commands = examples()
    assert len(commands) > 25
    with serve() as (url, _proc, _log):
        port = url.rsplit(":", 1)[1]
        outputs = {}
        for cmd in commands:
            run = cmd.replace("localhost:8080", f"localhost:{port}")
            r = subprocess.run(["bash", "-o", "pipefail", "-c", run], capture_output=True,
                               timeout=30)
            out = r.stdout.decode()
            streaming = "--max-time" in cmd
            assert r.returncode in ((0, 28) if streaming else (0,)), (cmd, r.stderr)
            assert out, cmd
            outputs[cmd] = out
            expected = re.search(r"#\s*(\d{3})\s*$", cmd)
            if expected:  # an error example: the problem document it names
                problem = json.loads(out)
                assert problem["status"] == int(expected.group(1)), (cmd, out)
            elif out.lstrip().startswith("{") and "--max-time" not in cmd and "head" not in cmd:
                doc = json.loads(out)
                assert "code" not in doc, (cmd, out)
        # Spot checks of the story the examples tell
        by = {k.split("localhost:8080", 1)[1].split()[0]: v for k, v in outputs.items()
              if "localhost:8080" in k}
        assert json.loads(by["/v1/tasks/t-1"])["state"] == {"name": "CLOSED",
                                                            "reasonCode": "TRANSFERRED"}
        tasks = json.loads(by["/v1/conversations/c-42/tasks"])["tasks"]
        assert [(t["id"], t["state"]["reasonCode"]) for t in tasks] == [
            ("t-1", "TRANSFERRED"), ("t-2", "WRAP_UP_APPLIED"), ("t-3", "RONA")]
        sse = next(v for k, v in outputs.items() if "type=AGENT_RESERVED" in k)
        assert sse.count("event: AGENT_RESERVED") == 3
        assert "event: NO_AGENT_AVAILABLE" in sse
        assert "redroute_queue_waiting" in by["/metrics"]
