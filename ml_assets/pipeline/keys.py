"""Asset keys and partitions shared by every part of a pipeline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import dagster as dg

from ml_assets.pipeline.spec import PipelineSpec

# Runs of one pipeline carry this tag; dagster.yaml lets one such run go at a time so that
# sensor-launched runs for overlapping days never race on the same partitions.
PIPELINE_TAG = "ml_assets/pipeline"

# Failure metadata of a raw asset whose landing files could not be used:
# {"source": <source name>, "days": [the ISO days that failed]}. The landing sensor reads it to
# ingest the other days of a failed range again.
FAILED_PARTITIONS = "failed_partitions"

# Metadata of the observation a raw asset records for each day it ingested: {landing file name:
# SHA-256 of its bytes}. Per day in an observation, because a range run's materializations all
# carry the same metadata (dagster#18123). The landing sensor compares files that changed on
# disk with it.
SOURCE_DIGESTS = "source_files_sha256"


def raw_key(spec: PipelineSpec, source: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "raw", source])


def quarantine_key(spec: PipelineSpec, source: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "quarantine", source])


def feature_key(spec: PipelineSpec, feature: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "features", feature])


def model_keys(spec: PipelineSpec) -> ModelKeys:
    assert spec.model is not None
    name = spec.model.name
    return ModelKeys(
        candidate=dg.AssetKey([spec.name, "models", f"{name}_candidate"]),
        report=dg.AssetKey([spec.name, "reports", f"{name}_validation"]),
        champion=dg.AssetKey([spec.name, "models", f"{name}_champion"]),
        predictions=dg.AssetKey([spec.name, "predictions", name]),
        audit=dg.AssetKey([spec.name, "audit", "model_promotions"]),
    )


@dataclass(frozen=True)
class ModelKeys:
    candidate: dg.AssetKey
    report: dg.AssetKey
    champion: dg.AssetKey
    predictions: dg.AssetKey
    # Not an asset: the Delta table of promotions and rollbacks, written by both.
    audit: dg.AssetKey


def daily_partitions(spec: PipelineSpec) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=spec.start_date.isoformat())


def partition_bounds(spec: PipelineSpec) -> tuple[dt.date, dt.date]:
    """The first and last day the pipeline's daily partitions have now (the last is yesterday,
    UTC: a day's partition exists once the day is over)."""
    last = daily_partitions(spec).get_last_partition_key()
    first = spec.start_date
    return first, dt.date.fromisoformat(last) if last else first - dt.timedelta(days=1)


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days a (possibly range-) run materializes."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def contiguous_ranges(days: Iterable[dt.date]) -> Iterator[tuple[dt.date, dt.date]]:
    """(first, last) of each run of consecutive days, in order."""
    ordered = sorted(set(days))
    if not ordered:
        return
    start = prev = ordered[0]
    for day in ordered[1:]:
        if day != prev + dt.timedelta(days=1):
            yield start, prev
            start = day
        prev = day
    yield start, prev


def describe_days(days: Iterable[dt.date]) -> str:
    """Days for a message, consecutive ones as a range: "2026-01-01..2026-01-07, 2026-01-10"."""
    return ", ".join(
        str(first) if first == last else f"{first}..{last}"
        for first, last in contiguous_ranges(days)
    )


def ingest_job_name(spec: PipelineSpec) -> str:
    """The job of the landing sensor's runs: raw assets and the feature tables they feed."""
    return f"{spec.name}_ingest"


def pipeline_tags(spec: PipelineSpec) -> dict[str, str]:
    return {PIPELINE_TAG: spec.name}


# Retry policy of the assets that touch other systems: landing storage and, in dev/prod,
# Databricks (raw), and MLflow (training, validation, promotion, scoring, drift). Transient
# errors (a network blip, a busy tracking server) get two more attempts with back-off. Failures
# that would repeat (bad input, no champion, a refused gate) raise
# `dg.Failure(allow_retries=False)` instead.
EXTERNAL_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
