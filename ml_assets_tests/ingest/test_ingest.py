"""Bad landing files get a clear error naming the file and the problem, and nothing is lost.

Two reactions, tested through `ingest_day` and through the Dagster raw asset:
- a file that cannot be used fails the partition (the raw table is untouched, the quarantine
  records the file and why);
- a row that does not fit goes to the quarantine with its reason and the rest is loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml_assets.definitions import build_resources
from ml_assets.ingest.ingest import (
    INGESTED_AT_COLUMN,
    SOURCE_FILE_COLUMN,
    IngestError,
    IngestResult,
    ingest_day,
    output_schema,
)
from ml_assets.ingest.landing import scan_landing
from ml_assets.pipeline.keys import SOURCE_DIGESTS, quarantine_key, raw_key
from ml_assets.pipeline.raw import build_raw_asset
from ml_assets.pipeline.spec import PipelineSpec, SourceSpec, parse_spec
from ml_assets.settings import Settings
from ml_assets.storage.delta import table_version
from ml_assets.storage.io_manager import DeltaLake

DAY = dt.date(2026, 1, 5)
NEXT_DAY = dt.date(2026, 1, 6)
NOW = dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC)

COLUMNS = {
    "id": {"type": "string", "nullable": False},
    "ts": {"type": "datetime", "nullable": False},
    "amount": {"type": "float", "nullable": False},
    "qty": "int",
    "note": "string",
}
HEADER = "id,ts,amount,qty,note"
GOOD = [
    "a,2026-01-05T08:00:00,1.5,1,first",
    "b,2026-01-05T12:30:00,2.0,2,",
    "c,2026-01-05 23:59:59.5,3.25,,last",
]


def _spec(
    tmp_path: Path, *, fmt: str = "csv", columns: dict | None = None, **source: str
) -> PipelineSpec:
    return parse_spec(
        {
            "name": "shop",
            "start_date": "2026-01-01",
            "sources": {
                "sales": {
                    "format": fmt,
                    "event_time": "ts",
                    "primary_key": ["id"],
                    "columns": columns or COLUMNS,
                    **source,
                }
            },
        },
        base_dir=tmp_path,
    )


def _csv(*lines: str, header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _ingest(source: SourceSpec, folder: Path, day: dt.date = DAY) -> IngestResult:
    return ingest_day(source, folder, day, ingested_at=NOW)


def _reasons(result: IngestResult) -> dict[tuple[str, int], str]:
    rows = result.quarantine.select("source_file", "row_number", "reason").rows()
    return {(file, row): reason for file, row, reason in rows}


# --- the Dagster raw asset -------------------------------------------------------------------


class Raw:
    """The raw asset of a one-source spec, with its lake, materialized for real."""

    def __init__(self, spec: PipelineSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.folder = spec.landing_folder("sales", settings.landing_root)
        self.asset = build_raw_asset(spec, "sales", settings.landing_root)
        lake = DeltaLake(root=settings.lake_root)
        self.uri = lake.table_uri(raw_key(spec, "sales"))
        self.quarantine_uri = lake.table_uri(quarantine_key(spec, "sales"))

    def materialize(self, day: dt.date = DAY) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [self.asset],
            resources=build_resources(self.settings),
            partition_key=day.isoformat(),
            raise_on_error=False,
        )

    def table(self) -> pl.DataFrame:
        return pl.read_delta(self.uri).sort("event_date", "id")

    def quarantine(self) -> pl.DataFrame:
        return pl.read_delta(self.quarantine_uri).sort("event_date", "source_file", "row_number")


def _failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return "\n".join(
        event.step_failure_data.user_failure_data.description
        for event in result.get_step_failure_events()
        if event.step_failure_data.user_failure_data
    )


def _materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    [event] = result.get_asset_materialization_events()
    return event.materialization


@pytest.fixture
def raw(tmp_path: Path, settings: Settings) -> Raw:
    return Raw(_spec(tmp_path), settings)


# --- files that cannot be used fail the partition ---------------------------------------------

UNUSABLE = {
    "unterminated quote": (
        _csv('a,2026-01-05T08:00:00,1.5,1,"never closed', "b,2026-01-05T09:00:00,2.0,2,x"),
        ["cannot read as csv", "could not parse"],
    ),
    "ragged row": (
        _csv("a,2026-01-05T08:00:00,1.5,1,x,surplus", "b,2026-01-05T09:00:00,2.0,2,x"),
        ["cannot read as csv", "more fields"],
    ),
    "missing required column": (
        _csv("a,2026-01-05T08:00:00,1", header="id,ts,qty"),
        ["missing required column(s) ['amount']"],
    ),
    "empty file": ("", ["file is empty (0 bytes)"]),
    # Every row rejected: the file is wrong as a whole, and loading it would empty the day.
    "another date format": (
        _csv("a,2026-01-05T08:00:00Z,1.5,1,x", "b,2026-01-05T09:00:00Z,2.0,2,x"),
        [
            "not one of its 2 rows could be loaded; 2 of them: unparseable value: column ts "
            "is not a datetime: 2026-01-05T08:00:00Z"
        ],
    ),
    "another day's data": (
        _csv("a,2026-01-04T08:00:00,1.5,1,x", "b,2026-01-04T09:00:00,2.0,2,x"),
        ["2 of them: outside partition: ts falls on 2026-01-04, not 2026-01-05"],
    ),
    "not utf-8": (
        _csv("a,2026-01-05T08:00:00,1.5,1,café").replace("é", "\udce9"),
        ["cannot read as csv", "utf-8"],
    ),
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_unusable_file_fails_the_day_naming_file_and_problem(tmp_path: Path, case: str) -> None:
    text, problems = UNUSABLE[case]
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "2026-01-05.csv").write_bytes(text.encode("utf-8", "surrogateescape"))

    with pytest.raises(IngestError) as caught:
        _ingest(_spec(tmp_path).sources["sales"], folder)

    message = str(caught.value)
    assert str(folder / "2026-01-05.csv") in message
    for problem in problems:
        assert problem in message
    assert message.count("`") % 2 == 0, message  # a quote cut at a line end is closed
    # The caller gets one quarantine record for the file, saying why.
    [record] = caught.value.quarantine.to_dicts()
    assert record["source_file"] == "2026-01-05.csv"
    assert record["event_date"] == DAY
    assert record["reason"].startswith("unusable file: ")
    assert problems[0] in record["reason"]


@pytest.mark.parametrize("case", ["unterminated quote", "missing required column", "empty file"])
def test_unusable_file_fails_the_dagster_run_and_writes_no_raw_rows(raw: Raw, case: str) -> None:
    text, problems = UNUSABLE[case]
    _write(raw.folder, "2026-01-05.csv", text)

    message = _failure(raw.materialize())

    assert "2026-01-05.csv" in message
    for problem in problems:
        assert problem in message
    assert not Path(raw.uri).exists()
    [record] = raw.quarantine().to_dicts()
    assert (record["source_file"], record["event_date"]) == ("2026-01-05.csv", DAY)
    assert problems[0] in record["reason"]


def test_one_bad_file_fails_the_day_even_when_the_main_file_is_fine(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    _write(folder, "2026-01-05.csv", _csv(*GOOD))
    _write(folder, "2026-01-05_late.csv", _csv("d,2026-01-05T10:00:00,1", header="id,ts,qty"))

    with pytest.raises(IngestError, match=r"2026-01-05_late\.csv: missing required column"):
        _ingest(_spec(tmp_path).sources["sales"], folder)


def test_empty_file_fails_but_header_only_file_is_a_day_without_rows(raw: Raw) -> None:
    # Decision: a header-only CSV is a valid delivery of "nothing happened that day"; a 0-byte
    # file is more likely a failed transfer, so it fails the day.
    _write(raw.folder, "2026-01-05.csv", HEADER + "\n")
    _write(raw.folder, "2026-01-06.csv", "")

    result = _ingest(raw.spec.sources["sales"], raw.folder)
    assert result.rows.height == 0 and result.quarantine.height == 0
    with pytest.raises(IngestError, match=r"2026-01-06\.csv: file is empty \(0 bytes\)"):
        _ingest(raw.spec.sources["sales"], raw.folder, NEXT_DAY)

    assert raw.materialize(DAY).success
    assert raw.table().height == 0
    assert "2026-01-06.csv: file is empty" in _failure(raw.materialize(NEXT_DAY))


def test_dangling_symlink_fails_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "2026-01-05.csv").symlink_to("gone.csv")

    with pytest.raises(IngestError, match=r"2026-01-05\.csv: cannot open: No such file"):
        _ingest(_spec(tmp_path).sources["sales"], folder)


# --- rows that do not fit are quarantined, the rest loads -------------------------------------


def test_wrong_type_in_a_cell_quarantines_that_row_naming_column_and_value(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "landing"
    bad = ["x,2026-01-05T09:00:00,12abc,1,", "y,2026-01-05T09:00:00,1.0,seven,", "z,noon,1.0,1,"]
    _write(folder, "2026-01-05.csv", _csv(*GOOD, *bad))

    result = _ingest(_spec(tmp_path).sources["sales"], folder)

    assert result.rows["id"].to_list() == ["a", "b", "c"]
    assert _reasons(result) == {
        ("2026-01-05.csv", 4): "unparseable value: column amount is not a float: 12abc",
        ("2026-01-05.csv", 5): "unparseable value: column qty is not a int: seven",
        ("2026-01-05.csv", 6): "unparseable value: column ts is not a datetime: noon",
    }
    # The quarantined row keeps its original values.
    record = result.quarantine.filter(pl.col("row_number") == 4)["record"].item()
    assert json.loads(record) == {
        "id": "x",
        "ts": "2026-01-05T09:00:00",
        "amount": "12abc",
        "qty": "1",
        "note": None,
    }
    assert result.quarantine_reasons == {"unparseable value": 3}


def test_good_rows_are_typed(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    _write(folder, "2026-01-05.csv", _csv(*GOOD))

    rows = _ingest(_spec(tmp_path).sources["sales"], folder).rows

    assert rows.drop(INGESTED_AT_COLUMN).to_dicts() == [
        {
            "id": "a",
            "ts": dt.datetime(2026, 1, 5, 8),
            "amount": 1.5,
            "qty": 1,
            "note": "first",
            SOURCE_FILE_COLUMN: "2026-01-05.csv",
            "event_date": DAY,
        },
        {
            "id": "b",
            "ts": dt.datetime(2026, 1, 5, 12, 30),
            "amount": 2.0,
            "qty": 2,
            "note": None,
            SOURCE_FILE_COLUMN: "2026-01-05.csv",
            "event_date": DAY,
        },
        {
            "id": "c",
            "ts": dt.datetime(2026, 1, 5, 23, 59, 59, 500000),
            "amount": 3.25,
            "qty": None,
            "note": "last",
            SOURCE_FILE_COLUMN: "2026-01-05.csv",
            "event_date": DAY,
        },
    ]


def test_null_in_a_required_column_is_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    empty, blank = "d,2026-01-05T09:00:00,,1,", "e,2026-01-05T09:00:00,  ,1,"
    _write(folder, "2026-01-05.csv", _csv(*GOOD, empty, blank))

    result = _ingest(_spec(tmp_path).sources["sales"], folder)

    assert result.rows["id"].to_list() == ["a", "b", "c"]
    assert set(_reasons(result).values()) == {"missing value: column amount is required"}
    assert len(_reasons(result)) == 2


def test_event_time_and_primary_key_are_required_even_if_declared_nullable(
    tmp_path: Path,
) -> None:
    # A row without an event time has no partition, one without a key no identity: neither may
    # load (into the file's day) or pass as a "duplicate" of other keyless rows.
    lenient = {"id": "string", "ts": "datetime", "amount": "float"}
    source = _spec(tmp_path, columns=lenient).sources["sales"]
    folder = tmp_path / "landing"
    _write(
        folder,
        "2026-01-05.csv",
        _csv(
            "a,2026-01-05T08:00:00,1",
            "b,,2",
            ",2026-01-05T09:00:00,3",
            ",2026-01-05T10:00:00,4",
            header="id,ts,amount",
        ),
    )

    result = _ingest(source, folder)

    assert result.rows["id"].to_list() == ["a"]
    assert _reasons(result) == {
        ("2026-01-05.csv", 2): "missing value: column ts is required",
        ("2026-01-05.csv", 3): "missing value: column id is required",
        ("2026-01-05.csv", 4): "missing value: column id is required",
    }
    _write(folder, "2026-01-06.csv", "amount\n1\n")
    with pytest.raises(IngestError, match=r"missing required column\(s\) \['id', 'ts'\]"):
        _ingest(source, folder, NEXT_DAY)


def test_duplicate_keys_keep_the_last_row_within_and_across_files(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    _write(
        folder,
        "2026-01-05.csv",
        _csv(
            "a,2026-01-05T08:00:00,1.0,1,first a",
            "b,2026-01-05T08:00:00,2.0,1,only b",
            "a,2026-01-05T09:00:00,1.1,1,second a",
            "c,2026-01-05T08:00:00,3.0,1,c before correction",
        ),
    )
    _write(folder, "2026-01-05_late.csv", _csv("c,2026-01-05T08:00:00,3.5,1,c corrected"))

    result = _ingest(_spec(tmp_path).sources["sales"], folder)

    kept = dict(result.rows.select("id", "note").iter_rows())
    assert kept == {"a": "second a", "b": "only b", "c": "c corrected"}
    assert result.rows.filter(pl.col("id") == "c")[SOURCE_FILE_COLUMN].item() == (
        "2026-01-05_late.csv"
    )
    superseded = "duplicate primary key: a later row with the same key was kept"
    assert _reasons(result) == {
        ("2026-01-05.csv", 1): superseded,
        ("2026-01-05.csv", 4): superseded,
    }


def test_rows_outside_the_partition_day_are_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    _write(
        folder,
        "2026-01-05.csv",
        _csv(*GOOD, "d,2026-01-04T23:59:59,1.0,1,", "e,2026-01-06T00:00:00,1.0,1,"),
    )

    result = _ingest(_spec(tmp_path).sources["sales"], folder)

    assert result.rows["id"].to_list() == ["a", "b", "c"]
    assert _reasons(result) == {
        ("2026-01-05.csv", 4): "outside partition: ts falls on 2026-01-04, not 2026-01-05",
        ("2026-01-05.csv", 5): "outside partition: ts falls on 2026-01-06, not 2026-01-05",
    }


# --- names and paths --------------------------------------------------------------------------


def test_files_not_named_for_a_day_are_not_ingested_and_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    _write(folder, "2026-01-05.csv", _csv(*GOOD))
    for name in ["transactions.csv", "2026-13-45.csv", "2026-01-5.csv"]:
        _write(folder, name, _csv("zz,2026-01-05T08:00:00,9.0,9,intruder"))

    result = _ingest(_spec(tmp_path).sources["sales"], folder)
    files, problems = scan_landing(folder, (".csv",))

    assert [p.name for p in result.files] == ["2026-01-05.csv"]
    assert "zz" not in result.rows["id"].to_list()
    assert [f.path.name for f in files] == ["2026-01-05.csv"]
    messages = {p.name: p.message for p in problems}
    assert set(messages) == {"transactions.csv", "2026-13-45.csv", "2026-01-5.csv"}
    assert "not named like a day's file" in messages["transactions.csv"]
    assert "2026-13-45 is not a valid date" in messages["2026-13-45.csv"]


def test_a_stray_file_starting_with_a_day_is_left_out_of_that_day(raw: Raw) -> None:
    """A backup or an archive next to the day's file: the sensor reports it and skips it, and
    so does the ingestion, instead of failing the day (and a range run with it)."""
    _write(raw.folder, "2026-01-05.csv", _csv(*GOOD))
    _write(raw.folder, "2026-01-05.csv.bak", _csv("zz,2026-01-05T08:00:00,9.0,9,backup"))
    _write(raw.folder, "2026-01-06.json", '{"id": "zz"}\n')

    assert raw.materialize(DAY).success
    assert sorted(raw.table()["id"].to_list()) == ["a", "b", "c"]
    _, problems = scan_landing(raw.folder, (".csv",))
    assert {p.name for p in problems} == {"2026-01-05.csv.bak", "2026-01-06.json"}

    # A day with nothing but a stray file says which file it left out, and why.
    message = _failure(raw.materialize(NEXT_DAY))
    assert "no landing files for 2026-01-06" in message
    assert "left out: '2026-01-06.json' has suffix .json; expected .csv" in message


def test_symlink_out_of_the_landing_folder_is_refused(raw: Raw, tmp_path: Path) -> None:
    _write(raw.folder, "2026-01-05.csv", _csv(*GOOD))
    secret = raw.folder / ".." / ".." / "secret.csv"
    secret.write_text(_csv("s,2026-01-05T08:00:00,9.0,9,secret"))
    (raw.folder / "2026-01-05_x.csv").symlink_to("../../secret.csv")
    assert (raw.folder / "2026-01-05_x.csv").read_text() == secret.read_text()

    with pytest.raises(IngestError, match=r"'2026-01-05_x\.csv' resolves outside the landing"):
        _ingest(raw.spec.sources["sales"], raw.folder)
    message = _failure(raw.materialize())
    assert "'2026-01-05_x.csv' resolves outside the landing folder" in message
    assert not Path(raw.uri).exists()
    _, problems = scan_landing(raw.folder, (".csv",))
    assert [p.name for p in problems] == ["2026-01-05_x.csv"]


def test_a_partition_key_that_is_not_a_date_never_reaches_the_filesystem(raw: Raw) -> None:
    _write(raw.folder, "2026-01-05.csv", _csv(*GOOD))
    landing_before = sorted(raw.settings.landing_root.rglob("*"))

    for key in ["../../secret", "2026-01-05/../../x", "*"]:
        with pytest.raises(dg.DagsterUnknownPartitionError):
            dg.materialize([raw.asset], resources=build_resources(raw.settings), partition_key=key)
    with pytest.raises(ValueError, match="does not match format"):
        dg.materialize(
            [raw.asset],
            resources=build_resources(raw.settings),
            tags={
                "dagster/asset_partition_range_start": "../x",
                "dagster/asset_partition_range_end": "2026-01-05",
            },
        )

    assert not Path(raw.settings.lake_root).exists()
    assert sorted(raw.settings.landing_root.rglob("*")) == landing_before


def test_landing_folder_with_glob_characters_reads_only_its_own_files(
    tmp_path: Path, settings: Settings
) -> None:
    # polars expands glob patterns in paths: `feeds[1]` would match the folder `feeds1`.
    raw = Raw(_spec(tmp_path, landing="feeds[1]"), settings)
    assert raw.folder == settings.landing_root / "feeds[1]"
    _write(raw.folder, "2026-01-05.csv", _csv(*GOOD))
    _write(settings.landing_root / "feeds1", "2026-01-05.csv", _csv("zz,2026-01-05T08:00:00,9,9,"))

    assert _ingest(raw.spec.sources["sales"], raw.folder).rows["id"].to_list() == ["a", "b", "c"]
    assert raw.materialize().success
    assert raw.table()["id"].to_list() == ["a", "b", "c"]


# --- nothing lost -----------------------------------------------------------------------------


def test_a_broken_redelivery_keeps_the_raw_table_and_records_why(raw: Raw) -> None:
    _write(raw.folder, "2026-01-05.csv", _csv(*GOOD))
    _write(
        raw.folder,
        "2026-01-06.csv",
        _csv(
            "d,2026-01-06T08:00:00,4.0,4,",
            "e,2026-01-06T09:00:00,5.0,5,",
            "f,2026-01-06T10:00:00,lots,1,",
        ),
    )
    assert raw.materialize(DAY).success
    assert raw.materialize(NEXT_DAY).success
    before = raw.table()
    version = table_version(raw.uri)
    assert before.group_by("event_date").len().sort("event_date").rows() == [
        (DAY, 3),
        (NEXT_DAY, 2),
    ]

    # Day B is redelivered broken (a required column went missing).
    _write(raw.folder, "2026-01-06.csv", _csv("d,2026-01-06T08:00:00,4", header="id,ts,qty"))
    message = _failure(raw.materialize(NEXT_DAY))

    assert "2026-01-06.csv: missing required column(s) ['amount']" in message
    assert "the raw table is unchanged" in message
    assert_frame_equal(raw.table(), before)
    assert table_version(raw.uri) == version

    # Or readable, but not one row fits (timestamps with a zone suffix): without the check,
    # every row would be quarantined and the day's good rows replaced by none.
    _write(raw.folder, "2026-01-06.csv", _csv("d,2026-01-06T08:00:00Z,4.0,4,"))
    message = _failure(raw.materialize(NEXT_DAY))
    assert (
        "2026-01-06.csv: its one row could not be loaded: unparseable value: column ts is not "
        "a datetime: 2026-01-06T08:00:00Z" in message
    )
    assert_frame_equal(raw.table(), before)
    assert table_version(raw.uri) == version

    # The required column is missing again: the quarantine explains the latest failure.
    _write(raw.folder, "2026-01-06.csv", _csv("d,2026-01-06T08:00:00,4", header="id,ts,qty"))
    _failure(raw.materialize(NEXT_DAY))
    records = raw.quarantine().filter(pl.col("event_date") == NEXT_DAY).sort("reason").to_dicts()
    assert [(r["source_file"], r["row_number"]) for r in records] == [
        ("2026-01-06.csv", 3),  # from the last good load, which the raw table still reflects
        ("2026-01-06.csv", None),
    ]
    assert records[0]["reason"].startswith("unparseable value: column amount")
    assert records[1]["reason"].startswith("unusable file: missing required column(s) ['amount']")

    # Once fixed, the day loads and its quarantine no longer lists the broken delivery.
    _write(raw.folder, "2026-01-06.csv", _csv("d,2026-01-06T08:00:00,4.5,4,fixed"))
    assert raw.materialize(NEXT_DAY).success
    assert raw.table().filter(pl.col("event_date") == NEXT_DAY)["note"].to_list() == ["fixed"]
    assert raw.quarantine().filter(pl.col("event_date") == NEXT_DAY).is_empty()


# --- what a successful materialization records ------------------------------------------------


def test_materialization_records_quarantine_counts_schema_and_lineage_columns(raw: Raw) -> None:
    _write(
        raw.folder,
        "2026-01-05.csv",
        _csv(
            *GOOD,
            "b,2026-01-05T13:00:00,2.5,2,b corrected",
            "x,2026-01-05T09:00:00,lots,1,",
            "y,2026-01-05T09:00:00,,1,",
            "z,2026-01-04T09:00:00,1.0,1,",
        ),
    )
    started = dt.datetime.now(dt.UTC)

    result = raw.materialize()

    assert result.success
    metadata = {k: v.value for k, v in _materialization(result).metadata.items()}
    assert metadata["quarantined_rows"] == 4
    assert metadata["quarantine_reasons"] == {
        "duplicate primary key": 1,
        "missing value": 1,
        "outside partition": 1,
        "unparseable value": 1,
    }
    assert metadata["dagster/row_count"] == 3
    assert metadata["delta_version"] == 0
    assert metadata["dagster/uri"] == raw.uri
    assert metadata["quarantine_uri"] == raw.quarantine_uri
    schema = {c.name: c.type for c in metadata["dagster/column_schema"].columns}
    assert list(schema) == [
        "id",
        "ts",
        "amount",
        "qty",
        "note",
        "_source_file",
        "_ingested_at",
        "event_date",
    ]
    assert (schema["amount"], schema["qty"], schema["event_date"]) == ("float64", "int64", "date")

    table = raw.table()
    assert table["id"].to_list() == ["a", "b", "c"]
    assert table[SOURCE_FILE_COLUMN].unique().to_list() == ["2026-01-05.csv"]
    ingested = table[INGESTED_AT_COLUMN].unique()
    assert ingested.len() == 1
    assert started <= ingested.item() <= dt.datetime.now(dt.UTC)
    assert raw.quarantine().select("row_number", "reason").rows() == [
        (2, "duplicate primary key: a later row with the same key was kept"),
        (5, "unparseable value: column amount is not a float: lots"),
        (6, "missing value: column amount is required"),
        (7, "outside partition: ts falls on 2026-01-04, not 2026-01-05"),
    ]


def test_each_day_records_the_digests_of_the_files_it_was_loaded_from(raw: Raw) -> None:
    """What the landing sensor compares a touched or re-delivered file with. Per day, also in a
    range run, and for a file none of whose rows were kept (a header-only file)."""
    main = _write(raw.folder, "2026-01-05.csv", _csv(*GOOD))
    empty = _write(raw.folder, "2026-01-05_late.csv", _csv())
    other = _write(raw.folder, "2026-01-06.csv", _csv("d,2026-01-06T10:00:00,4.0,4,d"))

    result = dg.materialize(
        [raw.asset],
        resources=build_resources(raw.settings),
        tags={
            "dagster/asset_partition_range_start": "2026-01-05",
            "dagster/asset_partition_range_end": "2026-01-06",
        },
    )

    # The range's other observations are each day's row count.
    observed = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    recorded = {
        o.partition: o.metadata[SOURCE_DIGESTS].value
        for o in observed
        if SOURCE_DIGESTS in o.metadata
    }
    assert recorded == {
        "2026-01-05": {main.name: _sha256(main), empty.name: _sha256(empty)},
        "2026-01-06": {other.name: _sha256(other)},
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- other formats ----------------------------------------------------------------------------

ROWS = pl.DataFrame(
    {
        "id": ["a", "b", "c"],
        "ts": [
            dt.datetime(2026, 1, 5, 8),
            dt.datetime(2026, 1, 5, 12, 30),
            dt.datetime(2026, 1, 5, 23, 59, 59, 500000),
        ],
        "amount": [1.5, 2.0, 3.25],
        "qty": [1, 2, None],
        "note": ["first", None, "last"],
    }
)


def _write_format(folder: Path, fmt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        ROWS.write_parquet(folder / "2026-01-05.parquet")
    elif fmt == "json":
        lines = [json.dumps({**row, "ts": row["ts"].isoformat()}) for row in ROWS.to_dicts()]
        (folder / "2026-01-05.json").write_text("\n".join(lines) + "\n")
    else:
        _write(folder, "2026-01-05.csv", _csv(*GOOD))


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_ingest_the_same_rows_as_csv(
    tmp_path: Path, settings: Settings, fmt: str
) -> None:
    csv_source = _spec(tmp_path).sources["sales"]
    _write_format(tmp_path / "csv", "csv")
    expected = _ingest(csv_source, tmp_path / "csv").rows.drop(SOURCE_FILE_COLUMN)

    raw = Raw(_spec(tmp_path, fmt=fmt), settings)
    _write_format(raw.folder, fmt)
    rows = _ingest(raw.spec.sources["sales"], raw.folder).rows

    assert_frame_equal(rows.drop(SOURCE_FILE_COLUMN), expected)
    assert rows[SOURCE_FILE_COLUMN].unique().to_list() == [f"2026-01-05.{fmt}"]
    assert raw.materialize().success
    assert_frame_equal(
        raw.table().drop(SOURCE_FILE_COLUMN, INGESTED_AT_COLUMN),
        expected.drop(INGESTED_AT_COLUMN),
    )


def test_json_wrongly_typed_values_are_quarantined_one_by_one(tmp_path: Path) -> None:
    # Values are checked one by one, as in a CSV: no type inference over the file (1 and true
    # in one column would fail it) and no silent conversion (1.7 into an int would become 1).
    folder = tmp_path / "landing"
    lines = [
        {"id": "a", "ts": "2026-01-05T08:00:00", "amount": 1, "qty": 3},
        {"id": "b", "ts": "2026-01-05T08:00:00", "amount": 2.5, "qty": 1.7},
        {"id": "c", "ts": "2026-01-05T08:00:00", "amount": True, "qty": 1},
        {"id": "d", "ts": "2026-01-05T08:00:00", "amount": {"eur": 1}, "qty": 1},
        {"id": "e", "ts": "2026-01-05T08:00:00", "amount": 4, "note": 5, "extra": [1]},
    ]
    _write(folder, "2026-01-05.json", "\n".join(json.dumps(line) for line in lines))

    result = _ingest(_spec(tmp_path, fmt="json").sources["sales"], folder)

    assert result.rows.select("id", "amount", "qty", "note").rows() == [
        ("a", 1.0, 3, None),
        ("e", 4.0, None, "5"),
    ]
    assert _reasons(result) == {
        ("2026-01-05.json", 2): "unparseable value: column qty is not a int: 1.7",
        ("2026-01-05.json", 3): "unparseable value: column amount is not a float: true",
        ("2026-01-05.json", 4): 'unparseable value: column amount is not a float: {"eur": 1}',
    }
    assert result.ignored_columns == {"2026-01-05.json": ["extra"]}


def test_an_empty_json_file_is_a_day_without_events(tmp_path: Path) -> None:
    """Newline-delimited JSON has no header, so a feed writes a quiet day as 0 bytes. (For CSV
    the header says "no rows", and a 0-byte file fails: see above.)"""
    folder = tmp_path / "landing"
    _write(folder, "2026-01-05.json", "")

    result = _ingest(_spec(tmp_path, fmt="json").sources["sales"], folder)

    assert result.rows.height == 0 and result.quarantine.height == 0
    assert result.rows.schema == output_schema(_spec(tmp_path, fmt="json").sources["sales"])


def test_json_that_is_not_one_object_per_line_fails_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    _write(folder, "2026-01-05.json", json.dumps([{"id": "a", "ts": "2026-01-05T08:00:00"}]))

    with pytest.raises(IngestError, match=r"2026-01-05\.json: cannot read as json: NDJSON"):
        _ingest(_spec(tmp_path, fmt="json").sources["sales"], folder)


def test_parquet_fractional_value_in_an_int_column_is_quarantined_not_truncated(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    ROWS.with_columns(qty=pl.Series([1.0, 1.7, None])).write_parquet(folder / "2026-01-05.parquet")

    result = _ingest(_spec(tmp_path, fmt="parquet").sources["sales"], folder)

    assert result.rows.select("id", "qty").rows() == [("a", 1), ("c", None)]
    assert _reasons(result) == {
        ("2026-01-05.parquet", 2): "unparseable value: column qty is not a int: 1.7"
    }


def test_parquet_column_of_nested_values_fails_naming_the_column(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    ROWS.with_columns(amount=pl.Series([[1.5], [2.0], [3.25]])).write_parquet(
        folder / "2026-01-05.parquet"
    )

    with pytest.raises(
        IngestError,
        match=r"2026-01-05\.parquet: column\(s\) with nested values: "
        r"amount is List\(Float64\), declared float",
    ):
        _ingest(_spec(tmp_path, fmt="parquet").sources["sales"], folder)


def test_parquet_column_that_cannot_become_the_declared_type_fails_naming_the_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    ROWS.with_columns(ts=pl.col("ts").dt.time()).write_parquet(folder / "2026-01-05.parquet")

    with pytest.raises(
        IngestError,
        match=r"2026-01-05\.parquet: cannot convert to the declared types: "
        r"casting from Time to Datetime",
    ):
        _ingest(_spec(tmp_path, fmt="parquet").sources["sales"], folder)
