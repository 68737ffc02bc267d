"""The staffing simulator: the real routing scripts, through the Engine, on a
virtual clock (docs/simulation.md).

Each replication runs on its own tenant with a virtual clock
(Engine.set_clock): a discrete-event loop moves that clock from event to
event (arrivals, accepts, media closes, wrap-ups, hang-ups, agents back from
RONA, and the router's own deadlines fired by fire_due), so nothing waits in
real time and a seeded run is reproducible bit for bit, on the embedded
backend (default) or on a real Redis (REDIS_URL).

Use it from Python:

    from redroute.sim import load_scenario, simulate
    run = simulate(load_scenario("day.json"))          # every replication
    run.intervals(0.95)["sales"]["sl"]                 # Interval(mean, half, n)
    run.requests_per_second                            # simulated requests per wall second

or, inside an event loop, on a client you hold:

    from redroute.sim import Simulation, parse_scenario, run_replication
    result = await run_replication(scenario, 0, redis)  # fresh tenant, deleted after
    result.requests  # RequestRecord per request: arrival, reserved, answered, ended, outcome
    # or on an Engine of your own (its tenant gets the virtual clock):
    result = await Simulation(engine, scenario, replication=0).run()

A scenario is JSON (or a dict through parse_scenario): mrds, queues, agents
(by count), arrivals (Poisson rates per queue, constant or per interval),
handle / accept / wrapUpTime / patience distributions (exponential,
lognormal, fixed, empirical from a file), noAnswerProbability (RONA),
durationMs, warmupMs, seed and replications. Traffic of your own (a
recorded day, a benchmark load) is a list of RequestSpec passed as
`requests=` (one replication) or `traffic=` (a function of the replication
number, for simulate).
"""

from .core import ReplicationResult, RequestRecord, RequestSpec, Simulation, draw_requests
from .distributions import Distribution
from .runner import SimulationRun, run_replication, simulate, simulate_async
from .scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from .stats import Interval, aggregate, interval, replication_kpis

__all__ = [
    "Distribution",
    "Interval",
    "ReplicationResult",
    "RequestRecord",
    "RequestSpec",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "SimulationRun",
    "aggregate",
    "draw_requests",
    "interval",
    "load_scenario",
    "parse_scenario",
    "replication_kpis",
    "run_replication",
    "simulate",
    "simulate_async",
]
