"""Shared helpers for the benchmark scripts.

Timing (wall clock plus user and system CPU from ``getrusage``), a
description of the machine, alternating rounds after a warm-up, medians and
spreads, ratios against a baseline, targets, a printed table and a JSON file.

The rules come from docs/design.md, "Measuring on these machines": compared
variants run back to back, alternating, after a warm-up round; each
destination is deleted right after its run (the variant does that); nothing
sleeps between runs, because memory left idle goes back to the hypervisor and
costs about 2 s/GiB to touch again.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB}


def parse_size(text: str) -> int:
    """Parse ``4096``, ``4K``, ``64M``, ``64MiB``, ``1G``, ``1GiB`` (binary units)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:I?B)?\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64M, 1G)")
    return int(m[1]) * _UNITS[m[2]]


def human(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def base_parser(
    description: str, default_size: int, default_repeat: int = 5
) -> argparse.ArgumentParser:
    """The options every script takes: --size, --repeat, --json, --quick, --dir, --timeout."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--size",
        type=parse_size,
        default=default_size,
        help=f"bytes per transfer, e.g. 64M or 1G (default {human(default_size)})",
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
        type=lambda s: [x.strip() for x in s.split(",")],
        help="run only these variants, comma-separated, in this order (ratios are "
        "against the usual baseline if it runs, else the first)",
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


# --- timing -------------------------------------------------------------------


@dataclass
class Sample:
    """One measured run: wall seconds, CPU seconds, bytes moved, and notes."""

    seconds: float
    user: float
    sys: float
    nbytes: int
    info: dict[str, Any] = field(default_factory=dict)


class Stopwatch:
    """Wall time and CPU time (this process plus children reaped meanwhile).

    ``RUSAGE_CHILDREN`` only counts children that were waited for inside the
    block, so a subprocess such as ``cp`` is counted and a long-lived peer
    process (reaped at the end of the script) is not.  The scripts are
    single-threaded, so ``RUSAGE_SELF`` is the measuring thread's CPU.
    """

    def __enter__(self) -> Stopwatch:
        self._r0 = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        self._t0 = perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = perf_counter() - self._t0
        r1 = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        self.user = sum(b.ru_utime - a.ru_utime for a, b in zip(self._r0, r1, strict=True))
        self.sys = sum(b.ru_stime - a.ru_stime for a, b in zip(self._r0, r1, strict=True))

    def sample(self, nbytes: int, **info: Any) -> Sample:
        return Sample(self.seconds, self.user, self.sys, nbytes, info)


def run_rounds(
    variants: Sequence[tuple[str, Callable[[], Sample]]], repeat: int, warmup: int = 1
) -> dict[str, list[Sample]]:
    """Run every variant once per round, in the same order (A B C A B C ...).

    The first *warmup* rounds are run and discarded.  Progress goes to stderr.
    """
    results: dict[str, list[Sample]] = {name: [] for name, _ in variants}
    for rnd in range(warmup + repeat):
        label = "warm-up" if rnd < warmup else f"round {rnd - warmup + 1}/{repeat}"
        parts = []
        for name, fn in variants:
            s = fn()
            if rnd >= warmup:
                results[name].append(s)
            parts.append(f"{name} {s.nbytes / GiB / s.seconds:.2f}")
        print(f"  {label}: " + ", ".join(parts) + " GiB/s", file=sys.stderr, flush=True)
    return results


# --- statistics ---------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max, and the quartiles (inclusive method) of *values*."""
    v = sorted(values)
    q1, q3 = statistics.quantiles(v, n=4, method="inclusive")[::2] if len(v) > 1 else (v[0], v[0])
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q1, "q3": q3}


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Throughput (GiB/s) and CPU (s/GiB) medians and spreads of one variant's runs."""
    gib = [s.nbytes / GiB for s in samples]
    out: dict[str, Any] = {
        "runs": len(samples),
        "gib_s": spread([g / s.seconds for g, s in zip(gib, samples, strict=True)]),
        "seconds": spread([s.seconds for s in samples]),
        "cpu_user_s_per_gib": statistics.median(
            s.user / g for g, s in zip(gib, samples, strict=True)
        ),
        "cpu_sys_s_per_gib": statistics.median(
            s.sys / g for g, s in zip(gib, samples, strict=True)
        ),
        "cpu_s_per_gib": statistics.median(
            (s.user + s.sys) / g for g, s in zip(gib, samples, strict=True)
        ),
    }
    for key in samples[0].info:
        vals = [s.info.get(key) for s in samples]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            out[key] = statistics.median(vals)  # type: ignore[type-var]
        else:
            out[key] = sorted({str(x) for x in vals})
    return out


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


def report(
    results: dict[str, list[Sample]],
    base: str,
    notes: Callable[[dict[str, Any]], str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The standard table for a throughput benchmark, and its data."""
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
                notes(s) if notes else "",
            ]
        )
    return table(headers, rows), data


def print_targets(checks: Sequence[dict[str, Any]]) -> None:
    print("\ntargets:")
    for c in checks:
        paired = f" (paired {c['paired'][0]:.2f}-{c['paired'][1]:.2f})" if c["paired"] else ""
        print(f"  {c['verdict']:<5}  {c['target']}: {c['value']:.3f}{paired}")


def _first_line(cmd: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def _filesystem(path: str) -> dict[str, str]:
    # The longest mount point that contains *path* (from /proc/self/mounts).
    path = os.path.realpath(path)
    best = {"mount": "?", "type": "?", "source": "?"}
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            source, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best["mount"].replace("?", "")):
                best = {"mount": mnt, "type": fstype, "source": source}
    return best


def machine_info(workdir: str | None = None) -> dict[str, Any]:
    """Date, kernel, CPU, cores, memory, Python, zerocopy, and the files' filesystem."""
    import zerocopy

    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = human(int(line.split()[1]) * KiB)
                break
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": f"{platform.release()} {platform.machine()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "zerocopy": f"{zerocopy.__version__} (backend {zerocopy.BACKEND})",
        "loadavg_at_start": os.getloadavg(),
        "cp": _first_line(["cp", "--version"]),
    }
    if workdir is not None:
        info["workdir"] = workdir
        info["filesystem"] = _filesystem(workdir)
    return info


def print_machine(info: dict[str, Any]) -> None:
    for key, value in info.items():
        if key == "filesystem":
            value = f"{value['type']} on {value['source']} (mounted at {value['mount']})"
        elif key == "loadavg_at_start":
            value = " ".join(f"{x:.2f}" for x in value)
        elif key == "load_during_run":
            value = (
                f"{value['wall_s']} s wall; CPU-s: this benchmark {value['own_cpu_s']}, "
                f"everything else {value['other_cpu_s']}, steal {value['steal_s']}"
            )
        print(f"{key + ':':<18}{value}")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=str)
            f.write("\n")
        print(f"\nwrote {path}")


def _cpu_counters() -> tuple[float, float, float]:
    """(all CPUs' busy seconds, their steal seconds, this process's + reaped children's CPU)."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
    own = sum(
        getattr(resource.getrusage(who), attr)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for attr in ("ru_utime", "ru_stime")
    )
    return busy / tick, v[7] / tick, own


class LoadMeter:
    """How busy the machine was with other work while the benchmark ran.

    Reads the CPU time of every CPU from /proc/stat and subtracts this
    process's and its reaped children's, so reap the peers inside the block.
    What remains is other processes plus kernel threads (some of which, such
    as ksoftirqd and writeback, may be working for us).
    """

    def __enter__(self) -> LoadMeter:
        self._t0 = perf_counter()
        self._c0 = _cpu_counters()
        return self

    def __exit__(self, *exc: object) -> None:
        c1 = _cpu_counters()
        wall = perf_counter() - self._t0
        busy, steal, own = (b - a for a, b in zip(self._c0, c1, strict=True))
        self.summary = {
            "wall_s": round(wall, 1),
            "own_cpu_s": round(own, 1),
            "other_cpu_s": round(max(0.0, busy - own), 1),
            "steal_s": round(steal, 1),
        }


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


def stop(proc: subprocess.Popen[str]) -> None:
    """Close a peer's stdin (its signal to exit) and reap it; kill it if it lingers."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # EPIPE: it already exited
                pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def same_contents(a: str, b: str) -> bool:
    return filecmp.cmp(a, b, shallow=False)


def apply_quick(args: argparse.Namespace, size: int = 4 * MiB) -> None:
    """--quick: at most *size* bytes and 2 rounds, and check the copies' contents."""
    args.verify = args.quick
    if args.quick:
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
) -> None:
    """Print the machine, the table and the targets; write the JSON file if asked."""
    print(
        f"\n{title}: {human(args.size)} per run, median of {args.repeat} "
        f"alternating rounds after 1 warm-up round\n"
    )
    print_machine(machine)
    if base not in results:
        base = next(iter(results))
    text, data = report(results, base, notes)
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
