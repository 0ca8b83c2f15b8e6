"""A lake of demo days with drift injected from DRIFT_FROM, and a champion trained before it."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets_tests.conftest import DEMO_START
from ml_assets_tests.models.conftest import (  # noqa: F401  (fixture re-exported)
    Deployment,
    _range,
    _settings,
    empty_mlflow_store,
)

DAYS = 30
# Trained on days 9..20 (after the features' 7-day ramp-up), validated on 21..26.
AS_OF = DEMO_START + dt.timedelta(days=25)
TRAIN = {"train_days": 12, "holdout_days": 6, "as_of": AS_OF.isoformat()}
DRIFT_FROM = AS_OF + dt.timedelta(days=1)
LAST_DAY = DEMO_START + dt.timedelta(days=DAYS - 1)


@pytest.fixture(scope="session")
def drift_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("drift_home")
    settings = _settings(home)
    write_demo_data(
        settings.landing_root / "fraud",
        start=DEMO_START,
        days=DAYS,
        rows_per_day=600,
        seed=11,
        drift_from=DRIFT_FROM,
    )
    defs = build_definitions(settings)
    result = dg.materialize(
        list(defs.assets),
        resources=build_resources(settings),
        selection=dg.AssetSelection.groups("raw", "features"),
        tags=_range(DEMO_START, LAST_DAY),
    )
    assert result.success
    return home


@pytest.fixture
def drift_deployment(drift_home: Path, empty_mlflow_store: Path, tmp_path: Path) -> Deployment:  # noqa: F811
    home = tmp_path / "home"
    shutil.copytree(drift_home / "lake", home / "lake")
    (home / "mlflow").mkdir()
    shutil.copyfile(empty_mlflow_store, home / "mlflow" / "mlflow.db")
    settings = _settings(home)
    return Deployment(settings, build_definitions(settings))
