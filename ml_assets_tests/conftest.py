"""Shared fixtures: an isolated deployment (lake, landing, Dagster home) per test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ml_assets.settings import Settings, load_settings

DEMO_START = dt.date(2026, 1, 1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "ML_ASSETS_HOME": str(tmp_path / "home"),
            "ML_ASSETS_LANDING_ROOT": str(tmp_path / "landing"),
        }
    )


@pytest.fixture(autouse=True)
def _reset_dagster_defs_state_storage():
    """Evaluating a schedule with `build_schedule_context(instance=...)` leaves dagster's
    context-local DefsStateStorage pointing at that test's instance; once the instance is gone,
    the next definitions load in the thread fails ("undefined DagsterInstance weakref")."""
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
