"""`redroute staff`: the fewest agents meeting a target, by simulation, with
Erlang C's answer beside it."""

from __future__ import annotations

import json

import pytest

from redroute.cli import main
from redroute.sim import Interval, parse_scenario
from redroute.sim.staffing import Target, find_staff, parse_target

MMC = {
    "seed": 2, "replications": 6, "durationMs": 4 * 3_600_000, "warmupMs": 1_200_000,
    "mrds": [{"id": "voice"}], "queues": [{"id": "sales", "mrdId": "voice"}],
    "agents": [{"id": "agent", "count": 1, "queues": ["sales"]}],
    "arrivals": [{"queueId": "sales", "ratePerHour": 100}],
    "handle": {"type": "exponential", "meanMs": 180_000},
}


def test_staff_agrees_with_erlang_c_on_an_mmc_queue(redis_server, tmp_path, capsys):
    # 5 Erlangs: Erlang C gives SL(20 s) 0.74 with 7 agents and 0.88 with 8,
    # so 8 is the fewest for 0.8, and the simulation must find the same.
    path = tmp_path / "mmc.json"
    path.write_text(json.dumps(MMC))

    code = main(["staff", str(path), "--target", "sl>=0.8@20000", "--redis-url", redis_server.url,
                 "--workers", "1"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "simulation: 8 agents" in out and "Erlang C:   8 agents" in out
    rows = {int(line.split()[0]): line.split()[-1] for line in out.splitlines()[2:-2]}
    assert rows[7] == "no" and rows[8] == "yes"


class Fake:
    """A run whose SL is a given function of the agent count."""

    def __init__(self, sl):
        self.sl = sl
        self.calls = []

    def __call__(self, sc):
        n = sc.agents[0].count
        self.calls.append(n)
        value = self.sl(n)
        return type("Run", (), {"intervals": lambda self, c=0.95: {
            "sales": {"sl": Interval(value, 0.01, 5)}}})()


@pytest.mark.parametrize("fewest", [1, 3, 8, 9, 40, 333])
def test_the_search_finds_the_fewest_from_any_starting_guess(fewest):
    sc = parse_scenario({**MMC, "arrivals": [{"queueId": "sales", "ratePerHour": 100}]})
    fake = Fake(lambda n: 0.9 if n >= fewest else 0.5)
    r = find_staff(sc, "sales", "agent", parse_target("sl>=0.8"), fake, high=1000)
    assert r.agents == fewest and r.erlang_c == 8
    assert len(fake.calls) == len(set(fake.calls)) <= 25  # each count simulated once


def test_no_count_within_the_bounds_is_said_so():
    sc = parse_scenario(MMC)
    r = find_staff(sc, "sales", "agent", parse_target("sl>=0.8"), Fake(lambda n: 0.1), high=20)
    assert r.agents is None and max(r.tried) == 20


@pytest.mark.parametrize(("text", "target"), [
    ("sl>=0.8@20000", Target("sl", ">=", 0.8, 20000)),
    (" SL >= 0.9 ", Target("sl", ">=", 0.9)),
    ("asa<=30000", Target("asa", "<=", 30000)),
    ("abandon<=0.05", Target("abandon", "<=", 0.05)),
])
def test_targets_read_as_written(text, target):
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["sl<=0.8", "sl>=1.5", "asa<=3@20", "occupancy>=0.8", "sl>=x"])
def test_a_bad_target_exits_2_and_says_how_to_write_one(text, tmp_path, capsys):
    path = tmp_path / "mmc.json"
    path.write_text(json.dumps(MMC))
    assert main(["staff", str(path), "--target", text]) == 2
    assert capsys.readouterr().err.startswith("redroute staff: ")
