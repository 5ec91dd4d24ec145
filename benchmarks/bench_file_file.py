#!/usr/bin/env python3
"""File -> file on one filesystem: shutil against zerocopy, copy_file_range and cp.

Targets (issue): zerocopy's throughput >= 1.15x ``shutil.copyfileobj`` and
>= 0.95x ``cp``; its CPU time <= 0.9x shutil's.  Every variant opens, copies
and closes inside the timed block (``cp`` is a subprocess, timed by wall
clock and ``RUSAGE_CHILDREN``); the destination is deleted, untimed, right
after each run.

    python benchmarks/bench_file_file.py [--size 1G] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from kit import common as c
from kit.toolkit import (
    GiB,
    LoadMeter,
    Sample,
    Stopwatch,
    machine,
    print_round,
    run_rounds,
)

import zerocopy


def main(argv: Sequence[str] | None = None) -> int:
    args = c.base_parser(__doc__.splitlines()[0], GiB).parse_args(argv)
    c.apply_quick(args)
    workdir = tempfile.mkdtemp(prefix="zerocopy-bench-", dir=args.dir)
    src = os.path.join(workdir, "src")
    dst = os.path.join(workdir, "dst")

    def done(sw: Stopwatch, **info: object) -> Sample:
        size = os.stat(dst).st_size
        if size != args.size or (args.verify and not c.same_contents(src, dst)):
            raise AssertionError(f"bad copy: {size} bytes, expected {args.size}")
        c.unlink(dst)
        return sw.sample(size, **info)

    def shutil_copyfileobj() -> Sample:
        with Stopwatch() as sw, open(src, "rb") as f, open(dst, "wb") as g:
            shutil.copyfileobj(f, g)
        return done(sw)

    def zerocopy_copyfileobj() -> Sample:
        with Stopwatch() as sw, open(src, "rb") as f, open(dst, "wb") as g:
            zerocopy.copyfileobj(f, g)
        return done(sw, method=zerocopy.last_method())

    def zerocopy_copyfile() -> Sample:
        with Stopwatch() as sw:
            zerocopy.copyfile(src, dst)
        return done(sw, method=zerocopy.last_method())

    def shutil_copyfile() -> Sample:
        with Stopwatch() as sw:
            shutil.copyfile(src, dst)  # Python >= 3.8: os.sendfile on Linux
        return done(sw)

    def copy_file_range_loop() -> Sample:
        with Stopwatch() as sw:
            fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                while os.copy_file_range(fin, fout, GiB):
                    pass
            finally:
                os.close(fin)
                os.close(fout)
        return done(sw)

    def cp() -> Sample:
        with Stopwatch() as sw:
            subprocess.run(["cp", src, dst], check=True)
        return done(sw)

    variants = [
        ("shutil.copyfileobj", shutil_copyfileobj),
        ("zerocopy.copyfileobj", zerocopy_copyfileobj),
        ("zerocopy.copyfile", zerocopy_copyfile),
        ("shutil.copyfile", shutil_copyfile),
        ("os.copy_file_range", copy_file_range_loop),
        ("cp", cp),
    ]
    info = machine(workdir)
    info["cp"] = _first_line(["cp", "--version"])
    with LoadMeter() as load:
        try:
            with c.Deadline(args.timeout):
                c.fill_file(src, args.size)
                results = run_rounds(
                    c.select(variants, args.only), args.repeat, on_round=print_round
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_during_run"] = load.summary

    base = "shutil.copyfileobj"
    targets = []
    for name in ("zerocopy.copyfileobj", "zerocopy.copyfile"):
        targets += [
            c.Target(name, base, "throughput", 1.15),
            c.Target(name, "cp", "throughput", 0.95),
            c.Target(name, base, "cpu", 0.9),
        ]
    c.publish(
        "file -> file",
        args,
        info,
        results,
        base,
        targets,
        notes=lambda s: ",".join(s.get("method", [])),
    )
    return 0


def _first_line(cmd: Sequence[str]) -> str | None:
    """The first line *cmd* prints (a version), or None if it cannot run."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


if __name__ == "__main__":
    sys.exit(main())
