"""Fixtures of the data tests."""

from __future__ import annotations

import pytest

from detach_pl.testing.opportunity import StandinRelease, write_standin_release


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> StandinRelease:
    """Five 30 s runs at 10 fps, written once for the module (never modified by tests)."""
    return write_standin_release(tmp_path_factory.mktemp("opp") / "Opportunity++")
