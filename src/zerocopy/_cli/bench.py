"""``python -m zerocopy bench``: each zero-copy method, measured on this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

from .._bench import plot
from .._bench.machine import machine
from .._bench.methods import METHODS
from .._bench.runner import SCENARIO_HELP, SCENARIOS, SCHEMA, Result, run_benchmark
from .._bench.units import human, parse_size, size_arg
from .._bench.verdict import choices, choices_lines, verdict

__all__ = ["add_parser", "legend", "report", "run"]


class _Progress:
    """One status line on a terminal, rewritten in place; silent elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, scenario: str, method: str, step: int, total: int) -> None:
        if self.live:
            elapsed = time.monotonic() - self.started
            line = f"  {scenario}: {method} ({step}/{total}, {elapsed:.0f} s)"
            self.stream.write("\r" + line.ljust(60)[:78])
            self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()


def legend(repeat: int) -> list[str]:
    """What each column is: measured here, or the textbook's model."""
    runs = "run" if repeat == 1 else f"{repeat} timed runs"
    return [
        f"Each figure is the median of {runs} per method (after 1 warm-up round); "
        "min-max is their range.",
        "Measured: GiB/s; user and sys s/GiB: CPU time of this process (getrusage) per GiB;",
        "  syscalls: the data-moving calls the method's own loop made, counted around each",
        "  call (read/readv, write, sendfile, splice, vmsplice, copy_file_range; mmap as 1;",
        "  MSG_ZEROCOPY: 1 per 1 MiB sendall, 1 per completion poll that released sends,",
        "  1 for the flush), not open, close, fstat or pipe set-up;",
        "  ctxsw: scheduler context switches of this process (getrusage nvcsw + nivcsw).",
        'Model, not measured: "CPU/DMA" copies and "sw" user/kernel mode switches per',
        "  chunk, the textbook's count (read+write: 2 CPU + 2 DMA copies, 4 switches).",
        "A method wins only if its slowest run beat every other's fastest; else: tie.",
    ]


def report(summaries: list[dict[str, Any]], out: TextIO) -> list[str]:
    """Print one table per scenario and a verdict per scenario; return the verdicts."""
    verdicts = []
    for scenario in SCENARIOS:
        rows = [s for s in summaries if s["scenario"] == scenario]
        if not rows:
            continue
        out.write(f"\n{scenario} ({human(rows[0]['size'])})\n")
        out.write(
            f"  {'method':<16} {'GiB/s':>7} {'min-max':>13} {'user s/GiB':>10} "
            f"{'sys s/GiB':>9} {'syscalls':>8} {'ctxsw':>6}  model: copies, sw\n"
        )
        for s in rows:
            m = s["model"]
            spread = f"{s['min_gib_s']:.2f}-{s['max_gib_s']:.2f}"
            out.write(
                f"  {s['method']:<16} {s['median_gib_s']:>7.2f} {spread:>13} "
                f"{s['cpu_user_s_per_gib']:>10.3f} {s['cpu_sys_s_per_gib']:>9.3f} "
                f"{s['syscalls']:>8} {s['ctx_switches']:>6}  "
                f"{m['cpu_copies']} CPU, {m['dma_copies']} DMA, {m['context_switches']} sw\n"
            )
        verdicts.append(verdict(scenario, rows))
    out.write("\n" + "\n".join(verdicts) + "\n")
    return verdicts


def _fail(message: str, status: int = 1) -> int:
    """Print a user error the way every bench error reads; return the exit status."""
    print(f"zerocopy bench: {message}", file=sys.stderr)
    return status


def _writable(path: str) -> str | None:
    """Why *path* cannot be written (None if it can), checked before a long run."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path} is a directory"
    if not os.path.isdir(folder):
        return f"{folder} does not exist"
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"{path} is not writable"
    return None


def _check(args: argparse.Namespace, known: set[str]) -> str | None:
    """The first user error in *args* that would only show after the run, or None."""
    if args.methods:
        unknown = sorted(set(args.methods) - known)
        if unknown:
            return f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
    if args.workdir is not None and not os.path.isdir(args.workdir):
        return f"--workdir {args.workdir}: not a directory"
    if args.workdir is not None and not os.access(args.workdir, os.W_OK | os.X_OK):
        return f"--workdir {args.workdir}: not writable"
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        why = path and _writable(path)
        if why:
            return f"{option}: cannot write {path}: {why}"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the benchmark as *args* say; print tables, verdicts and the library's picks."""
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    known = {m for s in scenarios for m, _, _ in METHODS[s]}
    problem = _check(args, known)
    if problem:
        return _fail(problem, 2)
    if args.plot:
        try:  # before the run: minutes of measuring must not end in an ImportError
            plot.pyplot()
        except ImportError:
            return _fail(f"--plot needs matplotlib, which is not installed: {plot.PLOT_INSTALL}")
    info = machine()
    print(
        f"zerocopy {info['zerocopy']} bench on {info['cpu']} ({info['cores']} cores), "
        f"Linux {info['kernel']}, {info['python']}, backend {info['backend']}"
    )
    print("\n".join(legend(args.repeat)))
    progress = _Progress(sys.stderr)
    try:
        results: list[Result] = run_benchmark(
            scenarios, args.size, args.repeat, args.methods, progress, args.workdir
        )
    except OSError as exc:  # ENOSPC, EACCES in the workdir...: the machine's, not a bug
        return _fail(f"the run failed: {exc}")
    finally:
        progress.done()
    summaries = [r.summary() for r in results]
    verdicts = report(summaries, sys.stdout)
    picks = choices_lines(summaries, info["backend"])
    print("\n" + "\n".join(picks))
    try:
        if args.json:
            doc = {
                "schema": SCHEMA,
                "machine": info,
                "config": {"size": args.size, "repeat": args.repeat, "scenarios": scenarios},
                "results": summaries,
                "verdicts": verdicts,
                "choices": [c._asdict() for c in choices()],
            }
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2)
            print(f"wrote {args.json}")
        if args.plot:
            plot.plot(summaries, info, args.repeat, scenarios, args.plot)
            print(f"wrote {args.plot}")
    except OSError as exc:
        return _fail(f"cannot write: {exc}")
    return 0


def _repeat(text: str) -> int:
    """``--repeat``: a whole number of timed runs, at least 1 (a median needs a run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}: a median needs a run")
    return value


def add_parser(sub: Any) -> None:
    """Register ``bench`` and its options on *sub*."""
    scenarios = "; ".join(f"{name}: {what}" for name, what in SCENARIO_HELP.items())
    parser = sub.add_parser(
        "bench",
        help="measure each copy method on this machine",
        description=(
            "Measure read/write against each zero-copy method on this machine: "
            "throughput, CPU, system calls and context switches, beside the textbook's "
            "model of copies and mode switches; then say what zerocopy's functions use here."
        ),
    )
    parser.add_argument(
        "--size",
        type=size_arg,
        default=parse_size("64M"),
        help="bytes per transfer, binary units (4096, 512K, 64M, 1G), > 0 (default 64M)",
    )
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="all",
        help=f"which transfer to measure ({scenarios}; default all)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="only these methods, names as printed (default: every method this machine has)",
    )
    parser.add_argument(
        "--repeat",
        type=_repeat,
        default=5,
        metavar="N",
        help="timed runs per method, >= 1, after one warm-up round (default 5)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write every figure as JSON to FILE (default: none)"
    )
    parser.add_argument(
        "--plot",
        nargs="?",
        const="bench.png",
        metavar="PATH",
        help="also draw a PNG to PATH (bench.png if no PATH; default: no plot); "
        "needs matplotlib: pip install -e '.[plot]' in a clone",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="directory for the benchmark's files (default: the system's temporary directory)",
    )
    parser.set_defaults(func=run)
