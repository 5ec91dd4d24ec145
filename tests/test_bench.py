"""python -m zerocopy bench: every scenario and method on a tiny size, its JSON and plot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest

import zerocopy
from zerocopy._bench.methods import METHODS
from zerocopy._bench.model import MODEL
from zerocopy._bench.runner import SCENARIOS, run_benchmark
from zerocopy._bench.verdict import choices, tied_with, verdict

SCHEMA = json.loads(
    (Path(zerocopy.__file__).parent / "_bench" / "schema.json").read_text(encoding="utf-8")
)
TINY = 256 * 1024


def _bench(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "zerocopy",
            "bench",
            "--size",
            str(TINY),
            "--repeat",
            "2",
            "--workdir",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One full tiny run of every scenario, as JSON."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    proc = _bench(tmp, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text(encoding="utf-8"))


class TestJson:
    """The JSON report is complete and matches its published schema."""

    def test_validates_against_schema(self, report: dict) -> None:
        """bench --json output validates against _bench/schema.json."""
        jsonschema.validate(report, SCHEMA)

    def test_every_scenario_and_method_measured(self, report: dict) -> None:
        """Each scenario's methods that this machine supports all have results."""
        got = {(r["scenario"], r["method"]) for r in report["results"]}
        features = zerocopy.FEATURES
        want = {
            (scenario, name)
            for scenario, methods in METHODS.items()
            for name, _, need in methods
            if need is None or need in features
        }
        assert got == want

    def test_machine_details(self, report: dict) -> None:
        """The report names kernel, CPU, cores, Python and backend."""
        machine = report["machine"]
        assert machine["kernel"] == os.uname().release
        assert machine["cores"] == os.cpu_count()
        assert machine["backend"] == zerocopy.BACKEND

    def test_runs_and_model(self, report: dict) -> None:
        """Two timed runs per method, medians inside their spread, the model attached."""
        for r in report["results"]:
            assert len(r["runs"]) == 2
            assert r["min_gib_s"] <= r["median_gib_s"] <= r["max_gib_s"]
            assert r["model"]["cpu_copies"] == MODEL[r["method"]].cpu_copies

    def test_one_verdict_per_scenario(self, report: dict) -> None:
        """The closing lines name each scenario once with its fastest method."""
        assert [v.split(":")[0] for v in report["verdicts"]] == list(SCENARIOS)


class TestMethods:
    """Every method moves exactly the asked bytes, on each backend."""

    @pytest.mark.parametrize("scenario", SCENARIOS)
    def test_scenario_runs(self, backend: ModuleType, tmp_path: Path, scenario: str) -> None:
        """run_benchmark checks the byte count of every run; here it must not raise."""
        results = run_benchmark([scenario], TINY, 1, workdir=str(tmp_path))
        names = {r.method for r in results}
        for name, _, need in METHODS[scenario]:
            assert (name in names) == (need is None or need in zerocopy.FEATURES)
        assert all(len(r.runs) == 1 and r.runs[0].syscalls > 0 for r in results)
        assert list(tmp_path.iterdir()) == []  # sources and destinations deleted


class TestCli:
    """The command line: output, options and errors."""

    def test_plain_output(self, tmp_path: Path) -> None:
        """A legend, a table, a verdict (winner or tie), then what the library picks."""
        proc = _bench(tmp_path, "--scenario", "file-file")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "copy_file_range" in out
        assert "median of 2 timed runs" in out
        assert "Model, not measured" in out
        assert "ctxsw: scheduler context switches of this process (getrusage" in out
        assert "syscalls: the data-moving calls" in out
        lines = out.strip().splitlines()
        (line,) = [x for x in lines if x.startswith("file-file: ")]
        assert " won" in line or ": tie between " in line
        assert "What zerocopy uses on this machine" in out
        assert lines[-1].split()[:2] == ["ZeroCopySender", "memory-socket"]

    def test_closing_lines_name_the_library_choice(self, tmp_path: Path) -> None:
        """The closing lines name what copyfileobj, send_file and relay use, per the probe."""
        proc = _bench(tmp_path, "--scenario", "socket-socket")
        assert proc.returncode == 0, proc.stderr
        tail = proc.stdout.split("What zerocopy uses on this machine", 1)[1]
        probe = ", ".join(sorted(zerocopy.FEATURES))
        assert f"its probe found: {probe})" in tail
        rows = [line.split() for line in tail.splitlines()[1:]]
        got = {(r[0], r[1]): r[2] for r in rows}
        assert got == {(c.function, c.scenario): c.method for c in choices()}
        features = zerocopy.FEATURES
        assert got[("relay", "socket-socket")] == (
            "splice" if "splice" in features else "readinto/write"
        )
        assert got[("send_file", "file-socket")] == (
            "sendfile" if "sendfile" in features else "read/write"
        )
        if {"copy_file_range", "sendfile"} <= features:
            assert got[("copyfileobj", "file-file")] == "copy_file_range"
            assert got[("copyfileobj", "file-socket")] == "sendfile"

    def test_repeat_zero_refused(self, tmp_path: Path) -> None:
        """--repeat 0 exits 2 from argparse with the reason, no traceback."""
        proc = _bench(tmp_path, "--repeat", "0")
        assert proc.returncode == 2
        assert "--repeat: must be >= 1, got 0" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_unwritable_plot_path_refused_before_the_run(self, tmp_path: Path) -> None:
        """A --plot path in a missing directory is a 'zerocopy bench:' error before any run."""
        proc = _bench(tmp_path, "--plot", str(tmp_path / "missing" / "x.png"))
        assert proc.returncode == 2
        assert proc.stderr.startswith("zerocopy bench: --plot: cannot write ")
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""

    def test_missing_workdir_refused(self, tmp_path: Path) -> None:
        """A --workdir that does not exist is a 'zerocopy bench:' error, not a traceback."""
        proc = _bench(tmp_path, "--workdir", str(tmp_path / "nope"))
        assert proc.returncode == 2
        assert proc.stderr.startswith("zerocopy bench: --workdir ")
        assert "Traceback" not in proc.stderr

    def test_help_gives_each_default(self) -> None:
        """--help describes every option with its default, --scenario included."""
        proc = subprocess.run(
            [sys.executable, "-m", "zerocopy", "bench", "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        text = " ".join(proc.stdout.split())
        for option, default in [
            ("--size", "(default 64M)"),
            ("--scenario", "default all)"),
            ("--methods", "(default: every method"),
            ("--repeat", "(default 5)"),
            ("--json", "(default: none)"),
            ("--plot", "default: no plot"),
            ("--workdir", "(default: the system's temporary directory)"),
        ]:
            assert option in text
            assert default in text
        assert "file-socket: a file to a local TCP peer" in text

    def test_methods_filter(self, tmp_path: Path) -> None:
        """--methods limits the rows; an unknown name exits 2 with the known names."""
        out = tmp_path / "r.json"
        proc = _bench(
            tmp_path,
            "--scenario",
            "file-socket",
            "--methods",
            "read/write",
            "sendfile",
            "--json",
            str(out),
        )
        assert proc.returncode == 0, proc.stderr
        assert {r["method"] for r in json.loads(out.read_text())["results"]} == {
            "read/write",
            "sendfile",
        }
        bad = _bench(tmp_path, "--methods", "teleport")
        assert bad.returncode == 2
        assert "teleport" in bad.stderr
        assert "sendfile" in bad.stderr

    def test_plot(self, tmp_path: Path) -> None:
        """--plot writes a PNG and prints its path."""
        if importlib.util.find_spec("matplotlib") is None:
            # The `plot` extra, apart from `test`; CI installs it (README's command).
            reason = "cannot test --plot: matplotlib not installed (pip install '.[plot]')"
            print(reason)
            pytest.skip(reason)
        png = tmp_path / "bench.png"
        proc = _bench(tmp_path, "--scenario", "memory-socket", "--plot", str(png))
        assert proc.returncode == 0, proc.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert proc.stdout.strip().splitlines()[-1] == f"wrote {png}"

    def test_size_zero_refused(self, tmp_path: Path) -> None:
        """--size 0 exits 2 and says why (the toolkit's parser refuses zero)."""
        proc = _bench(tmp_path, "--size", "0")
        assert proc.returncode == 2
        assert "size must be > 0" in proc.stderr

    def test_plot_without_matplotlib(self, tmp_path: Path) -> None:
        """Without matplotlib, --plot fails at once, before any run, naming the extra."""
        blocker = tmp_path / "sitecustomize.py"
        blocker.write_text("import sys\nsys.modules['matplotlib'] = None\n")
        # The blocker first, then this checkout's path, so that it is this zerocopy that runs.
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=path)
        started = time.monotonic()
        proc = _bench(tmp_path, "--size", "1G", "--plot", str(tmp_path / "x.png"), env=env)
        elapsed = time.monotonic() - started
        assert proc.returncode == 1
        assert proc.stderr.startswith("zerocopy bench: --plot needs matplotlib")
        assert "pip install -e '.[plot]'" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""  # no header, no table: nothing ran
        assert elapsed < 30  # 1 GiB in every scenario would take far longer
        assert not (tmp_path / "x.png").exists()


def _row(method: str, median: float, lo: float, hi: float) -> dict:
    return {"method": method, "median_gib_s": median, "min_gib_s": lo, "max_gib_s": hi}


class TestVerdict:
    """A winner is named only when its range clears every other's; otherwise a tie."""

    def test_overlapping_ranges_tie(self) -> None:
        """Best median 5.0, but its min 4.5 is below another's max 4.8: a tie of the two."""
        rows = [
            _row("read/write", 2.0, 1.9, 2.1),
            _row("sendfile", 5.0, 4.5, 5.2),
            _row("splice", 4.6, 4.4, 4.8),
        ]
        line = verdict("file-socket", rows)
        assert line.startswith("file-socket: tie between sendfile, splice ")
        assert "won" not in line
        assert [r["method"] for r in tied_with(rows)] == ["sendfile", "splice"]

    def test_clear_winner_named(self) -> None:
        """Min 4.9 above every other max: the winner and its ratio to the baseline."""
        rows = [
            _row("read/write", 2.0, 1.9, 2.1),
            _row("sendfile", 5.0, 4.9, 5.2),
            _row("splice", 4.6, 4.4, 4.8),
        ]
        line = verdict("file-socket", rows)
        assert line.startswith("file-socket: sendfile won, 2.50x read/write ")
        assert "tie" not in line

    def test_baseline_can_win(self) -> None:
        """The plain loop winning clearly is said as such."""
        rows = [_row("write", 6.0, 5.9, 6.1), _row("MSG_ZEROCOPY", 3.0, 2.0, 4.0)]
        assert "write won" in verdict("memory-socket", rows)

    def test_touching_ranges_tie(self) -> None:
        """A max equal to the best's min does not clear it."""
        rows = [_row("a", 1.0, 0.5, 2.0), _row("b", 3.0, 2.0, 3.5)]
        assert verdict("s", rows).startswith("s: tie between b, a ")


class TestShipped:
    def test_bench_package_holds_only_what_the_cli_needs(self) -> None:
        """Every module of zerocopy._bench is one the bench command imports, or runs (its peer).

        What only benchmarks/ uses lives in benchmarks/kit, not in the wheel.
        """
        package = Path(zerocopy.__file__).parent / "_bench"
        shipped = {p.stem for p in package.glob("*.py")} - {"__init__"}
        code = (
            "import sys, zerocopy._cli.bench\n"
            "print(' '.join(m.split('.')[-1] for m in sys.modules "
            "if m.startswith('zerocopy._bench.')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        run_as_peer = {"peer"}  # python -m zerocopy._bench.peer, started by the runner
        assert "zerocopy._bench.peer" in (package / "runner.py").read_text(encoding="utf-8")
        assert shipped - run_as_peer == set(out.split())
