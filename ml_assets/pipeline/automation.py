"""When things run by themselves: the automation conditions and the retrain sensor.

Everything here needs the daemon (`ml-assets dev`, or `dagster-daemon run`). The automation
condition sensor `<pipeline>_automation` and the retrain sensors are on by default.
"""

import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from ml_assets.pipeline.keys import feature_key, model_keys
from ml_assets.pipeline.spec import PipelineSpec

# Tag on training-job runs (the retrain sensor skips while one is queued or running).
TRAINING_TAG = "ml_assets/training"
# Concurrency pool of every candidate asset; dagster.yaml admits one training step at a time.
TRAINING_POOL = "ml_assets_training"


def model_freshness_policy(spec: PipelineSpec) -> dg.FreshnessPolicy:
    assert spec.model is not None
    retrain = spec.model.retrain
    warn = retrain.warn_after_hours or 0.8 * retrain.max_age_hours
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=retrain.max_age_hours),
        warn_window=dt.timedelta(hours=warn),
    )


def retrain_condition() -> dg.AutomationCondition:
    """Retrain once per staleness event.

    Edge-triggered on purpose. `freshness_failed() & ~in_progress()` requests a second retrain
    on the tick after the first one finishes and before the freshness daemon has seen the new
    materialization. `newly_true()` fires once, when the model turns stale, and not again until
    that request has been handled.
    """
    stale = dg.AutomationCondition.freshness_failed() | dg.AutomationCondition.freshness_warned()
    # No `all_deps_blocking_checks_passed()` here: over an unpartitioned → daily dependency it
    # asks every day ever for a passed check, so one bad day would stop retraining for good.
    # Bad days are kept out of the training window by their blocking checks at ingestion.
    # A model already stale when the daemon first evaluates it counts as turning stale then.
    # `since_last_handled()` would also reset on that first evaluation, so the reset is spelled
    # out: a request or a new materialization.
    turned_stale = stale.newly_true() | (stale & dg.AutomationCondition.initial_evaluation())
    handled = dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
    return (turned_stale.since(handled) & ~dg.AutomationCondition.in_progress()).with_label(
        "retrain when the model turns stale (once per staleness event)"
    )


def follow_condition() -> dg.AutomationCondition:
    """Validation and promotion follow a retrain that automation started. Promotion needs the
    report's blocking gates to have passed, also across runs."""
    return (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("follow a new candidate once its gates passed")


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, dg.EventLogRecord]:
    """The latest materialization of each of `partitions` that has one, in two queries."""
    storage_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    wanted = [storage_ids[p] for p in partitions if p in storage_ids]
    if not wanted:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=wanted), limit=len(wanted)
    ).records
    return {record.partition_key: record for record in records if record.partition_key}


class WrittenAfterFirstChampion(dg.AutomationCondition[dg.AssetKey]):
    """True for the partitions whose latest feature write came after the first champion.

    Partitions share their keys with the feature table (the predictions are daily like it).
    Update flags alone cannot tell these days apart on the tick where the first champion
    appears: a quick first training finishes within one tick of the ingestion of the history it
    was trained on, and a day that lands during that training is new too. The event log's
    storage ids order the writes, so the comparison is exact. Arbitrary Python, so the
    automation sensor evaluates in the code server (`use_user_code_server=True`).
    """

    def __init__(self, features: dg.AssetKey, champion: dg.AssetKey) -> None:
        self.features = features
        self.champion = champion

    @property
    def name(self) -> str:
        return "written_after_first_champion"

    @property
    def description(self) -> str:
        return f"{self.features.to_user_string()} written after the first champion"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        first = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=self.champion), limit=1, ascending=True
        ).records
        if not first:
            return dg.AutomationResult(context=context, true_subset=context.get_empty_subset())
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(
            self.features, DagsterEventType.ASSET_MATERIALIZATION
        )
        written_after = {
            key for key, storage_id in latest.items() if storage_id > first[0].storage_id
        }
        return dg.AutomationResult(
            context=context,
            true_subset=context.candidate_subset.compute_intersection_with_partition_keys(
                written_after
            ),
        )


def scoring_condition(features: dg.AssetKey, champion: dg.AssetKey) -> dg.AutomationCondition:
    """Score a feature partition when it is written or rewritten while a champion exists.

    Unlike `eager()` this reaches every partition, not only the latest day, because the landing
    sensor also delivers late and backfilled days. A new champion does not rescore history: the
    inference log keeps what was scored with which version. Days written before the first
    champion existed are not scored either (the `<pipeline>_score` job does that on request):
    the trigger is an update *while* the champion exists, so the first promotion does not
    score, monitor and flag as drifted all the history a model was trained on, even when both
    appear on the same tick. A feature partition whose blocking quality checks failed is not
    scored.
    """
    champion_only = dg.AssetSelection.assets(champion)
    updated_with_champion = (
        dg.AutomationCondition.any_deps_updated().ignore(champion_only)
        & ~dg.AutomationCondition.any_deps_missing()
        & WrittenAfterFirstChampion(features, champion)
    )
    return (
        updated_with_champion.since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("score new feature partitions once a champion exists")


def _check_history_since(
    instance: dg.DagsterInstance, check: dg.AssetCheckKey, after: float, page: int = 100
) -> Iterator[AssetCheckExecutionRecord]:
    """A check's executions after `after` (a timestamp), newest first, read page by page so
    that a tick reads only what happened since then."""
    cursor = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(
            check, limit=page, cursor=cursor
        )
        for record in records:
            # The event's own time: the record's creation time is kept to the whole second.
            if (record.event.timestamp if record.event else record.create_timestamp) <= after:
                return
            yield record
        if len(records) < page:
            return
        cursor = records[-1].id


def failing_days(
    instance: dg.DagsterInstance, checks: Sequence[dg.AssetCheckKey], after: float
) -> set[str]:
    """Partitions whose latest verdict since `after` (a timestamp) failed, for any of `checks`."""
    failing: set[str] = set()
    for check in checks:
        seen: set[str] = set()
        for record in _check_history_since(instance, check, after):
            if record.partition is None or record.partition in seen:
                continue  # a range run's overall verdict; its days have their own
            seen.add(record.partition)
            if record.status == AssetCheckExecutionRecordStatus.FAILED:
                failing.add(record.partition)
    return failing


def _not_now(
    instance: dg.DagsterInstance,
    model: str,
    candidate: dg.AssetKey,
    ingest_job: str,
    settle_seconds: int,
    now: float,
) -> str | None:
    """Why a retrain should wait, if it should.

    While a run that trains `model` has not finished, in any state from just requested
    (NOT_STARTED) to CANCELING: a run of the train job (tagged), or one the automation started
    for the candidate (an asset-job run, without the job's tags). While an ingestion run of the
    pipeline is unfinished, or finished less than `settle_seconds` ago: a late file's run
    rewrites its day, and the landing sensor requests the rebuild of the later days once that run
    succeeded; a retrain in between would train on features about to be rewritten, and the
    rebuild would then count towards another one. Unfinished runs are few (the run queue), so
    one query reads them all.
    """
    unfinished = instance.get_runs(dg.RunsFilter(statuses=NOT_FINISHED_STATUSES))
    if any(
        run.tags.get(TRAINING_TAG) == model or candidate in (run.asset_selection or ())
        for run in unfinished
    ):
        return "a training run is already queued or running"
    if any(run.job_name == ingest_job for run in unfinished):
        return f"a {ingest_job} run is queued or running: waiting for the days it writes"
    settled_after = dt.datetime.fromtimestamp(now - settle_seconds, dt.UTC)
    recent = instance.get_run_records(
        dg.RunsFilter(job_name=ingest_job, updated_after=settled_after), limit=1
    )
    if recent:
        return (
            f"a {ingest_job} run finished less than {settle_seconds} s ago: waiting "
            "for the rebuilds that may follow it"
        )
    return None


def build_retrain_sensor(
    spec: PipelineSpec,
    train_job: str,
    ingest_job: str,
    drift_check: dg.AssetCheckKey | None = None,
    feature_checks: Sequence[dg.AssetCheckKey] = (),
) -> dg.SensorDefinition:
    """Retrain when the drift check failed, or enough new feature partitions were written,
    since the last training. A day whose blocking feature checks (`feature_checks`) failed
    does not count: its data is not fit to train on, and a late file for a day outside the
    data (all rows quarantined) must not retrain the model. Waits while the pipeline's
    ingestion (`ingest_job`) is busy or has just finished."""
    assert spec.model is not None
    keys = model_keys(spec)
    features = feature_key(spec, spec.model.features)
    needed = spec.model.retrain.after_new_partitions

    @dg.sensor(
        name=f"{spec.name}_{spec.model.name}_retrain",
        description=f"Retrains {spec.model.name} when its drift check fails, or once {needed} "
        "feature partitions were written since its last training.",
        job_name=train_job,
        # As often as the landing sensor: a drifted day starts its retrain within seconds, and
        # a tick is a few small queries of the instance.
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def retrain_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        instance = context.instance
        trained = next(
            iter(
                instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=keys.candidate), limit=1, ascending=False
                ).records
            ),
            None,
        )
        if trained is None:
            return dg.SensorResult(skip_reason=f"{spec.model.name} has never been trained")
        wait = _not_now(
            instance,
            spec.model.name,
            keys.candidate,
            ingest_job,
            spec.model.retrain.ingestion_settle_seconds,
            time.time(),
        )
        if wait is not None:
            return dg.SensorResult(skip_reason=wait)

        def features_since_training(limit: int) -> Sequence[dg.EventLogRecord]:
            return instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=features, after_storage_id=trained.storage_id),
                limit=limit,
            ).records

        if drift_check is not None:
            # Any failed verdict since the training, not only the newest one: a day that passed
            # after a drifted one (another run, or the per-day verdicts of a range run) must
            # not hide the failure.
            failed = instance.event_log_storage.get_asset_check_execution_history(
                drift_check, limit=1, status={AssetCheckExecutionRecordStatus.FAILED}
            )
            drifted = next(
                (
                    r
                    for r in failed
                    if r.event is not None and r.event.timestamp > trained.timestamp
                ),
                None,
            )
            if drifted is not None and not features_since_training(1):
                # The newest model was trained on exactly the data there is: another training
                # would fit it again (the drift was found on days it already learned from).
                return dg.SensorResult(
                    skip_reason="the drift check failed, but no feature partition was written "
                    "since the last training: nothing new to train on"
                )
            if drifted is not None:
                return dg.SensorResult(
                    run_requests=[
                        dg.RunRequest(
                            run_key=f"drift-{drifted.id}",
                            tags={"ml_assets/retrain_reason": "drift check failed"},
                        )
                    ]
                )
        if needed == 0:
            return dg.SensorResult(skip_reason="no drift, and retrain.after_new_partitions is 0")
        since = features_since_training(10_000)
        days = {r.partition_key for r in since}
        if len(days) >= needed:  # only then worth reading the check history (every 15 s)
            days -= failing_days(instance, feature_checks, trained.timestamp)
        if len(days) < needed:
            return dg.SensorResult(
                skip_reason=f"{len(days)} of {needed} new feature partitions since the last "
                "training"
            )
        newest = max(r.storage_id for r in since)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"new-partitions-{newest}",
                    tags={"ml_assets/retrain_reason": f"{len(days)} new feature partitions"},
                )
            ]
        )

    return retrain_sensor


@dataclass(frozen=True)
class DayVerdict:
    """One day's outcome of a partitioned check evaluated over a range of days."""

    partition: str
    passed: bool
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def record_day_verdicts(
    context: dg.AssetCheckExecutionContext,
    check_key: dg.AssetCheckKey,
    verdicts: Sequence[DayVerdict],
    *,
    severity: dg.AssetCheckSeverity,
    blocking: bool,
) -> None:
    """Give each day of a range run its own verdict, next to the run's one range verdict.

    Dagster records the `AssetCheckResult` of a range run (a single-run backfill, or the landing
    sensor's multi-day run) without a partition, and leaves each day's planned evaluation
    unresolved. `all_deps_blocking_checks_passed()` then never sees those days pass, so
    automation would never score them, and the UI shows no verdict per day. One evaluation per
    day, tied to that day's latest materialization, fixes both. The returned range result still
    decides whether the run's downstream steps are blocked.
    """
    if len(verdicts) < 2:
        return  # a single-partition run: Dagster records its partition itself
    latest = latest_materializations(
        context.instance, check_key.asset_key, [v.partition for v in verdicts]
    )
    for verdict in verdicts:
        record = latest.get(verdict.partition)
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=verdict.passed,
                metadata=dict(verdict.metadata),
                severity=severity,
                description=verdict.description,
                blocking=blocking,
                partition=verdict.partition,
                target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                )
                if record is not None
                else None,
            )
        )
