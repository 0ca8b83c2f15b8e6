"""The Dagster IO manager for Polars frames stored as Delta tables."""

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import polars as pl
from deltalake.exceptions import DeltaError
from pydantic import Field

from ml_assets.storage import delta


def _type_name(dtype: pl.DataType) -> str:
    """A short, readable column type for the UI ("datetime[UTC]", not polars' repr)."""
    if isinstance(dtype, pl.Datetime):
        return f"datetime[{dtype.time_zone}]" if dtype.time_zone else "datetime"
    return {
        pl.String: "string",
        pl.Int64: "int64",
        pl.Int32: "int32",
        pl.Int8: "int8",
        pl.Float64: "float64",
        pl.Float32: "float32",
        pl.Boolean: "bool",
        pl.Date: "date",
    }.get(type(dtype), str(dtype).lower())


def column_schema(schema: pl.Schema, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=_type_name(dtype),
                description=descriptions.get(name),
            )
            for name, dtype in schema.items()
        ]
    )


def _partition_values(
    partitions_def: dg.PartitionsDefinition | None, keys: Sequence[str]
) -> list[delta.PartitionValue]:
    # Daily partitions are stored as pl.Date; any other partitioning as strings.
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return [dt.date.fromisoformat(key[:10]) for key in keys]
    return list(keys)


def output_partitions(context: dg.OutputContext) -> list[delta.PartitionValue] | None:
    """The partitions an output replaces; None for an unpartitioned asset (the whole table)."""
    if not context.has_asset_partitions:
        return None
    return _partition_values(context.asset_partitions_def, context.asset_partition_keys)


def _reported_descriptions(context: dg.OutputContext) -> dict[str, str]:
    """Column descriptions in the `dagster/column_schema` the asset itself reported, if any."""
    value = context.output_metadata.get("dagster/column_schema")
    schema = value.schema if isinstance(value, dg.TableSchemaMetadataValue) else value
    if not isinstance(schema, dg.TableSchema):
        return {}
    return {c.name: c.description for c in schema.columns if c.description}


def report_write(
    context: dg.OutputContext,
    result: delta.WriteResult,
    partitions: list[delta.PartitionValue] | None,
) -> None:
    """What every Delta write reports, whichever engine wrote it.

    The column schema is the one written, with the descriptions the asset reported: this
    metadata replaces the asset's own `dagster/column_schema`. A range write's metadata is
    copied to every day's materialization (dagster#18123), so its row count there is the whole
    range's, which the asset page shows as the asset's row count. Each day's own count goes
    into an observation of that day, from the Delta log's file statistics.
    """
    several = partitions is not None and len(partitions) > 1
    context.add_output_metadata(
        {
            "dagster/row_count": result.rows_written,
            "dagster/uri": result.uri,
            "dagster/column_schema": column_schema(result.schema, _reported_descriptions(context)),
            "delta_version": result.version,
            "table_row_count": result.table_rows,
            "partitions_written": len(partitions) if partitions is not None else 0,
        }
    )
    if not several:
        return
    try:
        rows = delta.partition_row_counts(result.uri)
    except DeltaError as error:  # e.g. a table feature of Spark's that delta-rs cannot read
        context.log.warning(f"no row count per day for {result.uri}: {error}")
        return
    for value in partitions:
        context.log_event(
            dg.AssetObservation(
                asset_key=context.asset_key,
                partition=delta.partition_text(value),
                metadata={"dagster/row_count": rows.get(value, 0)},
            )
        )


class DeltaLake(dg.ConfigurableResource):
    """Where the Delta tables live; assets that write side tables (quarantine) use it directly."""

    root: str = Field(description="Folder or URI under which the Delta tables live.")

    def table_uri(self, asset_key: dg.AssetKey) -> str:
        return "/".join([self.root.rstrip("/"), *asset_key.path])


class DeltaIOManager(dg.ConfigurableIOManager):
    """Stores each asset as a Delta table at `<root>/<asset key path>`.

    A partitioned output replaces exactly its partitions (one predicate overwrite, retried on
    commit conflicts); an input loads the partitions Dagster maps to it, lazily, so downstream
    code can select columns and push filters down before anything is read.
    """

    lake: DeltaLake

    def handle_output(
        self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | None
    ) -> None:
        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame | pl.LazyFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: DeltaIOManager stores polars frames, "
                f"got {type(obj).__name__}"
            )
        partitions = output_partitions(context)
        uri = self.lake.table_uri(context.asset_key)
        result = delta.write_partitions(uri, obj, partitions=partitions)
        report_write(context, result, partitions)

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame | pl.DataFrame:
        asset_key = context.asset_key
        uri = self.lake.table_uri(asset_key)
        partitions = None
        if context.has_asset_partitions:
            partitions = _partition_values(
                context.asset_partitions_def, context.asset_partition_keys
            )
        try:
            frame = delta.scan(uri, partitions=partitions)
        except delta.TableNotMaterializedError:
            raise dg.Failure(
                f"input {asset_key.to_user_string()} has no Delta table at {uri}: "
                "materialize it first"
            ) from None
        wants_eager = context.dagster_type.typing_type is pl.DataFrame
        return frame.collect() if wants_eager else frame
