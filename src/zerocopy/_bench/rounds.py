"""Alternating rounds after a warm-up, and the medians and spreads of their runs.

docs/design.md, "Measuring on these machines": the compared variants run back
to back, alternating (A B A B ...), after a warm-up round whose runs are
dropped; nothing sleeps between runs, because memory left idle for a couple
of seconds goes back to the hypervisor and costs about 2 s/GiB to touch
again.  Figures are medians of the measured rounds, with their spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["run_rounds", "spread"]

T = TypeVar("T")


def run_rounds(
    variants: Sequence[tuple[str, Callable[[], T]]],
    repeat: int,
    *,
    warmup: int = 1,
    on_step: Callable[[str, int, int], None] | None = None,
    on_round: Callable[[str, dict[str, T]], None] | None = None,
) -> dict[str, list[T]]:
    """Run every variant once per round, always in the same order (A B C A B C ...).

    The first *warmup* rounds run and are dropped; the next *repeat* rounds
    are returned, per variant, in round order.  ``on_step(name, step, total)``
    is called before each run (for a progress line), ``on_round(label,
    {name: result})`` after each round.
    """
    results: dict[str, list[T]] = {name: [] for name, _ in variants}
    total = (warmup + repeat) * len(variants)
    step = 0
    for rnd in range(warmup + repeat):
        got: dict[str, T] = {}
        for name, fn in variants:
            step += 1
            if on_step is not None:
                on_step(name, step, total)
            got[name] = fn()
            if rnd >= warmup:
                results[name].append(got[name])
        if on_round is not None:
            label = "warm-up" if rnd < warmup else f"round {rnd - warmup + 1}/{repeat}"
            on_round(label, got)
    return results


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max, and the quartiles (inclusive method) of *values*."""
    v = sorted(values)
    q1, q3 = statistics.quantiles(v, n=4, method="inclusive")[::2] if len(v) > 1 else (v[0], v[0])
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q1, "q3": q3}
