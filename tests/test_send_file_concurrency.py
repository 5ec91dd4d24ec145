"""Concurrency of send_file: sixteen threads at once, on both backends.

The mix of every operation at once is in ``tests/test_copy_concurrency.py``.
Every byte is checked.  The operations, and the probe that a blocked call
lets other threads run, are in ``tests/faultkit/threads.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from faultkit.threads import OPERATIONS, run_threads

pytestmark = pytest.mark.usefixtures("no_leaks")


class TestSixteenThreads:
    @pytest.mark.parametrize("name", ["send_file"])
    def test_one_operation_sixteen_times(
        self, backend: ModuleType, tmp_path: Path, name: str
    ) -> None:
        """16 threads doing the same operation at the same moment: all byte-exact."""
        run_threads(lambda i: OPERATIONS[name](tmp_path, 7 + i))
