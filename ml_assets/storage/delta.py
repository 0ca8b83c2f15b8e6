"""Partition-aware Delta table reads and writes with Polars and delta-rs.

Why our own layer instead of dagster-deltalake-polars: with date partitions its windowed and
full-table reads return only the first partition and single-run range backfills fail (see
docs/decisions.md). Here a write replaces exactly the partitions it was given, and a read is a
lazy scan filtered on the partition column.

A local write has Polars write the Parquet files and delta-rs commit them (add actions with
file statistics, plus the removal of the replaced partitions' old files) in one transaction;
see `write_partitions` and `commit_files` for why and how that stays exact under concurrency.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import polars as pl
from arro3.core import Table as ArrowTable
from deltalake import DeltaTable, Schema, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

# Every partitioned table in the lake is partitioned by this column (type pl.Date).
PARTITION_COLUMN = "event_date"

PartitionValue = dt.date | str

# Polars writes a partition's rows as one file up to this much memory (about a quarter of it
# on disk), like delta-rs' ~100 MB target.
TARGET_FILE_BYTES = 512 * 1024 * 1024
# Snappy, as delta-rs and Spark write: 25 % faster to write than zstd here, 40 % larger.
PARQUET_COMPRESSION = "snappy"
# Rows per Parquet row group, delta-rs' default. Polars' smaller default row groups come back
# as many small chunks when read, which made the next write of such a frame 2x slower.
ROW_GROUP_ROWS = 1024 * 1024
# Longest string kept whole in file statistics (Delta's default truncation length).
STATS_STRING_PREFIX = 32


class TableNotMaterializedError(LookupError):
    """Raised when reading a Delta table that has never been written."""


@dataclass(frozen=True)
class WriteResult:
    uri: str
    version: int
    rows_written: int
    table_rows: int
    schema: pl.Schema


def partition_text(value: PartitionValue) -> str:
    """A partition value as the Delta log stores it ("2026-01-01" for a date)."""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def sql_literal(value: PartitionValue) -> str:
    """A partition value as a SQL literal for a delta-rs predicate, quotes escaped."""
    return "'" + partition_text(value).replace("'", "''") + "'"


def partition_predicate(column: str, values: Sequence[PartitionValue]) -> str:
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


def partition_row_counts(uri: str) -> dict[dt.date, int]:
    """Rows per daily partition, from the Delta log's file statistics (no data file is read)."""
    if not DeltaTable.is_deltatable(uri):
        return {}
    actions = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True))
    column = f"partition.{PARTITION_COLUMN}"
    if actions.is_empty() or column not in actions.columns:
        return {}
    counts = actions.group_by(column).agg(pl.col("num_records").sum())
    result = {}
    for value, rows in counts.iter_rows():
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        result[day] = int(rows)
    return result


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri)


def _commit_with_retry(
    commit: Callable[[], None], *, attempts: int = 12, base_delay: float = 0.05
) -> None:
    """Retry a commit that lost a race with another writer.

    delta-rs rejects concurrent commits that touch the same table, and our file commits refuse
    any table that moved since they looked at it (see `commit_files`). Every write is an
    idempotent replacement of its partitions, recomputed from the latest table state on each
    attempt, so retrying after a jittered back-off is safe and converges.
    """
    for attempt in range(attempts):
        try:
            commit()
            return
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.5, 1.5) * base_delay * 2 ** min(attempt, 6))


def write_partitions(
    uri: str,
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    partitions: Sequence[PartitionValue] | None,
    partition_column: str = PARTITION_COLUMN,
) -> WriteResult:
    """Replace exactly `partitions` of the table with `frame` (the whole table when None).

    Partitions listed but absent from `frame` end up empty, so re-running a partition whose
    source shrank does not leave stale rows behind. Rows outside `partitions` (or without a
    partition value) are refused rather than silently written.

    On a local table Polars writes the Parquet files (multi-threaded; delta-rs' writer is
    mostly single-threaded and was half the time of a feature build) and delta-rs commits
    them in one transaction that also removes the replaced partitions' old files. Remote
    tables (`s3://`, `dbfs:/`, ...) go through `write_deltalake` with a predicate overwrite.
    """
    # The streaming engine is Polars 2.x's default; asked for explicitly so an older Polars
    # does not silently fall back to the slower in-memory engine.
    df = frame.collect(engine="streaming") if isinstance(frame, pl.LazyFrame) else frame
    if partitions is not None:
        _check_partition_rows(uri, df, partitions, partition_column)
    if partitions is None or "://" in uri:
        _write_with_delta_rs(uri, df, partitions, partition_column)
    else:
        _write_with_polars(uri, df, partitions, partition_column)
    table = DeltaTable(uri)
    return WriteResult(
        uri=uri,
        version=table.version(),
        rows_written=df.height,
        table_rows=table_row_count(table),
        schema=df.schema,
    )


def _check_partition_rows(
    uri: str, df: pl.DataFrame, partitions: Sequence[PartitionValue], column: str
) -> None:
    if column not in df.columns:
        raise ValueError(f"cannot write partitioned table {uri}: column {column!r} is missing")
    # A null partition value is outside every partition too (is_in gives null, not False).
    stray = df.filter(~pl.col(column).is_in(list(partitions)).fill_null(False))
    if stray.height:
        example = stray.get_column(column).head(3).to_list()
        raise ValueError(
            f"{stray.height} rows for {uri} fall outside the partitions being written "
            f"({column} values such as {example})"
        )


def _write_with_delta_rs(
    uri: str,
    df: pl.DataFrame,
    partitions: Sequence[PartitionValue] | None,
    partition_column: str,
) -> None:
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    arrow = df.to_arrow(compat_level=pl.CompatLevel.newest())

    def commit() -> None:
        if partitions is None:
            write_deltalake(uri, arrow, mode="overwrite", schema_mode="overwrite")
        elif not table_exists(uri):
            write_deltalake(uri, arrow, mode="append", partition_by=[partition_column])
        else:
            write_deltalake(
                uri,
                arrow,
                mode="overwrite",
                partition_by=[partition_column],
                predicate=partition_predicate(partition_column, partitions),
            )

    _commit_with_retry(commit)


def _write_with_polars(
    uri: str, df: pl.DataFrame, partitions: Sequence[PartitionValue], partition_column: str
) -> None:
    existing = DeltaTable(uri) if table_exists(uri) else None
    if existing is not None:
        table_partitions = list(existing.metadata().partition_columns)
        if table_partitions != [partition_column]:
            raise ValueError(
                f"cannot write partitions of {uri}: the table is partitioned by "
                f"{table_partitions}, not [{partition_column!r}]"
            )
    schema = existing.schema() if existing is not None else _new_table_schema(df, uri)
    data = _conform(df, schema, uri)
    adds = write_files(uri, data, partition_column)
    try:
        _commit_with_retry(lambda: commit_files(uri, schema, adds, partitions, partition_column))
    except BaseException:
        _remove_uncommitted_files(uri, adds)
        raise


def _new_table_schema(df: pl.DataFrame, uri: str) -> Schema:
    """The Delta schema of a new table for `df`, in the types delta-rs' own writer would store:
    microsecond timestamps (zoned ones in UTC), categoricals as strings."""
    casts = {}
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.Datetime):
            casts[name] = pl.Datetime("us", "UTC" if dtype.time_zone else None)
        elif isinstance(dtype, pl.Categorical | pl.Enum):
            casts[name] = pl.String
    try:
        return Schema.from_arrow(ArrowTable.from_arrow(df.head(0).cast(casts)).schema)
    except Exception as error:  # delta-rs names the unsupported type
        raise SchemaMismatchError(f"cannot store {uri} as a Delta table: {error}") from error


def _polars_schema(schema: Schema) -> pl.Schema:
    return pl.DataFrame(ArrowTable.from_batches([], schema=schema.to_arrow())).schema


def _conform(df: pl.DataFrame, schema: Schema, uri: str) -> pl.DataFrame:
    """`df` with the table's columns in the table's types and order.

    Like `write_deltalake` into an existing table: the same column names are required, in any
    order, and each column is cast to the table's type (strictly: a value that does not fit
    fails the write instead of becoming null).
    """
    target = _polars_schema(schema)
    missing = [c for c in target if c not in df.schema]
    unexpected = [c for c in df.schema if c not in target]
    if missing or unexpected:
        raise SchemaMismatchError(
            f"cannot write {uri}: the frame's columns differ from the table's "
            f"(missing {missing}, not in the table {unexpected})"
        )
    if df.columns != list(target):
        df = df.select(list(target))
    casts = {c: t for c, t in target.items() if df.schema[c] != t}
    if not casts:  # the usual case; even an empty cast costs a pass over the data
        return df
    try:
        return df.cast(casts, strict=True)
    except pl.exceptions.InvalidOperationError as error:
        raise SchemaMismatchError(f"cannot write {uri}: {error}") from error


def write_files(uri: str, df: pl.DataFrame, partition_column: str) -> list[AddAction]:
    """Write `df` as Parquet files in the hive layout delta-rs uses, not yet committed.

    One file per partition value, split when its rows take more than `TARGET_FILE_BYTES` in
    memory. Data files do not store the partition column (Delta keeps it in the log).
    Partitions are written on parallel threads. Polars' Parquet writer is itself multi-threaded,
    but one partition at a time leaves cores idle between its steps: the threads measured 5 %
    faster on two cores at 10M rows.
    """
    root = Path(uri)
    written: list[Path] = []  # appended to before each write, so a failure can clean up

    def write_partition(run: dict[str, Any]) -> list[AddAction]:
        value = run["value"]
        if contiguous:
            part = df.slice(run["start"], run["len"])
        else:
            part = df.filter(pl.col(partition_column) == value)
        part = part.drop(partition_column)
        text = partition_text(value)
        folder = f"{partition_column}={quote(text, safe='')}"
        (root / folder).mkdir(parents=True, exist_ok=True)
        files = max(1, -(-part.estimated_size() // TARGET_FILE_BYTES))
        rows_per_file = -(-part.height // files)
        adds = []
        for offset in range(0, part.height, rows_per_file):
            chunk = part.slice(offset, rows_per_file)
            relative = f"{folder}/part-{uuid.uuid4()}-c000.{PARQUET_COMPRESSION}.parquet"
            path = root / relative
            written.append(path)
            chunk.write_parquet(
                path, compression=PARQUET_COMPRESSION, row_group_size=ROW_GROUP_ROWS
            )
            adds.append(
                AddAction(
                    # The path on disk; delta-rs percent-encodes it for the log, where the
                    # folder's own escapes get escaped again (as its writer does).
                    path=relative,
                    size=path.stat().st_size,
                    partition_values={partition_column: text},
                    modification_time=int(time.time() * 1000),
                    data_change=True,
                    stats=json.dumps(file_stats(chunk)),
                )
            )
        return adds

    # Rows read from a partitioned table come grouped by partition: then each partition is a
    # zero-copy slice. Filtering instead costs a pass per partition, and on frames read from
    # Polars-written files it copied string buffers (peak RSS 2.2 -> 5.8 GB at 10M rows).
    runs = (
        df.get_column(partition_column)
        .rle()
        .struct.unnest()
        .with_columns(start=pl.col("len").cum_sum() - pl.col("len"))
    )
    contiguous = runs.height == runs.get_column("value").n_unique()
    jobs = runs.to_dicts() if contiguous else runs.unique("value").to_dicts()
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            return [add for adds in pool.map(write_partition, jobs) for add in adds]
    except BaseException:  # e.g. a full disk: no half-written files left behind
        for path in written:
            path.unlink(missing_ok=True)
        raise


def commit_files(
    uri: str,
    schema: Schema,
    adds: list[AddAction],
    partitions: Sequence[PartitionValue],
    partition_column: str,
) -> None:
    """Commit written files as the new content of `partitions`: one Delta transaction that adds
    them and removes every file those partitions had (creates the table on the first write).

    delta-rs would rebase a commit that lost a race onto the newer version when its conflict
    checker sees no clash; for these commits it sees none when two writers fill the same empty
    partition, and both sets of files would stay. So rebasing is off (max_commit_retries=0):
    a table that moved raises CommitFailedError and `_commit_with_retry` starts again from the
    latest version, recomputing which files to remove.
    """
    no_rebase = CommitProperties(max_commit_retries=0)
    if not table_exists(uri):
        try:
            create_table_with_add_actions(
                uri,
                schema,
                adds,
                mode="error",
                partition_by=[partition_column],
                commit_properties=no_rebase,
            )
        except DeltaError as error:
            if isinstance(error, CommitFailedError) or not table_exists(uri):
                raise
            raise CommitFailedError(f"{uri} was created by another writer meanwhile") from error
        return
    if not partitions:  # nothing to replace (every row was refused): leave the table be
        return
    table = DeltaTable(uri)
    if table.schema().to_json() != schema.to_json():
        raise SchemaMismatchError(f"the schema of {uri} changed while these files were written")
    table.create_write_transaction(
        adds,
        mode="overwrite",
        schema=schema,
        partition_by=[partition_column],
        partition_filters=[(partition_column, "in", [partition_text(v) for v in partitions])],
        commit_properties=no_rebase,
    )


def _remove_uncommitted_files(uri: str, adds: list[AddAction]) -> None:
    """Delete the files of a write whose commit failed, unless the log references them after
    all (a commit that landed before a later step failed): those are table data now."""
    try:
        paths = pl.DataFrame(DeltaTable(uri).get_add_actions()) if table_exists(uri) else None
    except Exception:  # cannot tell what is committed: leave the files to VACUUM
        return
    # The log holds percent-encoded paths; ours are the paths on disk.
    committed = set() if paths is None else {unquote(p) for p in paths.get_column("path")}
    for add in adds:
        if add.path not in committed:
            (Path(uri) / add.path).unlink(missing_ok=True)


def file_stats(chunk: pl.DataFrame) -> dict[str, Any]:
    """Delta file statistics (numRecords, minValues, maxValues, nullCount) as delta-rs writes
    them, so data skipping and `get_add_actions` work on files Polars wrote.

    A bound is left out where it could be wrong: floats holding NaN, strings longer than
    `STATS_STRING_PREFIX` (the min keeps a prefix, which still bounds it), decimals, nested
    and binary columns. Timestamps are stored to the millisecond like delta-rs does, with the
    max rounded up so it stays an upper bound.
    """
    if not chunk.height:
        return {"numRecords": 0, "minValues": {}, "maxValues": {}, "nullCount": {}}
    flat = [c for c, t in chunk.schema.items() if not t.is_nested()]
    bounded = [c for c in flat if _has_bounds(chunk.schema[c])]
    floats = [c for c in bounded if chunk.schema[c].is_float()]
    row = chunk.select(
        *[pl.col(c).min().alias(f"min:{c}") for c in bounded],
        *[pl.col(c).max().alias(f"max:{c}") for c in bounded],
        *[pl.col(c).null_count().alias(f"nulls:{c}") for c in flat],
        *[pl.col(c).is_nan().any().alias(f"nan:{c}") for c in floats],
    ).row(0, named=True)
    minimum, maximum = {}, {}
    for c in bounded:
        if row.get(f"nan:{c}"):
            continue
        low, high = row.get(f"min:{c}"), row.get(f"max:{c}")
        if low is not None and (value := _stat_value(low, chunk.schema[c], "min")) is not None:
            minimum[c] = value
        if high is not None and (value := _stat_value(high, chunk.schema[c], "max")) is not None:
            maximum[c] = value
    return {
        "numRecords": chunk.height,
        "minValues": minimum,
        "maxValues": maximum,
        "nullCount": {c: row[f"nulls:{c}"] for c in flat},
    }


def _has_bounds(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.Decimal):
        return False
    return dtype.is_numeric() or dtype in (pl.Boolean, pl.Date, pl.String, pl.Datetime)


def _stat_value(value: Any, dtype: pl.DataType, bound: str) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if len(value) <= STATS_STRING_PREFIX:
            return value
        return value[:STATS_STRING_PREFIX] if bound == "min" else None
    if isinstance(value, dt.datetime):
        extra = value.microsecond % 1000
        if extra:
            value += dt.timedelta(microseconds=1000 - extra if bound == "max" else -extra)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone:
            return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def append_rows(uri: str, frame: pl.DataFrame) -> int:
    """Append to a log-style table (audit trails); returns the new Delta version."""
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    arrow = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    _commit_with_retry(lambda: write_deltalake(uri, arrow, mode="append", schema_mode="merge"))
    return DeltaTable(uri).version()


def table_row_count(table: DeltaTable) -> int:
    """Row count from the Delta log's file statistics, without reading data files."""
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    if actions.is_empty() or "num_records" not in actions.columns:
        return 0
    return int(actions.get_column("num_records").sum())


def scan(
    uri: str,
    *,
    partitions: Sequence[PartitionValue] | None = None,
    date_range: tuple[dt.date, dt.date] | None = None,
    partition_column: str = PARTITION_COLUMN,
) -> pl.LazyFrame:
    """Lazily read a Delta table, optionally only some partitions (inclusive date range)."""
    if not table_exists(uri):
        raise TableNotMaterializedError(
            f"no Delta table at {uri}: materialize the upstream asset first"
        )
    frame = pl.scan_delta(uri)
    if partitions is not None:
        frame = frame.filter(pl.col(partition_column).is_in(list(partitions)))
    if date_range is not None:
        first, last = date_range
        frame = frame.filter(pl.col(partition_column).is_between(first, last))
    return frame


def table_version(uri: str) -> int:
    return DeltaTable(uri).version()
