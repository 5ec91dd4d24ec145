"""cffi build script for zerocopy's C shims (API, out-of-line mode).

Used by ``setup.py`` through ``cffi_modules``.  Options come from the
environment so that CI and the sanitizer script can change them without
editing files:

``ZEROCOPY_CFLAGS``
    Extra compiler flags, split on whitespace (CI passes
    ``-Wall -Wextra -Werror``; ``scripts/sanitize`` passes
    ``-fsanitize=address,undefined``).
``ZEROCOPY_LDFLAGS``
    Extra linker flags, split on whitespace.
"""

from __future__ import annotations

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent


def _flags(name: str) -> list[str]:
    return os.environ.get(name, "").split()


ffibuilder = FFI()
ffibuilder.cdef((HERE / "zerocopy.h").read_text(encoding="utf-8"))
ffibuilder.set_source(
    "zerocopy._zerocopy_cffi",
    # The shims are static, so they are compiled into cffi's translation unit.
    '#include "zerocopy.c"\n',
    include_dirs=[str(HERE)],
    depends=[str(HERE / "zerocopy.c"), str(HERE / "zerocopy.h")],
    extra_compile_args=["-std=gnu11", *_flags("ZEROCOPY_CFLAGS")],
    extra_link_args=_flags("ZEROCOPY_LDFLAGS"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
