"""benchmarks/bench_relay.py: --quick runs of one connection and of --latency, and its options."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_relay.py"
REF = "haproxy forced splice 1M (1 thread)"
HAPROXY = shutil.which("haproxy") is not None
UVLOOP = importlib.util.find_spec("uvloop") is not None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.slow
class TestQuickRun:
    """--quick runs every variant of a mode on a few MiB or half a second."""

    def test_one_connection(self, tmp_path: Path) -> None:
        """The one-connection mode relays 4 MiB through every proxy, contents checked."""
        out = tmp_path / "r.json"
        proc = _run("--quick", "--json", str(out))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        report = json.loads(out.read_text(encoding="utf-8"))
        for data in report["results"].values():
            assert [s["nbytes"] for s in data["samples"]] == [4 * 1024 * 1024] * 2

    def test_latency(self, tmp_path: Path) -> None:
        """--latency: each proxy carries bulk bytes and the probe's round trips, in one run."""
        out = tmp_path / "r.json"
        proc = _run("--latency", "--quick", "--bulk", "2", "--json", str(out))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        assert "Traceback" not in proc.stderr
        report = json.loads(out.read_text(encoding="utf-8"))
        expected = [REF] if HAPROXY else []
        expected += ["zerocopy.aio.relay", "zerocopy.aio.relay (own rounds)"]
        expected += ["zerocopy.aio.relay (uvloop)"] if UVLOOP else []
        expected += ["zerocopy hub", "zerocopy.relay (threads)", "python relay 1M"]
        assert list(report["results"]) == expected
        assert report["machine"]["bulk_connections"] == 2
        assert report["args"]["duration"] == 0.5
        for data in report["results"].values():
            samples = data["samples"]
            assert len(samples) == 2
            for s in samples:
                assert s["nbytes"] > 0
                assert s["info"]["round_trips"] >= 1
                assert 0 < s["info"]["p50_ms"] <= s["info"]["p99_ms"] <= s["info"]["max_ms"]
        # The p99 target for each aio relay, against HAProxy when it ran; no
        # throughput target without --before and 32 bulk connections.
        targets = [t["target"] for t in report["targets"]]
        candidates = ["zerocopy.aio.relay", "zerocopy.aio.relay (own rounds)"]
        candidates += ["zerocopy.aio.relay (uvloop)"] if UVLOOP else []
        candidates.append("zerocopy hub")
        assert targets == ([f"{n} p99_ms <= 1.5x {REF}" for n in candidates] if HAPROXY else [])
        assert "p99 ms" in proc.stdout


class TestOptions:
    """--latency refuses what it cannot measure."""

    @pytest.mark.parametrize(
        "args",
        [
            ["--concurrent", "2"],
            ["--connections", "1,2"],
            ["--bulk", "0"],
            ["--bulk", ""],
            ["--interval", "0"],
            ["--probe-size", "0"],
        ],
    )
    def test_refused(self, args: list[str]) -> None:
        """A bad or conflicting option ends the run before any peer starts."""
        proc = _run("--latency", "--quick", *args)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip()

    def test_before_must_import_there(self, tmp_path: Path) -> None:
        """--before a directory without a zerocopy package is refused, naming it."""
        proc = _run("--latency", "--quick", "--before", str(tmp_path))
        assert proc.returncode == 1
        assert f"--before {tmp_path}" in proc.stderr
