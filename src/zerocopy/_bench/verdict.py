"""What ``bench`` concludes: a winner only where the figures show one, and the library's picks.

A method wins a scenario only when its slowest timed run beat every other
method's fastest (its min GiB/s above each other's max): with a handful of
runs on a shared machine, medians a few percent apart say nothing.  Otherwise
the verdict is a tie between the fastest method and every method whose range
reaches into its range.

What the library picks comes from its own decision code and the backend's
feature probe (``_backend.features()``), never from a table written here:
``copyfileobj``'s method chain per kind of fd, ``send_file``'s sendfile
check, ``relay``'s splice check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .. import _backend

__all__ = ["Choice", "choices", "choices_lines", "tied_with", "verdict"]


def tied_with(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fastest row (by median) and every row whose max reaches its min; fastest first.

    One row back means a clear winner: its min is above every other row's max.
    """
    best = max(rows, key=lambda r: r["median_gib_s"])
    others = [r for r in rows if r is not best and r["max_gib_s"] >= best["min_gib_s"]]
    others.sort(key=lambda r: r["median_gib_s"], reverse=True)
    return [best, *others]


def verdict(scenario: str, rows: Sequence[dict[str, Any]]) -> str:
    """One closing line for *scenario*: its winner and by how much, or the tie.

    *rows* are summaries (``median_gib_s``, ``min_gib_s``, ``max_gib_s``,
    ``method``) with the baseline, the plain copy loop, first.
    """
    base = rows[0]
    tied = tied_with(rows)
    best = tied[0]
    if len(rows) == 1:
        return f"{scenario}: only {best['method']} ran ({best['median_gib_s']:.2f} GiB/s)."
    if len(tied) > 1:
        names = ", ".join(r["method"] for r in tied)
        return (
            f"{scenario}: tie between {names} (their min-max ranges overlap; "
            f"{best['method']} had the best median, {best['median_gib_s']:.2f} GiB/s)."
        )
    if best is base:
        return (
            f"{scenario}: {base['method']} won ({base['median_gib_s']:.2f} GiB/s, "
            "slowest run above every other's fastest); no shortcut beat it here."
        )
    ratio = best["median_gib_s"] / base["median_gib_s"]
    return (
        f"{scenario}: {best['method']} won, {ratio:.2f}x {base['method']} "
        f"({best['median_gib_s']:.2f} vs {base['median_gib_s']:.2f} GiB/s; "
        "its slowest run beat every other method's fastest)."
    )


class Choice(NamedTuple):
    """What one library function uses for one of bench's scenarios, and why."""

    function: str
    scenario: str
    method: str  # as bench names its methods, so it can be found in the table
    why: str


def _copyfileobj(skind: str, dkind: str, features: frozenset[str]) -> tuple[str, str]:
    """copyfileobj's method for a copy of more than one chunk between these fd kinds."""
    # copyfileobj's own chain (which call it tries first for these kinds).
    from .._copy.fileobj import kernel_copies
    from .._copy.kernel import _chain

    if not kernel_copies():
        return "read/write", "the backend has no kernel copy: shutil's loop"
    chain = [name for name, _ in _chain(skind, dkind)]
    usable = [name for name in chain if name in features]
    if not usable:
        return "readinto/write", f"{' and '.join(chain)} not found: a readinto loop"
    return usable[0], f"tries {' then '.join(chain)}; the probe found {usable[0]}"


def choices(features: frozenset[str] | None = None) -> list[Choice]:
    """What copyfileobj, send_file, relay and ZeroCopySender use here, per bench scenario.

    *features* defaults to the current backend's probe, which is what each of
    those functions consults at call time.
    """
    from .._relay import hub as _hub
    from .._send_file.blocking import _no_sendfile
    from .._streams import FILE, SOCKET

    found = _backend.features() if features is None else features
    cfo_ff, why_ff = _copyfileobj(FILE, FILE, found)
    cfo_fs, why_fs = _copyfileobj(FILE, SOCKET, found)
    if _no_sendfile():
        send = ("read/write", "no sendfile with Linux's semantics: reads and sends")
    else:
        send = ("sendfile", "the probe found sendfile")
    if "splice" in found:
        where = "on the relay hub's thread" if _hub.available() else "in the caller's thread"
        relay = ("splice", f"the probe found splice: socket -> pipe -> socket, {where}")
    else:
        relay = ("readinto/write", "no splice: recv and send through a buffer")
    if "msg_zerocopy" in found:
        zc = ("MSG_ZEROCOPY", "SO_ZEROCOPY took on a test socket")
    else:
        zc = ("write", "no MSG_ZEROCOPY here: plain sends")
    return [
        Choice("copyfileobj", "file-file", cfo_ff, why_ff),
        Choice("copyfileobj", "file-socket", cfo_fs, why_fs),
        Choice("send_file", "file-socket", *send),
        Choice("relay", "socket-socket", *relay),
        Choice("ZeroCopySender", "memory-socket", *zc),
    ]


def _standing(choice: Choice, summaries: Sequence[dict[str, Any]]) -> str:
    """How the chosen method did in this run: won, tied, lost, or not measured."""
    rows = [s for s in summaries if s["scenario"] == choice.scenario]
    if not rows or not any(r["method"] == choice.method for r in rows):
        return "not measured in this run"
    tied = [r["method"] for r in tied_with(rows)]
    if tied == [choice.method]:
        return "the winner here"
    if choice.method in tied:
        return "tied for fastest here"
    return f"{tied[0]} was faster here"


def choices_lines(summaries: Sequence[dict[str, Any]], backend: str) -> list[str]:
    """The closing lines: what the library picks on this machine, why, and how that did."""
    found = _backend.features()
    probe = ", ".join(sorted(found)) or "nothing"
    lines = [f"What zerocopy uses on this machine (backend {backend}; its probe found: {probe}):"]
    for c in choices(found):
        lines.append(
            f"  {c.function:<14} {c.scenario:<13} {c.method:<15} {c.why}; {_standing(c, summaries)}"
        )
    return lines
