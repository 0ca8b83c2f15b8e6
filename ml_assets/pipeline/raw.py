"""Raw assets: one daily-partitioned Delta table per landing source."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from ml_assets.databricks.config import asset_compute
from ml_assets.databricks.costs import CostModel
from ml_assets.ingest.ingest import (
    QUARANTINE_SCHEMA,
    UNUSABLE_FILE,
    IngestError,
    IngestResult,
    ingest_day,
    output_schema,
)
from ml_assets.pipeline.keys import (
    EXTERNAL_RETRY,
    FAILED_PARTITIONS,
    SOURCE_DIGESTS,
    daily_partitions,
    partition_days,
    quarantine_key,
    raw_key,
)
from ml_assets.pipeline.quality import enforce_before_write
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.storage import delta
from ml_assets.storage.io_manager import DeltaLake, column_schema


def _store_quarantine(
    lake: DeltaLake, key: dg.AssetKey, frames: list[pl.DataFrame], days: list[dt.date]
) -> str:
    uri = lake.table_uri(key)
    frame = pl.concat(frames, how="vertical_relaxed") if frames else QUARANTINE_SCHEMA.to_frame()
    delta.write_partitions(uri, frame, partitions=days)
    return uri


def build_raw_asset(
    spec: PipelineSpec, source_name: str, landing_root: Path
) -> dg.AssetsDefinition:
    source = spec.sources[source_name]
    folder = spec.landing_folder(source_name, landing_root)
    descriptions = {name: col.description for name, col in source.columns.items()}
    descriptions.update(
        {
            "_source_file": "Landing file the row came from",
            "_ingested_at": "When the row was ingested (UTC)",
            "event_date": f"Partition: the UTC date of {source.event_time}",
        }
    )
    schema = column_schema(output_schema(source), descriptions)
    compute = asset_compute(raw_key(spec, source_name), "raw")

    @dg.asset(
        key=raw_key(spec, source_name),
        group_name="raw",
        description=(source.description or f"Raw {source_name} from {folder}")
        + f"\n\nLanding folder: `{folder}` ({source.format}, one file per day named "
        "`YYYY-MM-DD[_tag]`). Rows that do not fit the declared schema go to "
        f"`{quarantine_key(spec, source_name).to_user_string()}` with their reason.",
        partitions_def=daily_partitions(spec),
        # A range (initial load, backfill) is ingested in one run: one commit, not one per day.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=EXTERNAL_RETRY,
        kinds={"polars", "delta", source.format},
        owners=spec.owners,
        tags={"layer": "raw", "pipeline": spec.name},
        metadata={
            "dagster/column_schema": schema,
            "landing_folder": str(folder),
            "primary_key": ", ".join(source.primary_key),
            "compute_profile": compute.profile,
        },
        # Attaches the Databricks step launcher in dev/prod; a none-resource locally.
        required_resource_keys={compute.launcher_key, "lake", "costs"},
    )
    def raw_asset(context: dg.AssetExecutionContext) -> pl.DataFrame:
        lake: DeltaLake = context.resources.lake
        costs: CostModel = context.resources.costs
        costs.start(context, compute.profile)
        days = partition_days(context)
        ingested_at = dt.datetime.now(dt.UTC)
        results: list[IngestResult] = []
        failures: list[IngestError] = []
        for day in days:
            try:
                results.append(ingest_day(source, folder, day, ingested_at=ingested_at))
            except IngestError as error:
                failures.append(error)

        q_key = quarantine_key(spec, source_name)
        if failures:
            # Record why, so the quarantine explains the failed days; the raw table is untouched.
            recorded = [f for f in failures if f.quarantine is not None]
            if recorded:
                failed_days = [f.day for f in recorded]
                # The raw table keeps the day's last good load, so keep the rows that load
                # quarantined too: they may be the only copy left. Only earlier "unusable file"
                # records are replaced.
                uri = lake.table_uri(q_key)
                kept = []
                if delta.table_exists(uri):
                    kept = [
                        delta.scan(uri, partitions=failed_days)
                        .filter(~pl.col("reason").str.starts_with(UNUSABLE_FILE))
                        .collect()
                    ]
                _store_quarantine(lake, q_key, kept + [f.quarantine for f in recorded], failed_days)
            raise dg.Failure(
                description="\n".join(str(f) for f in failures),
                metadata={
                    "failed_days": len(failures),
                    # Read by the landing sensor, to ingest the range's other days again.
                    FAILED_PARTITIONS: dg.MetadataValue.json(
                        {"source": source_name, "days": [f.day.isoformat() for f in failures]}
                    ),
                    "quarantine_uri": lake.table_uri(q_key),
                },
                allow_retries=False,  # the same files fail the same way
            )

        quarantine_uri = _store_quarantine(lake, q_key, [r.quarantine for r in results], days)
        rows = pl.concat([r.rows for r in results], how="vertical_relaxed")
        # Rules flagged `before_write` (quality gates): bad data never reaches the lake.
        enforce_before_write(spec, source_name, rows, days, lake.table_uri(context.asset_key))
        quarantined = sum(r.quarantine.height for r in results)
        reasons: dict[str, int] = {}
        for result in results:
            for reason, count in result.quarantine_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        ignored = {name: cols for r in results for name, cols in r.ignored_columns.items()}
        context.add_output_metadata(
            {
                "files": len([p for r in results for p in r.files]),
                "quarantined_rows": quarantined,
                "quarantine_rate": quarantined / max(1, quarantined + rows.height),
                "quarantine_uri": quarantine_uri,
                "quarantine_reasons": dg.MetadataValue.json(reasons),
                # Landing files are parsed and schema-checked by the Polars ingestion code.
                "engine": "polars",
                "engine_reason": "ingestion (ml_assets.ingest) runs on Polars",
                **({"ignored_columns": dg.MetadataValue.json(ignored)} if ignored else {}),
            }
        )
        if quarantined:
            context.log.warning(f"{quarantined} rows quarantined ({reasons}); see {quarantine_uri}")
        for result in results:
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    partition=result.day.isoformat(),
                    description="The landing files this day was loaded from",
                    metadata={SOURCE_DIGESTS: dg.MetadataValue.json(result.digests)},
                )
            )
        return rows

    return raw_asset
