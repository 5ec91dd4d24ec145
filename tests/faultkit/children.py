"""Harnesses run in a child process: what would kill or starve the test process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from types import ModuleType

# --- the fd limit, in a subprocess ----------------------------------------------------

NOFILE_CHILD = textwrap.dedent(
    """
    import errno, json, os, resource, socket, sys, tempfile, threading
    import zerocopy
    from zerocopy._pipes import default_pool

    def open_fds():
        found = set()
        for fd in range(4096):   # no listdir: it needs an fd itself
            try:
                os.fstat(fd)
            except OSError:
                continue
            found.add(fd)
        return found

    def fill(free):
        # Take every fd below the limit, then give *free* of them back.
        held = []
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        for _ in range(free):
            os.close(held.pop())
        return held

    def hub_fds():
        # The process's relay hubs (made by a relay, kept like the pool's idle pipes).
        from zerocopy._relay import hub
        return {fd for hubs in hub._defaults.values() for h in hubs
                for fd in (h._wake_fd, h._core.fileno())}

    def release(held):
        for fd in held:
            os.close(fd)

    where = sys.argv[1]
    data = os.urandom(1 << 20)
    src = os.path.join(where, "src")
    with open(src, "wb") as f:
        f.write(data)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    e, g = socket.socketpair()
    dst = open(os.path.join(where, "dst"), "wb")
    default_pool().clear()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    out = {}

    def feed(sock, payload):
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # socket -> file needs a pooled pipe: with no fd free it must fall back.
    held = fill(0)
    before = open_fds()
    t = threading.Thread(target=feed, args=(b, data)); t.start()
    with a.makefile("rb") as r:
        try:
            out["copy"] = [zerocopy.copyfileobj(r, dst), zerocopy.last_method()]
        except OSError as exc:
            out["copy"] = ["raised", exc.errno]
    t.join()
    dst.flush()
    os.close(held.pop())   # reading the result back needs one fd
    with open(dst.name, "rb") as f:
        out["copy_exact"] = f.read() == data
    held.append(os.open(os.devnull, os.O_RDONLY))
    try:
        default_pool().acquire()
        out["acquire"] = "ok"
    except OSError as exc:
        out["acquire"] = exc.errno
    for free in (0, 1, 2, 4, 6):
        release(held)
        held = fill(free)
        before = open_fds()
        t = threading.Thread(target=feed, args=(g, b"x" * 1000)); t.start()
        try:
            out["relay%d" % free] = list(zerocopy.relay(c, e, timeout=1))
        except OSError as exc:
            out["relay%d" % free] = [type(exc).__name__, exc.errno, list(exc.bytes_transferred)]
        t.join()
        out["relay%d_leak" % free] = sorted(open_fds() - before - {
            fd for p in default_pool()._idle for fd in (p.r, p.w)} - hub_fds())
        out["relay%d_blocking" % free] = [c.gettimeout(), e.gettimeout()]
        default_pool().clear()
        # drain what a partial relay may have delivered
        d.setblocking(False)
        try:
            while d.recv(65536):
                pass
        except BlockingIOError:
            pass
    release(held)
    held = fill(1)
    before = open_fds()
    try:
        zerocopy.copyfile(src, src + ".copy")
        out["copyfile"] = "ok"
    except OSError as exc:
        out["copyfile"] = exc.errno
    out["copyfile_leak"] = sorted(open_fds() - before)
    # send_file needs no fd at all: the one left free goes to the source file.
    with open(src, "rb") as f:
        x, y = d, c   # c may be shut down for writing by the relay that worked
        x.setblocking(True)
        def receive():
            out["recv"] = len(y.recv(1 << 20, socket.MSG_WAITALL))

        t = threading.Thread(target=receive)
        t.start()
        out["send_file"] = zerocopy.send_file(x, f, 0, 1 << 20)
        t.join()
    release(held)
    print(json.dumps(out))
    """
)


_CYCLE_CHILD = textwrap.dedent(
    """
    import gc, os, socket, struct, sys
    import zerocopy

    gc.disable()  # collect only where the loop says, so every cycle is collected
    call = sys.argv[1]
    if call == "vmsplice":
        r, w = os.pipe()
        os.close(r)  # no reader: vmsplice fails with EPIPE

        def attempt():
            zerocopy.vmsplice(w, [bytearray(b"x" * 100), b"y" * 100])
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()  # a reset: every send fails
        sender = zerocopy.ZeroCopySender(a, threshold=0, stop_on_copied=False)

        def attempt():
            sender.send(bytearray(64 * 1024))

    failures = 0
    for _ in range(200):
        try:
            attempt()
        except OSError as exc:
            failures += 1
            exc.cycle = exc  # what logging, futures or a saved last_error do
        gc.collect()
    print("survived", failures)
    """
)


def signal_name(returncode: int) -> str:
    if returncode < 0:
        return signal.Signals(-returncode).name
    return f"exit status {returncode}"


def check_buffer_error_in_a_reference_cycle(backend: ModuleType, call: str) -> None:
    """A failed call whose exception ends up in a reference cycle does not crash the GC."""
    # Found by test_vmsplice: on the cffi backend the frames of a failed
    # vmsplice or send hold a memoryview and a cffi from_buffer() export of
    # it; when a cycle (exc.cycle = exc here; contextlib, asyncio futures and
    # pytest.raises make them too) takes them to the collector, memoryview's
    # tp_clear drops its buffer while the export is live, and its dealloc
    # then dereferences NULL (SIGSEGV).  Run in a child: it kills the process.
    env = dict(os.environ, ZEROCOPY_BACKEND=backend.NAME)
    proc = subprocess.run(
        [sys.executable, "-c", _CYCLE_CHILD, call],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, (
        f"child died with {signal_name(proc.returncode)}: {proc.stderr[-600:]}"
    )
    assert proc.stdout.split() == ["survived", "200"]
