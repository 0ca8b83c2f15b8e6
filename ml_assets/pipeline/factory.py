"""Turn a pipeline spec into Dagster definitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_assets.maintenance.schedules import build_pipeline_schedules
from ml_assets.pipeline.automation import TRAINING_TAG, build_retrain_sensor
from ml_assets.pipeline.features import build_feature_asset
from ml_assets.pipeline.inference import build_predictions_asset
from ml_assets.pipeline.keys import feature_key, ingest_job_name, model_keys, pipeline_tags
from ml_assets.pipeline.monitoring import CHECK_NAME as DRIFT_CHECK
from ml_assets.pipeline.monitoring import build_monitoring_definitions, drift_key
from ml_assets.pipeline.promotion import build_champion_asset, build_rollback_job
from ml_assets.pipeline.quality import blocking_checks, build_quality_checks
from ml_assets.pipeline.raw import build_raw_asset
from ml_assets.pipeline.sensors import build_landing_sensor
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.pipeline.training import build_candidate_asset
from ml_assets.pipeline.validation import build_gate_checks, build_validation_asset


def build_pipeline(spec: PipelineSpec, *, landing_root: Path) -> dg.Definitions:
    raw_assets = [build_raw_asset(spec, name, landing_root) for name in spec.sources]
    feature_assets = [build_feature_asset(spec, name) for name in spec.features]
    ingest_job = dg.define_asset_job(
        name=ingest_job_name(spec),
        description=f"Ingest the {spec.name} landing files and build its feature tables.",
        selection=dg.AssetSelection.assets(*raw_assets, *feature_assets),
        tags=pipeline_tags(spec),
    )
    ingest = dg.Definitions(
        assets=[*raw_assets, *feature_assets],
        asset_checks=build_quality_checks(spec),
        sensors=[build_landing_sensor(spec, landing_root, ingest_job.name)],
        jobs=[ingest_job],
    )
    if spec.model is None:
        return ingest
    automation = dg.Definitions(
        sensors=[
            # Evaluates the pipeline's automation conditions (scoring new partitions, retraining
            # a stale model, following a candidate). One per pipeline, so that its runs carry
            # the pipeline's tag like every other run of it: listed with it, and one at a time.
            dg.AutomationConditionSensorDefinition(
                f"{spec.name}_automation",
                target=dg.AssetSelection.key_prefixes([spec.name]),
                run_tags=pipeline_tags(spec),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
                # The scoring condition runs our own Python (WrittenAfterFirstChampion), which
                # the daemon cannot import; the code server can.
                use_user_code_server=True,
            )
        ]
    )
    return dg.Definitions.merge(
        ingest, build_model_definitions(spec), build_monitoring_definitions(spec), automation
    )


def build_model_definitions(spec: PipelineSpec) -> dg.Definitions:
    """Candidate → validation report (+ gates) → champion, predictions, rollback."""
    assert spec.model is not None
    keys = model_keys(spec)
    train_job = dg.define_asset_job(
        name=f"{spec.name}_train",
        description=f"Train a {spec.model.name} candidate, validate it against the champion and "
        "promote it if every gate passes.",
        selection=dg.AssetSelection.assets(keys.candidate, keys.report, keys.champion),
        tags={**pipeline_tags(spec), TRAINING_TAG: spec.model.name},
    )
    score_job = dg.define_asset_job(
        name=f"{spec.name}_score",
        description=f"Score feature partitions with the {spec.model.name} champion.",
        selection=dg.AssetSelection.assets(keys.predictions),
        tags=pipeline_tags(spec),
    )
    return dg.Definitions(
        assets=[
            build_candidate_asset(spec),
            build_validation_asset(spec),
            build_champion_asset(spec),
            build_predictions_asset(spec),
        ],
        asset_checks=build_gate_checks(spec),
        jobs=[train_job, score_job, build_rollback_job(spec)],
        schedules=build_pipeline_schedules(spec, score_job=score_job, train_job=train_job),
        sensors=[
            build_retrain_sensor(
                spec,
                train_job.name,
                ingest_job_name(spec),
                dg.AssetCheckKey(drift_key(spec), DRIFT_CHECK),
                blocking_checks(spec, feature_key(spec, spec.model.features)),
            )
        ],
    )
