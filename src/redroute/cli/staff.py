"""`redroute staff`: the smallest number of agents meeting a target (e.g.
`--target "sl>=0.8@20000"`) by simulation, with Erlang C's answer beside it
for a single-skill queue (redroute.sim.staffing).

Exit status: 0 when a count meets the target, 1 when none up to --max does
or Redis cannot be reached, 2 for a scenario, target or option that cannot
run."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import REDIS_DOWN, RedrouteError
from ..sim.runner import simulate
from ..sim.scenario import Scenario, ScenarioError
from ..sim.staffing import MAX_AGENTS, StaffResult, find_staff, parse_target
from .options import HELP
from .simulate import fail, load, scenario_options

_LABEL = {"sl": "SL", "asa": "ASA (s)", "abandon": "abandon rate"}


def _pick(sc: Scenario, queue_id: str | None, group_id: str | None) -> tuple[str, str]:
    if queue_id is None:
        if len(sc.queues) != 1:
            raise ValueError("the scenario has several queues: name one with --queue")
        queue_id = sc.queues[0].id
    elif queue_id not in {q.id for q in sc.queues}:
        raise ValueError(f"--queue: no queue {queue_id!r} in the scenario")
    serving = [g.id for g in sc.agents if queue_id in g.queues]
    if group_id is None:
        if len(serving) != 1:
            raise ValueError(f"queue {queue_id} is served by {len(serving)} agent groups: "
                             "name the one to size with --group")
        group_id = serving[0]
    elif group_id not in serving:
        raise ValueError(f"--group: no agent group {group_id!r} serving queue {queue_id}")
    return queue_id, group_id


def _fmt(metric: str, x: float) -> str:
    return f"{x / 1000:.1f}" if metric == "asa" else f"{x:.3f}"


def report(r: StaffResult, sc: Scenario, backend: str) -> str:
    t = r.target
    lines = [f"staffing queue {r.queue_id} for {t} by agent group {r.group_id} "
             f"({sc.replications} replications per count, seed {sc.seed}, {backend} backend)",
             ]
    rows = [("agents", f"{_LABEL[t.metric]}: mean [95% interval]", "meets")]
    for n in sorted(r.tried):
        iv = r.tried[n]
        cell = "-" if iv is None else (
            _fmt(t.metric, iv.mean) + (f" [{_fmt(t.metric, max(0.0, iv.low))}, {_fmt(t.metric, iv.high)}]"
                                       if iv.n > 1 else ""))
        rows.append((str(n), cell, "yes" if t.met(None if iv is None else iv.mean) else "no"))
    w0, w1 = (max(len(row[i]) for row in rows) for i in (0, 1))
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    extra = f" (plus {r.agents_elsewhere} in other groups)" if r.agents_elsewhere else ""
    sim = "none within the bounds" if r.agents is None else f"{r.agents} agents{extra}"
    erl = "n/a (not a single-skill queue, or an abandonment target)" if r.erlang_c is None \
        else f"{r.erlang_c} agents"
    lines += [f"simulation: {sim}", f"Erlang C:   {erl}"]
    return "\n".join(lines)


def cmd_staff(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.target)
        sc = load(args)
        queue_id, group_id = _pick(sc, args.queue, args.group)
        if not 0 <= args.min <= args.max <= MAX_AGENTS:
            raise ValueError(f"--min and --max must satisfy 0 <= min <= max <= {MAX_AGENTS}")
    except ScenarioError as e:
        return fail("staff", f"{args.scenario}: {e}")
    except ValueError as e:
        return fail("staff", str(e))
    backend: list[str] = []

    def run(s: Scenario) -> Any:
        r = simulate(s, url=args.redis_url or None, workers=args.sim_workers or None)
        backend.append(r.backend)
        return r

    try:
        result = find_staff(sc, queue_id, group_id, target, run, low=args.min, high=args.max)
    except REDIS_DOWN as e:
        return fail("staff", f"Redis is unavailable: {e}", 1)
    except RedrouteError as e:
        return fail("staff", f"{args.scenario}: the router refused the configuration: {e}")
    print(report(result, sc, backend[0] if backend else "embedded"))
    return 0 if result.agents is not None else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("staff", help="the fewest agents meeting a target, by simulation",
                       description=__doc__.split("\n\n")[0], formatter_class=HELP)
    scenario_options(p)
    p.add_argument("--target", required=True,
                   help='e.g. "sl>=0.8@20000", "asa<=30000", "abandon<=0.05"')
    p.add_argument("--queue", help="the queue the target is for (default: the only one)")
    p.add_argument("--group", help="the agent group to size (default: the only one serving the queue)")
    p.add_argument("--min", type=int, default=1, help="the fewest agents to consider")
    p.add_argument("--max", type=int, default=1000, help="the most agents to consider")
    p.set_defaults(func=cmd_staff)
