"""Freshness-driven retraining, evaluated tick by tick without waiting for real time."""

import time

import dagster as dg
import pytest
import yaml

from ml_assets.definitions import build_definitions
from ml_assets.pipeline.keys import model_keys
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings
from ml_assets_tests.automation.freshness_state import FAIL, PASS, WARN, report_freshness
from ml_assets_tests.automation.ticks import Ticks

KEYS = model_keys(load_spec(DEMO_PIPELINE_SPEC))
FEATURES = dg.AssetKey(["fraud", "features", "transaction_features"])


@pytest.fixture
def ticks(settings) -> Ticks:
    instance = dg.DagsterInstance.ephemeral()
    # A trained model on materialized features: the starting point of every scenario.
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-05"))
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    return Ticks(build_definitions(settings), instance, KEYS.candidate)


def test_a_fresh_model_is_left_alone(ticks):
    report_freshness(ticks.instance, KEYS.candidate, PASS)
    assert ticks() == set()
    assert ticks() == set()


def test_a_stale_model_gets_exactly_one_retrain(ticks):
    report_freshness(ticks.instance, KEYS.candidate, PASS)
    assert ticks() == set()
    report_freshness(ticks.instance, KEYS.candidate, FAIL, previous=PASS)
    assert ticks() == {KEYS.candidate}
    # Still stale on the next ticks while the retrain runs: no duplicate request.
    assert ticks() == set()
    assert ticks() == set()


def test_a_model_already_stale_when_the_daemon_starts_is_retrained_once(ticks):
    report_freshness(ticks.instance, KEYS.candidate, FAIL)
    assert ticks() == {KEYS.candidate}
    assert ticks() == set()


def test_warning_starts_the_retrain_and_failing_later_does_not_start_another(ticks):
    report_freshness(ticks.instance, KEYS.candidate, PASS)
    ticks()
    report_freshness(ticks.instance, KEYS.candidate, WARN, previous=PASS)
    assert ticks() == {KEYS.candidate}
    report_freshness(ticks.instance, KEYS.candidate, FAIL, previous=WARN)
    assert ticks() == set()


def test_each_new_staleness_event_retrains_once_more(ticks):
    report_freshness(ticks.instance, KEYS.candidate, PASS)
    assert ticks() == set()
    report_freshness(ticks.instance, KEYS.candidate, FAIL, previous=PASS)
    assert ticks() == {KEYS.candidate}
    # The retrain lands and the daemon marks the model fresh again...
    ticks.instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    report_freshness(ticks.instance, KEYS.candidate, PASS, previous=FAIL)
    assert ticks() == set()
    # ...until it goes stale again: one more retrain.
    report_freshness(ticks.instance, KEYS.candidate, FAIL, previous=PASS)
    assert ticks() == {KEYS.candidate}
    assert ticks() == set()


def test_the_model_carries_the_spec_freshness_policy(settings):
    node = build_definitions(settings).resolve_asset_graph().get(KEYS.candidate)
    policy = node.freshness_policy
    assert policy.fail_window.to_timedelta().total_seconds() == 168 * 3600
    assert policy.warn_window.to_timedelta().total_seconds() == pytest.approx(0.8 * 168 * 3600)


def _retrain_tick(settings, instance) -> dg.SensorResult:
    sensor = next(
        s for s in build_definitions(settings).sensors if s.name == "fraud_fraud_detector_retrain"
    )
    return sensor(dg.build_sensor_context(instance=instance))


def test_enough_new_feature_partitions_start_a_retrain(settings):
    instance = dg.DagsterInstance.ephemeral()
    assert _retrain_tick(settings, instance).skip_reason.skip_message.endswith(
        "has never been trained"
    )
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    for day in range(1, 7):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(FEATURES, partition=f"2026-01-{day:02d}")
        )
    # A day rewritten twice counts once.
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-06"))
    assert _retrain_tick(settings, instance).skip_reason.skip_message.startswith("6 of 7 new")

    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-07"))
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "7 new feature partitions"

    # Once retrained, the count starts again.
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    assert _retrain_tick(settings, instance).skip_reason.skip_message.startswith("0 of 7")


def test_feature_days_that_failed_a_blocking_check_do_not_count(settings):
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    for day in range(1, 8):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(FEATURES, partition=f"2026-01-{day:02d}")
        )

    def verdict(day: str, passed: bool, check: str = "not_empty") -> None:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=FEATURES, check_name=check, passed=passed, partition=day
            )
        )

    # An empty day (a late file whose rows were all outside the data) fails `not_empty`.
    verdict("2026-01-07", False)
    assert _retrain_tick(settings, instance).skip_reason.skip_message.startswith("6 of 7 new")
    # A failed `warn` check blocks nothing, so its day still counts.
    verdict("2026-01-06", False, check="row_count")
    assert _retrain_tick(settings, instance).skip_reason.skip_message.startswith("6 of 7 new")
    # A passing verdict does not exclude its day.
    verdict("2026-01-05", True)
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-08"))
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "7 new feature partitions"


def test_a_day_fixed_after_failing_a_blocking_check_counts_again(settings):
    """The latest verdict decides. Two real runs of day 7, each with its own `not_empty`
    verdict (runless verdicts for one day would collide in the instance's unique index)."""
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    for day in range(1, 7):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(FEATURES, partition=f"2026-01-{day:02d}")
        )

    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    landed = {"rows": 0}

    # What the feature run records: a materialization, then the partitioned quality check's
    # verdict on it (the pipeline's own checks are partitioned asset checks like this one).
    @dg.asset(key=FEATURES, partitions_def=daily)
    def features() -> None:
        pass

    @dg.asset_check(asset=FEATURES, name="not_empty", blocking=True, partitions_def=daily)
    def not_empty() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=landed["rows"] > 0)

    def run_day_7(rows: int) -> bool:
        landed["rows"] = rows
        return dg.materialize(
            [features, not_empty],
            instance=instance,
            partition_key="2026-01-07",
            raise_on_error=False,  # a failed blocking check fails the run
        ).success

    assert not run_day_7(rows=0)
    assert _retrain_tick(settings, instance).skip_reason.skip_message.startswith("6 of 7 new")
    assert run_day_7(rows=1000)  # the corrected file
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "7 new feature partitions"


DRIFT = dg.AssetKey(["fraud", "monitoring", "fraud_detector_drift"])


def _drift_verdict(instance: dg.DagsterInstance, day: str, passed: bool) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=DRIFT, check_name="no_feature_drift", passed=passed, partition=day
        )
    )


def test_a_failed_drift_check_after_the_last_training_starts_a_retrain(settings):
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    assert not _retrain_tick(settings, instance).run_requests
    # The drifted day is a new one, written after the training.
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-28"))
    _drift_verdict(instance, "2026-01-28", passed=False)
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "drift check failed"

    # Retrained since: the old failure starts nothing more.
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    assert not _retrain_tick(settings, instance).run_requests


def test_a_drifted_day_still_retrains_when_a_later_day_passed(settings):
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    for day, passed in (("2026-01-28", False), ("2026-01-29", True)):
        instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition=day))
        _drift_verdict(instance, day, passed)
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "drift check failed"


def test_a_drift_failure_on_data_the_last_training_had_retrains_nothing(settings):
    """Drift found on days the newest model already trained on (no feature partition written
    since): a retrain would fit the same data and register a copy of the model."""
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-28"))
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    _drift_verdict(instance, "2026-01-28", passed=False)

    result = _retrain_tick(settings, instance)
    assert not result.run_requests
    assert "no feature partition was written since the last training" in (
        result.skip_reason.skip_message
    )


@pytest.mark.parametrize(
    ("status", "tags", "selection"),
    [
        # Requested a moment ago by this sensor, not yet queued.
        (dg.DagsterRunStatus.NOT_STARTED, {"ml_assets/training": "fraud_detector"}, None),
        (dg.DagsterRunStatus.STARTING, {"ml_assets/training": "fraud_detector"}, None),
        # Started by the automation (freshness): an asset-job run without the train job's tags.
        (dg.DagsterRunStatus.STARTED, {}, frozenset({KEYS.candidate})),
    ],
    ids=["requested", "starting", "automation"],
)
def test_no_retrain_while_another_training_is_unfinished(settings, status, tags, selection):
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-28"))
    _drift_verdict(instance, "2026-01-28", passed=False)
    run = instance.add_run(
        dg.DagsterRun(
            job_name="fraud_train" if tags else "__ASSET_JOB",
            status=status,
            tags=tags,
            asset_selection=selection,
        )
    )

    result = _retrain_tick(settings, instance)
    assert not result.run_requests
    assert result.skip_reason.skip_message == "a training run is already queued or running"

    instance.report_run_failed(run)  # finished: the drift failure retrains
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "drift check failed"


def test_no_retrain_while_ingestion_is_busy_or_has_just_finished(tmp_path):
    """A late file's run rewrites its day, and the landing sensor requests the rebuild of the
    later days on its next tick: a retrain in between would train on features about to be
    rewritten, and the rebuild would then start another one. The wait after an ingestion run is
    the spec's `retrain.ingestion_settle_seconds`."""
    spec = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    spec["model"]["retrain"] = {"ingestion_settle_seconds": 2}
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(spec))
    settings = load_settings(
        {"ML_ASSETS_HOME": str(tmp_path / "home"), "ML_ASSETS_PIPELINES": str(tmp_path)}
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.candidate))
    instance.report_runless_asset_event(dg.AssetMaterialization(FEATURES, partition="2026-01-28"))
    _drift_verdict(instance, "2026-01-28", passed=False)
    ingestion = instance.add_run(
        dg.DagsterRun(job_name="fraud_ingest", status=dg.DagsterRunStatus.STARTED)
    )

    result = _retrain_tick(settings, instance)
    assert not result.run_requests
    assert result.skip_reason.skip_message == (
        "a fraud_ingest run is queued or running: waiting for the days it writes"
    )

    instance.report_run_failed(ingestion)
    result = _retrain_tick(settings, instance)
    assert result.skip_reason.skip_message == (
        "a fraud_ingest run finished less than 2 s ago: waiting for the rebuilds that may follow it"
    )
    time.sleep(2.1)
    [request] = _retrain_tick(settings, instance).run_requests
    assert request.tags["ml_assets/retrain_reason"] == "drift check failed"
