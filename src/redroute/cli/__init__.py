"""The `redroute` command. Each subcommand has its own module in this
package; this one only wires them to the command line. Settings come from
flags, or from environment variables of the same name (REDIS_URL, …)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import check, events, serve, worker


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None,
                   help="Redis URL (env REDIS_URL); the embedded backend when unset")
    p.add_argument("--log-level", default=os.environ.get("REDROUTE_LOG_LEVEL", "INFO"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redroute", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    worker.add_parser(sub, _common)
    serve.add_parser(sub, _common)
    events.add_parser(sub, _common)
    check.add_parser(sub, _common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
