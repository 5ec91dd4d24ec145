"""asyncio forms of copyfile and copyfileobj: the blocking calls, in a worker thread.

Regular files are always "ready", so there is nothing to wait for on the
loop, only a copy to keep off it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import AnyStr, TypeVar

from .._errors import set_transferred
from .._types import StrOrBytesPath, SupportsRead, SupportsWrite
from . import fileobj, files

__all__ = ["copyfile", "copyfileobj"]

_PathT = TypeVar("_PathT", bound=StrOrBytesPath)


async def copyfile(src: StrOrBytesPath, dst: _PathT, *, follow_symlinks: bool = True) -> _PathT:
    """Run :func:`zerocopy.copyfile` in a worker thread; return *dst*.

    Same errors as :func:`zerocopy.copyfile` (and :func:`shutil.copyfile`).
    Cancelling the task does not stop the worker: the copy runs to its end
    in the background, on files it opened and closes itself.
    """
    return await asyncio.to_thread(files.copyfile, src, dst, follow_symlinks=follow_symlinks)


class _Stopped(Exception):
    """Raised inside the worker to end a cancelled copyfileobj."""


async def copyfileobj(
    fsrc: SupportsRead[AnyStr],
    fdst: SupportsWrite[AnyStr],
    length: int = 0,
    *,
    count: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Run :func:`zerocopy.copyfileobj` in a worker thread; return bytes copied.

    *progress* is called in the worker thread.  Cancelling the task stops the
    copy at its next chunk and waits for the worker to let go of *fsrc* and
    *fdst* (the caller may close them right after), then raises
    :class:`asyncio.CancelledError` with ``bytes_transferred``.
    """
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    stop = threading.Event()

    def tick(total: int) -> None:
        if stop.is_set():
            raise _Stopped
        if progress is not None:
            progress(total)

    loop = asyncio.get_running_loop()
    call = functools.partial(
        contextvars.copy_context().run,
        fileobj.copyfileobj,
        fsrc,
        fdst,
        length,
        count=count,
        progress=tick,
    )
    worker = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(worker)
    except asyncio.CancelledError as cancelled:
        stop.set()
        while not worker.done():
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                continue  # cancelled again: still wait for the worker
            except BaseException:  # noqa: BLE001 - the worker ended; its outcome is read below
                break
        if worker.cancelled():
            set_transferred(cancelled, 0)
        elif (exc := worker.exception()) is not None:
            set_transferred(cancelled, getattr(exc, "bytes_transferred", 0))
        else:
            set_transferred(cancelled, worker.result())
        raise
