"""Scenario files: validated, with an error that names the field at fault;
distributions drawn reproducibly from a seed."""

from __future__ import annotations

import json
import random

import pytest

from redroute.sim import ScenarioError, draw_requests, load_scenario, parse_scenario

GOOD = {
    "durationMs": 3_600_000,
    "mrds": [{"id": "voice"}],
    "queues": [{"id": "q", "mrdId": "voice"}],
    "agents": [{"id": "a", "count": 3, "queues": ["q"]}],
    "arrivals": [{"queueId": "q", "ratePerHour": 100}],
}


@pytest.mark.parametrize(("change", "field"), [
    ({"durationMs": 5}, "durationMs"),
    ({"replications": 0}, "replications"),
    ({"handle": {"type": "exponential", "meanMs": -1}}, "handle.meanMs"),
    ({"handle": {"type": "gamma", "meanMs": 3}}, "handle"),
    ({"patience": {"type": "lognormal", "meanMs": 10}}, "patience.sdMs"),
    ({"queues": [{"id": "q", "mrdId": "chat"}]}, "queues[0].mrdId"),
    ({"queues": [{"id": "q", "mrdId": "voice", "agentSlaMs": 0}]}, "queues[0].agentSlaMs"),
    ({"agents": [{"id": "a", "count": 3, "queues": ["nope"]}]}, "agents[0].queues"),
    ({"agents": [{"id": "a:b", "count": 3, "queues": ["q"]}]}, "agents[0].id"),
    ({"arrivals": [{"queueId": "q", "ratePerHour": -3}]}, "arrivals[0].ratePerHour"),
    ({"arrivals": [{"queueId": "x", "ratePerHour": 3}]}, "arrivals[0].queueId"),
    ({"noAnswerProbability": 2}, "noAnswerProbability"),
    ({"warmupMs": 3_600_000}, "warmupMs"),
    ({"colour": "blue"}, "colour"),
    ({"handle": {"type": "empirical", "file": "missing.txt"}}, "handle.file"),
    ({"queues": [{"id": "q", "mrdId": "voice", "overflow": {"afterMs": 5, "queueId": "x"}}]},
     "queues[0].overflow"),
    ({"mrds": [{"id": "voice", "blocks": ["chat"]}]}, "mrds[0].blocks"),
])
def test_a_bad_scenario_is_refused_naming_its_field(change, field):
    with pytest.raises(ScenarioError) as e:
        parse_scenario({**GOOD, **change})
    assert str(e.value).startswith(f"{field}: "), str(e.value)


def test_a_scenario_file_that_is_not_json_says_so(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{nope")
    with pytest.raises(ScenarioError, match="is not JSON"):
        load_scenario(p)


def test_an_empirical_distribution_reads_its_file_beside_the_scenario(tmp_path):
    (tmp_path / "handle.txt").write_text("1000\n2000\n3000\n")
    (tmp_path / "s.json").write_text(json.dumps({**GOOD, "handle": {"type": "empirical",
                                                                    "file": "handle.txt"}}))
    sc = load_scenario(tmp_path / "s.json")
    draws = {sc.handle.sample(random.Random(i)) for i in range(50)}
    assert draws == {1000, 2000, 3000} and sc.handle.mean_ms == 2000


def test_each_distribution_draws_whole_ms_around_its_mean():
    rng = random.Random(3)
    for spec, mean in [({"type": "exponential", "meanMs": 1000}, 1000),
                       ({"type": "lognormal", "meanMs": 1000, "sdMs": 500}, 1000),
                       ({"type": "fixed", "valueMs": 700}, 700)]:
        d = parse_scenario({**GOOD, "handle": spec}).handle
        xs = [d.sample(rng) for _ in range(20_000)]
        assert all(isinstance(x, int) and x >= 0 for x in xs)
        assert abs(sum(xs) / len(xs) - mean) < 0.03 * mean, spec


def test_the_same_seed_draws_the_same_day_and_another_seed_another():
    a, b = draw_requests(parse_scenario(GOOD), 0), draw_requests(parse_scenario(GOOD), 0)
    c = draw_requests(parse_scenario({**GOOD, "seed": 2}), 0)
    d = draw_requests(parse_scenario(GOOD), 1)  # the next replication
    assert a == b and a != c and a != d


def test_more_agents_leave_the_traffic_as_it_was():
    # Common random numbers: a what-if on staffing compares the same customers.
    sc = parse_scenario(GOOD)
    assert draw_requests(sc.with_agents("a", 9), 0) == draw_requests(sc, 0)


def test_rates_per_interval_shape_the_day():
    sc = parse_scenario({**GOOD, "durationMs": 7_200_000,
                         "arrivals": [{"queueId": "q", "ratePerHour": [600, 0]}]})
    ats = [r.at for r in draw_requests(sc, 0)]
    assert 500 < len(ats) < 700 and max(ats) < 3_600_000
