"""The benchmark toolkit: sizes, formatting, alternating rounds, CPU accounting, machine."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import zerocopy

# The kit lives beside the scripts (benchmarks/kit), which run with benchmarks/ on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from kit import common, peer
from kit.toolkit import (
    CpuTimes,
    GiB,
    KiB,
    LoadMeter,
    MiB,
    Sample,
    Stopwatch,
    callgrind_instructions,
    human,
    machine,
    parse_size,
    process_cpu,
    process_tree_cpu,
    run_rounds,
    size_arg,
    spread,
    summarize,
)


def _burn(seconds: float = 0.05) -> None:
    """Spend about *seconds* of user CPU in this thread."""
    t0 = time.thread_time()
    while time.thread_time() - t0 < seconds:
        sum(range(10_000))


def _wait_for(done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll *done* until it is true; fail after *timeout* seconds (the machine is shared)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0)


class TestParseSize:
    """One size parser: binary units, case-insensitive, zero and junk refused."""

    @pytest.mark.parametrize(
        ("text", "size"),
        [
            ("4096", 4096),
            ("1", 1),
            ("4K", 4 * KiB),
            ("512k", 512 * KiB),
            ("64M", 64 * MiB),
            ("64MiB", 64 * MiB),
            ("64mib", 64 * MiB),
            ("1G", GiB),
            ("1GB", GiB),
            (" 2 G ", 2 * GiB),
            ("100B", 100),
        ],
    )
    def test_sizes(self, text: str, size: int) -> None:
        """Sizes take binary units, with or without 'iB', in either case."""
        assert parse_size(text) == size

    @pytest.mark.parametrize("text", ["0", "0K", "0M", "00"])
    def test_zero_refused(self, text: str) -> None:
        """Zero bytes is a ValueError: a run must move bytes."""
        with pytest.raises(ValueError, match="size must be > 0"):
            parse_size(text)

    @pytest.mark.parametrize("text", ["", " ", "-1", "1T", "abc", "1.5M", "M", "4 KK"])
    def test_bad_input(self, text: str) -> None:
        """Negative sizes, fractions, unknown units and words are a ValueError."""
        with pytest.raises(ValueError, match="not a size"):
            parse_size(text)

    def test_argparse_keeps_the_reason(self) -> None:
        """size_arg turns the ValueError into an argparse error that keeps its message."""
        with pytest.raises(argparse.ArgumentTypeError, match="size must be > 0"):
            size_arg("0")
        assert size_arg("2M") == 2 * MiB


class TestHuman:
    """One formatter: binary units, at most one decimal, none when it is zero."""

    @pytest.mark.parametrize(
        ("n", "text"),
        [
            (0, "0 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (64 * MiB, "64 MiB"),
            (256 * KiB, "256 KiB"),
            (GiB, "1 GiB"),
            (2.25 * GiB, "2.2 GiB"),
            (1024 * GiB, "1024 GiB"),
        ],
    )
    def test_format(self, n: float, text: str) -> None:
        """Each magnitude gets its unit."""
        assert human(n) == text

    @pytest.mark.parametrize("n", [1, 4 * KiB, 64 * MiB, 3 * GiB])
    def test_round_trip(self, n: int) -> None:
        """A whole number of units reads back as the same size."""
        assert parse_size(human(n).replace(" ", "")) == n


class TestRunRounds:
    """Alternating rounds: A B A B after a warm-up round that is dropped."""

    def test_alternating_order(self) -> None:
        """Each round runs every variant once, in the same order; warm-up results dropped."""
        calls: list[str] = []
        count = {"a": 0, "b": 0}

        def variant(name: str) -> tuple[str, object]:
            def run() -> int:
                calls.append(name)
                count[name] += 1
                return count[name]

            return name, run

        got = run_rounds([variant("a"), variant("b")], 3)  # type: ignore[list-item]
        assert calls == ["a", "b"] * 4
        assert got == {"a": [2, 3, 4], "b": [2, 3, 4]}

    def test_callbacks(self) -> None:
        """on_step counts every run (warm-up included), on_round labels each round."""
        steps: list[tuple[str, int, int]] = []
        rounds: list[tuple[str, dict[str, int]]] = []
        run_rounds(
            [("a", lambda: 1), ("b", lambda: 2)],
            2,
            warmup=1,
            on_step=lambda *a: steps.append(a),
            on_round=lambda label, got: rounds.append((label, dict(got))),
        )
        assert steps == [
            ("a", 1, 6),
            ("b", 2, 6),
            ("a", 3, 6),
            ("b", 4, 6),
            ("a", 5, 6),
            ("b", 6, 6),
        ]
        assert [r[0] for r in rounds] == ["warm-up", "round 1/2", "round 2/2"]
        assert rounds[1][1] == {"a": 1, "b": 2}

    def test_no_warmup(self) -> None:
        """warmup=0 keeps every round."""
        assert run_rounds([("a", lambda: 7)], 2, warmup=0) == {"a": [7, 7]}


class TestStatistics:
    """Medians and spreads of the measured runs."""

    def test_spread(self) -> None:
        """Median, min, max and quartiles; one value is its own spread."""
        assert spread([3.0, 1.0, 2.0]) == {
            "median": 2.0,
            "min": 1.0,
            "max": 3.0,
            "q1": 1.5,
            "q3": 2.5,
        }
        assert spread([5.0])["q1"] == spread([5.0])["q3"] == 5.0

    def test_summarize(self) -> None:
        """Throughput in GiB/s and CPU in s/GiB, medians over the runs; info medians too."""
        runs = [Sample(s, 0.1 * s, 0.2 * s, GiB, {"calls": s, "how": "x"}) for s in (1.0, 2.0, 4.0)]
        out = summarize(runs)
        assert out["runs"] == 3
        assert out["gib_s"]["median"] == pytest.approx(0.5)
        assert out["cpu_user_s_per_gib"] == pytest.approx(0.2)
        assert out["cpu_s_per_gib"] == pytest.approx(0.6)
        assert out["calls"] == 2.0
        assert out["how"] == ["x"]


class TestCpuAccounting:
    """One CPU accounting: the process, all its threads and the children it reaped."""

    def test_non_negative_and_growing(self) -> None:
        """User and system time are non-negative and grow with work."""
        before = process_cpu()
        assert before.user >= 0
        assert before.sys >= 0
        _burn()
        fd = os.open("/dev/zero", os.O_RDONLY)
        buf = bytearray(MiB)
        try:
            # System time: the kernel zeroes the buffer.  Counted in ticks on
            # some kernels, so read until it shows.
            _wait_for(lambda: os.readv(fd, [buf]) > 0 and process_cpu().sys > before.sys)
        finally:
            os.close(fd)
        spent = process_cpu().minus(before)
        assert spent.user >= 0.04
        assert spent.sys > 0
        assert spent.total == spent.user + spent.sys

    def test_counts_other_threads(self) -> None:
        """Work done by another thread of the process is counted (unlike RUSAGE_THREAD)."""
        with Stopwatch() as sw:
            t = threading.Thread(target=_burn, args=(0.1,))
            t.start()
            t.join()
        assert sw.user >= 0.08  # tick-based accounting may lag a little

    def test_counts_reaped_children(self) -> None:
        """A child waited for inside the block is counted, as cp is in bench_file_file."""
        code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
        with Stopwatch() as sw:
            subprocess.run([sys.executable, "-c", code], check=True)
        assert sw.user + sw.sys >= 0.15

    def test_other_process(self) -> None:
        """process_cpu(pid) reads another process's CPU from /proc; it grows as it works."""
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            first = process_cpu(proc.pid)
            assert first.user >= 0
            assert first.sys >= 0
            with Stopwatch(proc.pid) as sw:
                _wait_for(lambda: process_cpu(proc.pid).user - first.user >= 0.1)
            assert sw.user >= 0.08  # tick-based accounting may lag a little
            assert process_tree_cpu(proc.pid).total >= process_cpu(proc.pid).total
        finally:
            proc.kill()
            proc.wait()

    def test_tree_includes_live_children(self) -> None:
        """process_tree_cpu adds descendants still running (nginx's workers)."""
        code = (
            "import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
            "print(child.pid, flush=True)\nsys.stdin.read()\nchild.kill()\nchild.wait()"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            child = int(proc.stdout.readline())
            _wait_for(lambda: process_cpu(child).user >= 0.2)
            assert process_cpu(proc.pid).user < 0.2 <= process_tree_cpu(proc.pid).user
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
            proc.stdout.close()  # type: ignore[union-attr]

    def test_stopwatch_sample(self) -> None:
        """A Stopwatch's sample carries its wall time, CPU, bytes and notes."""
        with Stopwatch() as sw:
            _burn(0.02)
        s = sw.sample(123, method="x")
        assert s.seconds > 0
        assert s.user >= 0.01
        assert (s.nbytes, s.info) == (123, {"method": "x"})
        assert isinstance(process_cpu(), CpuTimes)


class TestMachine:
    """The one machine description."""

    def test_fields(self, tmp_path: Path) -> None:
        """Kernel, CPU, cores, Python, zerocopy, backend, accounting and the filesystem."""
        info = machine(str(tmp_path))
        assert info["kernel"] == os.uname().release
        assert info["cores"] == os.cpu_count()
        assert info["zerocopy"] == zerocopy.__version__
        assert info["backend"] == zerocopy.BACKEND
        assert "threads" in info["cpu_accounting"]
        assert info["filesystem"]["type"] != "?"

    def test_load_meter(self) -> None:
        """LoadMeter reports wall time and this process's CPU, none negative."""
        with LoadMeter() as load:
            _burn(0.05)
        assert load.summary["own_cpu_s"] >= 0
        assert min(load.summary.values()) >= 0


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
class TestCounting:
    """Instructions counted under callgrind, for per-call costs without timing noise."""

    def test_more_work_more_instructions(self) -> None:
        """A loop of 200,000 additions costs millions more instructions than none, repeatably."""
        idle = callgrind_instructions([sys.executable, "-c", "pass"])
        busy = callgrind_instructions([sys.executable, "-c", "sum(range(200_000))"])
        again = callgrind_instructions([sys.executable, "-c", "sum(range(200_000))"])
        assert busy - idle > 2_000_000
        assert abs(busy - again) < (busy - idle) / 100  # counted, not timed: within 1 %

    def test_failing_command(self) -> None:
        """A command that fails raises CalledProcessError, not a count."""
        with pytest.raises(subprocess.CalledProcessError):
            callgrind_instructions([sys.executable, "-c", "raise SystemExit(3)"])


class TestLoadMeterPeers:
    def test_peers_cpu_counts_as_ours(self) -> None:
        """A child not yet reaped, given by pid, counts as the benchmark's CPU."""
        code = (
            "import sys, time\nt = time.thread_time()\nwhile time.thread_time() - t < 0.3: pass\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code + "sys.stdin.read()"], stdin=subprocess.PIPE
        )
        try:
            with LoadMeter([proc.pid]) as load:
                _wait_for(lambda: process_cpu(proc.pid).total >= 0.3)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
        assert load.summary["own_cpu_s"] >= 0.2


# --- the kit's processes and options (benchmarks/kit/peer.py, benchmarks/kit/common.py) ---


#: A script with a role, as the benchmarks have: answers {"twice": n} with 2n.
_ROLE_SCRIPT = """
import os, sys
sys.path.insert(0, {kit!r})
from kit.peer import serve_peer

def handle(request):
    if request.get("fail"):
        raise ValueError("asked to fail")
    return {{"twice": 2 * request["n"], "pid": os.getpid()}}

if sys.argv[1:3] == ["--role", "double"]:
    serve_peer(handle, ports=[1234, 5678])
"""


class TestPeer:
    def _script(self, tmp_path: Path) -> str:
        path = tmp_path / "script.py"
        kit = str(Path(__file__).resolve().parent.parent / "benchmarks")
        path.write_text(_ROLE_SCRIPT.format(kit=kit), encoding="utf-8")
        return str(path)

    def test_ask_and_stop(self, tmp_path: Path) -> None:
        """The hello gives the ports; requests are answered in order; stop reaps it."""
        with peer.Peer(self._script(tmp_path), "double") as p:
            assert p.ports == [1234, 5678]
            assert p.port == 1234
            assert p.ask({"n": 21})["twice"] == 42
            p.send({"n": 1})
            p.send({"n": 2})
            assert [p.receive()["twice"], p.receive()["twice"]] == [2, 4]
            assert p.ask({"n": 0})["pid"] == p.pid
        assert p.proc.returncode == 0

    def test_error_is_raised_here(self, tmp_path: Path) -> None:
        """An exception in the peer comes back as RuntimeError; the peer keeps answering."""
        with peer.Peer(self._script(tmp_path), "double") as p:
            with pytest.raises(RuntimeError, match="ValueError: asked to fail"):
                p.ask({"fail": True})
            assert p.ask({"n": 3})["twice"] == 6

    def test_a_role_that_never_says_hello(self, tmp_path: Path) -> None:
        """A peer that exits before its hello: RuntimeError, and it is reaped."""
        with pytest.raises(RuntimeError, match="did not start"):
            peer.Peer(self._script(tmp_path), "nonesuch")


class TestServer:
    def _leftovers(self) -> set[str]:
        tmp = Path(tempfile.gettempdir())
        return {p.name for p in tmp.glob("zerocopy-bench-nginx-*")}

    @pytest.mark.parametrize("binary", ["/bin/false", "/nonexistent/nginx"])
    def test_nginx_prefix_removed_when_the_start_fails(self, tmp_path: Path, binary: str) -> None:
        """nginx_server's temporary prefix goes even when the server cannot start."""
        before = self._leftovers()
        server = peer.nginx_server(binary, str(tmp_path), peer.free_port())
        assert self._leftovers() == before  # made at start, not when described
        with pytest.raises((RuntimeError, OSError)), server:
            pass
        assert self._leftovers() == before


class TestOnly:
    @pytest.mark.parametrize(
        ("argv", "names"),
        [
            (["--only", "a,b c"], ["a", "b c"]),
            (
                ["--only", "zerocopy.aio.relay (uvloop, before)"],
                ["zerocopy.aio.relay (uvloop, before)"],
            ),
            (["--only", "x;y (1, 2),z"], ["x", "y (1, 2)", "z"]),
            (["--only", "a (1, 2)", "--only", "b"], ["a (1, 2)", "b"]),
            ([], None),
        ],
    )
    def test_separators(self, argv: list[str], names: list[str] | None) -> None:
        """';', commas outside parentheses and repeated --only separate; commas inside do not."""
        args = common.base_parser("test", None).parse_args(argv)
        assert args.only == names
