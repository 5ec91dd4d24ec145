"""python -m zerocopy bench: every scenario and method on a tiny size, its JSON and plot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest

import zerocopy
from zerocopy._bench.methods import METHODS
from zerocopy._bench.model import MODEL
from zerocopy._bench.runner import SCENARIOS, run_benchmark

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
        """Tables per scenario and a closing line per scenario naming the fastest method."""
        proc = _bench(tmp_path, "--scenario", "file-file")
        assert proc.returncode == 0, proc.stderr
        assert "copy_file_range" in proc.stdout
        last = proc.stdout.strip().splitlines()[-1]
        assert last.startswith("file-file: ")
        assert "fastest" in last

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
        """--plot writes a PNG bar chart."""
        if importlib.util.find_spec("matplotlib") is None:
            # The `plot` extra, apart from `test`; CI installs it (README's command).
            reason = "cannot test --plot: matplotlib not installed (pip install '.[plot]')"
            print(reason)
            pytest.skip(reason)
        png = tmp_path / "bench.png"
        proc = _bench(tmp_path, "--scenario", "memory-socket", "--plot", str(png))
        assert proc.returncode == 0, proc.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_size_zero_refused(self, tmp_path: Path) -> None:
        """--size 0 exits 2 and says why (the toolkit's parser refuses zero)."""
        proc = _bench(tmp_path, "--size", "0")
        assert proc.returncode == 2
        assert "size must be > 0" in proc.stderr

    def test_plot_without_matplotlib(self, tmp_path: Path) -> None:
        """Without matplotlib, --plot ends with a clear message naming the extra."""
        blocker = tmp_path / "sitecustomize.py"
        blocker.write_text("import sys\nsys.modules['matplotlib'] = None\n")
        env = dict(os.environ, PYTHONPATH=str(tmp_path))
        proc = _bench(
            tmp_path,
            "--scenario",
            "memory-socket",
            "--methods",
            "write",
            "--plot",
            str(tmp_path / "x.png"),
            env=env,
        )
        assert proc.returncode != 0
        assert "matplotlib" in proc.stderr
        assert "zerocopy-io[plot]" in proc.stderr
        assert not (tmp_path / "x.png").exists()


class TestShipped:
    def test_bench_package_holds_only_what_the_cli_needs(self) -> None:
        """Every module of zerocopy._bench is one the command imports, or runs (its peer).

        What only benchmarks/ uses lives in benchmarks/kit, not in the wheel.
        """
        package = Path(zerocopy.__file__).parent / "_bench"
        shipped = {p.stem for p in package.glob("*.py")} - {"__init__"}
        code = (
            "import sys, zerocopy._cli\n"
            "print(' '.join(m.split('.')[-1] for m in sys.modules "
            "if m.startswith('zerocopy._bench.')))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        run_as_peer = {"peer"}  # python -m zerocopy._bench.peer, started by the runner
        assert "zerocopy._bench.peer" in (package / "runner.py").read_text(encoding="utf-8")
        assert shipped - run_as_peer == set(out.split())
