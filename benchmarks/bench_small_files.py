#!/usr/bin/env python3
"""Many small files: open + copy + close, shutil against zerocopy.

Target (issue): zerocopy is never slower than shutil (ratio >= 1.0 within
noise) for 4 KiB, 64 KiB and 1 MiB files.  Each run copies N distinct
(cached) source files into N new files and deletes them, untimed, right
after.  For the copyfileobj variants the open/create, copy and close phases
are timed apart, because file creation on ext4 slows down after many
deletions and would otherwise blur the copy itself; the copy phase ends with
the destination's ``flush()`` (shutil's last write of a small file waits in
the buffered writer until then).  copyfile variants are timed whole.

    python benchmarks/bench_small_files.py [--sets 4K:2000,64K:500,1M:100] [--repeat 5]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

from kit import common as c
from kit.toolkit import (
    LoadMeter,
    Sample,
    Stopwatch,
    human,
    machine,
    parse_size,
    print_machine,
    print_round,
    run_rounds,
    spread,
)

import zerocopy

DEFAULT_SETS = "4K:2000,64K:500,1M:100"
QUICK_SETS = "4K:50,64K:20,1M:5"
BASE = {"zerocopy.copyfileobj": "shutil.copyfileobj", "zerocopy.copyfile": "shutil.copyfile"}


def parse_sets(text: str) -> list[tuple[int, int]]:
    """'4K:2000,64K:500' -> [(4096, 2000), (65536, 500)]."""
    out = []
    for part in text.split(","):
        size, _, count = part.partition(":")
        out.append((parse_size(size), int(count or 100)))
    return out


def make_variants(srcs: list[str], dsts: list[str]) -> list[tuple[str, Callable[[], Sample]]]:
    pairs = list(zip(srcs, dsts, strict=True))

    def by_objects(copy: Callable[..., object]) -> Callable[[], Sample]:
        def run() -> Sample:
            t_open = t_copy = t_close = 0.0
            with Stopwatch() as sw:
                for s, d in pairs:
                    t0 = perf_counter()
                    # Not `with`: the phases are timed apart.
                    f = open(s, "rb")  # noqa: SIM115
                    g = open(d, "wb")  # noqa: SIM115
                    t1 = perf_counter()
                    copy(f, g)
                    g.flush()  # a buffered writer may still hold the bytes
                    t2 = perf_counter()
                    g.close()
                    f.close()
                    t3 = perf_counter()
                    t_open += t1 - t0
                    t_copy += t2 - t1
                    t_close += t3 - t2
            return finish(
                sw, t_open + t_copy + t_close, open_s=t_open, copy_s=t_copy, close_s=t_close
            )

        return run

    def by_names(copy: Callable[[str, str], object]) -> Callable[[], Sample]:
        def run() -> Sample:
            total = 0.0
            with Stopwatch() as sw:
                for s, d in pairs:
                    t0 = perf_counter()
                    copy(s, d)
                    total += perf_counter() - t0
            return finish(sw, total)

        return run

    def finish(sw: Stopwatch, seconds: float, **phases: float) -> Sample:
        nbytes = 0
        for d in dsts:
            nbytes += os.stat(d).st_size
            os.unlink(d)
        # The per-file sums, not the Stopwatch's wall time, which also holds
        # the loop and the clock reads; CPU is the Stopwatch's, for the batch.
        return Sample(seconds, sw.user, sw.sys, nbytes, dict(phases))

    return [
        ("shutil.copyfileobj", by_objects(shutil.copyfileobj)),
        ("zerocopy.copyfileobj", by_objects(zerocopy.copyfileobj)),
        ("shutil.copyfile", by_names(shutil.copyfile)),
        ("zerocopy.copyfile", by_names(zerocopy.copyfile)),
    ]


def phase_view(results: dict[str, list[Sample]], phase: str) -> dict[str, list[Sample]]:
    """The same runs with ``seconds`` replaced by one phase's time (copyfileobj variants)."""
    return {
        name: [Sample(s.info[phase], s.user, s.sys, s.nbytes) for s in samples]
        for name, samples in results.items()
        if samples[0].info
    }


def report_set(
    size: int, count: int, results: dict[str, list[Sample]]
) -> tuple[str, dict[str, Any]]:
    headers = [
        "variant",
        "files/s",
        "us/file",
        "min-max",
        "open us",
        "copy us",
        "close us",
        "CPU us/file",
        "x base",
        "paired x (min-max)",
        "copy x base",
    ]
    rows, data = [], {}
    copy_view = phase_view(results, "copy_s")
    for name, samples in results.items():
        us = [s.seconds / count * 1e6 for s in samples]
        sp = spread(us)
        cpu = statistics.median((s.user + s.sys) / count * 1e6 for s in samples)
        phases = {
            p: statistics.median(s.info[p] / count * 1e6 for s in samples)
            for p in ("open_s", "copy_s", "close_s")
            if p in samples[0].info
        }
        base = BASE.get(name, name)
        r = c.compare(results, name, base)
        rc = c.compare(copy_view, name, base) if name in copy_view else None
        data[name] = {
            "us_per_file": sp,
            "cpu_us_per_file": cpu,
            "phases_us_per_file": phases,
            "baseline": base,
            "vs_baseline": r,
            "copy_phase_vs_baseline": rc,
            "samples": [vars(s) for s in samples],
        }
        rows.append(
            [
                name,
                f"{1e6 / sp['median']:.0f}",
                f"{sp['median']:.1f}",
                f"{sp['min']:.1f}-{sp['max']:.1f}",
                *(
                    f"{phases[p]:.1f}" if p in phases else "-"
                    for p in ("open_s", "copy_s", "close_s")
                ),
                f"{cpu:.1f}",
                f"{r['throughput']:.2f}",
                f"{r['paired_median']:.2f} ({r['paired_min']:.2f}-{r['paired_max']:.2f})",
                f"{rc['throughput']:.2f}" if rc else "-",
            ]
        )
    title = f"{human(size)} x {count} files"
    return f"{title}\n\n" + c.table(headers, rows), data


def main(argv: Sequence[str] | None = None) -> int:
    parser = c.base_parser(__doc__.splitlines()[0], None)
    parser.add_argument(
        "--sets",
        default=None,
        help=f"SIZE:COUNT,... file sizes and how many per run "
        f"(default {DEFAULT_SETS}; --size S runs only S)",
    )
    args = parser.parse_args(argv)
    c.apply_quick(args)
    sets = parse_sets(args.sets or (QUICK_SETS if args.quick else DEFAULT_SETS))
    if args.size is not None:
        sets = [x for x in sets if x[0] == args.size] or [(args.size, 500)]
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    info = machine(workdir)
    all_results: dict[str, dict[str, list[Sample]]] = {}
    with LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                for size, count in sets:
                    src_dir = os.path.join(workdir, f"src-{size}")
                    dst_dir = os.path.join(workdir, "dst")
                    os.makedirs(src_dir)
                    os.makedirs(dst_dir, exist_ok=True)
                    srcs = [os.path.join(src_dir, str(i)) for i in range(count)]
                    dsts = [os.path.join(dst_dir, str(i)) for i in range(count)]
                    block = os.urandom(size)
                    for p in srcs:
                        with open(p, "wb") as f:
                            f.write(block)
                    os.sync()  # no writeback of the sources during the runs
                    print(f"{human(size)} x {count}:", file=sys.stderr)
                    variants = c.select(make_variants(srcs, dsts), args.only)
                    results = run_rounds(variants, args.repeat, on_round=print_round)
                    if args.verify:
                        check(variants, srcs, dsts)
                    all_results[f"{size}x{count}"] = results
                    shutil.rmtree(src_dir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_during_run"] = load.summary

    print(f"\nsmall files: median of {args.repeat} alternating rounds after 1 warm-up round\n")
    print_machine(info)
    payload: dict[str, object] = {
        "benchmark": "small files",
        "command": [sys.executable, *sys.argv],
        "args": vars(args),
        "machine": info,
        "sets": {},
    }
    checks = []
    for (size, count), results in zip(sets, all_results.values(), strict=True):
        text, data = report_set(size, count, results)
        print("\n" + text)
        payload["sets"][f"{size}x{count}"] = data  # type: ignore[index]
        copy_view = phase_view(results, "copy_s")
        for name, base in BASE.items():
            for view, what in ((copy_view, "copy phase"), (results, "total")):
                if name in view and base in view:
                    chk = c.Target(name, base, "throughput", 1.0).check(view)
                    chk["target"] = f"{human(size)}: {chk['target']} ({what})"
                    checks.append(chk)
    c.print_targets(checks)
    payload["targets"] = checks
    c.write_json(args.json, payload)
    return 0


def check(
    variants: list[tuple[str, Callable[[], Sample]]], srcs: list[str], dsts: list[str]
) -> None:
    """--quick: run each variant once more and compare every copy with its source."""
    for name, _ in variants:
        for s, d in zip(srcs, dsts, strict=True):
            copy = {"shutil.copyfile": shutil.copyfile, "zerocopy.copyfile": zerocopy.copyfile}
            if name in copy:
                copy[name](s, d)
            else:
                fn = shutil.copyfileobj if name.startswith("shutil") else zerocopy.copyfileobj
                with open(s, "rb") as f, open(d, "wb") as g:
                    fn(f, g)
            if not c.same_contents(s, d):
                raise AssertionError(f"{name}: {d} differs from {s}")
            os.unlink(d)


if __name__ == "__main__":
    sys.exit(main())
