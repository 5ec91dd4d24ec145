"""``python -m zerocopy info``: what a bug report needs to know about this machine.

``--json`` prints :func:`collect`'s dict, every value typed: numbers as JSON
numbers, yes/no as booleans, ``null`` for what could not be read (and, in
``memlock_limit``, for no limit).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from .. import _backend, _constants, _extension
from . import UserError

__all__ = ["add_parser", "collect", "run"]


try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]


def paths(features: frozenset[str]) -> dict[str, str]:
    """What each capability uses on this platform, from the backend's *features*."""
    kernel = [m for m in ("copy_file_range", "sendfile", "splice") if m in features]
    return {
        "copyfile": "copy_file_range" if "copy_file_range" in features else "shutil.copyfile",
        "copyfileobj": ", ".join([*kernel, "readinto"]) if kernel else "shutil's loop",
        "send_file": "sendfile" if "sendfile" in features else "read and send",
        "relay": "splice" if "splice" in features else "recv and send through a buffer",
        "ZeroCopySender": "MSG_ZEROCOPY" if "msg_zerocopy" in features else "plain sends",
    }


def _read_int(path: str) -> int | None:
    """The integer in a /proc file; None where it cannot be read (not Linux, no /proc)."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _limit(value: int) -> int | None:
    """An rlimit in bytes; None for RLIM_INFINITY."""
    return None if resource is None or value == resource.RLIM_INFINITY else int(value)


def _bytes(value: int | None) -> str:
    return "unlimited" if value is None else f"{value} bytes ({value // 1024} KiB)"


def collect() -> dict[str, Any]:
    """Return every figure ``info`` prints, as plain data with typed values.

    ``pipe_max_size`` and ``optmem_max`` are ints (None: unreadable);
    ``memlock_limit`` is ``{"soft": int | None, "hard": int | None}`` in
    bytes, None meaning unlimited (the whole entry None where there are no
    rlimits); ``features`` maps each name to a bool.
    """
    import zerocopy

    backend = _backend.current()
    features = _backend.features()
    soft, hard = (-1, -1) if resource is None else resource.getrlimit(resource.RLIMIT_MEMLOCK)
    compiled: str | None
    rebuild: str | None = None
    try:
        _backend.load("cffi")
        compiled = "loaded"
    except ImportError as exc:
        compiled = f"unavailable: {exc}"
        rebuild = _extension.rebuild_command()
    return {
        "zerocopy": zerocopy.__version__,
        "backend": backend.NAME,
        "compiled_module": compiled,
        # Why the install's build left the module out (None: it did not fail,
        # or this copy was not built here), and how to build it again.
        "extension_build_failure": _extension.build_failure(),
        "rebuild_command": rebuild,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "platform": sys.platform,
        "paths": paths(features),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "features": {name: name in features for name in sorted(_constants.FEATURE_NAMES)},
        "pipe_max_size": _read_int("/proc/sys/fs/pipe-max-size"),
        "optmem_max": _read_int("/proc/sys/net/core/optmem_max"),
        "memlock_limit": None if resource is None else {"soft": _limit(soft), "hard": _limit(hard)},
    }


def run(args: argparse.Namespace) -> int:
    """Print the figures (text or JSON); 1 when --require-extension is not met."""
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_text(data)
    if args.require_extension and data["compiled_module"] != "loaded":
        # Exit status 1 lets an install script or a container build stop on a
        # copy that fell back to the os backend.
        raise UserError(
            "--require-extension: the compiled module is not loaded; "
            f"rebuild it with: {data['rebuild_command']}"
        )
    return 0


def _print_text(data: dict[str, Any]) -> None:
    rows = [
        ("zerocopy", data["zerocopy"]),
        ("backend", data["backend"]),
        ("compiled module", data["compiled_module"]),
        *([("rebuild with", data["rebuild_command"])] if data["rebuild_command"] else []),
        ("python", f"{data['python']} ({data['executable']})"),
        ("kernel", f"{data['kernel']} {data['machine']}"),
    ]
    rows += [("platform", data["platform"])]
    rows += [(f"{k} uses", v) for k, v in data["paths"].items()]
    rows += [(f"  {k}", "yes" if v else "no") for k, v in data["features"].items()]
    memlock = data["memlock_limit"]
    rows += [
        ("pipe-max-size", _unknown(data["pipe_max_size"])),
        ("optmem_max", _unknown(data["optmem_max"])),
        (
            "memlock limit",
            "unknown"
            if memlock is None
            else f"{_bytes(memlock['soft'])} (hard {_bytes(memlock['hard'])})",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if key == "  " + next(iter(data["features"])):
            print("features:")
        print(f"{key:<{width}}  {value}")


def _unknown(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "info",
        help="show backend, features and kernel limits",
        description="Print what a bug report needs: zerocopy's version and backend, "
        "whether the compiled module loads (and the command that rebuilds it), Python, "
        "the kernel, which system call each function uses here, the features, "
        "pipe-max-size, optmem_max and the memlock limit.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON, every value typed: numbers, booleans, null for unknown "
        "(default: aligned text)",
    )
    parser.add_argument(
        "--require-extension",
        action="store_true",
        help="exit with status 1 when the compiled module does not load, as an install "
        "check (default: report it and exit 0)",
    )
    parser.set_defaults(func=run)
