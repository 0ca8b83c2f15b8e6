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
