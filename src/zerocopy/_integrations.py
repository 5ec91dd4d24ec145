"""What a framework integration does on a framework release it was not tested with.

``zerocopy.aiohttp`` and ``zerocopy.uvicorn`` hook into private parts of
their frameworks.  A new (or old) release must never stop a server from
starting, so at import each integration asks :mod:`zerocopy._compat` which
of the hooks it needs the installed release lacks, and hands the answer to
:func:`decide`:

- every hook there: zero-copy on; outside the tested range, one
  :class:`UntestedVersionWarning`;
- a hook missing (whatever the version): that class serves exactly as the
  framework's stock one, with an :class:`IntegrationFallbackWarning` naming
  the missing hook and the tested releases.

Warnings rather than log records: they are shown once per process by
default, reach stderr whatever logging configuration the server sets up
(they are raised at import, often before it), and a deployment that wants
the old strictness can turn them into errors with
``-W error::zerocopy.UntestedVersionWarning``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

__all__ = [
    "IntegrationFallbackWarning",
    "UntestedVersionWarning",
    "decide",
    "in_range",
    "major_minor",
]


class UntestedVersionWarning(RuntimeWarning):
    """A zerocopy integration runs on a framework release outside the range it was tested with.

    Every hook the integration needs was found with the expected shape, so
    zero-copy is on.  Make it an error (``-W
    error::zerocopy.UntestedVersionWarning``) to refuse untested releases.
    """


class IntegrationFallbackWarning(RuntimeWarning):
    """A zerocopy integration lacks a framework hook and serves as the framework's stock class.

    Zero-copy is off for that class; the message names the missing hook and
    the tested releases.
    """


def major_minor(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a version string such as ``"0.55.1rc1"``; None if it has none."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return None if match is None else (int(match[1]), int(match[2]))


def in_range(version: str, supported: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    """Whether *version* is in *supported*: ``((major, minor), (major, minor))``, lowest
    tested and first untested."""
    low, first_untested = supported
    major_minor_ = major_minor(version)
    return major_minor_ is not None and low <= major_minor_ < first_untested


def decide(
    integration: str,
    framework: str,
    version: str,
    tested: str,
    in_range: bool,
    missing: Mapping[str, Sequence[str]],
) -> dict[str, bool]:
    """Whether each class of *integration* runs with zero-copy, warning as the module docs say.

    *missing* maps each class name (``"FileResponse"``) to the hooks it
    needs that *framework* *version* lacks (from :mod:`zerocopy._compat`);
    *tested* names the tested releases (``"aiohttp 3.10 to 3.14"``) and
    *in_range* says whether *version* is one of them.
    """
    on = {name: not hooks for name, hooks in missing.items()}
    for name, hooks in missing.items():
        if hooks:
            warnings.warn(
                f"{integration}.{name}: zero-copy is off, it serves as {framework}'s own"
                f" {name}: {framework} {version} lacks {', '.join(hooks)}"
                f" (tested: {tested})",
                IntegrationFallbackWarning,
                stacklevel=3,
            )
    if not in_range and any(on.values()):
        names = [name for name, ok in on.items() if ok]
        verb = "runs" if len(names) == 1 else "run"
        warnings.warn(
            f"{integration} is untested with {framework} {version} (tested: {tested});"
            f" the hooks it needs are all there, so {' and '.join(names)} {verb} with zero-copy",
            UntestedVersionWarning,
            stacklevel=3,
        )
    return on
