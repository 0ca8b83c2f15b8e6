"""The Delta IO manager: partition overwrite, windowed and full loads, backfills, concurrency,
and the write path (Polars-written files committed by delta-rs)."""

import datetime as dt
import multiprocessing
from pathlib import Path
from urllib.parse import unquote

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, SchemaMismatchError
from polars.testing import assert_frame_equal

from ml_assets.storage import delta
from ml_assets.storage.io_manager import DeltaIOManager, DeltaLake

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


def _day(key: str) -> dt.date:
    return dt.date.fromisoformat(key)


def _rows_for(day: dt.date, n: int = 3, salt: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_date": [day] * n,
            "id": [f"{day}-{i}" for i in range(n)],
            "value": [float(i + salt) for i in range(n)],
        }
    )


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.concat([_rows_for(_day(k)) for k in context.partition_keys])


@dg.asset(
    partitions_def=DAYS,
    ins={
        "daily": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2, end_offset=0)
        )
    },
)
def three_day_window(daily: pl.LazyFrame) -> pl.DataFrame:
    days = daily.select("event_date").unique().collect().to_series().sort().to_list()
    counts = daily.group_by("event_date").len().collect()
    # Re-key to the last day so the output belongs to this partition.
    return pl.DataFrame(
        {
            "event_date": [max(days)],
            "days_seen": [len(days)],
            "rows_seen": [int(counts["len"].sum())],
        }
    )


@dg.asset
def everything(daily: pl.DataFrame) -> pl.DataFrame:
    return daily.group_by("event_date").len().sort("event_date")


@pytest.fixture
def resources(tmp_path: Path) -> dict[str, object]:
    return {"io_manager": DeltaIOManager(lake=DeltaLake(root=str(tmp_path / "lake")))}


def _table(tmp_path: Path, name: str) -> pl.DataFrame:
    return pl.read_delta(str(tmp_path / "lake" / name)).sort("event_date", "id")


def test_rematerializing_a_partition_replaces_exactly_that_partition(tmp_path, resources):
    for key in ["2026-01-01", "2026-01-02"]:
        dg.materialize([daily], resources=resources, partition_key=key)
    before = _table(tmp_path, "daily")
    for _ in range(3):
        dg.materialize([daily], resources=resources, partition_key="2026-01-02")
    after = _table(tmp_path, "daily")
    assert after.equals(before)
    assert after.height == 6
    # Five commits (two first writes + three rewrites), each replacing only its own partition.
    assert DeltaTable(str(tmp_path / "lake" / "daily")).version() == 4


def test_window_mapping_loads_every_day_of_the_window(tmp_path, resources):
    dg.materialize([daily], resources=resources, tags=_range("2026-01-01", "2026-01-05"))
    result = dg.materialize(
        [daily, three_day_window],
        resources=resources,
        partition_key="2026-01-04",
        selection=[three_day_window],
    )
    assert result.success
    window = pl.read_delta(str(tmp_path / "lake" / "three_day_window"))
    assert window.row(0, named=True) == {
        "event_date": dt.date(2026, 1, 4),
        "days_seen": 3,
        "rows_seen": 9,
    }


def test_unpartitioned_downstream_loads_all_partitions(tmp_path, resources):
    dg.materialize([daily], resources=resources, tags=_range("2026-01-01", "2026-01-04"))
    dg.materialize([daily, everything], resources=resources, selection=[everything])
    counts = pl.read_delta(str(tmp_path / "lake" / "everything")).sort("event_date")
    assert counts["event_date"].to_list() == [dt.date(2026, 1, d) for d in range(1, 5)]
    assert counts["len"].to_list() == [3, 3, 3, 3]


def _range(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def test_single_run_backfill_writes_every_day_in_one_commit(tmp_path, resources):
    result = dg.materialize([daily], resources=resources, tags=_range("2026-01-01", "2026-01-31"))
    table = _table(tmp_path, "daily")
    assert table["event_date"].n_unique() == 31
    assert table.height == 31 * 3
    assert DeltaTable(str(tmp_path / "lake" / "daily")).version() == 0
    materialized = {e.partition for e in result.get_asset_materialization_events()}
    assert len(materialized) == 31


def test_a_range_write_reports_each_days_own_row_count(tmp_path, resources):
    """A range run's metadata is copied to every day's materialization: the row count there is
    the whole range's (93 rows on each of 31 days), each day's own is in an observation."""
    result = dg.materialize([daily], resources=resources, tags=_range("2026-01-01", "2026-01-31"))

    [first, *_] = result.get_asset_materialization_events()
    assert first.materialization.metadata["dagster/row_count"].value == 31 * 3
    per_day = {
        event.partition: event.asset_observation_data.asset_observation.metadata
        for event in result.get_asset_observation_events()
    }
    assert len(per_day) == 31
    assert {m["dagster/row_count"].value for m in per_day.values()} == {3}


def test_output_metadata_describes_the_table(tmp_path, resources):
    result = dg.materialize([daily], resources=resources, partition_key="2026-01-03")
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == 3
    assert metadata["delta_version"].value == 0
    assert metadata["dagster/uri"].value == str(tmp_path / "lake" / "daily")
    columns = {c.name: c.type for c in metadata["dagster/column_schema"].value.columns}
    assert columns == {"event_date": "date", "id": "string", "value": "float64"}


def test_loads_are_lazy_and_filtered(tmp_path):
    uri = str(tmp_path / "t")
    days = [dt.date(2026, 1, d) for d in range(1, 6)]
    delta.write_partitions(uri, pl.concat([_rows_for(d) for d in days]), partitions=days)
    frame = delta.scan(uri, partitions=days[1:3])
    assert isinstance(frame, pl.LazyFrame)
    assert frame.select("id").collect().height == 6


def test_rows_outside_the_partitions_are_refused_and_nothing_changes(tmp_path):
    uri = str(tmp_path / "t")
    day = dt.date(2026, 1, 1)
    delta.write_partitions(uri, _rows_for(day), partitions=[day])
    stray = pl.concat([_rows_for(day, salt=5), _rows_for(dt.date(2026, 1, 2))])
    with pytest.raises(ValueError, match="outside the partitions"):
        delta.write_partitions(uri, stray, partitions=[day])
    assert pl.read_delta(uri).sort("id").equals(_rows_for(day))


def test_missing_upstream_table_fails_with_a_clear_message(resources):
    result = dg.materialize(
        [daily, everything], resources=resources, selection=[everything], raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "has no Delta table" in failure.step_failure_data.error.message


def test_predicate_quotes_are_escaped():
    assert delta.partition_predicate("k", ["a'b"]) == "k IN ('a''b')"


def _write_days(uri: str, days: list[str], start) -> None:
    start.wait()  # all writers commit at the same moment, so their commits collide
    for key in days:
        day = _day(key)
        delta.write_partitions(uri, _rows_for(day, n=50), partitions=[day])


def test_concurrent_writers_lose_nothing(tmp_path):
    """Four processes rewrite partitions at once: different days and, like two sensor runs
    recomputing the same feature day, the same days. delta-rs rejects the colliding commits
    (CommitFailedError); the retry must land every write exactly once."""
    uri = str(tmp_path / "shared")
    first = dt.date(2026, 1, 1)
    delta.write_partitions(uri, _rows_for(first, n=50), partitions=[first])
    # 40 writes over 5 days, dealt round-robin: every worker touches every day.
    keys = [(first + dt.timedelta(days=1 + i % 5)).isoformat() for i in range(40)]
    # spawn, not fork: forking a process that has used deltalake can deadlock.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    workers = [ctx.Process(target=_write_days, args=(uri, keys[i::4], start)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    table = pl.read_delta(uri)
    assert table["event_date"].n_unique() == 6
    assert table.height == 6 * 50
    assert table["id"].n_unique() == table.height


def _files_on_disk(uri: str) -> set[str]:
    return {p.relative_to(uri).as_posix() for p in Path(uri).rglob("*.parquet")}


def _files_in_log(uri: str) -> set[str]:
    paths = pl.DataFrame(DeltaTable(uri).get_add_actions()).get_column("path")
    return {unquote(p) for p in paths}


def test_first_write_creates_the_table_like_delta_rs_would(tmp_path):
    """Polars writes the files, delta-rs only commits them: the table must look the same as one
    `write_deltalake` creates (schema, partitioning, protocol), in one commit."""
    day = dt.date(2026, 1, 1)
    stamps = pl.Series([dt.datetime(2026, 1, 1, 8, 30)] * 2)
    frame = pl.DataFrame(
        {
            "event_date": [day, day],
            "ntz": stamps.cast(pl.Datetime("ns")),
            "utc": stamps.dt.replace_time_zone("Europe/Paris"),
            "kind": pl.Series(["a", "b"], dtype=pl.Categorical),
            "n": pl.Series([1, 2], dtype=pl.Int32),
        }
    )
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    result = delta.write_partitions(ours, frame, partitions=[day])
    write_deltalake(theirs, frame.to_arrow(), partition_by=["event_date"])
    table, reference = DeltaTable(ours), DeltaTable(theirs)
    assert result.version == table.version() == 0
    assert table.metadata().partition_columns == ["event_date"]
    types = [(f.name, str(f.type)) for f in table.schema().fields]
    assert types == [(f.name, str(f.type)) for f in reference.schema().fields]
    assert table.protocol() == reference.protocol()
    assert_frame_equal(pl.read_delta(ours), pl.read_delta(theirs))
    # Data files leave the partition column to the log, as delta-rs and Spark do.
    (data_file,) = Path(ours).rglob("*.parquet")
    assert "event_date" not in pl.read_parquet_schema(data_file)


def test_add_actions_carry_the_file_statistics(tmp_path):
    """Row counts (read by engine routing), sizes and min/max/null counts (data skipping)."""
    uri = str(tmp_path / "t")
    days = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
    frame = pl.concat([_rows_for(days[0], n=3), _rows_for(days[1], n=5, salt=10)]).with_columns(
        ts=pl.datetime(2026, 1, 1, 12) + pl.duration(microseconds=pl.col("value") * 1500),
        note=pl.when(pl.col("value") > 10).then(pl.lit("x" * 40)),
    )
    result = delta.write_partitions(uri, frame, partitions=days)
    assert result.table_rows == 8
    actions = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True)).sort(
        "partition.event_date"
    )
    assert actions["num_records"].to_list() == [3, 5]
    assert actions["min.value"].to_list() == [0.0, 10.0]
    assert actions["max.value"].to_list() == [2.0, 14.0]
    assert actions["min.id"].to_list() == ["2026-01-01-0", "2026-01-02-0"]
    assert actions["null_count.note"].to_list() == [3, 1]
    for path, size in actions.select("path", "size_bytes").iter_rows():
        assert (Path(uri) / unquote(path)).stat().st_size == size
    # Timestamps are kept to the millisecond: the max is rounded up, so it still bounds the
    # data and a filter on the exact latest value finds its row.
    latest = frame["ts"].max()
    assert actions["max.ts"][1] >= latest
    assert delta.scan(uri).filter(pl.col("ts") >= latest).collect().height == 1


def test_failed_commit_leaves_the_table_and_its_folder_as_they_were(tmp_path):
    """Polars writes the new files before delta-rs commits them. When the commit fails (here:
    an append-only table refuses to drop a partition's old files) the table stays at its
    version and the written files are deleted again."""
    uri = str(tmp_path / "t")
    day = dt.date(2026, 1, 1)
    write_deltalake(
        uri,
        _rows_for(day).to_arrow(),
        partition_by=["event_date"],
        configuration={"delta.appendOnly": "true"},
    )
    files = _files_on_disk(uri)
    with pytest.raises(CommitFailedError, match="append-only"):
        delta.write_partitions(uri, _rows_for(day, salt=5), partitions=[day])
    assert DeltaTable(uri).version() == 0
    assert_frame_equal(pl.read_delta(uri), _rows_for(day))
    assert _files_on_disk(uri) == files == _files_in_log(uri)


def test_a_changed_schema_is_refused_before_anything_is_written(tmp_path):
    uri = str(tmp_path / "t")
    day = dt.date(2026, 1, 1)
    delta.write_partitions(uri, _rows_for(day), partitions=[day])
    files = _files_on_disk(uri)
    with pytest.raises(SchemaMismatchError, match=r"missing \['value'\]"):
        delta.write_partitions(uri, _rows_for(day).drop("value"), partitions=[day])
    with pytest.raises(SchemaMismatchError, match="extra"):
        delta.write_partitions(uri, _rows_for(day).with_columns(extra=1), partitions=[day])
    assert _files_on_disk(uri) == files
    # Columns in another order and a narrower type are accepted, as write_deltalake does.
    narrower = _rows_for(day, salt=1).select("value", "id", "event_date")
    delta.write_partitions(uri, narrower.cast({"value": pl.Float32}), partitions=[day])
    assert pl.read_delta(uri).sort("id")["value"].to_list() == [1.0, 2.0, 3.0]


def test_rows_without_a_partition_value_are_refused(tmp_path):
    uri = str(tmp_path / "t")
    day = dt.date(2026, 1, 1)
    rows = pl.concat([_rows_for(day), _rows_for(day).with_columns(event_date=None)])
    with pytest.raises(ValueError, match=r"3 rows .* fall outside"):
        delta.write_partitions(uri, rows, partitions=[day])
    assert not delta.table_exists(uri)


def test_string_partitions_with_awkward_values_round_trip(tmp_path):
    """Dynamic partitions are strings: quotes, slashes, '=' and '%' must land in their own
    partition folder and be replaced exactly."""
    uri = str(tmp_path / "t")
    keys = ["it's", "a/b", "x=y", "50%", "plain"]
    frame = pl.DataFrame({"key": keys, "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    delta.write_partitions(uri, frame, partitions=keys, partition_column="key")
    delta.write_partitions(
        uri,
        pl.DataFrame({"key": ["a/b"], "value": [20.0]}),
        partitions=["a/b"],
        partition_column="key",
    )
    table = pl.read_delta(uri).sort("key")
    assert table.rows() == sorted(zip(keys, [1.0, 20.0, 3.0, 4.0, 5.0], strict=True))
    only = delta.scan(uri, partitions=["50%"], partition_column="key").collect()
    assert only["value"].to_list() == [4.0]
    # One live file per key, each where the log says (the replaced one awaits VACUUM).
    assert len(_files_in_log(uri)) == len(keys)
    assert _files_in_log(uri) <= _files_on_disk(uri)
