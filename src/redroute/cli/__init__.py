"""The `redroute` command. Each subcommand has its own module in this
package; this one only wires them to the command line. Settings come from
flags, or from the environment variables each flag's help names.

A command that cannot start prints one line, `redroute <command>: <why>`,
on stderr and exits 2 for a configuration error, 1 for anything else
(port taken, Redis not answering): never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import StartupError
from ..logs import TEXT_FORMAT
from . import check, events, serve, simulate, staff, webhooks, worker
from .options import HELP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redroute", description=__doc__.splitlines()[0],
                                     formatter_class=HELP)
    parser.add_argument("--version", action="version", version=f"redroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, worker, events, check, webhooks, simulate, staff):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"), format=TEXT_FORMAT)
    try:
        return args.func(args)
    except StartupError as e:
        print(f"redroute {args.command}: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
