"""Linux constants, the same on every backend.

The values are Linux's ABI (``include/uapi``), fixed since the calls appeared;
the cffi backend's compiled values are checked against these by the tests.
"""

from __future__ import annotations

import select

__all__ = [
    "EPOLLERR",
    "EPOLLET",
    "EPOLLHUP",
    "EPOLLIN",
    "EPOLLOUT",
    "EPOLLPRI",
    "EPOLLRDHUP",
    "FEATURE_NAMES",
    "HUB_EVENT",
    "HUB_NEED_PIPE",
    "HUB_READY",
    "HUB_STEP",
    "HUB_STOPPED",
    "HUB_WOKEN",
    "MSG_ZEROCOPY",
    "POLLIN",
    "POLLOUT",
    "READY_DST",
    "READY_SRC",
    "READY_URG",
    "SO_EE_CODE_ZEROCOPY_COPIED",
    "SO_EE_ORIGIN_ZEROCOPY",
    "SO_ZEROCOPY",
    "SPLICE_F_GIFT",
    "SPLICE_F_MORE",
    "SPLICE_F_MOVE",
    "SPLICE_F_NONBLOCK",
    "STEP_BYTES",
    "STEP_DST_FULL",
    "STEP_DST_ZERO",
    "STEP_ERROR",
    "STEP_SPENT",
    "STEP_SRC_EMPTY",
    "STEP_SRC_END",
    "WANT_DST",
    "WANT_NONE",
    "WANT_RUN",
    "WANT_SRC",
]

SPLICE_F_MOVE = 0x01  #: A no-op since Linux 2.6.21; accepted for completeness.
SPLICE_F_NONBLOCK = 0x02  #: Do not block on the pipe (the other fd keeps its mode).
SPLICE_F_MORE = 0x04  #: More data follows; corks sockets, adds latency.
SPLICE_F_GIFT = 0x08  #: vmsplice: gift pages. Refused for ordinary Python buffers.
MSG_ZEROCOPY = 0x4000000  #: send() flag; needs SO_ZEROCOPY set first.
SO_ZEROCOPY = 60  #: SOL_SOCKET option that enables MSG_ZEROCOPY.
SO_EE_ORIGIN_ZEROCOPY = 5
SO_EE_CODE_ZEROCOPY_COPIED = 1

#: Every feature name :data:`zerocopy.FEATURES` can contain.
FEATURE_NAMES = frozenset(
    {"sendfile", "splice", "tee", "vmsplice", "copy_file_range", "msg_zerocopy"}
)

#: poll(2)'s events, the keys of every waiter; Windows's select has no
#: poll, and zerocopy's select() waiter there (_loop.SelectWaiter) takes these.
POLLIN: int = getattr(select, "POLLIN", 1)
POLLOUT: int = getattr(select, "POLLOUT", 4)
# The relay hub's epoll events: Linux's values where select has no epoll
# (no hub runs there; the names stay importable).
EPOLLIN: int = getattr(select, "EPOLLIN", 0x001)
EPOLLOUT: int = getattr(select, "EPOLLOUT", 0x004)
EPOLLPRI: int = getattr(select, "EPOLLPRI", 0x002)
EPOLLERR: int = getattr(select, "EPOLLERR", 0x008)
EPOLLHUP: int = getattr(select, "EPOLLHUP", 0x010)
EPOLLRDHUP: int = getattr(select, "EPOLLRDHUP", 0x2000)
EPOLLET: int = getattr(select, "EPOLLET", 1 << 31)

# Largest count one sendfile/splice call moves (MAX_RW_COUNT); asking for more
# is fine, it is simply clamped by the kernel.  We clamp first so the value
# always fits size_t and Py_ssize_t.
MAX_RW_COUNT = 0x7FFFF000

# The default byte budget of one relay step (Direction.step): what one
# direction moves before the other direction's turn in the threaded relay.
# The async forms pass their loop's slice instead (zerocopy._fair).
STEP_BYTES = 4 * 1024 * 1024

# Why a backend's relay_step returned (csrc/zerocopy.c's ZC_STEP_*, checked
# against the compiled values by the tests).
STEP_ERROR = -1  #: a splice failed; the state's ``err`` says why (EINTR included)
STEP_SRC_EMPTY = 1  #: the source would block, and the pipe is empty
STEP_SRC_END = 2  #: the source returned 0 (end of stream, or an urgent mark), pipe empty
STEP_DST_FULL = 3  #: the destination would block; ``in_pipe`` bytes wait in the pipe
STEP_SPENT = 4  #: the call delivered its whole byte budget
STEP_DST_ZERO = 5  #: the destination took 0 bytes (never from a stream socket)

# A relay hub's directions (csrc/zerocopy.c's ZC_WANT_*, ZC_HUB_*, ZC_READY_*,
# checked against the compiled values by the tests): what each waits for ...
WANT_NONE = 0  #: nothing: Python holds it (errors on its sockets are reported)
WANT_SRC = 1  #: its source readable
WANT_DST = 2  #: its destination writable
WANT_RUN = 3  #: nothing: step it in the next round
HUB_STEP = 1  #: flag: the hub's pump steps it (else it reports the wait)
READY_SRC = 1  #: readiness seen and not used up: the source
READY_DST = 2  #: ... the destination
READY_URG = 8  #: ... and urgent data (EPOLLPRI) on the source: the pump looks for the mark
# ... and why the pump hands one back.
HUB_READY = 1  #: a direction without HUB_STEP: what it waited for came
HUB_STOPPED = 2  #: a step stopped for a decision: its STEP_* status in ``status``
HUB_EVENT = 3  #: an error or hang-up on a socket of a WANT_NONE direction
HUB_NEED_PIPE = 4  #: due for a step, and no pipe
HUB_WOKEN = 5  #: the wake-up descriptor (index -1)
