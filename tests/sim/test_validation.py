"""The simulator against queueing theory, on a real Redis.

Every interval here is the two-sided 99% Student-t confidence interval of
the mean over R independent replications (R - 1 degrees of freedom; each
replication starts empty, drops its warm-up, and gives one value of each
KPI). A test passes when the closed-form value lies inside it, and checks
that the interval is narrow enough to mean something. At 99%, a correct
simulator fails one such check in a hundred by chance: the seeds are fixed,
so the outcome is the same on every run.
"""

from __future__ import annotations

import pytest

from redroute.sim import SimulationRun, interval, parse_scenario, simulate
from redroute.sim.erlang import erlang_a, erlang_c

H = 100_000  # mean handle time, ms
CONFIDENCE = 0.99


def mmc(agents: int, load: float, arrivals: int, warmup_handles: float, replications: int,
        **extra) -> dict:
    """A single-skill queue: Poisson arrivals at load x agents / H, exponential
    handle times (mean H), the TTL out of reach, accepting at once."""
    rate_per_hour = load * agents / H * 3_600_000
    return {
        "seed": 5, "replications": replications,
        "durationMs": int(arrivals * 3_600_000 / rate_per_hour),
        "warmupMs": int(warmup_handles * H),
        "mrds": [{"id": "voice"}], "queues": [{"id": "q", "mrdId": "voice"}],
        "agents": [{"id": "a", "count": agents, "queues": ["q"]}],
        "arrivals": [{"queueId": "q", "ratePerHour": rate_per_hour}],
        "handle": {"type": "exponential", "meanMs": H}, **extra,
    }


def run_on(redis_server, scenario: dict) -> SimulationRun:
    return simulate(parse_scenario(scenario), url=redis_server.url, workers=1, concurrency=8)


# agents, load, arrivals per replication, warm-up (handle times), and the
# widest P(wait) interval accepted (half-width): near saturation a queue
# forgets its empty start slowly, so each replication says less.
@pytest.mark.parametrize(("agents", "load", "arrivals", "warmup", "widest"), [
    (2, 0.5, 400, 3, 0.1),
    (10, 0.8, 700, 5, 0.15),
    (40, 0.95, 1200, 10, 0.2),
])
def test_mmc_matches_erlang_c_p_wait_and_mean_wait(redis_server, agents, load, arrivals, warmup,
                                                   widest):
    run = run_on(redis_server, mmc(agents, load, arrivals, warmup, replications=8))
    kpis = run.intervals(CONFIDENCE)["q"]
    theory = erlang_c(agents, load * agents / H, H)

    p_wait, wait = kpis["pWait"], kpis["meanWaitMs"]
    assert p_wait.n == 8 and p_wait.contains(theory.p_wait), (p_wait, theory.p_wait)
    assert wait.contains(theory.mean_wait_ms), (wait, theory.mean_wait_ms)
    # Informative intervals (a mean wait's is the wider: waits are heavy-tailed).
    assert p_wait.half < widest and wait.half < 1.2 * theory.mean_wait_ms
    assert kpis["abandonRate"].mean == 0 and kpis["occupancy"].contains(load)


@pytest.mark.parametrize(("agents", "load", "patience"), [
    (10, 1.1, 2 * H),  # overloaded: only abandonment keeps it stable
    (20, 0.9, H),
])
def test_mmc_with_exponential_patience_matches_erlang_a(redis_server, agents, load, patience):
    run = run_on(redis_server, mmc(agents, load, 600, 5, replications=8,
                                   patience={"type": "exponential", "meanMs": patience}))
    kpis = run.intervals(CONFIDENCE)["q"]
    theory = erlang_a(agents, load * agents / H, H, patience)

    abandon, p_wait = kpis["abandonRate"], kpis["pWait"]
    assert abandon.contains(theory.abandon_rate), (abandon, theory.abandon_rate)
    assert p_wait.contains(theory.p_wait), (p_wait, theory.p_wait)
    assert abandon.half < 0.5 * theory.abandon_rate and p_wait.half < 0.15


SKILLS = {
    "seed": 9, "replications": 5, "durationMs": 2 * 3_600_000, "warmupMs": 1_200_000,
    "mrds": [{"id": "voice"}],
    "agents": [{"id": "expert", "count": 3, "queues": ["support"], "attributes": {"skill": 9}},
               {"id": "novice", "count": 4, "queues": ["support"], "attributes": {"skill": 3}}],
    "arrivals": [{"queueId": "support", "ratePerHour": 180}],  # 5 Erlangs: too many for 3 experts
    "handle": {"type": "exponential", "meanMs": H},
}


def skills(first_step_ms: int) -> dict:
    steps = [{"expression": "skill >= 7", "timeoutMs": first_step_ms}, {"expression": "skill >= 1"}]
    return {**SKILLS, "queues": [{"id": "support", "mrdId": "voice", "steps": steps}]}


def test_a_shorter_first_step_raises_the_service_level_of_a_skills_queue(redis_server):
    # Experts alone cannot carry the load: the sooner a request widens to
    # every agent (the first step's timeout), the sooner it is answered. The
    # same customers in both runs (common random numbers), so the SL
    # difference is compared replication by replication: its 99% interval
    # lies above zero.
    slow = run_on(redis_server, skills(120_000))
    fast = run_on(redis_server, skills(5_000))

    diffs = [f["support"]["sl"] - s["support"]["sl"] for f, s in zip(fast.kpis, slow.kpis, strict=True)]
    gain = interval(diffs, CONFIDENCE)
    assert gain.low > 0, gain
    slow_wait = slow.intervals(CONFIDENCE)["support"]["asaMs"]
    fast_wait = fast.intervals(CONFIDENCE)["support"]["asaMs"]
    assert fast_wait.high < slow_wait.low  # and the wait falls with it
