"""Build wiring for the cffi extension; all metadata lives in pyproject.toml.

The compiled module is optional: where it cannot be built (no C compiler, no
headers) the package installs without it and runs on its os backend.  Set
``ZEROCOPY_REQUIRE_EXTENSION=1`` to make a failed build fatal (CI and release
builds do).  A failed build leaves ``zerocopy/_extension_missing.txt`` beside
where the module would have gone, holding the reason, so that the import
warning and ``python -m zerocopy info`` can say why the module is missing.

The extension is built on Linux only: its sources include Linux headers.
Elsewhere (macOS, Windows, the BSDs), or with ``ZEROCOPY_PURE=1`` (the
``py3-none-any`` wheel for those platforms, built on Linux), the install is
pure Python, with no compiler attempt and no warning: zerocopy runs on its
os backend there, which is that platform's.

Wheels are tagged for the stable ABI (``cp311-abi3``): the cffi module is
compiled with ``Py_LIMITED_API``, so one wheel per architecture serves
CPython 3.11 and later.  Free-threaded interpreters have no stable ABI
(PEP 703), so there the wheel is tagged for that one version.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 65 vendors distutils; both spellings carry these names
    from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError
except ImportError:  # pragma: no cover
    from distutils.errors import (  # type: ignore[no-redef]
        CCompilerError,
        CompileError,
    )
    from distutils.errors import (
        DistutilsExecError as ExecError,
    )
    from distutils.errors import (
        DistutilsPlatformError as PlatformError,
    )

_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, PlatformError, OSError, ValueError)


def _required() -> bool:
    return os.environ.get("ZEROCOPY_REQUIRE_EXTENSION", "") not in ("", "0")


#: Written where the compiled module would be when it could not be built; read
#: by zerocopy._extension.  The name is shared with that module.
MARKER = "_extension_missing.txt"

#: The oldest CPython whose stable ABI the wheel targets (requires-python).
LIMITED_API = "cp311"


#: Rebuilds without pip's wheel cache, which would otherwise hand back the
#: wheel built without the extension.  Kept in step with zerocopy._extension.
_REBUILD = "pip install --force-reinstall --no-deps --no-cache-dir"


def _warn(exc: BaseException) -> None:
    sys.stderr.write(
        "\n*** WARNING: zerocopy's C extension could not be built "
        f"({type(exc).__name__}: {exc}).\n"
        "*** zerocopy will use its os backend (no tee, no MSG_ZEROCOPY, vmsplice copies).\n"
        "*** To build it: install a C compiler and the Python headers (Debian: apt-get\n"
        "*** install gcc python3-dev), then rebuild without pip's wheel cache:\n"
        f"***     {_REBUILD} --no-binary zerocopy-io zerocopy-io\n"
        f"*** or, from a source checkout:  {_REBUILD} .\n"
        "*** `python -m zerocopy info` prints the exact command for an installed copy.\n"
        "*** Set ZEROCOPY_REQUIRE_EXTENSION=1 to make this failure fatal.\n\n"
    )


def _reason(exc: BaseException) -> str:
    """One line for the marker: the compiler's full command line says nothing more."""
    text = str(exc)
    failed = re.match(r"Command '\['([^']*)'.*returned non-zero exit status (\d+)", text, re.S)
    if failed:
        text = f"the compiler {failed[1]!r} exited with status {failed[2]}"
    return f"{type(exc).__name__}: {text}"


def _free_threaded() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


class OptionalBuildExt(build_ext):
    """build_ext that installs without the extension when compiling fails."""

    def run(self) -> None:
        # setuptools decides "up to date" from timestamps alone: a build with
        # other flags (sanitizers, -Werror) must not reuse an old object.
        if os.environ.get("ZEROCOPY_CFLAGS") or os.environ.get("ZEROCOPY_LDFLAGS"):
            self.force = True
        try:
            super().run()
        except _BUILD_ERRORS as exc:
            self._failed(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        marker = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), MARKER)
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            self._failed(exc)
        else:
            # A build that works after one that failed (same build/ or an
            # editable tree) must not keep reporting the old failure.
            if os.path.exists(marker):
                os.remove(marker)

    def _failed(self, exc: BaseException) -> None:
        if _required():
            raise exc
        _warn(exc)
        # The package (build_lib, or src/ for an editable install) carries the
        # reason, so the import warning and `zerocopy info` can tell it.
        fullname = "zerocopy._zerocopy_cffi"
        directory = os.path.dirname(self.get_ext_fullpath(fullname))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, MARKER), "w", encoding="utf-8") as f:
            f.write(_reason(exc) + "\n")


def _pure() -> bool:
    # The platform name is the right test here: it is about headers, not features.
    return not sys.platform.startswith("linux") or os.environ.get("ZEROCOPY_PURE", "") not in (
        "",
        "0",
    )


if _pure():
    # No extension: setuptools makes a py3-none-any wheel.
    setup()
else:
    setup(
        cffi_modules=["csrc/ffi_build.py:ffibuilder"],
        cmdclass={"build_ext": OptionalBuildExt},
        # cffi already builds the module for the limited API where the interpreter
        # has one (the .abi3.so suffix); this makes the wheel's tag say so.
        options={} if _free_threaded() else {"bdist_wheel": {"py_limited_api": LIMITED_API}},
    )
