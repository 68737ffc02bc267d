"""`redroute events export` and `redroute simulate --replay`: a recorded day
played again on the router, as it was and under a changed configuration."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import pytest
import redis.asyncio as aioredis

from redroute import Engine
from redroute.cli import main
from redroute.sim import parse_scenario, run_replication
from redroute.sim.replay import export_lines
from tests.support.center import setup_center

DAY = {
    "name": "recorded", "seed": 4, "replications": 1, "durationMs": 7_200_000,
    "mrds": [{"id": "voice", "wrapUp": {"enabled": True, "timeoutMs": 30_000}}],
    "queues": [{"id": "sales", "mrdId": "voice", "agentSlaMs": 15_000}],
    "agents": [{"id": "a", "count": 6, "queues": ["sales"]}],
    "arrivals": [{"queueId": "sales", "ratePerHour": 150}],
    "handle": {"type": "lognormal", "meanMs": 120_000, "sdMs": 60_000},
    "accept": {"type": "exponential", "meanMs": 3000},
    "wrapUpTime": {"type": "exponential", "meanMs": 10_000},
    "patience": {"type": "exponential", "meanMs": 120_000},
    "noAnswerProbability": 0.05,
}

# How close a replay under the same configuration must come to the
# recorded day: counts within 1% of the offered requests, shares within
# 0.01, mean times within 2% (and 0.5 s).
TOLERANCE = {"count": 0.01, "share": 0.01, "time": 0.02}


async def test_export_writes_each_moment_of_a_request_with_its_time(engine: Engine):
    await engine.set_clock(1_000_000_000_000)  # time moves only when the test moves it
    await setup_center(engine, agents=("a1",), ready=True, wrap_up=True, sla_ms=10_000)
    t = await engine.push_task("c-1", "sales")
    await engine.set_clock(1_000_000_010_000)
    await engine.fire_due()  # RONA: re-queued, a1 NOT_READY
    await engine.set_agent_state("a1", "READY", mrd_id="chat")
    t2 = (await engine.conversation_tasks("c-1"))[-1]
    await engine.accept(t2.id, t2.media.id, "a1")
    await engine.close_media(t2.id, t2.media.id)
    await engine.set_task_state(t2.id, "CLOSED", "WRAP_UP_APPLIED")

    lines = list(export_lines(await engine.events()))

    assert [(x["type"], x["taskId"]) for x in lines] == [
        ("arrival", t.id), ("reserved", t.id), ("unanswered", t.id), ("reserved", t2.id),
        ("accepted", t2.id), ("wrapUp", t2.id), ("closed", t2.id)]
    assert {x["requestId"] for x in lines} == {t.request_id}
    assert lines[0]["at"] == t.enqueue_time and lines[-1]["reason"] == "WRAP_UP_APPLIED"
    assert lines[2]["at"] == t.enqueue_time + 10_000 and all(x["id"] for x in lines)


def record_day(url: str, tenant: str) -> None:
    """A day of traffic through the router (its events kept on the tenant)."""
    async def go() -> None:
        client = aioredis.from_url(url, decode_responses=True)
        try:
            await run_replication(parse_scenario(DAY), 0, client, keep=True, tenant=tenant)
        finally:
            await client.aclose()
    asyncio.run(go())


@pytest.fixture(scope="module")
def recorded(redis_server, tmp_path_factory):
    """The recorded day exported to JSONL, and the scenario file."""
    tenant = "replay-day"
    record_day(redis_server.url, tenant)
    folder = tmp_path_factory.mktemp("replay")
    day = folder / "day.jsonl"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["events", "export", "--redis-url", redis_server.url, "--tenant", tenant]) == 0
    day.write_text(buf.getvalue())
    return folder, day, redis_server.url


def scenario_file(folder, **changes) -> str:
    p = folder / f"scenario-{len(changes)}.json"
    p.write_text(json.dumps({**DAY, **changes}))
    return str(p)


def test_a_replay_under_the_same_configuration_reproduces_the_recorded_day(recorded, capsys):
    folder, day, url = recorded
    out = folder / "same.json"
    assert main(["simulate", "--replay", str(day), scenario_file(folder), "--workers", "1", "--redis-url", url,
                 "--json", str(out)]) == 0

    doc = json.loads(out.read_text())
    rec, rep = doc["recorded"]["sales"], doc["queues"]["sales"]["kpis"]
    offered = rec["offered"]
    assert offered > 250 and rep["offered"]["mean"] == offered
    for m in ("answered", "abandoned"):
        assert abs(rep[m]["mean"] - rec[m]) <= TOLERANCE["count"] * offered, m
    for m in ("sl", "pWait", "abandonRate", "occupancy"):
        assert abs(rep[m]["mean"] - rec[m]) <= TOLERANCE["share"], m
    for m in ("asaMs", "meanWaitMs"):
        assert abs(rep[m]["mean"] - rec[m]) <= max(500, TOLERANCE["time"] * rec[m]), m
    assert "recorded  replayed  difference" in capsys.readouterr().out


def test_a_replay_with_two_more_agents_prints_the_differences_side_by_side(recorded, capsys):
    folder, day, url = recorded
    more = scenario_file(folder, agents=[{"id": "a", "count": 8, "queues": ["sales"]}])
    assert main(["simulate", "--replay", str(day), more, "--workers", "1", "--redis-url", url]) == 0

    out = capsys.readouterr().out
    assert "queue sales (8 agents in the scenario)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    recorded_sl, replayed_sl, diff = float(rows["SL"][1]), float(rows["SL"][2]), rows["SL"][3]
    assert replayed_sl > recorded_sl + 0.1 and diff.startswith("+")
    assert rows["offered"][1] == rows["offered"][2]  # the same customers
    assert rows["abandoned"][3].startswith("-")


def test_a_replay_of_a_record_for_another_queue_exits_2(recorded, capsys):
    folder, day, url = recorded
    other = scenario_file(folder, queues=[{"id": "support", "mrdId": "voice"}],
                          agents=[{"id": "a", "count": 8, "queues": ["support"]}],
                          arrivals=[{"queueId": "support", "ratePerHour": 1}])
    assert main(["simulate", "--replay", str(day), other]) == 2
    assert "queues the scenario lacks: sales" in capsys.readouterr().err


def test_export_from_an_id_writes_what_follows_it(recorded, capsys):
    folder, day, url = recorded
    lines = day.read_text().splitlines()
    half = len(lines) // 2
    middle = json.loads(lines[half])["id"]  # one record per event: ids are unique here
    capsys.readouterr()

    assert main(["events", "export", "--redis-url", url, "--tenant", "replay-day", "--from", middle]) == 0

    assert capsys.readouterr().out.splitlines() == lines[half + 1:]
