"""Bad input, fuzzed with hypothesis, on copyfileobj, copyfile and patch_shutil.

File objects of every kind over fds of every kind (and objects that are no
files), bad lengths, counts and progress callbacks, and paths of every kind
go to the copies, on both backends.

The only acceptable outcomes are a return value or one of the documented
exceptions: :class:`TypeError`, :class:`ValueError`, :class:`OSError` and
its subclasses (``shutil``'s errors, :class:`io.UnsupportedOperation`),
:class:`NotImplementedError` (:class:`zerocopy.UnsupportedOperation`).
After every example the fixture checks that no fd of the zoo was closed or
replaced behind the test's back.

Never a crash, never a hang: every example runs under a SIGALRM watchdog,
every fd that could block is non-blocking, and files live on a small tmpfs
so that no call can fill the disk.  The inputs that found bugs have their
own tests (:class:`TestFoundByFuzzing`) and are left out of the strategies,
so each finding shows in exactly one test, which keeps it fixed.  The
watchdog, the strategies and the zoo of fds are in ``tests/faultkit``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zerocopy
from faultkit.children import signal_name
from faultkit.fuzz import (
    FUZZ,
    NUMBERS,
    outcome,
)
from faultkit.zoo import (
    PATTERN,
    Zoo,
    mounted_zoo,
)

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    """The zoo, on an 8 MiB tmpfs (mounted here, unmounted after the module)."""
    with mounted_zoo() as z:
        yield z


@pytest.fixture
def fresh(zoo: Zoo) -> Iterator[Zoo]:
    """The zoo, checked after the test."""
    zoo.reset()
    yield zoo
    zoo.check()


# --- copyfileobj and copyfile ---------------------------------------------------------


FILE_OBJECTS = [
    "file_ro",
    "file_rw",
    "file_append",
    "file_empty",
    "pipe1_r",
    "pipe1_w",
    "unix",
    "tcp",
    "tty_master",
    "tty_slave",
    "eventfd",
    "epoll",
    "dev_null",
    "dev_zero",
    "proc",
    "memfd",
]


def _wrap(zoo: Zoo, spec: Any, stack: contextlib.ExitStack) -> Any:
    """Turn a strategy value into a file object over a zoo fd (never owning it)."""
    if not (isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "obj"):
        return spec
    _, name, how = spec
    if name == "bytesio":
        return io.BytesIO(PATTERN[:1000])
    if name == "stringio":
        return io.StringIO("text" * 100)
    if how.startswith("makefile") and name not in ("unix", "tcp"):
        how = "buf-r" if how == "makefile-r" else "buf-w"
    if name in ("unix", "tcp") and how.startswith("makefile"):
        sock = socket.socket(fileno=os.dup(zoo.fds[name]))
        stack.callback(sock.close)
        sock.setblocking(False)
        return stack.enter_context(sock.makefile("rb" if how == "makefile-r" else "wb"))
    if name == "closed":
        with open(zoo.fds["file_ro"], "rb", closefd=False) as f:
            return f  # closed on the way out: a closed file object
    mode = {"raw-r": "rb", "raw-w": "wb", "buf-r": "rb", "buf-w": "wb", "rand": "r+b"}[how]
    try:
        buffering = 0 if how.startswith("raw") else -1
        f = open(zoo.fds[name], mode, buffering=buffering, closefd=False)  # noqa: SIM115 - the stack
    except OSError as exc:  # r+b on a write-only fd and the like: not the code under test
        return exc
    stack.callback(_close_quietly, f)
    return f


def _close_quietly(f: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        f.close()


HOW = st.sampled_from(["raw-r", "raw-w", "buf-r", "buf-w", "rand", "makefile-r", "makefile-w"])
OTHERS = st.tuples(st.just("obj"), st.sampled_from(["bytesio", "stringio", "closed"]), st.just(""))
# Objects without read/write raise AttributeError, as in shutil: compared
# with shutil in TestFoundByFuzzing rather than fuzzed here.  /dev/zero is a
# destination only: as a source it never ends.
OBJ_SRC = st.one_of(
    st.tuples(st.just("obj"), st.sampled_from([n for n in FILE_OBJECTS if n != "dev_zero"]), HOW),
    OTHERS,
)
OBJ_DST = st.one_of(st.tuples(st.just("obj"), st.sampled_from(FILE_OBJECTS), HOW), OTHERS)
# Lengths that allocate gigabytes (as shutil's read(n) does too) are left out;
# TestFoundByFuzzing compares the extremes with shutil.
LENGTHS = st.one_of(st.integers(-(2**20), 2**20), st.sampled_from([None, True, 1.5, "1"]))
PROGRESS = st.sampled_from([None, print, lambda n: None, "not callable", 5])


def _progress(p: Any) -> Any:
    return (lambda n: None) if p is print else p


class TestCopy:
    @FUZZ
    @given(
        src=OBJ_SRC,
        dst=OBJ_DST,
        length=LENGTHS,
        # Counts beyond memory (2**40, 2**63...) with a negative length have
        # their own test: TestFoundByFuzzing.test_copyfileobj_huge_count.
        count=st.one_of(st.none(), NUMBERS.filter(lambda c: not isinstance(c, int) or c <= 2**32)),
        progress=PROGRESS,
    )
    def test_copyfileobj(
        self,
        backend: ModuleType,
        fresh: Zoo,
        src: Any,
        dst: Any,
        length: Any,
        count: Any,
        progress: Any,
    ) -> None:
        """copyfileobj returns a count or raises a documented exception, whatever it is given."""
        fresh.reset()
        with contextlib.ExitStack() as stack:
            fsrc, fdst = _wrap(fresh, src, stack), _wrap(fresh, dst, stack)
            if isinstance(fsrc, OSError) or isinstance(fdst, OSError):
                return
            result = outcome(
                zerocopy.copyfileobj, fsrc, fdst, length, count=count, progress=_progress(progress)
            )
        if isinstance(result, int):
            assert result >= 0

    PATHS = st.sampled_from(
        [
            "data",
            "rw",
            "empty",
            "dir",
            "fifo",
            "link",
            "dangling",
            "missing",
            "missing-dir/x",
            "new",
            "/dev/null",
            "/proc/self/status",
            "",
            "nul\0byte",
            None,
            3.5,
            b"data",
            object(),
        ]
    )

    @FUZZ
    @given(src=PATHS, dst=PATHS, follow=st.sampled_from([True, False, None, "yes"]))
    def test_copyfile(
        self, backend: ModuleType, fresh: Zoo, src: Any, dst: Any, follow: Any
    ) -> None:
        """copyfile returns dst or raises a documented exception (shutil's errors included)."""
        fresh.reset()

        def path(p: Any) -> Any:
            if isinstance(p, str) and p and not p.startswith("/") and "\0" not in p:
                return str(fresh.where / p)
            if isinstance(p, bytes) and p:
                return bytes(fresh.where) + b"/" + p
            return p

        s, d = path(src), path(dst)
        if d in ("/dev/null",) and s in ("/dev/null",):
            return
        result = outcome(zerocopy.copyfile, s, d, follow_symlinks=follow)
        if not isinstance(result, BaseException):
            assert result == d
        for extra in ("new", "missing-dir"):
            with contextlib.suppress(OSError):
                os.unlink(fresh.where / extra)
        with contextlib.suppress(OSError):
            os.unlink(fresh.where / "missing")

    @FUZZ
    @given(args=st.lists(st.sampled_from([None, 1, "x", object()]), max_size=2))
    def test_patch_shutil(self, backend: ModuleType, args: list[Any]) -> None:
        """patch_shutil takes no arguments; with none it patches and undoes cleanly."""
        original = shutil.copyfileobj
        result = outcome(zerocopy.patch_shutil, *args)
        if args:
            assert isinstance(result, TypeError)
        else:
            assert shutil.copyfileobj is zerocopy.copyfileobj
            result.undo()
            result.undo()
        assert shutil.copyfileobj is original


# --- inputs that found bugs, one test each -----------------------------------------------


def _child(code: str, backend: ModuleType) -> str:
    """Run *code* in a child python on *backend*; return its output (it must exit 0)."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            ZEROCOPY_BACKEND=backend.NAME,
            # Under scripts/sanitize: a huge malloc returns NULL (MemoryError), as
            # without AddressSanitizer, instead of aborting the child.
            ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1",
        ),
        timeout=60,
    )
    assert proc.returncode == 0, f"child: {signal_name(proc.returncode)}: {proc.stderr[-600:]}"
    return proc.stdout.strip()


class TestFoundByFuzzing:
    @pytest.mark.parametrize(
        ("source", "count"),
        [("raw", 2**40), ("bytesio", 2**63)],
        ids=["MemoryError", "OverflowError"],
    )
    def test_copyfileobj_huge_count(self, backend: ModuleType, source: str, count: int) -> None:
        """A count larger than memory (or 2**63) copies everything, whatever the length."""
        # On the plain path with length < 0, the whole remaining count was
        # once passed to read(): FileIO allocates it up front (MemoryError),
        # and 2**63 does not fit a Py_ssize_t (OverflowError).  In a child: under
        # AddressSanitizer (scripts/sanitize) a 1 TiB malloc aborts the process.
        code = f"""
import io, tempfile, zerocopy
with tempfile.TemporaryFile() as f:
    f.write(b"abc" * 1000)
    f.seek(0)
    src = io.BytesIO(b"abc" * 1000) if {source!r} == "bytesio" else open(
        f.fileno(), "rb", buffering=0 if {source!r} == "raw" else -1, closefd=False)
    dst = io.BytesIO()
    try:
        print(zerocopy.copyfileobj(src, dst, -1, count={count}), dst.getvalue() == b"abc" * 1000)
    except (MemoryError, OverflowError) as exc:
        print(type(exc).__name__)
"""
        assert _child(code, backend) == "3000 True"

    @pytest.mark.parametrize("length", [2**62, 2**70])
    def test_copyfileobj_absurd_length_like_shutil(self, backend: ModuleType, length: int) -> None:
        """An absurd length fails with shutil's own exception type (MemoryError, OverflowError)."""
        code = f"""
import shutil, tempfile, zerocopy
kinds = []
for impl in (shutil.copyfileobj, zerocopy.copyfileobj):
    with tempfile.TemporaryFile() as fsrc, tempfile.TemporaryFile() as fdst:
        fsrc.write(b"abc")
        fsrc.seek(0)
        try:
            impl(fsrc, fdst, {length})
            kinds.append("ok")
        except (MemoryError, OverflowError) as exc:
            kinds.append(type(exc).__name__)
print(*kinds)
"""
        shutil_kind, ours = _child(code, backend).split()  # in a child: see above
        assert ours == shutil_kind

    def test_copyfileobj_non_files_like_shutil(self, backend: ModuleType, tmp_path: Path) -> None:
        """Objects without read/write fail as in shutil (AttributeError), both ways round."""
        (tmp_path / "src").write_bytes(b"abc" * 30_000)
        for junk in (None, 3, "path", b"", object()):
            for side in ("src", "dst"):
                kinds = []
                for impl in (shutil.copyfileobj, zerocopy.copyfileobj):
                    with open(tmp_path / "src", "rb") as f, open(tmp_path / "dst", "wb") as g:
                        args = (junk, g) if side == "src" else (f, junk)
                        try:
                            impl(*args)
                            kinds.append(None)
                        except Exception as exc:
                            kinds.append(type(exc))
                assert kinds[0] is kinds[1], (junk, side, kinds)
