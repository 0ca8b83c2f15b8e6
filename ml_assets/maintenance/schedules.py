"""Schedules, where a clock beats a sensor: the nightly scoring sweep, the off-peak maintenance
window and an optional weekly retrain.

| schedule | when (UTC) | job | default |
|---|---|---|---|
| `<pipeline>_score_daily` | 02:00 | `<pipeline>_score` for yesterday | RUNNING |
| `ml_assets_delta_maintenance_nightly` | 03:30 | `ml_assets_delta_maintenance` | RUNNING |
| `<pipeline>_train_weekly` | Sun 04:00 | `<pipeline>_train` | STOPPED |

The sweep only asks for a run when yesterday's features exist and have not been scored since
they were last written, so it catches what the automation sensor missed and does nothing
otherwise. The weekly retrain is off by default: the model's freshness policy already
retrains it; turn it on where automation is off.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ml_assets.pipeline.keys import feature_key, model_keys
from ml_assets.pipeline.spec import PipelineSpec

TIMEZONE = "UTC"


def _latest_storage_id(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str
) -> int | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id if records else None


def build_score_sweep_schedule(
    spec: PipelineSpec,
    score_job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    *,
    hour: int = 2,
    minute: int = 0,
    timezone: str = TIMEZONE,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.RUNNING,
) -> dg.ScheduleDefinition:
    """Daily at `hour:minute`: score yesterday's partition if its features are newer than its
    predictions (or it has none); otherwise skip, saying why."""
    assert spec.model is not None
    features = feature_key(spec, spec.model.features)
    predictions = model_keys(spec).predictions

    @dg.schedule(
        name=f"{spec.name}_score_daily",
        cron_schedule=f"{minute} {hour} * * *",
        execution_timezone=timezone,
        job=score_job,
        default_status=default_status,
        description=f"Daily sweep: score yesterday's {spec.model.features} partition with the "
        f"{spec.model.name} champion unless it is already scored.",
    )
    def score_daily(context: dg.ScheduleEvaluationContext):
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        day = (scheduled.date() - dt.timedelta(days=1)).isoformat()
        if day < spec.start_date.isoformat():
            return dg.SkipReason(f"{day} is before the pipeline starts ({spec.start_date})")
        features_id = _latest_storage_id(context.instance, features, day)
        if features_id is None:
            return dg.SkipReason(f"no {features.to_user_string()} partition for {day} yet")
        scored_id = _latest_storage_id(context.instance, predictions, day)
        if scored_id is not None and scored_id > features_id:
            return dg.SkipReason(f"{day} is already scored with its latest features")
        return dg.RunRequest(run_key=f"{spec.name}_score_{day}", partition_key=day)

    return score_daily


def build_weekly_train_schedule(
    spec: PipelineSpec,
    train_job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    *,
    cron: str = "0 4 * * 0",
    timezone: str = TIMEZONE,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A fixed weekly retrain (Sunday 04:00): off by default, freshness-driven retraining
    already covers it; for deployments that run without the automation sensor."""
    return dg.ScheduleDefinition(
        name=f"{spec.name}_train_weekly",
        cron_schedule=cron,
        execution_timezone=timezone,
        job=train_job,
        default_status=default_status,
        description=f"Weekly retrain of {spec.model.name if spec.model else spec.name} "
        "(off by default: the freshness policy retrains it).",
    )


def build_pipeline_schedules(
    spec: PipelineSpec,
    *,
    score_job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    train_job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition | None = None,
) -> list[dg.ScheduleDefinition]:
    """The pipeline's schedules: the daily scoring sweep and (stopped) weekly retrain."""
    schedules = [build_score_sweep_schedule(spec, score_job)]
    if train_job is not None:
        schedules.append(build_weekly_train_schedule(spec, train_job))
    return schedules


def build_maintenance_schedule(
    job: dg.JobDefinition,
    *,
    cron: str = "30 3 * * *",
    timezone: str = TIMEZONE,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.RUNNING,
) -> dg.ScheduleDefinition:
    """The off-peak nightly window (03:30) for Delta compaction + vacuum, with the job's
    default config (retention 168 h). Edit the run config in the launchpad for one-off runs."""
    return dg.ScheduleDefinition(
        name=f"{job.name}_nightly",
        cron_schedule=cron,
        execution_timezone=timezone,
        job=job,
        default_status=default_status,
        description="Off-peak Delta maintenance: compact small files, vacuum old versions "
        "(registered models' training versions are kept).",
    )
