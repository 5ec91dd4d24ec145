"""The write-up's cost model: copies and context switches each method costs.

Traditional I/O (read then write) costs 4 context switches and 4 copies: 2 by
DMA (device to page cache, socket buffer to NIC) and 2 by the CPU (page cache
to user buffer, user buffer to socket buffer).  Each zero-copy method removes
some of them.  Figures are per transfer of one chunk, for the scenario's
source and destination; "DMA" counts device transfers (0 where both ends are
in memory, e.g. a page-cache-to-page-cache file copy still needs the disk).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MODEL", "ZERO_COPY", "Cost"]


class Cost(NamedTuple):
    """Copies and user/kernel switches one chunk costs in the write-up's model."""

    cpu_copies: int
    dma_copies: int
    context_switches: int
    note: str


MODEL: dict[str, Cost] = {
    "read/write": Cost(2, 2, 4, "read() into a new buffer, write() it out"),
    "write": Cost(1, 1, 2, "write() copies the user buffer into the socket buffer"),
    "readinto/write": Cost(2, 2, 4, "as read/write, one reused buffer"),
    "mmap+write": Cost(1, 2, 4, "page cache mapped, one CPU copy into the destination"),
    "sendfile": Cost(1, 2, 2, "in-kernel; 0 CPU copies with scatter-gather DMA to a NIC"),
    "splice": Cost(0, 2, 2, "pages moved through a pipe by reference"),
    "copy_file_range": Cost(1, 2, 2, "in-kernel page-cache copy; 0 with reflink"),
    "vmsplice+splice": Cost(0, 1, 2, "user pages mapped into a pipe, then spliced"),
    "MSG_ZEROCOPY": Cost(0, 1, 2, "user pages pinned for the NIC; a completion per send"),
}

#: The methods whose bytes never pass through a user-space buffer: the
#: kernel moves them (or maps user pages) from source to destination.
ZERO_COPY = frozenset({"sendfile", "splice", "copy_file_range", "vmsplice+splice", "MSG_ZEROCOPY"})
