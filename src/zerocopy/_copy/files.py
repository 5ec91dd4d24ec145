"""copyfile (shutil.copyfile's contract) and patch_shutil."""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import threading
from types import TracebackType
from typing import Any, TypeVar

from .. import _backend
from .._engine.copy_file_range import copy_file_range
from .._engine.sendfile import CHUNK, Sendfile
from .._errors import GiveUp, set_transferred
from .._tally import Tally
from .._types import StrOrBytesPath
from . import kernel
from .fileobj import copyfileobj
from .transfer import note_method

__all__ = ["ShutilPatch", "copyfile", "patch_shutil"]

_PathT = TypeVar("_PathT", bound=StrOrBytesPath)


def _samefile(src: Any, dst: Any) -> bool:
    if isinstance(src, os.DirEntry):
        try:
            return os.path.samestat(src.stat(), os.stat(dst))
        except OSError:
            return False
    try:
        return os.path.samefile(src, dst)
    except OSError:
        return False


def _stat(fn: Any) -> os.stat_result:
    return fn.stat() if isinstance(fn, os.DirEntry) else os.stat(fn)


def _islink(fn: Any) -> bool:
    return fn.is_symlink() if isinstance(fn, os.DirEntry) else os.path.islink(fn)


def copyfile(src: StrOrBytesPath, dst: _PathT, *, follow_symlinks: bool = True) -> _PathT:
    """Copy the contents of file *src* to *dst*, like :func:`shutil.copyfile`.

    Same return value (*dst*) and the same errors: :class:`shutil.SameFileError`
    for the same file, :class:`shutil.SpecialFileError` for named pipes,
    :class:`IsADirectoryError` and :class:`FileNotFoundError` as shutil raises
    them.  The bytes move with ``copy_file_range``, else ``sendfile`` (across
    filesystems, to a device), else :func:`zerocopy.copyfileobj`'s paths.
    Every exception after the checks carries ``bytes_transferred``: the
    bytes *dst* holds.
    """
    if _backend.current().copy_file_range_at_positions is None:
        return _platform_copyfile(src, dst, follow_symlinks)
    sys.audit("shutil.copyfile", src, dst)
    if _samefile(src, dst):
        raise shutil.SameFileError(f"{src!r} and {dst!r} are the same file")
    names: tuple[Any, ...] = (src, dst)  # shutil's messages format them as they are
    for fn in names:
        try:
            st = _stat(fn)
        except OSError:
            continue  # most likely does not exist yet
        if stat.S_ISFIFO(st.st_mode):
            fn = fn.path if isinstance(fn, os.DirEntry) else fn
            raise shutil.SpecialFileError(f"`{fn}` is a named pipe")
    if not follow_symlinks and _islink(src):
        os.symlink(os.readlink(names[0]), dst)
        return dst
    copied = 0
    opened = False
    try:
        with open(src, "rb") as fsrc:
            try:
                with open(dst, "wb") as fdst:
                    opened = True
                    copied = _copy_opened(fsrc, fdst)
            except IsADirectoryError as exc:
                # As shutil (bpo-43219): a missing directory is the clearer error.
                if not os.path.exists(dst):
                    raise FileNotFoundError(f"Directory does not exist: {names[1]}") from exc
                raise
    except BaseException as exc:
        # copyfileobj's failures say how far they got; anything else (an
        # open, a close whose flush failed, a signal handler between the
        # steps) says what *dst* holds: it was written from its start.
        if getattr(exc, "bytes_transferred", None) is None:
            set_transferred(exc, _delivered(dst, copied) if opened else 0)
        raise
    return dst


#: shutil's own, before any patch_shutil(): the platform's copyfile.
_SHUTIL_COPYFILE = shutil.copyfile


def _platform_copyfile(src: Any, dst: _PathT, follow_symlinks: bool) -> _PathT:
    """shutil.copyfile where there is no copy_file_range: its platform fast paths are better.

    macOS's ``fcopyfile`` (clones on APFS), or shutil's ``sendfile`` on a
    Linux too old for copy_file_range.  The errors are shutil's; every one
    after its checks carries ``bytes_transferred``, the bytes *dst* holds (0
    when the copy did not get as far as opening it).
    """
    before = _identity(dst)
    note_method("shutil")
    try:
        return _SHUTIL_COPYFILE(src, dst, follow_symlinks=follow_symlinks)
    except BaseException as exc:
        checks = (shutil.SameFileError, shutil.SpecialFileError)
        if not isinstance(exc, checks) and getattr(exc, "bytes_transferred", None) is None:
            changed = _identity(dst) not in (None, before)
            set_transferred(exc, _delivered(dst, 0) if changed else 0)
        raise


def _identity(fn: Any) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(fn)
    except (OSError, TypeError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _copy_opened(fsrc: io.BufferedReader, fdst: io.BufferedWriter) -> int:
    """Copy what copyfile just opened: copy_file_range straight away where it works.

    copyfileobj's checks (buffers to reconcile, positions to restore, small
    copies through the objects) are for objects someone else opened; here
    there are none, and the decision would cost a small copy more than the
    copy itself.  Both files are fresh, at offset 0, so the kernel copies at
    their file positions and no count needs keeping: on a failure, the
    bytes *dst* holds are the count (copyfile's handler reads its size).
    """
    sfd = fsrc.fileno()
    if stat.S_ISREG(os.fstat(sfd).st_mode):  # shutil's sendfile path fstats it too
        dfd = fdst.fileno()
        try:
            total = copy_file_range(dfd, sfd, None, None, CHUNK)
        except GiveUp as exc:
            # Not here before a byte moved: with an errno as the cause
            # (another filesystem, a device) sendfile at the same positions,
            # as shutil copies, then the general path; a first call that
            # copied nothing (procfs, sysfs: no cause) goes to the general
            # path straight away.  Outside this handler, so that a failure
            # of sendfile does not carry the private GiveUp as its context.
            total, try_sendfile = 0, exc.__cause__ is not None
        except BaseException as exc:
            note_method("copy_file_range")
            kernel.name_files(exc, fsrc, fdst)
            raise
        else:
            try_sendfile = False
            note_method("copy_file_range")
        if try_sendfile:
            total = _sendfile_all(fsrc, fdst, sfd, dfd)
        if total:  # 0: an empty file, or procfs/sysfs, which report size 0
            return total
    return copyfileobj(fsrc, fdst)  # every other case, as before


def _sendfile_all(fsrc: Any, fdst: Any, sfd: int, dfd: int) -> int:
    """sendfile from *sfd*'s position to *dfd*'s until end of file; 0 if it cannot start.

    The destination may be a device here (copy_file_range takes regular
    files only), so its size is no count: the transfer's
    :class:`~zerocopy._tally.Tally` is, and a failure carries it.
    """
    transfer = Sendfile(dfd, sfd, None, None, Tally())
    transfer.waits = False
    try:
        moved = sum(transfer)  # each call's count (never WRITABLE, 0: see waits)
    except GiveUp:
        return 0
    except BaseException as exc:
        note_method("sendfile")
        kernel.name_files(exc, fsrc, fdst)
        set_transferred(exc, transfer.tally.total())
        raise
    if moved:
        note_method("sendfile")
    return moved


def _delivered(dst: Any, copied: int) -> int:
    try:
        st = os.stat(dst)
    except (OSError, TypeError, ValueError):
        return copied
    return st.st_size if stat.S_ISREG(st.st_mode) else copied


class ShutilPatch:
    """Handle returned by :func:`patch_shutil`; :meth:`undo` or ``with`` restores shutil."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        with self._lock:
            self._saved = {"copyfileobj": shutil.copyfileobj, "copyfile": shutil.copyfile}
            # setattr: ours return the count where shutil's copyfileobj returns None.
            setattr(shutil, "copyfileobj", copyfileobj)  # noqa: B010
            setattr(shutil, "copyfile", copyfile)  # noqa: B010
        self.active = True

    def undo(self) -> None:
        """Put back what this patch replaced (if nothing replaced it since); idempotent."""
        with self._lock:
            if not self.active:
                return
            ours = {"copyfileobj": copyfileobj, "copyfile": copyfile}
            for name, original in self._saved.items():
                if getattr(shutil, name) is ours[name]:
                    setattr(shutil, name, original)
            self.active = False

    def __enter__(self) -> ShutilPatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()


def patch_shutil() -> ShutilPatch:
    """Make ``shutil.copyfileobj`` and ``shutil.copyfile`` zerocopy's, process-wide.

    Everything that calls them (``shutil.copy``, ``copy2``, ``copytree``,
    ``move`` across filesystems, and other code that hands real files to
    ``shutil.copyfileobj``) then takes the kernel's path where it can.  Code
    that passes objects whose fd is not their byte stream (``http.server``'s
    socket writer, ``zipfile`` members) keeps shutil's behaviour exactly.
    Undo with the returned handle's :meth:`~ShutilPatch.undo`, or use it as
    a context manager::

        with zerocopy.patch_shutil():
            shutil.copytree(src, dst)
    """
    return ShutilPatch()
