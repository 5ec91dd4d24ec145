"""Build wiring for the cffi extension; all metadata lives in pyproject.toml.

The compiled module is optional: where it cannot be built (no C compiler, no
headers) the package installs without it and runs on its os backend.  Set
``ZEROCOPY_REQUIRE_EXTENSION=1`` to make a failed build fatal (CI and release
builds do).
"""

from __future__ import annotations

import os
import sys

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


def _warn(exc: BaseException) -> None:
    sys.stderr.write(
        "\n*** WARNING: zerocopy's C extension could not be built "
        f"({type(exc).__name__}: {exc}).\n"
        "*** zerocopy will use its os backend; set ZEROCOPY_REQUIRE_EXTENSION=1 "
        "to make this fatal.\n\n"
    )


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
            if _required():
                raise
            _warn(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            if _required():
                raise
            _warn(exc)


setup(
    cffi_modules=["csrc/ffi_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
