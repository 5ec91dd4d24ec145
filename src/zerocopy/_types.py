"""Small protocols for the public signatures: what an argument must be able to do.

They follow typeshed's ``shutil`` stubs, so that a type checker accepts
exactly what it accepts for shutil's namesakes (and rejects
``copyfileobj("not a file", 42)``).
"""

from __future__ import annotations

import os
from typing import Protocol, TypeAlias, TypeVar

__all__ = ["StrOrBytesPath", "SupportsRead", "SupportsWrite"]

_T_co = TypeVar("_T_co", covariant=True)
_T_contra = TypeVar("_T_contra", contravariant=True)

#: A file name as the os module takes it (``os.DirEntry`` is a PathLike too).
StrOrBytesPath: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class SupportsRead(Protocol[_T_co]):
    """Has ``read(size)``, as every readable file object (binary or text) has."""

    def read(self, size: int = ..., /) -> _T_co: ...


class SupportsWrite(Protocol[_T_contra]):
    """Has ``write(data)``, as every writable file object (binary or text) has."""

    def write(self, data: _T_contra, /) -> object: ...
