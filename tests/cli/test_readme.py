"""The curl examples of README.md's API and Security sections work as
written against a fresh `redroute serve` on the embedded backend (only the
port differs)."""

from __future__ import annotations

import json
import re
import shlex
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
        why = json.loads(by["/v1/tasks/t-5/routing"])
        assert (why["step"], why["candidates"][0]["reason"]) == (1, "STEP_NOT_REACHED")
        sse = next(v for k, v in outputs.items() if "type=AGENT_RESERVED" in k)
        assert sse.count("event: AGENT_RESERVED") == 3
        assert "event: NO_AGENT_AVAILABLE" in sse
        assert "redroute_queue_waiting" in by["/metrics"]
        # The reason codes the comments name
        assert json.loads(by["/v1/tasks/t-7"])["state"] == {
            "name": "CLOSED", "reasonCode": "NO_AGENT_AVAILABLE"}
        (chat,) = [m for m in json.loads(by["/v1/agents/agent-7"])["mrdStates"]
                   if m["mrdId"] == "chat"]
        assert (chat["state"], chat["reasonCode"]) == ("NOT_READY", "RONA")
        # Routing policies: the second request went to the overflow queue; the first was re-prioritised
        first = json.loads(next(v for k, v in outputs.items() if '"c-50"' in k))
        overflowed = json.loads(next(v for k, v in outputs.items() if '"c-51"' in k))
        assert (first["queueId"], overflowed["queueId"]) == ("vip-chat", "tier2-chat")
        assert json.loads(next(v for k, v in outputs.items() if "/priority" in k))["priority"] == 9
        full = json.loads(next(v for k, v in outputs.items() if '"c-52"' in k))
        assert full["code"] == "QUEUE_FULL"


def section_blocks(title: str) -> list[list[str]]:
    """The command lines of each bash block of a README section."""
    text = README.read_text()
    section = text[text.index(f"\n## {title}\n"):]
    section = section[:section.find("\n## ", 1)]
    return [[line for line in b.splitlines() if line.strip() and not line.startswith("#")]
            for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_security_example_works_on_a_fresh_server(tmp_path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (write_keys, start), calls = section_blocks("Security")[:2]
    subprocess.run(["bash", "-c", write_keys], cwd=tmp_path, check=True)
    words = shlex.split(start)
    assert words[:2] == ["redroute", "serve"]
    args = [str(tmp_path / w) if (tmp_path / w).exists() else w for w in words[2:]]
    with serve(*args) as (url, _proc, _log):
        port = url.rsplit(":", 1)[1]
        outputs = []
        for cmd in calls:
            run = cmd.replace("localhost:8080", f"localhost:{port}")
            r = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, (cmd, r.stderr)
            doc = json.loads(r.stdout)
            expected = re.search(r"#\s*(\d{3})\b", cmd)
            assert doc.get("status") == (int(expected.group(1)) if expected else None), (cmd, doc)
            outputs.append(doc)
    created, read, refused = outputs
    assert created["id"] == read["id"] == "chat" and read["maxRequests"] == 2
    assert refused["code"] == "UNAUTHORIZED"
