"""The command line: ``python -m zerocopy COMMAND``.

Each command lives in its own module with ``add_parser(subparsers)`` that
registers it and sets ``func`` (taking the parsed arguments, returning an exit
status).

Every message for the user starts ``zerocopy COMMAND: `` (:func:`error`).  A
user's mistake (a bad path, port or host, a missing permission) ends the
command with :class:`UserError` or :func:`fail`: one line on stderr, no
traceback.  Exit statuses: 0 done, 1 failed, 2 bad usage, 130 interrupted
(Ctrl-C), 141 output pipe closed by its reader (as a shell reports ``cat``
killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_PIPE",
    "UserError",
    "build_parser",
    "error",
    "fail",
    "main",
]

#: Exit status after Ctrl-C: 128 + SIGINT, what a shell reports for a
#: process the signal killed.
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Exit status when the reader of stdout went away (``| head``): 128 +
#: SIGPIPE, what a shell reports for ``cat`` in the same place.
EXIT_PIPE = 128 + signal.SIGPIPE

_PROG = "python -m zerocopy"


class UserError(Exception):
    """A user's mistake or an environment problem: one line on stderr, no traceback.

    Raised from a command's ``func``; :func:`main` prints
    ``zerocopy COMMAND: MESSAGE`` and exits with *status* (1 by default).
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def error(cmd: str, message: str) -> None:
    """Print ``zerocopy CMD: MESSAGE`` on stderr, the one prefix of every command."""
    print(f"zerocopy {cmd}: {message}", file=sys.stderr, flush=True)


def fail(cmd: str, message: str, status: int = 1) -> NoReturn:
    """Print ``zerocopy CMD: MESSAGE`` on stderr and exit with *status* (no traceback)."""
    error(cmd, message)
    raise SystemExit(status)


class _Parser(argparse.ArgumentParser):
    """argparse with the commands' prefix on usage errors: ``zerocopy CMD: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        name = self.prog.removeprefix(_PROG).strip()
        prefix = f"zerocopy {name}" if name else "zerocopy"
        self.exit(2, f"{prefix}: error: {message}\n")


def _version() -> str:
    import zerocopy

    from .. import _backend

    return f"zerocopy {zerocopy.__version__} (backend {_backend.current().NAME})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m zerocopy``, with every command's subparser."""
    parser = _Parser(
        prog=_PROG,
        description="Move bytes through the kernel: inspect, copy, serve, proxy, benchmark.",
        epilog="Exit status: 0 done, 1 failed, 2 bad usage, 130 interrupted (Ctrl-C), "
        "141 stdout closed by its reader.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=_version(),
        help="print 'zerocopy VERSION (backend NAME)' and exit",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v for info, -vv for debug (default: warnings only)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    # Imported here: the commands import UserError and fail from this module.
    from . import bench, copy, info, proxy, serve

    for module in (bench, info, copy, serve, proxy):
        module.add_parser(sub)
    for command in sub.choices.values():
        # So that main() reports an unknown option as the command's usage error.
        command.set_defaults(parser=command)
    return parser


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again.

    The pattern of the :mod:`signal` docs' note on SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m zerocopy`` with *argv* (default: ``sys.argv[1:]``); return the status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(name)s: %(levelname)s: %(message)s")
    try:
        status = int(args.func(args))
        if not sys.stdout.closed:
            sys.stdout.flush()  # here, where a closed pipe can still be caught
        return status
    except UserError as exc:
        error(args.command, str(exc))
        return exc.status
    except BrokenPipeError:
        # The reader of stdout went away (| head): quiet, as cat is.
        _quiet_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
