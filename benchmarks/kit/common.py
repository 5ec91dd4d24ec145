"""What only the benchmark scripts share: their options, targets, tables and files.

The measuring itself (sizes, CPU and wall time, the machine, alternating
rounds, medians and spreads) is :mod:`kit.toolkit`'s.  This module holds the
scripts' common options, ratios against a baseline, the issues' targets, the
printed table, the JSON file, a deadline, and file and peer-process chores.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import signal
import socket
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The peer and server helpers, as the scripts' c.Peer, c.Server, ... (explicit re-exports).
from .peer import (
    STARTUP as STARTUP,
)
from .peer import (
    Peer as Peer,
)
from .peer import (
    Server as Server,
)
from .peer import (
    announce as announce,
)
from .peer import (
    checkout_env as checkout_env,
)
from .peer import (
    die_with_parent as die_with_parent,
)
from .peer import (
    free_port as free_port,
)
from .peer import (
    nginx_binary as nginx_binary,
)
from .peer import (
    nginx_server as nginx_server,
)
from .peer import (
    serve_peer as serve_peer,
)
from .toolkit import (
    MiB,
    Sample,
    human,
    print_machine,
    size_arg,
    summarize,
)


def split_names(text: str) -> list[str]:
    """--only's names: split at ';', and at commas outside parentheses.

    Names may hold commas inside their parentheses ("zerocopy.aio.relay
    (uvloop, before)"), never ';'; "a,b" stays a list of two.
    """
    names, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ";" or (ch == "," and depth <= 0):
            names.append(cur)
            cur = ""
        else:
            cur += ch
    names.append(cur)
    return [n.strip() for n in names if n.strip()]


class OnlyAction(argparse.Action):
    """``--only``: each use adds its :func:`split_names` to the list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        names = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, names + split_names(str(values)))


def base_parser(
    description: str, default_size: int | None, default_repeat: int = 5
) -> argparse.ArgumentParser:
    """The options every script takes: --size, --repeat, --json, --quick, --dir, --timeout.

    ``default_size=None``: no --size means "the script's own choice".
    """
    p = argparse.ArgumentParser(description=description)
    shown = human(default_size) if default_size else "none"
    p.add_argument(
        "--size",
        type=size_arg,
        default=default_size,
        help=f"bytes per transfer, e.g. 64M or 1G, > 0 (default {shown})",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=default_repeat,
        help=f"measured rounds after the warm-up round (default {default_repeat})",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: a few MiB, 2 rounds, contents verified"
    )
    p.add_argument(
        "--dir", default=None, help="where to create the files (default: $TMPDIR or /tmp)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="give up (cleanly) after this many seconds (default 900)",
    )
    p.add_argument(
        "--only",
        metavar="NAMES",
        action=OnlyAction,
        help="run only these variants, in this order: separated by ';' or by commas outside "
        "parentheses, or --only repeated (ratios are against the usual baseline if it "
        "runs, else the first)",
    )
    return p


def select(
    variants: list[tuple[str, Callable[[], Sample]]], only: list[str] | None
) -> list[tuple[str, Callable[[], Sample]]]:
    """The variants --only names, in its order; all of them without --only."""
    if not only:
        return variants
    table = dict(variants)
    unknown = [n for n in only if n not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(table)}")
    return [(n, table[n]) for n in only]


# --- ratios and targets --------------------------------------------------------


def compare(results: dict[str, list[Sample]], name: str, base: str) -> dict[str, float]:
    """Ratios of *name* against *base*: medians, and paired per round."""
    a, b = results[name], results[base]
    thr = [(x.nbytes / x.seconds) / (y.nbytes / y.seconds) for x, y in zip(a, b, strict=True)]
    cpu_a = statistics.median((x.user + x.sys) / x.nbytes for x in a)
    cpu_b = statistics.median((y.user + y.sys) / y.nbytes for y in b)
    return {
        "throughput": statistics.median(x.nbytes / x.seconds for x in a)
        / statistics.median(y.nbytes / y.seconds for y in b),
        "paired_median": statistics.median(thr),
        "paired_min": min(thr),
        "paired_max": max(thr),
        "cpu": cpu_a / cpu_b if cpu_b else float("nan"),
    }


@dataclass
class Target:
    """``candidate``'s *metric* ratio against ``baseline`` must be ``op`` *threshold*."""

    candidate: str
    baseline: str
    metric: str  # "throughput" (higher is better) or "cpu" (lower is better)
    threshold: float

    def check(self, results: dict[str, list[Sample]]) -> dict[str, Any]:
        r = compare(results, self.candidate, self.baseline)
        value = r[self.metric]
        ok = value >= self.threshold if self.metric == "throughput" else value <= self.threshold
        op = ">=" if self.metric == "throughput" else "<="
        verdict = "PASS" if ok else "MISS"
        if not ok and self.metric == "throughput" and r["paired_max"] >= self.threshold:
            verdict = "MISS (within paired spread)"
        return {
            "target": f"{self.candidate} {self.metric} {op} {self.threshold}x {self.baseline}",
            "value": round(value, 3),
            "paired": [round(r["paired_min"], 3), round(r["paired_max"], 3)]
            if self.metric == "throughput"
            else None,
            "verdict": verdict,
        }


# --- output -------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table, right-aligned except the first column (Markdown-compatible)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


#: A script's own column of the standard table: its header, and its cell from
#: a variant's ``summarize`` output.
Column = tuple[str, Callable[[dict[str, Any]], str]]


def report(
    results: dict[str, list[Sample]],
    base: str,
    notes: Callable[[dict[str, Any]], str] | None = None,
    columns: Sequence[Column] = (),
) -> tuple[str, dict[str, Any]]:
    """The standard table for a throughput benchmark, and its data.

    *columns* go after the standard ones, before the notes.
    """
    headers = [
        "variant",
        "GiB/s",
        "min-max",
        "CPU s/GiB",
        "user",
        "sys",
        "x base",
        "paired x (min-max)",
        "CPU x base",
        *(header for header, _ in columns),
        "notes",
    ]
    rows, data = [], {}
    for name, samples in results.items():
        s = summarize(samples)
        r = compare(results, name, base)
        data[name] = {"summary": s, "vs_" + base: r, "samples": [vars(x) for x in samples]}
        g = s["gib_s"]
        rows.append(
            [
                name,
                f"{g['median']:.2f}",
                f"{g['min']:.2f}-{g['max']:.2f}",
                f"{s['cpu_s_per_gib']:.3f}",
                f"{s['cpu_user_s_per_gib']:.3f}",
                f"{s['cpu_sys_s_per_gib']:.3f}",
                f"{r['throughput']:.2f}",
                f"{r['paired_median']:.2f} ({r['paired_min']:.2f}-{r['paired_max']:.2f})",
                f"{r['cpu']:.2f}",
                *(cell(s) for _, cell in columns),
                notes(s) if notes else "",
            ]
        )
    return table(headers, rows), data


def print_targets(checks: Sequence[dict[str, Any]]) -> None:
    print("\ntargets:")
    if not checks:
        print("  none checked: no target's candidate and baseline both ran")
    for c in checks:
        paired = f" (paired {c['paired'][0]:.2f}-{c['paired'][1]:.2f})" if c["paired"] else ""
        print(f"  {c['verdict']:<5}  {c['target']}: {c['value']:.3f}{paired}")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=str)
            f.write("\n")
        print(f"\nwrote {path}")


class Deadline:
    """Raise TimeoutError in the main thread after *seconds*, so ``finally`` cleans up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> Deadline:
        def expire(signum: int, frame: object) -> None:
            raise TimeoutError(f"benchmark took longer than {self.seconds:.0f} s")

        self._old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)


def fill_file(path: str, size: int, block: bytes | None = None) -> None:
    """Write *size* bytes (a repeated random 1 MiB block), fsync, then read it once.

    The fsync keeps background writeback of the source out of the measured
    runs; the read leaves it in the page cache.
    """
    block = block or os.urandom(MiB)
    view = memoryview(block)
    with open(path, "wb", buffering=0) as f:
        left = size
        while left:
            left -= f.write(view[: min(left, len(view))])
        os.fsync(f.fileno())
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(MiB)
        while f.readinto(buf):
            pass


def raise_nofile() -> None:
    """Raise the soft limit on descriptors to the hard one: hundreds of connections need more."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Exactly *n* bytes from *sock* (a peer's answer); ConnectionError if it closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"the peer closed after {len(data)} of {n} answer bytes")
        data += chunk
    return data


def same_contents(a: str, b: str) -> bool:
    return filecmp.cmp(a, b, shallow=False)


def apply_quick(args: argparse.Namespace, size: int = 4 * MiB) -> None:
    """--quick: at most *size* bytes and 2 rounds, and check the copies' contents."""
    args.verify = args.quick
    if args.quick and args.size is not None:
        args.size = min(args.size, size)
        args.repeat = min(args.repeat, 2)


def publish(
    title: str,
    args: argparse.Namespace,
    machine: dict[str, Any],
    results: dict[str, list[Sample]],
    base: str,
    targets: Sequence[Target],
    notes: Callable[[dict[str, Any]], str] | None = None,
    columns: Sequence[Column] = (),
) -> None:
    """Print the machine, the table and the targets; write the JSON file if asked."""
    print(
        f"\n{title}: {human(args.size)} per run, median of {args.repeat} "
        f"alternating rounds after 1 warm-up round\n"
    )
    print_machine(machine)
    if base not in results:
        base = next(iter(results))
    text, data = report(results, base, notes, columns)
    print()
    print(text)
    checks = [t.check(results) for t in targets if t.candidate in results and t.baseline in results]
    print_targets(checks)
    write_json(
        args.json,
        {
            "benchmark": title,
            "command": [sys.executable, *sys.argv],
            "args": vars(args),
            "machine": machine,
            "baseline": base,
            "results": data,
            "targets": checks,
        },
    )
