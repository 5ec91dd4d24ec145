"""Choosing the backend: ZEROCOPY_BACKEND, the fallback, the ABI check, FEATURES.

What happens at import is tested in fresh interpreters (``sys.executable -c``)
so that each case sees its own environment; a meta-path finder in the child
stands in for a missing or stale compiled module.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import select
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zerocopy
from zerocopy import _backend, _constants

ALL_SIX = frozenset({"sendfile", "splice", "tee", "vmsplice", "copy_file_range", "msg_zerocopy"})
OS_FEATURES = frozenset({"sendfile", "splice", "copy_file_range", "vmsplice"})
BACKEND_API = {
    "NAME",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "probe",
    "relay_state",
    "relay_step",
}


@pytest.fixture
def cffi_loads() -> ModuleType:
    """The cffi backend module; the test needs the compiled module to load.

    These tests are about choosing a backend, not per-backend behaviour, so
    they run whatever ZEROCOPY_BACKEND the suite itself runs under.
    """
    try:
        return _backend.load("cffi")
    except ImportError as exc:
        if os.environ.get("ZEROCOPY_REQUIRE_EXTENSION", "") not in ("", "0"):
            pytest.fail(f"the compiled module is required but does not load: {exc}")
        pytest.skip(f"the compiled module does not load here: {exc}")


# --- a child interpreter ---------------------------------------------------------

# Prepended to child scripts: meta-path finders that make the compiled module
# missing (BLOCK) or out of date (STALE: zerocopy._cffi's expected ABI version
# bumped by one, as if the .so were built from older sources).
_FINDERS = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, importlib.util, os, re, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "zerocopy._zerocopy_cffi":
                raise ImportError("blocked by the test: no compiled module here")
            return None

    class Stale(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name != "zerocopy._cffi":
                return None
            real = importlib.machinery.PathFinder.find_spec(name, path)
            self.origin = real.origin
            return importlib.util.spec_from_loader(name, self, origin=real.origin)

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            with open(self.origin, encoding="utf-8") as f:
                source = f.read()
            source, n = re.subn(
                r"^_ABI_VERSION = (\\d+)",
                lambda m: f"_ABI_VERSION = {int(m[1]) + 1}",
                source,
                flags=re.M,
            )
            assert n == 1, "zerocopy._cffi has no _ABI_VERSION line"
            exec(compile(source, self.origin, "exec"), module.__dict__)

    mode = os.environ.get("TEST_COMPILED")
    if mode == "block":
        sys.meta_path.insert(0, Block())
    elif mode == "stale":
        sys.meta_path.insert(0, Stale())
    """
)


def _child(
    code: str, tmp_path: Path, backend: str | None = None, compiled: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(_backend.ENV_VAR, None)
    env.pop("TEST_COMPILED", None)
    env.pop("PYTHONWARNINGS", None)
    if backend is not None:
        env[_backend.ENV_VAR] = backend
    if compiled is not None:
        env["TEST_COMPILED"] = compiled
    return subprocess.run(
        [sys.executable, "-c", _FINDERS + textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


_REPORT = """
    import json, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import zerocopy
    print(json.dumps({
        "backend": zerocopy.BACKEND,
        "features": sorted(zerocopy.FEATURES),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    }))
"""


def _report(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    proc = _child(_REPORT, tmp_path, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _import_error(tmp_path: Path, **kwargs: Any) -> str:
    code = """
        try:
            import zerocopy
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported with backend", zerocopy.BACKEND)
    """
    proc = _child(code, tmp_path, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --- the in-process backend ----------------------------------------------------


class TestCurrentBackend:
    def test_backend_follows_fixture(self, backend: ModuleType) -> None:
        """zerocopy.BACKEND names the backend the fixture made current."""
        assert zerocopy.BACKEND == backend.NAME
        assert _backend.current() is backend

    def test_use_restores(self, backend: ModuleType) -> None:
        """_backend.use switches for a with block and restores on exit, even on error."""
        other = "os" if backend.NAME == "cffi" else "cffi"
        if other not in _backend.available():
            other = backend.NAME
        seen = []

        def switch_and_fail() -> None:
            with _backend.use(other):
                seen.append(zerocopy.BACKEND)
                raise RuntimeError("inside")

        with pytest.raises(RuntimeError, match="inside"):
            switch_and_fail()
        assert seen == [other]
        restored = zerocopy.BACKEND
        assert restored == backend.NAME

    def test_backends_have_same_calls(self, backend: ModuleType) -> None:
        """Every backend module offers the same calls."""
        assert set(dir(backend)) >= BACKEND_API
        assert backend.NAME in _backend.NAMES

    def test_unknown_name(self) -> None:
        """_backend.load refuses an unknown backend name with ValueError."""
        with pytest.raises(ValueError, match="bogus"):
            _backend.load("bogus")
        with pytest.raises(ValueError, match="bogus"), _backend.use("bogus"):
            pass

    def test_available_here(self, cffi_loads: ModuleType) -> None:
        """Where the compiled module loads, both backends are available."""
        assert _backend.available() == ["cffi", "os"]


# --- FEATURES -------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
# Syscall numbers, for a reference probe independent of zerocopy.
_NR = {
    "x86_64": {"sendfile": 40, "splice": 275, "tee": 276, "vmsplice": 278, "copy_file_range": 326},
    "aarch64": {"sendfile": 71, "splice": 76, "tee": 77, "vmsplice": 75, "copy_file_range": 285},
}.get(platform.machine())


def _syscall_present(nr: int) -> bool:
    args = [ctypes.c_long(-1)] + [ctypes.c_long(0)] * 5
    if _libc.syscall(ctypes.c_long(nr), *args) >= 0:
        return True
    return ctypes.get_errno() not in (errno.ENOSYS, errno.EPERM)


def _seccomp() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return line.split()[1] != "0"
    return False


def _kernel() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


class TestFeatures:
    def test_cffi_matches_reference(self, cffi_loads: ModuleType) -> None:
        """On cffi, FEATURES equals a probe of the raw syscalls made with ctypes."""
        if _NR is None:
            pytest.skip(f"no syscall table for {platform.machine()} in this test")
        expected = {name for name, nr in _NR.items() if _syscall_present(nr)}
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, _constants.SO_ZEROCOPY, 1)
            expected.add("msg_zerocopy")
        except OSError:
            pass
        with _backend.use("cffi"):
            features = zerocopy.FEATURES
        assert features == frozenset(expected)

    def test_cffi_has_all_six(self, cffi_loads: ModuleType) -> None:
        """On Linux >= 4.14 without seccomp, the cffi backend offers all six features."""
        if _kernel() < (4, 14) or _seccomp():
            pytest.skip(f"kernel {platform.release()} (seccomp: {_seccomp()}) may lack some")
        with _backend.use("cffi"):
            assert zerocopy.FEATURES == ALL_SIX
        assert _backend.features(cffi_loads) == ALL_SIX

    def test_os_features(self) -> None:
        """On the os backend, FEATURES is exactly the four calls the os module reaches."""
        with _backend.use("os"):
            assert zerocopy.FEATURES == OS_FEATURES

    def test_follows_backend(self, backend: ModuleType) -> None:
        """FEATURES is a frozenset of known names that follows the current backend."""
        features = zerocopy.FEATURES
        assert isinstance(features, frozenset)
        assert features <= _constants.FEATURE_NAMES
        assert features == _backend.features(backend)

    def test_each_feature_works(self, backend: ModuleType, tmp_path: Path) -> None:
        """Every call FEATURES names succeeds for real; tee, where absent, is refused."""
        features = zerocopy.FEATURES
        path = tmp_path / "f"
        path.write_bytes(b"0123456789")
        r, w = os.pipe()
        r2, w2 = os.pipe()
        try:
            with open(path, "rb") as f, open(tmp_path / "g", "wb") as g:
                if "sendfile" in features:
                    assert zerocopy.sendfile(g, f, 0, 3) == 3
                if "copy_file_range" in features:
                    assert zerocopy.copy_file_range(f, g, 3, offset_src=3) == 3
                if "splice" in features:
                    assert zerocopy.splice(f, w, 4, offset_src=6) == 4
                    assert os.read(r, 10) == b"6789"
                if "vmsplice" in features:
                    assert zerocopy.vmsplice(w, [b"vm"]) == 2
                if "tee" in features:
                    assert zerocopy.tee(r, w2, 2) == 2
                    assert os.read(r2, 10) == b"vm"
                else:
                    with pytest.raises(zerocopy.UnsupportedOperation):
                        zerocopy.tee(r, w2, 2)
                assert os.read(r, 10) == (b"vm" if "vmsplice" in features else b"")
            expected = b"012" if "sendfile" in features else b""
            expected += b"345" if "copy_file_range" in features else b""
            assert (tmp_path / "g").read_bytes() == expected
        finally:
            for fd in (r, w, r2, w2):
                os.close(fd)

    def test_msg_zerocopy_works(self, cffi_loads: ModuleType) -> None:
        """When FEATURES has msg_zerocopy, a MSG_ZEROCOPY send completes on the error queue."""
        if "msg_zerocopy" not in _backend.features(cffi_loads):
            pytest.skip("msg_zerocopy is not available in this process")
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
        with client, server:
            client.setsockopt(socket.SOL_SOCKET, zerocopy.SO_ZEROCOPY, 1)
            payload = b"z" * 65536
            sent = cffi_loads.send(client.fileno(), payload, zerocopy.MSG_ZEROCOPY)
            assert sent > 0
            got = b""
            while len(got) < sent:
                got += server.recv(sent - len(got))
            assert got == payload[:sent]
            poller = select.poll()
            poller.register(client.fileno(), select.POLLERR)
            assert poller.poll(5000), "no completion arrived"
            records = cffi_loads.recv_completions(client.fileno())
        assert records
        first, last, _code, origin, err = records[0]
        assert (first, origin, err) == (0, _constants.SO_EE_ORIGIN_ZEROCOPY, 0)
        assert last >= first


# --- choosing at import: ZEROCOPY_BACKEND ------------------------------------------


class TestEnvironment:
    def test_os(self, tmp_path: Path) -> None:
        """ZEROCOPY_BACKEND=os gives the os backend, without a warning."""
        got = _report(tmp_path, backend="os")
        assert got == {"backend": "os", "features": sorted(OS_FEATURES), "warnings": []}

    @pytest.mark.parametrize("value", ["cffi", " CFFI ", "Cffi"])
    def test_cffi(self, cffi_loads: ModuleType, tmp_path: Path, value: str) -> None:
        """ZEROCOPY_BACKEND=cffi (any case, spaces trimmed) gives the cffi backend."""
        got = _report(tmp_path, backend=value)
        assert got["backend"] == "cffi"
        assert got["warnings"] == []

    @pytest.mark.parametrize("value", [None, "auto", "", "AUTO"])
    def test_auto_prefers_cffi(self, cffi_loads: ModuleType, tmp_path: Path, value: str) -> None:
        """auto (the default, also when empty) takes cffi when it loads, silently."""
        got = _report(tmp_path, backend=value)
        assert got["backend"] == "cffi"
        assert set(got["features"]) == _backend.features(cffi_loads)
        assert got["warnings"] == []

    @pytest.mark.parametrize("value", ["bogus", "c", "os,cffi"])
    def test_unknown_value(self, tmp_path: Path, value: str) -> None:
        """An unknown ZEROCOPY_BACKEND makes import zerocopy raise ImportError naming it."""
        out = _import_error(tmp_path, backend=value)
        assert out.startswith("ImportError: ZEROCOPY_BACKEND=")
        assert repr(value.strip().lower()) in out


class TestMissingCompiledModule:
    def test_auto_falls_back_with_warning(self, tmp_path: Path) -> None:
        """auto without the compiled module: the os backend and a RuntimeWarning saying why."""
        got = _report(tmp_path, backend="auto", compiled="block")
        assert got["backend"] == "os"
        assert got["features"] == sorted(OS_FEATURES)
        assert len(got["warnings"]) == 1
        warning = got["warnings"][0]
        assert warning.startswith("RuntimeWarning: zerocopy is using its os backend")
        assert "blocked by the test" in warning

    def test_warning_shown_by_default(self, tmp_path: Path) -> None:
        """With default warning filters the fallback warning reaches stderr."""
        proc = _child("import zerocopy; print(zerocopy.BACKEND)", tmp_path, compiled="block")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "os\n"
        assert "RuntimeWarning: zerocopy is using its os backend" in proc.stderr

    def test_cffi_required_raises(self, tmp_path: Path) -> None:
        """ZEROCOPY_BACKEND=cffi without the compiled module: ImportError with the reason."""
        out = _import_error(tmp_path, backend="cffi", compiled="block")
        assert out.startswith("ImportError: zerocopy's compiled module is not available")
        assert "blocked by the test" in out

    def test_os_needs_nothing(self, tmp_path: Path) -> None:
        """ZEROCOPY_BACKEND=os works, silently, without the compiled module."""
        got = _report(tmp_path, backend="os", compiled="block")
        assert got == {"backend": "os", "features": sorted(OS_FEATURES), "warnings": []}


class TestStaleCompiledModule:
    def test_cffi_refuses_stale(self, cffi_loads: ModuleType, tmp_path: Path) -> None:
        """A compiled module of another ABI version is refused: ImportError saying stale."""
        out = _import_error(tmp_path, backend="cffi", compiled="stale")
        assert out.startswith("ImportError: zerocopy's compiled module is stale")
        assert "pip install -e ." in out

    def test_auto_falls_back_from_stale(self, cffi_loads: ModuleType, tmp_path: Path) -> None:
        """auto with a stale compiled module: the os backend and a warning saying stale."""
        got = _report(tmp_path, compiled="stale")
        assert got["backend"] == "os"
        assert len(got["warnings"]) == 1
        assert "stale" in got["warnings"][0]

    def test_source_versions_agree(self, cffi_loads: ModuleType) -> None:
        """csrc/zerocopy.c's ZC_ABI_VERSION equals zerocopy._cffi._ABI_VERSION."""
        from zerocopy import _cffi

        source = Path(__file__).resolve().parent.parent / "csrc" / "zerocopy.c"
        lines = [line.split() for line in source.read_text().splitlines()]
        versions = [int(p[2]) for p in lines if p[:2] == ["#define", "ZC_ABI_VERSION"]]
        assert versions == [_cffi._ABI_VERSION]
