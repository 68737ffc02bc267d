"""`redroute simulate`: runs a scenario on the real routing scripts with a
virtual clock (docs/simulation.md) and prints per queue offered, answered,
abandoned, SL, ASA and occupancy with their confidence intervals, and Erlang
C / Erlang A beside them for single-skill queues.

Exit status: 0 when it ran, 2 for a scenario or option that cannot run (the
field at fault is named), 1 when Redis cannot be reached."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import REDIS_DOWN, RedrouteError
from ..sim.plot import PlotUnavailable, plot_day
from ..sim.replay import DayTraffic, ReplayError, read_day, recorded_kpis, replay_scenario
from ..sim.report import comparison, day_series, document, table
from ..sim.runner import simulate
from ..sim.scenario import Scenario, ScenarioError, load_scenario
from .options import HELP, common


def scenario_options(p: argparse.ArgumentParser) -> None:
    """What simulate and staff share: the scenario, its overrides, where it runs."""
    p.add_argument("scenario", metavar="SCENARIO.json", help="the scenario file (docs/simulation.md)")
    p.add_argument("--replications", type=int, help="override the scenario's replications")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--workers", dest="sim_workers", type=int, default=0,
                   help="processes running replications; 0: one per core")
    common(p)


def load(args: argparse.Namespace) -> Scenario:
    """The scenario with the command line's overrides, validated again."""
    sc = load_scenario(args.scenario)
    changes: dict[str, Any] = {}
    if args.replications is not None:
        changes["replications"] = args.replications
    if args.seed is not None:
        changes["seed"] = args.seed
    if not changes:
        return sc
    from ..sim.scenario import parse_scenario

    data = {**sc.model_dump(exclude_unset=True, by_alias=True), **changes}
    return parse_scenario(json.loads(json.dumps(data, default=str)), Path(args.scenario).parent)


def fail(command: str, why: str, code: int = 2) -> int:
    print(f"redroute {command}: {why}", file=sys.stderr)
    return code


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        sc = load(args)
    except ScenarioError as e:
        return fail("simulate", f"{args.scenario}: {e}")
    if not 0 < args.confidence < 1:
        return fail("simulate", "--confidence must be between 0 and 1, e.g. 0.95")
    if args.replay:
        return replay(args, sc)
    try:
        run = simulate(sc, url=args.redis_url or None, workers=args.sim_workers or None)
    except REDIS_DOWN as e:
        return fail("simulate", f"Redis is unavailable: {e}", 1)
    except RedrouteError as e:  # a configuration the router refuses (a step's expression …)
        return fail("simulate", f"{args.scenario}: the router refused the configuration: {e}")
    print(table(run, args.confidence))
    return write_outputs(args, run, document(run, args.confidence))


def replay(args: argparse.Namespace, sc: Scenario) -> int:
    """The recorded day replayed under the scenario's configuration, beside
    the recorded KPIs."""
    try:
        with open(args.replay) as f:
            day = read_day(f)
        sc = replay_scenario(sc, day)
    except OSError as e:
        return fail("simulate", f"cannot read {args.replay}: {e.strerror or e}")
    except ReplayError as e:
        return fail("simulate", f"{args.replay}: {e}")
    recorded = recorded_kpis(day, sc)
    try:
        run = simulate(sc, url=args.redis_url or None, workers=args.sim_workers or None,
                       traffic=DayTraffic(day, sc))
    except REDIS_DOWN as e:
        return fail("simulate", f"Redis is unavailable: {e}", 1)
    except RedrouteError as e:
        return fail("simulate", f"{args.scenario}: the router refused the configuration: {e}")
    title = (f"{sc.name}: the recorded day of {args.replay} ({len(day.requests):,} requests over "
             f"{sc.durationMs / 3_600_000:.2f} h) replayed under this scenario's configuration, "
             f"{sc.replications} replication{'s' if sc.replications != 1 else ''}, "
             f"{run.backend} backend; {args.confidence:.0%} intervals")
    print(comparison(recorded, run, args.confidence, title))
    doc = {**document(run, args.confidence), "recorded": recorded, "replay": args.replay}
    return write_outputs(args, run, doc)


def write_outputs(args: argparse.Namespace, run: Any, doc: dict[str, Any]) -> int:
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        try:
            plot_day(day_series(run), args.plot, run.scenario.name)
        except PlotUnavailable as e:
            return fail("simulate", str(e), 1)
        print(f"wrote {args.plot}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("simulate", help="run a scenario on the real router with a virtual clock",
                       description=__doc__.split("\n\n")[0], formatter_class=HELP)
    scenario_options(p)
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    p.add_argument("--plot", metavar="OUT.png",
                   help="also draw waiting and SL over the day (needs redroute[sim])")
    p.add_argument("--confidence", type=float, default=0.95, help="the intervals' confidence")
    p.add_argument("--replay", metavar="DAY.jsonl",
                   help="replay a recorded day (redroute events export) under this scenario's "
                        "configuration, and print the KPI differences with the recorded day")
    p.set_defaults(func=cmd_simulate)
