"""The schedules: they exist, target the right jobs, and a tick asks for the right partition."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.maintenance import (
    MAINTENANCE_JOB,
    build_maintenance_job,
    build_maintenance_schedule,
    build_pipeline_schedules,
)
from ml_assets.pipeline.keys import feature_key, model_keys
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings

SPEC = load_spec(DEMO_PIPELINE_SPEC)
FEATURES = feature_key(SPEC, "transaction_features")
PREDICTIONS = model_keys(SPEC).predictions


@pytest.fixture(scope="module")
def defs(tmp_path_factory) -> dg.Definitions:
    """The project's definitions with the schedules: wired by definitions.py and factory.py
    once the wiring is applied, added here as that wiring does otherwise."""
    home: Path = tmp_path_factory.mktemp("home")
    base = build_definitions(load_settings({"ML_ASSETS_HOME": str(home)}))
    if any(s.name == "fraud_score_daily" for s in base.schedules or []):
        return base
    jobs = {job.name: job for job in base.jobs or []}
    maintenance = build_maintenance_job()
    return dg.Definitions.merge(
        base,
        dg.Definitions(
            jobs=[maintenance],
            schedules=[
                *build_pipeline_schedules(
                    SPEC, score_job=jobs["fraud_score"], train_job=jobs["fraud_train"]
                ),
                build_maintenance_schedule(maintenance),
            ],
        ),
    )


def test_schedules_target_the_right_jobs(defs: dg.Definitions) -> None:
    repo = defs.get_repository_def()
    found = {
        s.name: (s.job_name, s.cron_schedule, s.execution_timezone, s.default_status)
        for s in repo.schedule_defs
    }
    running, stopped = dg.DefaultScheduleStatus.RUNNING, dg.DefaultScheduleStatus.STOPPED
    assert found == {
        "fraud_score_daily": ("fraud_score", "0 2 * * *", "UTC", running),
        "fraud_train_weekly": ("fraud_train", "0 4 * * 0", "UTC", stopped),
        f"{MAINTENANCE_JOB}_nightly": (MAINTENANCE_JOB, "30 3 * * *", "UTC", running),
    }
    # The targets resolve: the score job is partitioned daily like the predictions.
    score = repo.get_job("fraud_score")
    assert score.partitions_def is not None
    assert repo.get_job(MAINTENANCE_JOB).name == MAINTENANCE_JOB


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, at: dt.datetime):
    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("fraud_score_daily")
    # With the repository, as in the daemon: it checks the partition key against the job's.
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=repo
    )
    return schedule.evaluate_tick(context)


def _materialize(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=day))


def test_score_sweep_asks_for_yesterday_once(defs: dg.Definitions) -> None:
    at = dt.datetime(2026, 1, 16, 2, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        # No features for the 15th yet: skip, saying so.
        data = _tick(defs, instance, at)
        assert not data.run_requests
        assert "no fraud/features/transaction_features partition for 2026-01-15" in (
            data.skip_message or ""
        )

        _materialize(instance, FEATURES, "2026-01-15")
        [request] = _tick(defs, instance, at).run_requests
        assert request.partition_key == "2026-01-15"
        assert request.job_name in (None, "fraud_score")

        # Scored after the features were written: nothing to do.
        _materialize(instance, PREDICTIONS, "2026-01-15")
        data = _tick(defs, instance, at)
        assert not data.run_requests
        assert "already scored" in (data.skip_message or "")

        # Features rewritten after scoring (a late file): score again.
        _materialize(instance, FEATURES, "2026-01-15")
        [request] = _tick(defs, instance, at).run_requests
        assert request.partition_key == "2026-01-15"


def test_score_sweep_before_the_pipeline_starts(defs: dg.Definitions) -> None:
    at = dt.datetime.combine(SPEC.start_date, dt.time(2), tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        data = _tick(defs, instance, at)
        assert not data.run_requests
        assert "before the pipeline starts" in (data.skip_message or "")


def test_maintenance_schedule_runs_the_job_with_its_defaults(defs: dg.Definitions) -> None:
    schedule = defs.get_repository_def().get_schedule_def(f"{MAINTENANCE_JOB}_nightly")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2026, 1, 16, 3, 30)
        )
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.run_config == {}  # retention 168 h, 128 MB files, not a dry run
