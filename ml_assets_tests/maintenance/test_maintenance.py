"""Delta maintenance on a real fragmented table, with a real MLflow registry."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable
from mlflow.entities.model_registry.model_version_search import ModelVersionSearch
from mlflow.store.entities import PagedList
from mlflow.tracking import MlflowClient

from ml_assets.maintenance import MAINTENANCE_JOB, build_maintenance_job
from ml_assets.maintenance.tables import (
    Lineage,
    find_tables,
    footprint,
    maintain_table,
    protected_versions,
)
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking
from ml_assets_tests.maintenance.conftest import APPENDS, DAYS, OVERWRITES, build_fragmented_table


def _read(uri: str, version: int | None = None) -> pl.DataFrame:
    table = DeltaTable(uri, version=version)
    return pl.from_arrow(table.to_pyarrow_table()).sort("event_date", "round", "value")


def _run(lake_root: Path, registry_uri: str, **config) -> dg.ExecuteInProcessResult:
    job = build_maintenance_job()
    with dg.instance_for_test() as instance:
        return job.execute_in_process(
            run_config={"ops": {"maintain_delta_tables": {"config": config}}},
            resources={
                "lake": DeltaLake(root=str(lake_root)),
                "mlflow_tracking": MlflowTracking(tracking_uri=registry_uri),
            },
            instance=instance,
            raise_on_error=False,
        )


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    [output] = [
        e for e in result.all_node_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT
    ]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


def _register(registry_uri: str, uri: str, version: int, artifacts: Path) -> None:
    """A model version in the real registry, tagged as training.py tags it."""
    artifacts.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    client.create_registered_model("fraud_detector")
    client.create_model_version(
        "fraud_detector",
        source=artifacts.as_uri(),
        tags={"features_uri": uri, "features_delta_version": str(version)},
    )


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    build_fragmented_table(str(root / "fraud" / "features" / "transaction_features"))
    # A second table, untouched by any model, one level deeper: the walk finds both.
    build_fragmented_table(str(root / "fraud" / "audit" / "model_promotions"), 2, 2)
    return root


def test_finds_every_table(lake: Path) -> None:
    assert [p.relative_to(lake).as_posix() for p in find_tables(str(lake))] == [
        "fraud/audit/model_promotions",
        "fraud/features/transaction_features",
    ]


def test_compacts_and_vacuums_with_zero_retention(lake: Path, registry_uri: str) -> None:
    uri = str(lake / "fraud" / "features" / "transaction_features")
    data = _read(uri)
    before = footprint(Path(uri))
    assert before.active_files == len(DAYS) * (1 + APPENDS)
    assert before.disk_files == len(DAYS) * (OVERWRITES + APPENDS)

    result = _run(lake, registry_uri, retention_hours=0)
    assert result.success

    after = footprint(Path(uri))
    assert after.active_files == len(DAYS)  # one file per day
    assert after.disk_files == len(DAYS)  # everything else vacuumed
    assert after.disk_bytes < before.disk_bytes
    assert _read(uri).equals(data)  # same rows
    with pytest.raises(FileNotFoundError):  # an old version's files are gone
        _read(uri, version=1)

    meta = _metadata(result)
    assert meta["tables"] == 2
    assert meta["disk_files_before"] == before.disk_files + 4 * len(DAYS)
    assert meta["disk_files_after"] == 2 * len(DAYS)
    assert "| fraud/features/transaction_features | 33 → 3 | 60 → 3 |" in meta["report"]
    assert meta["protected"] == {}


def test_a_registered_model_version_stays_readable(
    lake: Path, registry_uri: str, tmp_path: Path
) -> None:
    uri = str(lake / "fraud" / "features" / "transaction_features")
    trained_on = 3  # an old overwrite: every one of its files is tombstoned by now
    expected = _read(uri, version=trained_on)
    _register(registry_uri, uri, trained_on, tmp_path / "model")

    result = _run(lake, registry_uri, retention_hours=0)
    assert result.success

    assert _read(uri, version=trained_on).equals(expected)
    with pytest.raises(FileNotFoundError):  # unprotected old versions are still vacuumed
        _read(uri, version=trained_on - 1)
    assert footprint(Path(uri)).active_files == len(DAYS)
    meta = _metadata(result)
    assert meta["protected"] == {
        uri: [{"table_version": trained_on, "model": "fraud_detector", "model_version": "1"}]
    }
    assert "v3 (model fraud_detector v1)" in meta["report"]


def test_vacuum_counts_only_the_files_it_deleted(lake: Path) -> None:
    """delta-rs lists the files of old tombstones on every vacuum, also those deleted long ago:
    the report counts what was on disk, so a second run has nothing left to vacuum."""
    uri = lake / "fraud" / "features" / "transaction_features"
    before = footprint(uri)

    def maintain(dry_run: bool):
        return maintain_table(uri, retention_hours=0, target_size=1 << 20, dry_run=dry_run)

    would = maintain(dry_run=True)
    first = maintain(dry_run=False)
    assert would.vacuumed_files == before.disk_files - before.active_files
    assert first.vacuumed_files == (
        before.disk_files + first.compacted_files_added - first.after.disk_files
    )
    assert first.vacuumed_files > would.vacuumed_files  # the compacted files went too
    again = maintain(dry_run=False)
    assert again.vacuumed_files == 0
    assert again.after.disk_files == first.after.disk_files


def test_dry_run_changes_nothing(lake: Path, registry_uri: str) -> None:
    uri = str(lake / "fraud" / "features" / "transaction_features")
    before = footprint(Path(uri))
    result = _run(lake, registry_uri, retention_hours=0, dry_run=True)
    assert result.success
    assert footprint(Path(uri)) == before
    assert "dry run" in _metadata(result)["report"]


def test_default_retention_keeps_recent_versions(lake: Path, registry_uri: str) -> None:
    uri = str(lake / "fraud" / "features" / "transaction_features")
    expected = _read(uri, version=1)
    result = _run(lake, registry_uri)  # 168 h: every version here is minutes old
    assert result.success
    assert _read(uri, version=1).equals(expected)
    assert footprint(Path(uri)).active_files == len(DAYS)  # compacted all the same


def test_job_name_and_config_defaults() -> None:
    job = build_maintenance_job()
    assert job.name == MAINTENANCE_JOB
    config = job.get_config_schema_snapshot()  # resolves the typed config
    assert config is not None


def test_the_report_lists_protected_versions_in_table_version_order(lake: Path) -> None:
    uri = lake / "fraud" / "features" / "transaction_features"
    registered = [Lineage("m", "7", 5), Lineage("m", "1", 0), Lineage("m", "3", 3)]
    report = maintain_table(
        uri, retention_hours=0, target_size=1 << 20, dry_run=True, protected=registered
    )
    assert report.protected_note == "v0 (model m v1); v3 (model m v3); v5 (model m v7)"


class UnityCatalogLikeClient(MlflowClient):
    """The real (sqlite) registry, answering version searches the way MLflow's Unity Catalog
    store does: only by model name (or run), with results of MLflow's own class for them,
    ModelVersionSearch, whose `tags` is a method that raises."""

    def search_model_versions(self, filter_string=None, **kwargs):
        if not filter_string or not filter_string.startswith(("name", "run_id")):
            raise ValueError(f"Unity Catalog needs a name or run_id filter, got {filter_string!r}")
        page = super().search_model_versions(filter_string=filter_string, **kwargs)
        return PagedList(
            [
                ModelVersionSearch(mv.name, mv.version, mv.creation_timestamp, source=mv.source)
                for mv in page
            ],
            page.token,
        )


def test_versions_are_protected_with_a_unity_catalog_registry(
    lake: Path, registry_uri: str, tmp_path: Path
) -> None:
    uri = str(lake / "fraud" / "features" / "transaction_features")
    _register(registry_uri, uri, 3, tmp_path / "model")

    lineage = protected_versions(
        UnityCatalogLikeClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    )

    assert lineage == {str(Path(uri).resolve()): [Lineage("fraud_detector", "1", 3)]}


def test_a_lake_root_that_does_not_exist_fails_outside_local(tmp_path: Path, registry_uri: str):
    """E.g. a Unity Catalog volume not mounted on the orchestrator: reporting zero tables as a
    success every night would hide that nothing is maintained."""
    missing = tmp_path / "Volumes" / "ml" / "prod" / "lake"
    job = build_maintenance_job(require_lake=True)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            resources={
                "lake": DeltaLake(root=str(missing)),
                "mlflow_tracking": MlflowTracking(tracking_uri=registry_uri),
            },
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert f"lake root {missing} does not exist on this machine" in str(
        failure.step_failure_data.user_failure_data.description
    )
    # Locally, a lake nothing was written to yet is simply empty.
    assert _run(missing, registry_uri).success
