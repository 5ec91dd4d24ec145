"""``bench --plot``: one PNG that tells each scenario's story.

One row per scenario, four panels sharing the methods' axis: throughput
(median, with the min-max range of the runs), CPU seconds per GiB split into
user and system, the model's CPU copies and mode switches per chunk, and the
measured system calls and context switches per run.  Zero-copy methods
(bytes never pass through a user-space buffer) are drawn in one colour, the
copying ones in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .model import ZERO_COPY
from .units import human

__all__ = ["PLOT_INSTALL", "plot", "pyplot"]

#: How to get matplotlib: the `plot` extra, from a clone (no release on PyPI yet).
PLOT_INSTALL = "pip install -e '.[plot]' in a clone of zerocopy (or: pip install matplotlib)"

_ZERO = "#228833"  # green: zero-copy
_COPY = "#ee7733"  # orange: copies through user space
_MODEL = ("#ccccdd", "#8888aa")  # grey-violet: the model's copies, its mode switches
_MEASURED = ("#88bbee", "#336699")  # blue: measured system calls, context switches


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend; ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module: ModuleType = plt  # typed where matplotlib is not installed (Any) too
    return module


def _colour(method: str) -> str:
    return _ZERO if method in ZERO_COPY else _COPY


def _count(n: int, unit: tuple[str, str]) -> str:
    return f"{n} {unit[0] if n == 1 else unit[1]}"


def _pair(
    ax: Any,
    a: Sequence[int],
    b: Sequence[int],
    units: tuple[tuple[str, str], tuple[str, str]],
    colours: tuple[str, str],
) -> None:
    """Two bars per method: *a* above, *b* below, each labelled with its count."""
    ys = range(len(a))
    top = ax.barh([y - 0.2 for y in ys], a, height=0.38, color=colours[0])
    low = ax.barh([y + 0.2 for y in ys], b, height=0.38, color=colours[1])
    ax.bar_label(top, labels=[_count(n, units[0]) for n in a], padding=2, fontsize=7)
    ax.bar_label(low, labels=[_count(n, units[1]) for n in b], padding=2, fontsize=7)


def plot(
    summaries: Sequence[dict[str, Any]],
    info: dict[str, Any],
    repeat: int,
    scenarios: Sequence[str],
    path: str,
) -> None:
    """Draw every scenario of *summaries* into one PNG at *path*."""
    from matplotlib.patches import Patch

    plt = pyplot()
    shown = [s for s in scenarios if any(r["scenario"] == s for r in summaries)]
    size = human(summaries[0]["size"]) if summaries else "?"
    fig, axes = plt.subplots(
        len(shown),
        4,
        figsize=(17, 1.0 + 2.3 * len(shown)),
        squeeze=False,
        sharey="row",
        layout="constrained",
    )
    for row, scenario in zip(axes, shown, strict=True):
        rows = [s for s in summaries if s["scenario"] == scenario]
        names = [r["method"] for r in rows]
        ys = list(range(len(rows)))
        colours = [_colour(n) for n in names]

        ax = row[0]
        med = [r["median_gib_s"] for r in rows]
        err = [
            [r["median_gib_s"] - r["min_gib_s"] for r in rows],
            [r["max_gib_s"] - r["median_gib_s"] for r in rows],
        ]
        ax.barh(ys, med, xerr=err, color=colours, capsize=3, ecolor="#333333")
        top = max(r["max_gib_s"] for r in rows)
        for y, r in zip(ys, rows, strict=True):
            # Right of the range's cap, not on it.
            ax.text(
                r["max_gib_s"] + top * 0.02, y, f"{r['median_gib_s']:.2f}", va="center", fontsize=7
            )
        ax.set_xlim(0, top * 1.15)
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_ylabel(scenario, fontsize=11, fontweight="bold")
        ax.set_xlabel("GiB/s: median, bar = min-max")

        ax = row[1]
        user = [r["cpu_user_s_per_gib"] for r in rows]
        system = [r["cpu_sys_s_per_gib"] for r in rows]
        ax.barh(ys, user, color=colours, alpha=0.45, hatch="//", edgecolor="white")
        bars = ax.barh(ys, system, left=user, color=colours)
        totals = [f"{u + k:.2f}" for u, k in zip(user, system, strict=True)]
        ax.bar_label(bars, labels=totals, padding=2, fontsize=7)
        ax.set_xlim(0, max(u + k for u, k in zip(user, system, strict=True)) * 1.15 or 1)
        ax.set_xlabel("CPU s/GiB: user (hatched) + system")

        ax = row[2]
        model = [r["model"] for r in rows]
        _pair(
            ax,
            [m["cpu_copies"] for m in model],
            [m["context_switches"] for m in model],
            (("CPU copy", "CPU copies"), ("switch", "switches")),
            _MODEL,
        )
        ax.set_xlim(0, 5.5)
        ax.set_xlabel("model per chunk: copies, mode switches")

        ax = row[3]
        calls = [r["syscalls"] for r in rows]
        switches = [r["ctx_switches"] for r in rows]
        _pair(ax, calls, switches, (("syscall", "syscalls"), ("ctxsw", "ctxsw")), _MEASURED)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max([*calls, *switches, 1]) * 8)
        ax.set_xlabel("measured per run: syscalls, ctxsw")
        for a in row[1:]:
            a.tick_params(axis="y", left=False)
    fig.suptitle(
        f"zerocopy bench: {info['cpu']} ({info['cores']} cores), Linux {info['kernel']}, "
        f"{size} per transfer, medians of {repeat} runs, {info['date'][:10]}",
        fontsize=12,
    )
    fig.legend(
        handles=[
            Patch(color=_ZERO, label="zero-copy (no user-space buffer)"),
            Patch(color=_COPY, label="copies through user space"),
            Patch(color=_MODEL[1], label="model: CPU copies (light), mode switches (dark)"),
            Patch(
                color=_MEASURED[1], label="measured: system calls (light), context switches (dark)"
            ),
        ],
        loc="outside lower center",
        ncols=4,
        frameon=False,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
