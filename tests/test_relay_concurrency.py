"""Concurrency of relay: sixteen relays at once, sharing the pipe pool, both backends.

The mix of every operation at once is in ``tests/test_copy_concurrency.py``.
Every byte is checked.  The operations, and the probe that a blocked call
lets other threads run, are in ``tests/faultkit/threads.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from faultkit.threads import OPERATIONS, op_relay, run_threads
from zerocopy._pipes import default_pool

pytestmark = pytest.mark.usefixtures("no_leaks")


class TestSixteenThreads:
    @pytest.mark.parametrize("name", ["relay"])
    def test_one_operation_sixteen_times(
        self, backend: ModuleType, tmp_path: Path, name: str
    ) -> None:
        """16 threads doing the same operation at the same moment: all byte-exact."""
        run_threads(lambda i: OPERATIONS[name](tmp_path, 7 + i))

    def test_sixteen_relays_share_the_pipe_pool(self, backend: ModuleType) -> None:
        """16 relays at once, more than the pool keeps: idle pipes stay bounded and empty."""
        run_threads(lambda i: op_relay(Path("/nonexistent"), 100 + i))
        pool = default_pool()
        assert len(pool) <= pool.maxsize
        assert all(p.queued() == 0 for p in list(pool._idle))
