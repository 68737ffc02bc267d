"""`redroute simulate`: the table, the JSON file and the plot of a scenario."""

from __future__ import annotations

import json
import sys

import pytest

from redroute.cli import main

SCENARIO = {
    "name": "small", "seed": 3, "replications": 3, "durationMs": 1_800_000, "warmupMs": 300_000,
    "mrds": [{"id": "voice"}],
    "queues": [{"id": "sales", "mrdId": "voice"}, {"id": "vip", "mrdId": "voice"}],
    "agents": [{"id": "a", "count": 3, "queues": ["sales"]},
               {"id": "b", "count": 2, "queues": ["sales", "vip"]}],
    "arrivals": [{"queueId": "sales", "ratePerHour": 60}, {"queueId": "vip", "ratePerHour": 10}],
    "handle": {"type": "exponential", "meanMs": 120_000},
    "patience": {"type": "exponential", "meanMs": 300_000},
}


@pytest.fixture
def scenario_file(tmp_path):
    def write(**changes):
        p = tmp_path / "scenario.json"
        p.write_text(json.dumps({**SCENARIO, **changes}))
        return str(p)
    return write


def test_simulate_prints_a_table_per_queue_with_intervals(scenario_file, capsys):
    assert main(["simulate", scenario_file(), "--workers", "1"]) == 0

    out = capsys.readouterr().out
    assert "small: 3 replications of 30 min (warm-up 5 min)" in out and "95% intervals" in out
    assert "queue sales (5 agents, SL within 20 s)" in out and "queue vip (2 agents" in out
    for label in ("offered", "answered", "abandoned", "SL", "ASA", "P(wait)", "occupancy"):
        assert f"\n  {label} " in out
    # Agents shared by both queues: no Erlang figures, and the table says why.
    assert "Erlang C" not in out and "not single-skill" in out


def test_a_single_skill_queue_gets_erlang_c_and_erlang_a_beside_it(scenario_file, capsys):
    single = {"queues": [{"id": "sales", "mrdId": "voice"}],
              "agents": [{"id": "a", "count": 4, "queues": ["sales"]}],
              "arrivals": [{"queueId": "sales", "ratePerHour": 60}]}
    assert main(["simulate", scenario_file(**single), "--workers", "1", "--replications", "2"]) == 0

    out = capsys.readouterr().out
    assert "simulated" in out and "Erlang C" in out and "Erlang A" in out
    sl_row = next(line for line in out.splitlines() if line.startswith("  SL "))
    assert len(sl_row.split()) == 5  # SL, mean [low, high], Erlang C (no SL for Erlang A)


def test_simulate_writes_the_json_document(scenario_file, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["simulate", scenario_file(), "--workers", "1", "--json", str(out)]) == 0

    doc = json.loads(out.read_text())
    assert doc["replications"] == 3 and doc["backend"] == "embedded"
    sl = doc["queues"]["sales"]["kpis"]["sl"]
    assert sl["n"] == 3 and sl["low"] <= sl["mean"] <= sl["high"]
    assert len(doc["perReplication"]) == 3
    assert doc["series"]["bucketMs"] == 60_000 and len(doc["series"]["queues"]["vip"]["waiting"]) == 30


def test_simulate_draws_waiting_and_sl_over_the_day(scenario_file, tmp_path, capsys):
    png = tmp_path / "day.png"
    assert main(["simulate", scenario_file(), "--workers", "1", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_plot_says_how_to_install_it(scenario_file, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an import of it fails
    assert main(["simulate", scenario_file(), "--workers", "1", "--plot",
                 str(tmp_path / "x.png")]) == 1
    assert "pip install 'redroute[sim]'" in capsys.readouterr().err


def test_a_bad_scenario_exits_2_naming_the_field(scenario_file, capsys):
    bad = scenario_file(handle={"type": "exponential", "meanMs": 0})
    assert main(["simulate", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("redroute simulate: ") and "handle.meanMs: Input should be greater than 0" in err


def test_the_same_seed_prints_the_same_figures(scenario_file, capsys):
    path = scenario_file()
    main(["simulate", path, "--workers", "1"])
    first = capsys.readouterr().out.splitlines()[:-1]  # all but the wall time
    main(["simulate", path, "--workers", "2"])
    assert capsys.readouterr().out.splitlines()[:-1] == first


def test_a_configuration_the_router_refuses_exits_2_with_its_reason(scenario_file, capsys):
    steps = [{"expression": "skill >= (", "timeoutMs": 1000}, {"expression": "skill"}]
    bad = scenario_file(queues=[{"id": "sales", "mrdId": "voice", "steps": steps},
                                {"id": "vip", "mrdId": "voice"}])
    assert main(["simulate", bad, "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "the router refused the configuration" in err and "queue sales: steps[1].expression" in err
