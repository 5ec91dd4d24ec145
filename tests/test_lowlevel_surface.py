"""The public surface: constants equal the compiled ones, the ABI version, __all__."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

import zerocopy
from copykit import load_compiled

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def compiled() -> ModuleType:
    """The compiled cffi module (whatever the current backend)."""
    return load_compiled()


NAMES = [
    "SPLICE_F_MOVE",
    "SPLICE_F_NONBLOCK",
    "SPLICE_F_MORE",
    "SPLICE_F_GIFT",
    "MSG_ZEROCOPY",
    "SO_ZEROCOPY",
]


class TestConstants:
    @pytest.mark.parametrize("name", NAMES)
    def test_match_compiled(self, compiled: ModuleType, name: str) -> None:
        """Each public constant equals the C compiler's value."""
        assert getattr(zerocopy, name) == getattr(compiled.lib, name)

    def test_private_constants_match_compiled(self, compiled: ModuleType) -> None:
        """The error-queue constants equal the compiled ones too."""
        from zerocopy import _constants

        assert _constants.SO_EE_ORIGIN_ZEROCOPY == compiled.lib.SO_EE_ORIGIN_ZEROCOPY
        assert _constants.SO_EE_CODE_ZEROCOPY_COPIED == compiled.lib.SO_EE_CODE_ZEROCOPY_COPIED

    @pytest.mark.parametrize(
        "name",
        ["ERROR", "SRC_EMPTY", "SRC_END", "DST_FULL", "DST_ZERO"],
    )
    def test_relay_step_statuses_match_compiled(self, compiled: ModuleType, name: str) -> None:
        """The os backend's relay_step statuses are the C pump's."""
        from zerocopy import _constants

        assert getattr(_constants, f"STEP_{name}") == getattr(compiled.lib, f"ZC_STEP_{name}")

    def test_relay_step_budget_status_matches_compiled(self, compiled: ModuleType) -> None:
        """STEP_SPENT (a status; STEP_BYTES is a byte count) is ZC_STEP_SPENT."""
        from zerocopy import _constants

        assert _constants.STEP_SPENT == compiled.lib.ZC_STEP_SPENT

    @pytest.mark.parametrize("name", ["SPLICE_F_MOVE", "SPLICE_F_NONBLOCK", "SPLICE_F_MORE"])
    def test_match_os_module(self, name: str) -> None:
        """The splice flags equal the os module's."""
        assert getattr(zerocopy, name) == getattr(os, name)

    def test_abi_version(self, compiled: ModuleType) -> None:
        """The compiled module's ABI version is the one the Python side expects."""
        from zerocopy import _cffi

        assert compiled.lib.zc_abi_version() == _cffi._ABI_VERSION
        assert compiled.lib.ZC_ABI_VERSION == _cffi._ABI_VERSION

    def test_public_surface(self) -> None:
        """__all__ is sorted (isort-style, as ruff's RUF022) and every name in it resolves."""

        def isort_key(name: str) -> tuple[int, str]:
            # CONSTANTS, then Classes, then everything else; each alphabetical.
            return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

        assert zerocopy.__all__ == sorted(zerocopy.__all__, key=isort_key)
        assert len(set(zerocopy.__all__)) == len(zerocopy.__all__)
        for name in zerocopy.__all__:
            assert getattr(zerocopy, name) is not None
        assert {"BACKEND", "FEATURES"} <= set(dir(zerocopy))
