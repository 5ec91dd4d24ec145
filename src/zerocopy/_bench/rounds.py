"""Alternating rounds after a warm-up, and the medians and spreads of their runs.

docs/design.md, "Measuring on these machines": the compared variants run back
to back, alternating (A B A B ...), after a warm-up round whose runs are
dropped; nothing sleeps between runs, because memory left idle for a couple
of seconds goes back to the hypervisor and costs about 2 s/GiB to touch
again.  Figures are medians of the measured rounds, with their spread.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .timing import Sample
from .units import GiB

__all__ = ["print_round", "run_rounds", "spread", "summarize"]

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


def print_round(label: str, samples: dict[str, Sample]) -> None:
    """An ``on_round`` for :func:`run_rounds`: each variant's GiB/s on one stderr line."""
    parts = [f"{name} {s.nbytes / GiB / s.seconds:.2f}" for name, s in samples.items()]
    print(f"  {label}: " + ", ".join(parts) + " GiB/s", file=sys.stderr, flush=True)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max, and the quartiles (inclusive method) of *values*."""
    v = sorted(values)
    q1, q3 = statistics.quantiles(v, n=4, method="inclusive")[::2] if len(v) > 1 else (v[0], v[0])
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q1, "q3": q3}


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Throughput (GiB/s) and CPU (s/GiB) medians and spreads of one variant's runs.

    Numeric ``info`` entries are summarised by their median, others by the
    set of values seen.
    """
    gib = [s.nbytes / GiB for s in samples]
    pairs = list(zip(gib, samples, strict=True))
    out: dict[str, Any] = {
        "runs": len(samples),
        "gib_s": spread([g / s.seconds for g, s in pairs]),
        "seconds": spread([s.seconds for s in samples]),
        "cpu_user_s_per_gib": statistics.median(s.user / g for g, s in pairs),
        "cpu_sys_s_per_gib": statistics.median(s.sys / g for g, s in pairs),
        "cpu_s_per_gib": statistics.median((s.user + s.sys) / g for g, s in pairs),
    }
    for key in samples[0].info:
        vals = [s.info.get(key) for s in samples]
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in vals):
            out[key] = statistics.median(vals)  # type: ignore[type-var]
        else:
            out[key] = sorted({str(x) for x in vals})
    return out
