"""The copy capability: copyfileobj, copyfile, patch_shutil; the asyncio forms in :mod:`.aio`.

- :mod:`.fileobj`: :func:`copyfileobj`, which chooses the path for a pair of objects;
- :mod:`.kernel`: the kernel path on fds (copy_file_range, sendfile, splice) and its fallbacks;
- :mod:`.transfer`: the running state of one copy, shared by the two above;
- :mod:`.writer`: writes into the destination object that count what it accepted;
- :mod:`.files`: :func:`copyfile` and :func:`patch_shutil`;
- :mod:`.aio`: the asyncio forms, which run the blocking calls in a worker thread.
"""

from __future__ import annotations

from .fileobj import copyfileobj
from .files import ShutilPatch, copyfile, patch_shutil
from .transfer import last_method

__all__ = [
    "ShutilPatch",
    "copyfile",
    "copyfileobj",
    "last_method",
    "patch_shutil",
]
