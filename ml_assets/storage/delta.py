"""Partition-aware Delta table reads and writes with Polars and delta-rs.

Why our own layer instead of dagster-deltalake-polars: with date partitions its windowed and
full-table reads return only the first partition and single-run range backfills fail (see
docs/decisions.md). Here a write replaces exactly the partitions it was given with a predicate
overwrite, and a read is a lazy scan filtered on the partition column.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

# Every partitioned table in the lake is partitioned by this column (type pl.Date).
PARTITION_COLUMN = "event_date"

PartitionValue = dt.date | str


class TableNotMaterializedError(LookupError):
    """Raised when reading a Delta table that has never been written."""


@dataclass(frozen=True)
class WriteResult:
    uri: str
    version: int
    rows_written: int
    table_rows: int
    schema: pl.Schema


def sql_literal(value: PartitionValue) -> str:
    """A partition value as a SQL literal for a delta-rs predicate, quotes escaped."""
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return "'" + text.replace("'", "''") + "'"


def partition_predicate(column: str, values: Sequence[PartitionValue]) -> str:
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri)


def _commit_with_retry(commit, *, attempts: int = 10, base_delay: float = 0.05) -> None:
    """Retry a commit that lost a race with another writer.

    delta-rs rejects concurrent commits that touch the same table even when they replace
    different partitions. Our writes are idempotent predicate overwrites, so retrying after a
    jittered back-off is safe and converges.
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
    source shrank does not leave stale rows behind. Rows outside `partitions` are refused by
    delta-rs rather than silently written.
    """
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    if partitions is not None:
        if partition_column not in df.columns:
            raise ValueError(
                f"cannot write partitioned table {uri}: column {partition_column!r} is missing"
            )
        stray = df.filter(~pl.col(partition_column).is_in(list(partitions)))
        if stray.height:
            example = stray.get_column(partition_column).head(3).to_list()
            raise ValueError(
                f"{stray.height} rows for {uri} fall outside the partitions being written "
                f"({partition_column} values such as {example})"
            )

    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)

    arrow = df.to_arrow()

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
    table = DeltaTable(uri)
    return WriteResult(
        uri=uri,
        version=table.version(),
        rows_written=df.height,
        table_rows=table_row_count(table),
        schema=df.schema,
    )


def append_rows(uri: str, frame: pl.DataFrame) -> int:
    """Append to a log-style table (audit trails); returns the new Delta version."""
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    arrow = frame.to_arrow()
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
