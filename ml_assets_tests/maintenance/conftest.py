"""A lake with a table that daily overwrites and small appends have fragmented, and an MLflow
registry (real sqlite store)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from deltalake import write_deltalake
from mlflow.tracking import MlflowClient

from ml_assets.storage import delta

DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
OVERWRITES = 10
APPENDS = 10


def _rows(round_: int, rows_per_day: int = 50) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_date": [d for d in DAYS for _ in range(rows_per_day)],
            "value": [float(round_ * 1000 + i) for i in range(rows_per_day * len(DAYS))],
            "round": [round_] * (rows_per_day * len(DAYS)),
        },
        schema={"event_date": pl.Date, "value": pl.Float64, "round": pl.Int64},
    )


def build_fragmented_table(uri: str, overwrites: int = OVERWRITES, appends: int = APPENDS) -> None:
    """20 rewrites of 3 partitions: 10 predicate overwrites of all three days (each leaves the
    previous files tombstoned), then 10 small appends (each adds a file per day)."""
    for round_ in range(overwrites):
        delta.write_partitions(uri, _rows(round_), partitions=DAYS)
    for round_ in range(overwrites, overwrites + appends):
        write_deltalake(uri, _rows(round_, 5).to_arrow(), mode="append")


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its schema created once: the migrations take seconds."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def registry_uri(empty_registry: Path, tmp_path: Path) -> str:
    path = tmp_path / "mlflow.db"
    shutil.copyfile(empty_registry, path)
    return f"sqlite:///{path}"
