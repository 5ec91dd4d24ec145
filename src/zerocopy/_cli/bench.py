"""``python -m zerocopy bench``: each zero-copy method, measured on this machine."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from .._bench.machine import machine
from .._bench.methods import METHODS
from .._bench.runner import SCENARIOS, SCHEMA, Result, run_benchmark
from .._bench.units import human, parse_size, size_arg

__all__ = ["add_parser", "report", "run"]


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


def report(summaries: list[dict[str, Any]], out: TextIO) -> list[str]:
    """Print one table per scenario and the closing lines; return those lines."""
    verdicts = []
    for scenario in SCENARIOS:
        rows = [s for s in summaries if s["scenario"] == scenario]
        if not rows:
            continue
        out.write(f"\n{scenario} ({human(rows[0]['size'])})\n")
        out.write(
            f"  {'method':<16} {'GiB/s':>7} {'min-max':>13} {'user s/GiB':>10} "
            f"{'sys s/GiB':>9} {'syscalls':>8} {'ctxsw':>6}  {'CPU/DMA copies, switches':<24}\n"
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
        base = rows[0]
        best = max(rows, key=lambda s: s["median_gib_s"])
        ratio = best["median_gib_s"] / base["median_gib_s"]
        if best is base:
            line = f"{scenario}: {base['method']} was fastest; no shortcut beat it here."
        else:
            line = (
                f"{scenario}: {best['method']} was fastest, "
                f"{ratio:.2f}x {base['method']} ({best['median_gib_s']:.2f} vs "
                f"{base['median_gib_s']:.2f} GiB/s)."
            )
        verdicts.append(line)
    out.write("\n" + "\n".join(verdicts) + "\n")
    return verdicts


def _plot(summaries: list[dict[str, Any]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "--plot needs matplotlib: pip install 'zerocopy-io[plot]' (or pip install matplotlib)"
        ) from None
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in summaries)]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.5 * len(scenarios), 4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        rows = [s for s in summaries if s["scenario"] == scenario]
        names = [r["method"] for r in rows]
        rates = [r["median_gib_s"] for r in rows]
        errs = [
            [r["median_gib_s"] - r["min_gib_s"] for r in rows],
            [r["max_gib_s"] - r["median_gib_s"] for r in rows],
        ]
        ax.bar(names, rates, yerr=errs, capsize=3, color="#4477aa")
        ax.set_title(scenario)
        ax.set_ylabel("GiB/s (median, min-max)")
        ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    known = {m for s in scenarios for m, _, _ in METHODS[s]}
    if args.methods:
        unknown = sorted(set(args.methods) - known)
        if unknown:
            print(
                f"bench: unknown method(s) {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(known))}",
                file=sys.stderr,
            )
            return 2
    info = machine()
    print(
        f"zerocopy {info['zerocopy']} bench on {info['cpu']} ({info['cores']} cores), "
        f"Linux {info['kernel']}, {info['python']}, backend {info['backend']}"
    )
    progress = _Progress(sys.stderr)
    try:
        results: list[Result] = run_benchmark(
            scenarios, args.size, args.repeat, args.methods, progress, args.workdir
        )
    finally:
        progress.done()
    summaries = [r.summary() for r in results]
    verdicts = report(summaries, sys.stdout)
    if args.json:
        doc = {
            "schema": SCHEMA,
            "machine": info,
            "config": {"size": args.size, "repeat": args.repeat, "scenarios": scenarios},
            "results": summaries,
            "verdicts": verdicts,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    if args.plot:
        _plot(summaries, args.plot)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "bench",
        help="measure each copy method on this machine",
        description="Measure read/write against each zero-copy method on this machine.",
    )
    parser.add_argument(
        "--size",
        type=size_arg,
        default=parse_size("64M"),
        help="bytes per transfer, binary units, > 0 (default 64M)",
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument(
        "--methods", nargs="+", metavar="METHOD", help="only these methods (names as printed)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per method (default 5)")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG bar chart (needs matplotlib)")
    parser.add_argument("--workdir", metavar="DIR", help="where to put files (default: tmp)")
    parser.set_defaults(func=run)
