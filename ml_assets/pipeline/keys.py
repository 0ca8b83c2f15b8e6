"""Asset keys and partitions shared by every part of a pipeline."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ml_assets.pipeline.spec import PipelineSpec

# Runs of one pipeline carry this tag; dagster.yaml lets one such run go at a time so that
# sensor-launched runs for overlapping days never race on the same partitions.
PIPELINE_TAG = "ml_assets/pipeline"


def raw_key(spec: PipelineSpec, source: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "raw", source])


def quarantine_key(spec: PipelineSpec, source: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "quarantine", source])


def feature_key(spec: PipelineSpec, feature: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "features", feature])


def daily_partitions(spec: PipelineSpec) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=spec.start_date.isoformat())


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days a (possibly range-) run materializes."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def pipeline_tags(spec: PipelineSpec) -> dict[str, str]:
    return {PIPELINE_TAG: spec.name}
