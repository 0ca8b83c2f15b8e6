"""A small lake with 30 days of demo features, copied into each test's own deployment."""

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.pipeline.keys import model_keys
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC, Settings, load_settings
from ml_assets_tests.conftest import DEMO_START

DAYS = 30
LAST_DAY = DEMO_START + dt.timedelta(days=DAYS - 1)
SPEC = load_spec(DEMO_PIPELINE_SPEC)
KEYS = model_keys(SPEC)


def _settings(home: Path, **env: str) -> Settings:
    return load_settings({"ML_ASSETS_HOME": str(home), **env})


def _range(first: dt.date, last: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """Landing files, raw tables and feature tables for DAYS days (ingested once)."""
    home = tmp_path_factory.mktemp("demo_home")
    settings = _settings(home)
    write_demo_data(
        settings.landing_root / "fraud", start=DEMO_START, days=DAYS, rows_per_day=600, seed=11
    )
    defs = build_definitions(settings)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=build_resources(settings),
        selection=dg.AssetSelection.groups("raw", "features"),
        tags=_range(DEMO_START, LAST_DAY),
    )
    assert result.success
    return home


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its schema created once: the migrations take seconds."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@dataclass
class Deployment:
    settings: Settings
    defs: dg.Definitions

    @property
    def resources(self) -> dict[str, Any]:
        return build_resources(self.settings)

    def materialize(self, selection, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            list(self.defs.assets) + list(self.defs.asset_checks or []),
            resources=self.resources,
            selection=selection,
            raise_on_error=False,
            **kwargs,
        )

    def train(self, params: dict | None = None, **config: Any) -> dg.ExecuteInProcessResult:
        """Candidate → validation report (+ gates) → champion, as the train job does."""
        run_config = {"ops": {}}
        if params is not None or config:
            op = "fraud__models__fraud_detector_candidate"
            run_config["ops"][op] = {"config": {"params": params or {}, **config}}
        return self.materialize([KEYS.candidate, KEYS.report, KEYS.champion], run_config=run_config)

    def score(self, day: dt.date) -> dg.ExecuteInProcessResult:
        return self.materialize([KEYS.predictions], partition_key=day.isoformat())


@pytest.fixture
def deployment(demo_home: Path, empty_mlflow_store: Path, tmp_path: Path) -> Deployment:
    """A fresh deployment (own MLflow store, own Dagster run storage) over a copy of the lake."""
    home = tmp_path / "home"
    shutil.copytree(demo_home / "lake", home / "lake")
    (home / "mlflow").mkdir()
    shutil.copyfile(empty_mlflow_store, home / "mlflow" / "mlflow.db")
    settings = _settings(home)
    return Deployment(settings, build_definitions(settings))
