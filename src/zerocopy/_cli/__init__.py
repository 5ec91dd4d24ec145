"""The command line: ``python -m zerocopy COMMAND``.

Each command lives in its own module with ``add_parser(subparsers)`` that
registers it and sets ``func`` (taking the parsed arguments, returning an exit
status).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from . import bench, copy, info, proxy, serve

__all__ = ["build_parser", "main"]

_COMMANDS = (bench, info, copy, serve, proxy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zerocopy",
        description="Move bytes through the kernel: inspect, copy, benchmark.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (repeat for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(name)s: %(levelname)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
