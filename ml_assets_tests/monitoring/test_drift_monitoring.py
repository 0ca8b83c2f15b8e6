"""Drift against the champion's training window: found on drifted days, not before them."""

import datetime as dt

import dagster as dg
import polars as pl

from ml_assets.notify.events import finished_runs
from ml_assets.pipeline.monitoring import CHECK_NAME, drift_key, summary_key
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC
from ml_assets_tests.conftest import DEMO_START
from ml_assets_tests.models.conftest import KEYS, _range
from ml_assets_tests.monitoring.conftest import AS_OF, DRIFT_FROM, LAST_DAY, TRAIN

SPEC = load_spec(DEMO_PIPELINE_SPEC)
DRIFT = drift_key(SPEC)
MONITORING = SPEC.model.monitoring
FIRST = AS_OF - dt.timedelta(days=3)  # holdout days: never trained on, before the drift
LAST = DRIFT_FROM + dt.timedelta(days=2)


def _partition(day: str):
    from dagster._core.event_api import PartitionKeyFilter

    return PartitionKeyFilter(key=day)


def _check(result) -> tuple[bool, dict]:
    evaluation = next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == CHECK_NAME
    )
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def test_drift_is_detected_on_drifted_days_and_not_before(drift_deployment):
    d = drift_deployment
    assert d.train(**TRAIN).success, "a champion trained on pre-drift days"
    assert d.materialize([KEYS.predictions], tags=_range(FIRST, LAST)).success
    instance = dg.DagsterInstance.ephemeral()
    ranged = d.materialize([DRIFT], tags=_range(FIRST, LAST), instance=instance)
    assert ranged.success

    # A range run: one verdict for the range, listing the failing days...
    evaluations = [
        e.event_specific_data
        for e in ranged.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    [whole] = [e for e in evaluations if e.partition is None]
    drifted_days = {
        (DRIFT_FROM + dt.timedelta(days=i)).isoformat() for i in range((LAST - DRIFT_FROM).days + 1)
    }
    assert not whole.passed and set(whole.metadata["failing_days"].value) == drifted_days
    # ...and one per day, so that each day shows its own verdict (and automation sees it).
    per_day = {e.partition: e.passed for e in evaluations if e.partition is not None}
    assert {day for day, passed in per_day.items() if not passed} == drifted_days
    assert {day for day, passed in per_day.items() if passed} == {
        (FIRST + dt.timedelta(days=i)).isoformat() for i in range((DRIFT_FROM - FIRST).days)
    }
    check = dg.AssetCheckKey(DRIFT, CHECK_NAME)
    for day, passed in per_day.items():
        [record] = instance.event_log_storage.get_asset_check_execution_history(
            check, limit=1, partition_filter=_partition(day)
        )
        assert record.status.value == ("SUCCEEDED" if passed else "FAILED"), day
    # The webhook gets one message for the failed check of the run, not one per day.
    [run] = finished_runs(instance, after_storage_id=None, lookback_hours=1, limit=10)
    [note] = [n for n in run.notifications if n.kind == "check_failure"]
    assert note.details["partition"] is None
    text = "\n".join(note.lines)
    assert all(day in text for day in drifted_days) and "<function" not in text, text

    lake = d.settings.lake_root
    summary = pl.read_delta(f"{lake}/{'/'.join(summary_key(SPEC).path)}").sort("event_date")
    assert summary["event_date"].to_list() == [
        FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)
    ]
    before = summary.filter(pl.col("event_date") < DRIFT_FROM)
    after = summary.filter(pl.col("event_date") >= DRIFT_FROM)
    assert before["n_drifted_features"].to_list() == [0] * before.height, before
    assert all(n >= MONITORING.min_drifted_features for n in after["n_drifted_features"]), after
    assert before["max_psi"].max() < MONITORING.psi_threshold < after["max_psi"].min()
    assert all("amount" in f.split(",") for f in after["drifted_features"])
    # Dagster copies a range run's metadata onto every day: it names the range's worst day and
    # carries no one day's figures.
    range_metadata = {
        k: v.value
        for k, v in ranged.asset_materializations_for_node(
            "fraud__monitoring__fraud_detector_drift"
        )[0].metadata.items()
    }
    worst = summary.sort("max_psi").row(-1, named=True)
    per_feature = pl.read_delta(f"{lake}/{'/'.join(DRIFT.path)}")
    assert range_metadata["worst_day"] == worst["event_date"].isoformat()
    assert range_metadata["max_psi"] == worst["max_psi"]
    assert range_metadata["psi_by_feature"].startswith(f"**{worst['event_date']}**")
    assert range_metadata["days"] == summary.height
    # Each feature that drifted on any day, with its highest PSI of the range.
    amount_psi = per_feature.filter(pl.col("feature") == "amount")["psi"].max()
    assert range_metadata["drifted_features"]["amount"] == round(amount_psi, 4)
    assert "mean_psi" not in range_metadata and "live_roc_auc" not in range_metadata
    # Priced like every computing asset, so it is in the cost report.
    assert range_metadata["compute_seconds"] > 0 and "estimated_cost_usd" in range_metadata
    # Labels are present in the demo: the live quality is measured every day.
    assert summary["labelled_rows"].min() == 600
    assert all(0.5 < auc <= 1.0 for auc in summary["live_roc_auc"])

    # The history users query: one row per day per feature.
    assert per_feature.group_by("event_date").len()["len"].n_unique() == 1
    assert per_feature.filter(pl.col("drifted")).select("event_date").min().item() == DRIFT_FROM

    # Per-day verdicts: the check passes before the drift and fails on a drifted day, naming
    # the drifted features.
    passed, metadata = _check(d.materialize([DRIFT], partition_key=AS_OF.isoformat()))
    assert passed and metadata["n_drifted_features"] == 0
    drifted_day = d.materialize([DRIFT], partition_key=DRIFT_FROM.isoformat())
    passed, metadata = _check(drifted_day)
    assert not passed
    assert metadata["partition"] == DRIFT_FROM.isoformat()
    assert "amount" in metadata["drifted_features"]
    assert metadata["max_psi"] >= MONITORING.psi_threshold
    materialization = drifted_day.asset_materializations_for_node(
        "fraud__monitoring__fraud_detector_drift"
    )[0]
    assert materialization.metadata["n_drifted_features"].value >= 1
    assert materialization.metadata["live_roc_auc"].value > 0.5


def test_a_day_without_rows_is_not_reported_as_drifted(drift_deployment):
    d = drift_deployment
    assert d.train(**TRAIN).success
    empty_day = LAST_DAY + dt.timedelta(days=1)  # no features, no predictions

    passed, metadata = _check(d.materialize([DRIFT], partition_key=empty_day.isoformat()))

    # Every PSI is NaN on an empty day: that is not drift, whatever the number of features.
    assert passed, metadata
    assert metadata["n_drifted_features"] == 0 and metadata["drifted_features"] == {}


def test_without_a_champion_monitoring_fails_and_writes_nothing(drift_deployment):
    result = drift_deployment.materialize([DRIFT], partition_key=AS_OF.isoformat())
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no champion for fraud_detector" in str(failure.step_failure_data.error)


def test_the_first_days_of_the_data_are_not_compared(drift_deployment):
    """Their lookback reaches before the data starts, so their window features are empty
    (no earlier payments): compared with the training window, they always looked drifted."""
    d = drift_deployment
    assert d.train(**TRAIN).success
    last = DEMO_START + dt.timedelta(days=9)

    result = d.materialize([DRIFT], tags=_range(DEMO_START, last))

    assert result.success
    materialization = next(  # the range's metadata, copied to each day
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == DRIFT
    )
    assert materialization.metadata["warm_up_days_not_compared"].value == 7
    verdicts = {
        e.event_specific_data.partition: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.partition
    }
    warm_up = [(DEMO_START + dt.timedelta(days=i)).isoformat() for i in range(7)]
    assert all(verdicts[day] for day in warm_up), verdicts
    rows = pl.read_delta(f"{d.settings.lake_root}/{'/'.join(DRIFT.path)}")
    first_day = rows.filter(pl.col("event_date") == DEMO_START)
    assert first_day.height > 0 and not first_day["drifted"].any()
    compared = rows.filter(pl.col("event_date") == last)
    assert compared["psi"].is_not_nan().all()  # after the warm-up, days are compared
