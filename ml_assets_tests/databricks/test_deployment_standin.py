"""The dev deployment end to end: raw + feature assets through the Databricks step launcher.

The deployment is pointed at the Databricks stand-in (DATABRICKS_HOST/DATABRICKS_TOKEN); the
demo pipeline's ingest job is reconstructed from `ml_assets.definitions` (what `dagster dev`
does), its raw and feature steps run in the stand-in's cluster process from the uploaded,
staged package, the features on the cluster's Spark, and the Delta tables (in a folder both
sides see) are compared with the local Polars result of the same partition.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import polars.testing
import pytest

from ml_assets.databricks.config import DATABRICKS_RUN_TAG
from ml_assets_tests.databricks.conftest import (
    CUSTOMERS,
    DEPLOYMENT_MARKS,
    FEATURES,
    TRANSACTIONS,
    DevDeployment,
    materialize_locally,
    partition_range,
    read_table,
)

pytestmark = DEPLOYMENT_MARKS

RANGE_TAGS = partition_range("2026-01-01", "2026-01-08")  # one single-run range: one step each
TABLES = [k.to_user_string() for k in (TRANSACTIONS, CUSTOMERS, FEATURES)]


def _comparable(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop("_ingested_at", "_source_file", strict=False)
    return frame.select(sorted(frame.columns)).sort(sorted(frame.columns))


def test_dev_deployment_runs_raw_and_features_on_the_cluster_like_local_polars(
    dev: DevDeployment, shared: Path
) -> None:
    outcome = dev.run(RANGE_TAGS)
    assert outcome.success, outcome.failure_text()

    # three steps, three Databricks runs, each from the staged package and the etl profile
    assert len(outcome.databricks_runs) == 3
    assert all(r.result_state == "SUCCESS" for r in outcome.databricks_runs)
    submits = [r.body for r in dev.dbx.requests_to("jobs/runs/submit")]
    submit = submits[0]["tasks"][0]
    assert submit["new_cluster"]["autoscale"] == {"min_workers": 1, "max_workers": 2}
    assert submit["new_cluster"]["custom_tags"]["ml_assets_profile"] == "etl"
    # each cluster and Databricks run names the Dagster run and step it ran (billing, Jobs UI)
    steps = {e.step_key for e in outcome.result.all_events if e.is_step_success}
    assert len(steps) == 3
    tags = [body["tasks"][0]["new_cluster"]["custom_tags"] for body in submits]
    assert {t["dagster_run_id"] for t in tags} == {outcome.run.run_id}
    assert {t["dagster_step"] for t in tags} == steps
    assert {body["run_name"] for body in submits} == {f"ml_assets etl: {s}" for s in steps}
    packages = {lib["pypi"]["package"].split("==")[0] for lib in submit["libraries"]}
    assert {"polars", "deltalake", "narwhals"} <= packages
    assert not list((shared / "code").iterdir()), "staged code is removed after the launch"

    meta = outcome.materializations()
    features = meta[FEATURES.to_user_string()]
    assert features["engine"] == "spark" and "engine set to spark" in features["engine_reason"]
    assert features["compute_profile"] == "etl"
    assert features["estimated_cost_usd"] > 0 and features["compute_seconds"] > 0
    assert meta[TRANSACTIONS.to_user_string()]["engine"] == "polars"
    # The cluster's whole run, start-up included, observed once the run ended: at least the
    # step's own duration, at the same price per hour.
    runs = {r.run_id: r for r in outcome.databricks_runs}
    for table in TABLES:
        [cluster] = [o for o in outcome.observations()[table] if "cluster_cost_usd" in o]
        run = runs[cluster["databricks_run_id"]]
        assert cluster["cluster_seconds"] == pytest.approx(run.end_time - run.submit_time, abs=0.01)
        assert cluster["cluster_seconds"] >= meta[table]["compute_seconds"]
        assert cluster["cluster_cost_usd"] >= meta[table]["estimated_cost_usd"]
        hourly = cluster["cluster_cost_basis"].split(" USD/h")[0]
        assert f"{hourly} USD/h" in meta[table]["cost_basis"]  # the profile's price
        assert cluster["cluster_cost_usd"] == pytest.approx(
            float(hourly) * cluster["cluster_seconds"] / 3600, abs=1e-5
        )
        assert cluster["databricks_run_url"].startswith(dev.dbx.url)

    # the run counts against dagster.yaml's limit of concurrent Databricks runs
    assert outcome.run.tags[DATABRICKS_RUN_TAG] == "true"
    # the token never reaches the event log, the metadata or the run's tags
    outcome.assert_token_absent(dev.dbx.token)

    remote = {t: read_table(str(dev.lake / t)) for t in TABLES}
    local_root = materialize_locally(shared, RANGE_TAGS)
    local = {t: read_table(f"{local_root}/{t}") for t in TABLES}
    for table in TABLES:
        assert remote[table].height > 0, table
        pl.testing.assert_frame_equal(
            _comparable(remote[table]), _comparable(local[table]), check_column_order=False
        )
