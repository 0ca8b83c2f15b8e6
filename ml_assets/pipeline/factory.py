"""Turn a pipeline spec into Dagster definitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_assets.pipeline.features import build_feature_asset
from ml_assets.pipeline.keys import pipeline_tags
from ml_assets.pipeline.raw import build_raw_asset
from ml_assets.pipeline.sensors import build_landing_sensor
from ml_assets.pipeline.spec import PipelineSpec


def build_pipeline(spec: PipelineSpec, *, landing_root: Path) -> dg.Definitions:
    raw_assets = [build_raw_asset(spec, name, landing_root) for name in spec.sources]
    feature_assets = [build_feature_asset(spec, name) for name in spec.features]
    ingest_job = dg.define_asset_job(
        name=f"{spec.name}_ingest",
        description=f"Ingest the {spec.name} landing files and build its feature tables.",
        selection=dg.AssetSelection.assets(*raw_assets, *feature_assets),
        tags=pipeline_tags(spec),
    )
    return dg.Definitions(
        assets=[*raw_assets, *feature_assets],
        sensors=[build_landing_sensor(spec, landing_root)],
        jobs=[ingest_job],
    )
