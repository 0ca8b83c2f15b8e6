"""Spark and Polars read and write the same Delta tables, with the same partition semantics."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, TableFeatures, write_deltalake
from polars.testing import assert_frame_equal

from ml_assets.engines import spark_delta
from ml_assets.engines.spark_delta import DeltaBridgeError, read_delta, to_polars
from ml_assets.storage import delta
from ml_assets.storage.delta import TableNotMaterializedError

pytestmark = pytest.mark.spark

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
DAYS = [D1, D2, D3]

# The Delta types both engines must produce for these columns.
DELTA_TYPES = {
    "id": "long",
    "name": "string",
    "score": "double",
    "quantity": "integer",
    "flag": "boolean",
    "event_ts": "timestamp_ntz",
    "ingested_at": "timestamp",
    "birth_date": "date",
    "event_date": "date",
}


def polars_rows(days: list[dt.date], *, per_day: int = 3, salt: int = 0) -> pl.DataFrame:
    rows = []
    for d, day in enumerate(days):
        for i in range(per_day):
            n = d * 100 + i
            rows.append(
                {
                    "id": n + salt * 10_000,
                    "name": None if i == 1 else f"row {n} salt {salt}",
                    "score": None if i == 2 else n / 7 + salt,
                    "quantity": n,
                    "flag": i % 2 == 0,
                    "event_ts": dt.datetime.combine(day, dt.time(i, 30, 0, 123456)),
                    "ingested_at": dt.datetime(2026, 2, 1, 12, i, tzinfo=dt.UTC),
                    "birth_date": dt.date(1990, 1, 1) + dt.timedelta(days=n),
                    "event_date": day,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.Int64,
            "name": pl.String,
            "score": pl.Float64,
            "quantity": pl.Int32,
            "flag": pl.Boolean,
            "event_ts": pl.Datetime("us"),
            "ingested_at": pl.Datetime("us", "UTC"),
            "birth_date": pl.Date,
            "event_date": pl.Date,
        },
    )


def spark_rows(spark, frame: pl.DataFrame):
    """The same rows as a Spark DataFrame built with Spark types (not from Arrow)."""
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("name", T.StringType()),
            T.StructField("score", T.DoubleType()),
            T.StructField("quantity", T.IntegerType()),
            T.StructField("flag", T.BooleanType()),
            T.StructField("event_ts", T.TimestampNTZType()),
            T.StructField("ingested_at", T.TimestampType()),
            T.StructField("birth_date", T.DateType()),
            T.StructField("event_date", T.DateType()),
        ]
    )
    return spark.createDataFrame(frame.rows(), schema=schema)


def delta_types(uri: str) -> dict[str, str]:
    return {f.name: str(f.type.type) for f in DeltaTable(uri).schema().fields}


def table_rows(uri: str) -> pl.DataFrame:
    return delta.scan(uri).collect().sort("id")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path


def test_polars_writes_spark_reads_every_type(spark, lake):
    # A space in the path: delta-rs percent-encodes it in its file URIs, the bridge must not.
    # (Polars' scan_delta trips on it, so this table is only read by Spark.)
    uri = str(lake / "with space" / "table")
    frame = polars_rows(DAYS)
    delta.write_partitions(uri, frame, partitions=DAYS)
    assert delta_types(uri) == DELTA_TYPES

    spark_df = read_delta(spark, uri)
    assert spark_df.schema.simpleString() == (
        "struct<id:bigint,name:string,score:double,quantity:int,flag:boolean,"
        "event_ts:timestamp_ntz,ingested_at:timestamp,birth_date:date,event_date:date>"
    )
    assert_frame_equal(to_polars(spark_df).sort("id"), frame, check_exact=True)

    # Partitions are pruned by file (only their files are read) and carry their values.
    one_day = read_delta(spark, uri, partitions=[D2])
    assert len(one_day.inputFiles()) == 1
    assert_frame_equal(
        to_polars(one_day).sort("id"), frame.filter(pl.col("event_date") == D2), check_exact=True
    )
    two_days = read_delta(spark, uri, date_range=(D2, D3))
    assert len(two_days.inputFiles()) == 2
    assert_frame_equal(
        to_polars(two_days).sort("id"),
        frame.filter(pl.col("event_date") >= D2),
        check_exact=True,
    )
    assert read_delta(spark, uri, partitions=[dt.date(2030, 1, 1)]).count() == 0


def test_spark_writes_polars_reads_with_the_same_delta_types(spark, lake):
    frame = polars_rows(DAYS)
    spark_df = spark_rows(spark, frame)
    # What the native path reports as the written schema is what Polars would see.
    assert spark_delta.polars_schema(spark_df.schema) == frame.schema
    by_spark = spark_delta.write_partitions(spark_df, str(lake / "spark"), partitions=DAYS)
    by_polars = delta.write_partitions(str(lake / "polars"), frame, partitions=DAYS)

    # The same table, whichever engine wrote it: schema, protocol, partitioning, result.
    assert delta_types(str(lake / "spark")) == DELTA_TYPES
    spark_table, polars_table = DeltaTable(str(lake / "spark")), DeltaTable(str(lake / "polars"))
    assert spark_table.schema().to_json() == polars_table.schema().to_json()
    assert spark_table.protocol() == polars_table.protocol()
    assert spark_table.metadata().partition_columns == ["event_date"]
    assert (by_spark.version, by_spark.rows_written, by_spark.table_rows, by_spark.schema) == (
        by_polars.version,
        by_polars.rows_written,
        by_polars.table_rows,
        by_polars.schema,
    )
    assert_frame_equal(table_rows(str(lake / "spark")), frame, check_exact=True)


def test_both_engines_write_partitions_of_one_table(spark, lake):
    uri = str(lake / "shared")
    first = polars_rows(DAYS, salt=0)
    second = polars_rows(DAYS, salt=1)
    delta.write_partitions(uri, first.filter(pl.col("event_date") == D1), partitions=[D1])
    spark_delta.write_partitions(
        spark_rows(spark, second.filter(pl.col("event_date") == D2)), uri, partitions=[D2]
    )
    delta.write_partitions(uri, second.filter(pl.col("event_date") == D1), partitions=[D1])
    spark_delta.write_partitions(
        spark_rows(spark, first.filter(pl.col("event_date") == D3)), uri, partitions=[D3]
    )
    expected = pl.concat(
        [
            second.filter(pl.col("event_date") <= D2),
            first.filter(pl.col("event_date") == D3),
        ]
    ).sort("id")
    assert_frame_equal(table_rows(uri), expected, check_exact=True)
    assert_frame_equal(to_polars(read_delta(spark, uri)).sort("id"), expected, check_exact=True)


def test_spark_partition_overwrite_replaces_exactly_that_partition(spark, lake):
    uri = str(lake / "overwrite")
    initial = polars_rows(DAYS, per_day=3)
    result = spark_delta.write_partitions(spark_rows(spark, initial), uri, partitions=DAYS)
    assert (result.version, result.rows_written, result.table_rows) == (0, 9, 9)

    def files_of(day: dt.date) -> set[str]:
        actions = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True))
        return set(actions.filter(pl.col("partition.event_date") == day)["path"])

    untouched = {day: files_of(day) for day in (D1, D3)}
    replacement = polars_rows([D2], per_day=5, salt=7).with_columns(pl.col("id") + 100)
    expected = pl.concat([initial.filter(pl.col("event_date") != D2), replacement]).sort("id")
    tables = []
    for attempt in range(3):
        result = spark_delta.write_partitions(spark_rows(spark, replacement), uri, partitions=[D2])
        assert (result.version, result.rows_written, result.table_rows) == (attempt + 1, 5, 11)
        tables.append(table_rows(uri))
        assert {day: files_of(day) for day in (D1, D3)} == untouched
    assert_frame_equal(tables[0], expected, check_exact=True)
    assert tables[0].equals(tables[1]) and tables[1].equals(tables[2])


def test_rows_outside_the_partitions_are_refused(spark, lake):
    uri = str(lake / "refuse")
    frame = polars_rows(DAYS)
    spark_delta.write_partitions(spark_rows(spark, frame), uri, partitions=DAYS)
    with pytest.raises(ValueError, match="fall outside the partitions being written"):
        spark_delta.write_partitions(spark_rows(spark, frame), uri, partitions=[D1, D2])
    with pytest.raises(ValueError, match="column 'event_date' is missing"):
        spark_delta.write_partitions(
            spark_rows(spark, frame).drop("event_date"), uri, partitions=[D1]
        )
    assert DeltaTable(uri).version() == 0
    assert_frame_equal(table_rows(uri), frame, check_exact=True)


def test_listed_partition_missing_from_the_frame_ends_up_empty(spark, lake):
    uri = str(lake / "shrink")
    frame = polars_rows(DAYS)
    spark_delta.write_partitions(spark_rows(spark, frame), uri, partitions=DAYS)
    only_d1 = frame.filter(pl.col("event_date") == D1)
    result = spark_delta.write_partitions(spark_rows(spark, only_d1), uri, partitions=[D1, D2])
    assert (result.rows_written, result.table_rows) == (3, 6)
    assert table_rows(uri)["event_date"].unique().sort().to_list() == [D1, D3]


def test_whole_table_write_replaces_table_and_schema(spark, lake):
    uri = str(lake / "whole")
    spark_delta.write_partitions(spark_rows(spark, polars_rows(DAYS)), uri, partitions=None)
    # A dotted name is a column, not a path into a struct.
    result = spark_delta.write_partitions(spark.range(4).toDF("x.y"), uri, partitions=None)
    assert (result.rows_written, result.table_rows) == (4, 4)
    assert to_polars(read_delta(spark, uri)).sort("x.y")["x.y"].to_list() == [0, 1, 2, 3]


def test_a_session_in_another_time_zone_still_writes_utc(spark, lake):
    uri = str(lake / "zones")
    frame = polars_rows([D1])
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        spark_delta.write_partitions(spark_rows(spark, frame), uri, partitions=[D1])
        assert_frame_equal(to_polars(read_delta(spark, uri)).sort("id"), frame)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert delta_types(uri) == DELTA_TYPES
    assert_frame_equal(table_rows(uri), frame, check_exact=True)


def test_reading_a_missing_table_says_to_materialize_it(spark, lake):
    with pytest.raises(TableNotMaterializedError, match="materialize the upstream asset"):
        read_delta(spark, str(lake / "nothing"))


def test_deletion_vectors_are_honoured_through_polars(spark, lake, monkeypatch):
    uri = str(lake / "dv")
    frame = polars_rows(DAYS)
    delta.write_partitions(uri, frame, partitions=DAYS)
    DeltaTable(uri).alter.add_feature(
        TableFeatures.DeletionVectors, allow_protocol_versions_increase=True
    )
    # The feature alone (no vector yet) changes nothing: still read file by file.
    plain = read_delta(spark, uri, partitions=[D1])
    assert len(plain.inputFiles()) == 1

    # delta-rs cannot write deletion vectors; pretend one exists to take the other path.
    deleted = pl.DataFrame({"filepath": ["x"], "selection_vector": [[True]]}).to_arrow()
    monkeypatch.setattr(DeltaTable, "deletion_vectors", lambda self: deleted)
    through_polars = read_delta(spark, uri, partitions=[D1])
    assert through_polars.inputFiles() == []
    assert through_polars.schema == plain.schema  # timestamp_ntz stays timestamp_ntz
    assert_frame_equal(
        to_polars(through_polars).sort("id"),
        frame.filter(pl.col("event_date") == D1),
        check_exact=True,
    )


def test_column_mapping_needs_the_delta_jar(spark, lake):
    uri = str(lake / "mapped")
    write_deltalake(
        uri,
        polars_rows([D1]).to_arrow(),
        partition_by=["event_date"],
        configuration={"delta.columnMapping.mode": "name"},
    )
    with pytest.raises(DeltaBridgeError, match="column mapping"):
        read_delta(spark, uri)


def test_the_native_path_is_chosen_when_the_jar_is_there(spark, lake, monkeypatch):
    uri = str(lake / "native")
    delta.write_partitions(uri, polars_rows([D1]), partitions=[D1])
    with pytest.raises(DeltaBridgeError, match="needs the Delta Spark jar"):
        read_delta(spark, uri, mode="native")
    assert read_delta(spark, uri, mode="bridge").count() == 3

    # With the jar reported present, auto takes the native path (not runnable here: this
    # session has no Delta data source, and the jar cannot be downloaded).
    calls = []
    monkeypatch.setattr(spark_delta, "has_delta_jar", lambda session: True)
    monkeypatch.setattr(spark_delta, "_native_read", lambda *args: calls.append("read"))
    monkeypatch.setattr(spark_delta, "_native_write", lambda *args: calls.append("write"))
    read_delta(spark, uri)
    spark_delta.write_partitions(spark_rows(spark, polars_rows([D1])), uri, partitions=[D1])
    assert calls == ["read", "write"]
