"""Run the scenarios: set up peers and files, time each method, gather figures.

Methods of one scenario run in alternating rounds (:mod:`.rounds`) (A B C A B C
..., after one warm-up round), and each destination is deleted right after
its run: on these machines idle memory goes back to the hypervisor and costs
seconds per GiB to touch again, so runs must neither sleep nor wait on each
other.  CPU is the one accounting (:mod:`zerocopy._bench.timing`):
this process, whose only thread runs the method; the peers are other
processes, reaped after the scenario's last run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import _backend
from .methods import METHODS, Method
from .model import MODEL
from .rounds import run_rounds, spread
from .timing import Stopwatch
from .units import GiB

__all__ = ["SCENARIOS", "SCENARIO_HELP", "Result", "Run", "run_benchmark"]

SCENARIOS = tuple(METHODS)
#: What each scenario moves, for ``--help``.
SCENARIO_HELP = {
    "file-file": "a file into another file",
    "file-socket": "a file to a local TCP peer",
    "socket-socket": "from one local TCP peer to another",
    "memory-socket": "a bytes object to a local TCP peer",
}
SCHEMA = "zerocopy-bench/1"


@dataclass
class Run:
    """One timed transfer."""

    seconds: float
    user: float
    sys: float
    syscalls: int
    ctx_switches: int


@dataclass
class Result:
    """Every run of one method in one scenario, and their summary."""

    scenario: str
    method: str
    size: int
    runs: list[Run] = field(default_factory=list)

    def gib_s(self) -> list[float]:
        return [self.size / r.seconds / GiB for r in self.runs]

    def summary(self) -> dict[str, Any]:
        rates = spread(self.gib_s())
        gib = self.size / GiB
        cost = MODEL[self.method]
        return {
            "scenario": self.scenario,
            "method": self.method,
            "size": self.size,
            "median_gib_s": rates["median"],
            "min_gib_s": rates["min"],
            "max_gib_s": rates["max"],
            "cpu_user_s_per_gib": statistics.median(r.user for r in self.runs) / gib,
            "cpu_sys_s_per_gib": statistics.median(r.sys for r in self.runs) / gib,
            "syscalls": int(statistics.median(r.syscalls for r in self.runs)),
            "ctx_switches": int(statistics.median(r.ctx_switches for r in self.runs)),
            "model": cost._asdict(),
            "runs": [asdict(r) for r in self.runs],
        }


class _Peer:
    """A sink or source process on 127.0.0.1 (see :mod:`zerocopy._bench.peer`)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zerocopy._bench.peer", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port))

    def received(self) -> int:
        assert self.proc.stdout is not None
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _switches() -> int:
    # Counted over the same span as the CPU: the whole process.
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_nvcsw + r.ru_nivcsw


def _timed(method: Method, src: Any, dst: int, size: int) -> Run:
    calls = [0]
    switches = _switches()
    with Stopwatch() as sw:
        method(src, dst, size, calls)
    return Run(
        seconds=sw.seconds,
        user=sw.user,
        sys=sw.sys,
        syscalls=calls[0],
        ctx_switches=_switches() - switches,
    )


@contextlib.contextmanager
def _scenario(name: str, size: int, workdir: str) -> Iterator[Callable[[Method], Run]]:
    """Yield a function that performs one timed run of a method in scenario *name*."""
    src_path = os.path.join(workdir, "source")
    if name.startswith("file"):
        with open(src_path, "wb") as f:
            for off in range(0, size, 1 << 20):
                f.write(os.urandom(min(1 << 20, size - off)))
    memory = os.urandom(size) if name == "memory-socket" else b""
    sink = _Peer("sink") if name.endswith("socket") else None
    source = _Peer("source", str(size)) if name == "socket-socket" else None
    try:

        def once(method: Method) -> Run:
            dst_path = os.path.join(workdir, "destination")
            with contextlib.ExitStack() as stack:
                if name == "file-file":
                    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    stack.callback(os.unlink, dst_path)
                    stack.callback(os.close, dst)
                else:
                    assert sink is not None
                    conn = stack.enter_context(sink.connect())
                    dst = conn.fileno()
                src: Any = memory
                if name.startswith("file"):
                    src = os.open(src_path, os.O_RDONLY)
                    stack.callback(os.close, src)
                elif source is not None:
                    src = stack.enter_context(source.connect()).fileno()
                run = _timed(method, src, dst, size)
                if name == "file-file":
                    got = os.fstat(dst).st_size
                else:
                    conn.shutdown(socket.SHUT_WR)
                    got = sink.received()  # type: ignore[union-attr]
            if got != size:
                raise RuntimeError(f"{name}: moved {got} bytes, expected {size}")
            return run

        yield once
    finally:
        for peer in (sink, source):
            if peer is not None:
                peer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(src_path)


def _scenario_step(
    scenario: str, on_step: Callable[[str, str, int, int], None] | None
) -> Callable[[str, int, int], None] | None:
    if on_step is None:
        return None
    return lambda method, step, total: on_step(scenario, method, step, total)


def run_benchmark(
    scenarios: list[str],
    size: int,
    repeat: int,
    methods: list[str] | None = None,
    on_step: Callable[[str, str, int, int], None] | None = None,
    workdir: str | None = None,
) -> list[Result]:
    """Measure every applicable method of each scenario; return the results."""
    features = _backend.features()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="zerocopy-bench-", dir=workdir) as tmp:
        for name in scenarios:
            chosen = [
                (m, fn)
                for m, fn, need in METHODS[name]
                if (methods is None or m in methods) and (need is None or need in features)
            ]
            if not chosen:
                continue
            with _scenario(name, size, tmp) as once:
                runs = run_rounds(
                    [(m, functools.partial(once, fn)) for m, fn in chosen],
                    repeat,
                    on_step=_scenario_step(name, on_step),
                )
            results.extend(Result(name, m, size, r) for m, r in runs.items())
    return results
