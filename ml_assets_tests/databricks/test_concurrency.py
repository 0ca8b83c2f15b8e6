"""Concurrency against cluster limits: Databricks-bound runs carry the tag dagster.yaml limits.

The run queue limits *run* tags; asset and op tags never reach a run. So in dev/prod every job
that materializes a launcher-bound asset carries `ml_assets/databricks: "true"` as a run tag,
dagster.yaml caps such runs, and the launcher-bound (Spark) assets backfill in a single run.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.databricks.config import DATABRICKS_RUN_TAG
from ml_assets.definitions import build_definitions, launcher_bound_assets
from ml_assets.settings import load_settings, project_root
from ml_assets_tests.databricks.standin import DatabricksStandIn

RAW_AND_FEATURES = {
    dg.AssetKey(["fraud", "raw", "transactions"]),
    dg.AssetKey(["fraud", "raw", "customers"]),
    dg.AssetKey(["fraud", "features", "transaction_features"]),
}


@pytest.fixture
def dev_defs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.Definitions]:
    """The dev deployment's definitions, pointed at the stand-in (nothing is run)."""
    with DatabricksStandIn() as dbx:
        env = {
            "ML_ASSETS_DEPLOYMENT": "dev",
            "ML_ASSETS_HOME": str(tmp_path / "home"),
            "ML_ASSETS_LAKE_ROOT": str(tmp_path / "lake"),
            "ML_ASSETS_LANDING_ROOT": str(tmp_path / "landing"),
            "DATABRICKS_HOST": dbx.url,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # asset definitions read the deployment too
        yield build_definitions(load_settings(env))


def _jobs(defs: dg.Definitions) -> list[dg.JobDefinition]:
    return [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]


def test_jobs_that_run_steps_on_databricks_carry_the_limited_run_tag(dev_defs) -> None:
    bound = launcher_bound_assets(dev_defs)
    assert bound >= RAW_AND_FEATURES
    tagged = set()
    for job in _jobs(dev_defs):
        keys = set(job.asset_layer.executable_asset_keys) if job.asset_layer else set()
        if keys & bound:
            assert job.run_tags.get(DATABRICKS_RUN_TAG) == "true", job.name
            tagged.add(job.name)
        else:
            assert DATABRICKS_RUN_TAG not in job.run_tags, job.name
    assert "fraud_ingest" in tagged
    # the pipeline's own tag is kept
    assert dev_defs.resolve_job_def("fraud_ingest").run_tags["ml_assets/pipeline"] == "fraud"


def test_local_runs_are_not_limited_by_the_cluster_quota(tmp_path: Path) -> None:
    defs = build_definitions(load_settings({"ML_ASSETS_HOME": str(tmp_path)}))
    assert all(DATABRICKS_RUN_TAG not in job.run_tags for job in _jobs(defs))


def test_databricks_bound_assets_backfill_in_a_single_run(dev_defs) -> None:
    for key in launcher_bound_assets(dev_defs):
        policy = dev_defs.resolve_assets_def(key).backfill_policy
        assert policy == dg.BackfillPolicy.single_run(), key.to_user_string()


def test_dagster_yaml_limits_concurrent_databricks_runs(tmp_path: Path) -> None:
    shutil.copyfile(project_root() / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        # what the run queue daemon reads
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    (limit,) = [rule for rule in limits if rule["key"] == DATABRICKS_RUN_TAG]
    assert limit["value"] == "true"
    assert isinstance(limit["limit"], int) and limit["limit"] >= 1


def test_landing_sensor_runs_carry_the_limited_run_tag(dev_defs, tmp_path: Path) -> None:
    """The landing sensor's runs are runs of the ingest job, tagged like the job."""
    from ml_assets.demo.generate import write_demo_data

    write_demo_data(tmp_path / "landing" / "fraud", start=dt.date(2026, 1, 1), days=2,
                    rows_per_day=50, seed=1)  # fmt: skip
    time.sleep(5.5)  # the demo spec's min_file_age_seconds: younger files may still be written
    sensor = dev_defs.resolve_sensor_def("fraud_landing")
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, definitions=dev_defs))
    assert result.run_requests
    job = dev_defs.resolve_job_def(sensor.job_name)
    for request in result.run_requests:
        # The tags of the run the daemon creates: the job's run tags, then the request's.
        tags = {**job.run_tags, **request.tags}
        assert tags[DATABRICKS_RUN_TAG] == "true"
        assert tags["ml_assets/pipeline"] == "fraud"
