"""Partition-aware Delta reads and writes for Spark, with the table layout of the Polars path.

Same tables as `ml_assets.storage.delta`: same paths, partitioned by `event_date` (DATE), a
write replaces exactly the partitions it is given (listed partitions absent from the frame end
up empty; rows outside them are refused), and the same `WriteResult`.

Two ways to get there, chosen at run time (`mode="auto"`):

- native: the session has the Delta Spark jar (Databricks, or a local session configured with
  it): `format("delta")`, `replaceWhere` for partition overwrites.
- bridge: no jar (a plain local Spark; the jar cannot be downloaded everywhere). Reads take the
  list of active files from the Delta log with delta-rs and hand them to `spark.read.parquet`,
  adding the partition columns from each file's partition values (delta-rs, like Delta Spark,
  does not store them in the data files). Writes go `DataFrame.toArrow()` -> Polars ->
  `ml_assets.storage.delta.write_partitions` (same predicate overwrite, same commit retry).
  Tables the bridge cannot read file by file are read through Polars (deletion vectors) or
  refused with the reason (column mapping, unknown reader features).

Spark types map to the Delta types the Polars path writes: TimestampNTZ <-> timestamp_ntz (what
Polars writes for `pl.Datetime("us")`), Timestamp <-> timestamp (for `pl.Datetime("us", "UTC")`),
string, double, long, int, date, ... so both engines can write the same table.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import unquote

import polars as pl
from deltalake import DeltaTable

from ml_assets.engines.spark_session import has_delta_jar
from ml_assets.storage import delta
from ml_assets.storage.delta import (
    PARTITION_COLUMN,
    PartitionValue,
    TableNotMaterializedError,
    WriteResult,
    partition_predicate,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

DeltaMode = Literal["auto", "native", "bridge"]

# Reader features the bridge understands: they change how the log is read (delta-rs does
# that) or are handled below, not how data files map to columns.
_BRIDGE_READER_FEATURES = frozenset(
    {"timestampNtz", "deletionVectors", "v2Checkpoint", "vacuumProtocolCheck"}
)
# Characters Hadoop expands as a glob pattern in a path given to spark.read.
_GLOB_CHARACTERS = re.compile(r"([\\{}\[\]*?])")

T = TypeVar("T")


class DeltaBridgeError(RuntimeError):
    """The table needs the Delta Spark jar: the bridge cannot read it correctly."""


def use_native(spark: SparkSession, mode: DeltaMode = "auto") -> bool:
    if mode == "auto":
        return has_delta_jar(spark)
    if mode == "native" and not has_delta_jar(spark):
        raise DeltaBridgeError(
            "mode='native' needs the Delta Spark jar on the session (Databricks, or "
            "spark.jars.packages=io.delta:delta-spark_2.13:<version> with the Delta session "
            "extension and catalog); use mode='auto' to fall back to the bridge"
        )
    return mode == "native"


# --- reading ------------------------------------------------------------------------------


def read_delta(
    spark: SparkSession,
    uri: str,
    *,
    partitions: Sequence[PartitionValue] | None = None,
    date_range: tuple[dt.date, dt.date] | None = None,
    partition_column: str = PARTITION_COLUMN,
    mode: DeltaMode = "auto",
) -> DataFrame:
    """A Delta table as a Spark DataFrame, optionally only some partitions (inclusive range).

    Same contract as `ml_assets.storage.delta.scan`, including TableNotMaterializedError.
    """
    if use_native(spark, mode):
        return _native_read(spark, uri, partitions, date_range, partition_column)
    return _bridge_read(spark, uri, partitions, date_range, partition_column)


def _row_filter(
    frame: DataFrame,
    partitions: Sequence[PartitionValue] | None,
    date_range: tuple[dt.date, dt.date] | None,
    partition_column: str,
) -> DataFrame:
    from pyspark.sql import functions as F

    if partitions is not None:
        frame = frame.filter(F.col(partition_column).isin(list(partitions)))
    if date_range is not None:
        first, last = date_range
        frame = frame.filter(F.col(partition_column).between(first, last))
    return frame


def _native_read(spark, uri, partitions, date_range, partition_column) -> DataFrame:
    from delta.tables import DeltaTable as SparkDeltaTable

    if not SparkDeltaTable.isDeltaTable(spark, uri):
        raise TableNotMaterializedError(
            f"no Delta table at {uri}: materialize the upstream asset first"
        )
    frame = spark.read.format("delta").load(uri)
    return _row_filter(frame, partitions, date_range, partition_column)


def spark_schema(table: DeltaTable) -> StructType:
    """The table's schema as a Spark StructType (Delta's schema JSON is Spark's)."""
    from pyspark.sql.types import StructType

    return StructType.fromJson(json.loads(table.schema().to_json()))


def _check_bridge_can_read(table: DeltaTable, uri: str) -> None:
    protocol = table.protocol()
    features = set(protocol.reader_features or [])
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if protocol.min_reader_version == 2 or "columnMapping" in features or mapping != "none":
        raise DeltaBridgeError(
            f"{uri} uses column mapping (data files store physical column names): reading it "
            "needs the Delta Spark jar"
        )
    unknown = features - _BRIDGE_READER_FEATURES
    if protocol.min_reader_version > 3 or unknown:
        raise DeltaBridgeError(
            f"{uri} needs reader features {sorted(unknown)} (reader version "
            f"{protocol.min_reader_version}) that the Delta bridge does not support: reading "
            "it needs the Delta Spark jar"
        )


def _has_deletion_vectors(table: DeltaTable) -> bool:
    if "deletionVectors" not in (table.protocol().reader_features or []):
        return False
    return pl.DataFrame(table.deletion_vectors()).height > 0


def _bridge_read(spark, uri, partitions, date_range, partition_column) -> DataFrame:
    if not delta.table_exists(uri):
        raise TableNotMaterializedError(
            f"no Delta table at {uri}: materialize the upstream asset first"
        )
    table = DeltaTable(uri)
    _check_bridge_can_read(table, uri)
    schema = spark_schema(table)
    partition_columns = list(table.metadata().partition_columns)
    if _has_deletion_vectors(table):
        # Rows deleted through deletion vectors are still in the data files; Polars honours the
        # vectors, so go through it (at Arrow, not Parquet, speed).
        return _read_through_polars(spark, uri, schema, partitions, date_range, partition_column)

    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    pruned = partition_column in partition_columns and not actions.is_empty()
    if pruned:
        value = pl.col(f"partition.{partition_column}")
        if partitions is not None:
            actions = actions.filter(value.is_in(list(partitions)))
        if date_range is not None:
            actions = actions.filter(value.is_between(*date_range))
    if actions.is_empty():
        return spark.createDataFrame([], schema)

    names = [posixpath.basename(unquote(path)) for path in actions.get_column("path")]
    if len(set(names)) != len(names):
        # Partition values are matched to rows by data file name; Delta writers put a UUID in
        # every name, so this does not happen in practice. Stay correct if it does.
        return _read_through_polars(spark, uri, schema, partitions, date_range, partition_column)

    root = _table_root(uri)
    files = [_spark_path(root, path) for path in actions.get_column("path")]
    data_schema = _struct([f for f in schema.fields if f.name not in partition_columns])
    frame = spark.read.schema(data_schema).parquet(*files)
    frame = frame.select(
        *[
            _partition_value(actions, names, field.name, field.dataType)
            if field.name in partition_columns
            else _column(field.name)
            for field in schema.fields
        ]
    )
    if not pruned:
        frame = _row_filter(frame, partitions, date_range, partition_column)
    return frame


def _column(name: str) -> Column:
    """A top-level column by its exact name (dots and backticks are not paths)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _struct(fields: list) -> StructType:
    from pyspark.sql.types import StructType

    return StructType(fields)


def _partition_value(actions: pl.DataFrame, names: list[str], column: str, data_type) -> Column:
    """Each row's value of partition column `column`, looked up by the row's data file name."""
    from pyspark.sql import functions as F

    values = actions.get_column(f"partition.{column}").to_list()
    # A map even for one value: the column stays nullable, as every column read from files.
    lookup = F.create_map(
        *[
            item
            for name, value in zip(names, values, strict=True)
            for item in (F.lit(name), F.lit(value).cast(data_type))
        ]
    )
    return F.element_at(lookup, F.col("_metadata.file_name")).alias(column)


def _table_root(uri: str) -> str:
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(uri).resolve())


def _spark_path(root: str, action_path: str) -> str:
    """A data file as spark.read takes it: the add action's path is a percent-encoded URI,
    relative to the table root unless absolute; Hadoop must not expand it as a glob."""
    path = unquote(action_path)
    if "://" not in path and not path.startswith("/"):
        path = f"{root}/{path}"
    return _GLOB_CHARACTERS.sub(r"\\\1", path)


def _read_through_polars(spark, uri, schema, partitions, date_range, partition_column):
    frame = delta.scan(
        uri, partitions=partitions, date_range=date_range, partition_column=partition_column
    ).collect()
    # createDataFrame maps an Arrow timestamp without zone to TIMESTAMP (local), not
    # TIMESTAMP_NTZ: give it the table's schema.
    return spark.createDataFrame(frame.to_arrow(), schema=schema)


# --- writing ------------------------------------------------------------------------------


def write_partitions(
    spark_df: DataFrame,
    uri: str,
    *,
    partitions: Sequence[PartitionValue] | None,
    partition_column: str = PARTITION_COLUMN,
    mode: DeltaMode = "auto",
) -> WriteResult:
    """Replace exactly `partitions` of the table with `spark_df` (the whole table when None).

    Same semantics as `ml_assets.storage.delta.write_partitions`: listed partitions absent from
    the frame end up empty; rows outside `partitions` raise ValueError and nothing is written.
    """
    if partitions is not None and partition_column not in spark_df.columns:
        raise ValueError(
            f"cannot write partitioned table {uri}: column {partition_column!r} is missing"
        )
    if use_native(spark_df.sparkSession, mode):
        return _native_write(spark_df, uri, partitions, partition_column)
    return _bridge_write(spark_df, uri, partitions, partition_column)


def to_polars(spark_df: DataFrame) -> pl.DataFrame:
    """Collect a Spark DataFrame into Polars with the dtypes the Polars path would write.

    Timestamps with a zone come back in the session zone: converted to UTC, so a TIMESTAMP
    column is `pl.Datetime("us", "UTC")` whatever the session zone; TIMESTAMP_NTZ is
    `pl.Datetime("us")`.
    """
    from pyspark.sql.types import MapType

    maps = [f.name for f in spark_df.schema.fields if _contains(f.dataType, MapType)]
    if maps:
        raise TypeError(
            f"columns {maps} are maps, which Polars stores as lists of structs: the bridge "
            "would change their Delta type; write them with the Delta Spark jar"
        )
    frame = pl.from_arrow(spark_df.toArrow())
    assert isinstance(frame, pl.DataFrame)
    zoned = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC")
    ]
    if zoned:
        frame = frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC"))
    return frame


def _contains(data_type, kind) -> bool:
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(data_type, kind):
        return True
    if isinstance(data_type, ArrayType):
        return _contains(data_type.elementType, kind)
    if isinstance(data_type, MapType):
        return _contains(data_type.keyType, kind) or _contains(data_type.valueType, kind)
    if isinstance(data_type, StructType):
        return any(_contains(f.dataType, kind) for f in data_type.fields)
    return False


def _bridge_write(spark_df, uri, partitions, partition_column) -> WriteResult:
    return delta.write_partitions(
        uri, to_polars(spark_df), partitions=partitions, partition_column=partition_column
    )


def polars_schema(schema: StructType) -> pl.Schema:
    """The Polars schema of a Spark schema, as `to_polars` would produce it."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema, timezone="UTC")
    frame = pl.from_arrow(arrow.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


def _native_write(spark_df, uri, partitions, partition_column) -> WriteResult:
    from delta.tables import DeltaTable as SparkDeltaTable
    from pyspark.sql import functions as F

    spark = spark_df.sparkSession
    if partitions is not None:
        value = F.col(partition_column)
        stray = spark_df.filter(value.isNull() | ~value.isin(list(partitions)))
        examples = [row[0] for row in stray.select(partition_column).limit(3).collect()]
        if examples:
            count = stray.count()
            raise ValueError(
                f"{count} rows for {uri} fall outside the partitions being written "
                f"({partition_column} values such as {examples})"
            )

    def commit() -> None:
        writer = spark_df.write.format("delta")
        if partitions is None:
            writer.mode("overwrite").option("overwriteSchema", "true").save(uri)
        elif not SparkDeltaTable.isDeltaTable(spark, uri):
            writer.mode("append").partitionBy(partition_column).save(uri)
        else:
            writer.mode("overwrite").partitionBy(partition_column).option(
                "replaceWhere", partition_predicate(partition_column, partitions)
            ).save(uri)

    _retry_concurrent(commit)
    last = SparkDeltaTable.forPath(spark, uri).history(1).first()
    metrics = last["operationMetrics"] or {}
    rows = metrics.get("numOutputRows")
    return WriteResult(
        uri=uri,
        version=int(last["version"]),
        rows_written=int(rows) if rows is not None else spark_df.count(),
        table_rows=spark.read.format("delta").load(uri).count(),
        schema=polars_schema(spark_df.schema),
    )


def _retry_concurrent(
    commit: Callable[[], T], *, attempts: int = 10, base_delay: float = 0.05
) -> T:
    """Retry a Delta Spark commit that lost a race (ConcurrentAppendException & co.): our
    writes are idempotent partition overwrites, as in the Polars path."""
    for attempt in range(attempts):
        try:
            return commit()
        except Exception as error:
            concurrent = "Concurrent" in type(error).__name__ or "Concurrent" in str(error)[:200]
            if not concurrent or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.5, 1.5) * base_delay * 2 ** min(attempt, 6))
    raise AssertionError("unreachable")


__all__ = [
    "DeltaBridgeError",
    "DeltaMode",
    "polars_schema",
    "read_delta",
    "spark_schema",
    "to_polars",
    "use_native",
    "write_partitions",
]
