"""The dev deployment end to end: raw + feature assets through the Databricks step launcher.

The deployment is pointed at the Databricks stand-in (DATABRICKS_HOST/DATABRICKS_TOKEN); the
demo pipeline's ingest job is reconstructed from `ml_assets.definitions` (what `dagster dev`
does), its raw and feature steps run in the stand-in's cluster process from the uploaded,
staged package, the features on the cluster's Spark, and the Delta tables (in a folder both
sides see) are compared with the local Polars result of the same partition.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import polars.testing
import pytest
from dagster._core.events import DagsterEventType
from dagster._serdes import serialize_value

from ml_assets.definitions import build_definitions
from ml_assets.demo.generate import write_demo_data
from ml_assets.settings import load_settings
from ml_assets.storage import delta
from ml_assets_tests.databricks.standin import PROJECT_ROOT, DatabricksStandIn

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="the stand-in cluster needs Java"),
    pytest.mark.filterwarnings("ignore::dagster.SupersessionWarning"),
]

START = dt.date(2026, 1, 1)
FIRST, LAST = "2026-01-01", "2026-01-08"  # one single-run range: one step per asset
RANGE_TAGS = {
    "dagster/asset_partition_range_start": FIRST,
    "dagster/asset_partition_range_end": LAST,
}
TABLES = ["fraud/raw/transactions", "fraud/raw/customers", "fraud/features/transaction_features"]

COMPUTE_YAML = """
launcher:
  spark_version: "15.4.x-scala2.12"
  staging_prefix: /dagster_staging
  poll_interval_sec: 0.5
  max_completion_wait_time_seconds: {wait}
  timeout_seconds: 0
  internal_error_retries: 2
profiles:
  etl: {{node_type_id: i3.xlarge, autoscale: {{min_workers: 1, max_workers: 2}}, spot: true}}
  single_node: {{node_type_id: i3.xlarge, num_workers: 0}}
assets:
  defaults: {{raw: etl, features: etl, models: single_node}}
prices:
  dbu_price: 0.5
  node_types: {{i3.xlarge: {{dbu_per_hour: 1.0, vm_price_per_hour: 0.3}}}}
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """Landing, lake and code staging: outside pytest's tmp (the launcher's zip drops paths
    matching .*pytest.*), visible to the orchestrator and the stand-in cluster alike."""
    root = Path(tempfile.mkdtemp(prefix="ml-assets-dbx-"))
    write_demo_data(root / "landing" / "fraud", start=START, days=8, rows_per_day=200, seed=5)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dbx(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabricksStandIn]:
    orchestrator_cwd = shared / "orchestrator"
    orchestrator_cwd.mkdir()
    monkeypatch.chdir(orchestrator_cwd)
    with DatabricksStandIn(host_only_paths=[str(orchestrator_cwd), str(PROJECT_ROOT)]) as standin:
        standin.secrets = {"ml_assets": {"databricks-token": standin.token}}
        yield standin


def deploy(monkeypatch, shared: Path, dbx: DatabricksStandIn, *, wait: int = 600) -> None:
    config = shared / "compute.yaml"
    config.write_text(COMPUTE_YAML.format(wait=wait))
    for name, value in {
        "ML_ASSETS_DEPLOYMENT": "dev",
        "ML_ASSETS_HOME": str(shared / "home"),
        "ML_ASSETS_LAKE_ROOT": str(shared / "lake"),
        "ML_ASSETS_LANDING_ROOT": str(shared / "landing"),
        "ML_ASSETS_COMPUTE_CONFIG": str(config),
        "ML_ASSETS_DATABRICKS_CODE_DIR": str(shared / "code"),
        "ML_ASSETS_ENGINE": "spark",
        "DATABRICKS_HOST": dbx.url,
        "DATABRICKS_TOKEN": dbx.token,
    }.items():
        monkeypatch.setenv(name, value)


def run_ingest(instance: dg.DagsterInstance) -> dg.ExecuteJobResult:
    job = dg.build_reconstructable_job(
        "ml_assets.definitions",
        "job_for",
        reconstructable_kwargs={"name": "fraud_ingest", "with_checks": False},
    )
    return dg.execute_job(job, instance=instance, tags=RANGE_TAGS, raise_on_error=False)


def local_polars_tables(shared: Path, monkeypatch) -> dict[str, pl.DataFrame]:
    for name in ("ML_ASSETS_DEPLOYMENT", "ML_ASSETS_ENGINE", "ML_ASSETS_COMPUTE_CONFIG"):
        monkeypatch.delenv(name)
    settings = load_settings(
        {
            "ML_ASSETS_HOME": str(shared / "local_home"),
            "ML_ASSETS_LANDING_ROOT": str(shared / "landing"),
        }
    )
    defs = build_definitions(settings)
    keys = defs.resolve_job_def("fraud_ingest").asset_layer.executable_asset_keys
    result = dg.materialize(
        [defs.resolve_assets_def(k) for k in keys],
        selection=dg.AssetSelection.assets(*keys).without_checks(),
        tags=RANGE_TAGS,
    )
    assert result.success
    return {t: delta.scan(f"{settings.lake_root}/{t}").collect() for t in TABLES}


def failure_text(events: list[Any]) -> str:
    return "\n".join(
        e.dagster_event.step_failure_data.error.to_string()
        for e in events
        if e.dagster_event is not None
        and e.dagster_event.event_type == DagsterEventType.STEP_FAILURE
    )


def materializations(events: list[Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for e in events:
        if e.dagster_event is not None and e.dagster_event.is_step_materialization:
            m = e.dagster_event.step_materialization_data.materialization
            out[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()}
    return out


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop("_ingested_at", "_source_file", strict=False)
    return frame.select(sorted(frame.columns)).sort(sorted(frame.columns))


def test_dev_deployment_runs_raw_and_features_on_the_cluster_like_local_polars(
    shared: Path, dbx: DatabricksStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(monkeypatch, shared, dbx)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_ingest(instance)
        events = list(instance.all_logs(result.run_id))
    assert result.success, failure_text(events)

    # three steps, three Databricks runs, each from the staged package and the etl profile
    assert dbx.submissions == 3
    assert all(r.result_state == "SUCCESS" for r in dbx.runs.values())
    submit = dbx.requests_to("jobs/runs/submit")[0].body["tasks"][0]
    assert submit["new_cluster"]["autoscale"] == {"min_workers": 1, "max_workers": 2}
    assert submit["new_cluster"]["custom_tags"]["ml_assets_profile"] == "etl"
    packages = {lib["pypi"]["package"].split("==")[0] for lib in submit["libraries"]}
    assert {"polars", "deltalake", "narwhals"} <= packages
    assert not list((shared / "code").iterdir()), "staged code is removed after the launch"

    meta = materializations(events)
    features = meta["fraud/features/transaction_features"]
    assert features["engine"] == "spark" and "engine set to spark" in features["engine_reason"]
    assert features["compute_profile"] == "etl"
    assert features["estimated_cost_usd"] > 0 and features["compute_seconds"] > 0
    assert meta["fraud/raw/transactions"]["engine"] == "polars"

    # the token never reaches the event log or the metadata
    for entry in events:
        assert dbx.token not in serialize_value(entry)

    remote = {t: delta.scan(str(shared / "lake" / t)).collect() for t in TABLES}
    local = local_polars_tables(shared, monkeypatch)
    for table in TABLES:
        assert remote[table].height > 0, table
        pl.testing.assert_frame_equal(
            _comparable(remote[table]), _comparable(local[table]), check_column_order=False
        )
