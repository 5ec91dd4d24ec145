"""``python -m zerocopy info``: what a bug report needs to know about this machine."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

from .. import _backend, _constants, _extension

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


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _limit(value: int) -> str:
    if resource is None:
        return "unknown"
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def _bytes(value: str) -> str:
    return value if not value.isdigit() else f"{value} bytes ({int(value) // 1024} KiB)"


def collect() -> dict[str, Any]:
    """Return every figure ``info`` prints, as plain data."""
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
        "pipe_max_size": _read("/proc/sys/fs/pipe-max-size"),
        "optmem_max": _read("/proc/sys/net/core/optmem_max"),
        "memlock_limit": {"soft": _limit(soft), "hard": _limit(hard)},
    }


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_text(data)
    if args.require_extension and data["compiled_module"] != "loaded":
        # Exit status 1 lets an install script or a container build stop on a
        # copy that fell back to the os backend.
        print(
            "zerocopy info: --require-extension: the compiled module is not loaded; "
            f"rebuild it with: {data['rebuild_command']}",
            file=sys.stderr,
        )
        return 1
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
    rows += [
        ("pipe-max-size", data["pipe_max_size"] or "unknown"),
        ("optmem_max", data["optmem_max"] or "unknown"),
        (
            "memlock limit",
            "{} (hard {})".format(*map(_bytes, data["memlock_limit"].values())),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if key == "  " + next(iter(data["features"])):
            print("features:")
        print(f"{key:<{width}}  {value}")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("info", help="show backend, features and kernel limits")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--require-extension",
        action="store_true",
        help="exit with status 1 when the compiled module does not load",
    )
    parser.set_defaults(func=run)
