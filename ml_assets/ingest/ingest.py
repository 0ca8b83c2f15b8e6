"""Read one day's landing files into a typed frame, quarantining what does not fit.

Two kinds of problem, two reactions:
- a file that cannot be used at all (unreadable, empty, missing a required column, unsafe
  name, not one row that fits) fails the partition with an error naming the file; nothing is
  written to the raw table;
- a row that does not fit (unparseable value, null in a required column, event outside the
  partition's day, superseded duplicate key) goes to the quarantine with its reason, and the
  rest of the file is loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl

from ml_assets.ingest.landing import BadLandingFile, files_for_day
from ml_assets.pipeline.spec import ColumnSpec, SourceSpec
from ml_assets.storage.delta import PARTITION_COLUMN

SOURCE_FILE_COLUMN = "_source_file"
INGESTED_AT_COLUMN = "_ingested_at"
_ROW_NUMBER = "_row_number"
_REASON = "_reason"

QUARANTINE_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Date(),
        "source_file": pl.String(),
        "row_number": pl.Int64(),
        "reason": pl.String(),
        "record": pl.String(),
        "quarantined_at": pl.Datetime("us", "UTC"),
    }
)


# Reason prefix of the quarantine records for whole files that could not be used.
UNUSABLE_FILE = "unusable file"


class IngestError(RuntimeError):
    """A partition cannot be ingested; the message names the files and their problems.

    `quarantine` holds one record per unusable file, for the caller to store.
    """

    def __init__(
        self, message: str, *, day: dt.date, quarantine: pl.DataFrame | None = None
    ) -> None:
        super().__init__(message)
        self.day = day
        self.quarantine = quarantine


class UnusableFile(ValueError):
    """One landing file that cannot be used at all."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class IngestResult:
    day: dt.date
    files: list[Path]
    rows: pl.DataFrame
    quarantine: pl.DataFrame
    digests: dict[str, str]  # landing file name -> SHA-256 of its bytes as loaded
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def quarantine_reasons(self) -> dict[str, int]:
        if self.quarantine.is_empty():
            return {}
        # Group reasons by their kind (before the value), so metadata stays small.
        kinds = self.quarantine.select(pl.col("reason").str.split(":").list.first().alias("kind"))
        counts = kinds.group_by("kind").len().sort("kind")
        return dict(zip(counts["kind"], counts["len"], strict=True))


def output_schema(source: SourceSpec) -> pl.Schema:
    columns = {name: col.dtype for name, col in source.columns.items()}
    columns[SOURCE_FILE_COLUMN] = pl.String()
    columns[INGESTED_AT_COLUMN] = pl.Datetime("us", "UTC")
    columns[PARTITION_COLUMN] = pl.Date()
    return pl.Schema(columns)


def required_columns(source: SourceSpec) -> list[str]:
    """Columns every row must have: the non-nullable ones, and the event time and primary key
    whatever their declaration (a row without them has no partition or no identity)."""
    keys = {source.event_time, *source.primary_key}
    return [name for name, col in source.columns.items() if not col.nullable or name in keys]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    if not text:
        return repr(error)
    line = text.splitlines()[0]
    # Polars quotes the offending text in backticks; a quote that spans lines is cut here.
    return line + "`" if line.count("`") % 2 else line


def _read_ndjson(handle: BinaryIO) -> pl.DataFrame:
    # Every value as its JSON text, like a CSV cell, so types are checked value by value: a
    # wrongly typed value is quarantined with its row, instead of failing the file's type
    # inference (1 and true in one column) or being converted silently (1.7 into an int: 1).
    names = pl.scan_ndjson(handle, infer_schema_length=None).collect_schema().names()
    handle.seek(0)
    return pl.read_ndjson(handle, schema={name: pl.String() for name in names})


def read_file(path: Path, source: SourceSpec) -> tuple[pl.DataFrame, str]:
    """Read a landing file without type inference (CSV/JSON values stay strings).

    Also returns the SHA-256 of the bytes read: what the landing sensor compares a file that
    changed on disk with, to tell a touch or an identical re-delivery from new content.
    """
    try:
        # Read by us, not by polars from the path: polars expands glob characters in a path,
        # so a folder named like `feeds[1]` would read `feeds1/...`, outside the landing folder.
        # Hashed and parsed from the same bytes, so the digest is of exactly what was loaded,
        # even when the file is rewritten meanwhile.
        data = path.read_bytes()
    except OSError as error:  # a dangling link, a file removed since listing, no permission
        raise UnusableFile(path, f"cannot open: {error.strerror or error}") from None
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        if source.format == "json":
            # Newline-delimited JSON has no header: a day without events is an empty file.
            return pl.DataFrame(schema={name: pl.String() for name in source.columns}), digest
        # A CSV says "no rows" with its header, Parquet with its schema: an empty file is
        # more likely a failed transfer.
        raise UnusableFile(path, "file is empty (0 bytes)")
    try:
        if source.format == "csv":
            frame = pl.read_csv(data, infer_schema=False, raise_if_empty=True)
        elif source.format == "parquet":
            frame = pl.read_parquet(data)
        else:
            frame = _read_ndjson(io.BytesIO(data))
    except Exception as error:  # polars raises several types for unreadable input
        raise UnusableFile(path, f"cannot read as {source.format}: {_first_line(error)}") from None
    missing = [name for name in required_columns(source) if name not in frame.columns]
    if missing:
        raise UnusableFile(
            path, f"missing required column(s) {missing}; found columns {frame.columns}"
        )
    nested = {
        name: dtype
        for name, dtype in frame.schema.items()
        if name in source.columns and dtype.is_nested()
    }
    if nested:
        raise UnusableFile(
            path,
            "column(s) with nested values: "
            + ", ".join(
                f"{name} is {dtype}, declared {source.columns[name].type}"
                for name, dtype in nested.items()
            ),
        )
    return frame, digest


def _parse(column: str, spec: ColumnSpec, raw_dtype: pl.DataType) -> pl.Expr:
    """Cast one column to its declared type; unparseable values become null."""
    value = pl.col(column)
    if raw_dtype != pl.String():
        if spec.type == "int" and raw_dtype.is_float():
            # Only whole numbers: a cast would truncate 1.7 to 1 without a word.
            return pl.when(value == value.round(0)).then(value.cast(pl.Int64, strict=False))
        return value.cast(spec.dtype, strict=False)
    text = value.str.strip_chars()
    match spec.type:
        case "string":
            return value
        case "int":
            return text.cast(pl.Int64, strict=False)
        case "float":
            return text.cast(pl.Float64, strict=False)
        case "bool":
            lowered = text.str.to_lowercase()
            return (
                pl.when(lowered.is_in(["true", "1", "yes"]))
                .then(True)
                .when(lowered.is_in(["false", "0", "no"]))
                .then(False)
                .otherwise(None)
            )
        case "date":
            return text.str.to_date("%Y-%m-%d", strict=False)
        case "datetime":
            # ISO 8601, with "T" or a space, optional fraction; a zone suffix is not accepted.
            return text.str.replace(" ", "T").str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"
            )


def _typed_with_reasons(
    raw_schema: pl.Schema, source: SourceSpec, day: dt.date
) -> tuple[list[pl.Expr], pl.Expr]:
    """Expressions over the raw frame: the typed columns, and each row's reasons to quarantine
    (null when the row is fine)."""
    typed: dict[str, pl.Expr] = {}
    reasons: list[pl.Expr] = []
    required = set(required_columns(source))
    for name, spec in source.columns.items():
        if name not in raw_schema:
            typed[name] = pl.lit(None, dtype=spec.dtype)
            continue
        parsed = _parse(name, spec, raw_schema[name])
        typed[name] = parsed
        raw_present = pl.col(name).is_not_null()
        if raw_schema[name] == pl.String():
            raw_present = raw_present & (pl.col(name).str.strip_chars() != "")
        reasons.append(
            pl.when(raw_present & parsed.is_null()).then(
                pl.lit(f"unparseable value: column {name} is not a {spec.type}: ")
                + pl.col(name).cast(pl.String).str.slice(0, 40)
            )
        )
        if name in required:
            reasons.append(
                pl.when(~raw_present).then(pl.lit(f"missing value: column {name} is required"))
            )
    event_date = typed[source.event_time]
    if source.columns[source.event_time].type == "datetime":
        event_date = event_date.dt.date()
    reasons.append(
        pl.when(event_date != day).then(
            pl.lit(f"outside partition: {source.event_time} falls on ")
            + event_date.cast(pl.String)
            + pl.lit(f", not {day.isoformat()}")
        )
    )
    columns = [expr.alias(name) for name, expr in typed.items()]
    joined = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    return columns, pl.when(joined != "").then(joined)


def _all_rows_rejected(reasons: pl.Series) -> str:
    """The problem of a file without one usable row: its most common reason, with an example.

    Reasons are grouped by their kind and column (`unparseable value: column x is not a
    date`), without the value that follows, so a wrong date format reads as one reason.
    """
    first = reasons.str.split("; ").list.first()
    kinds = pl.DataFrame({"reason": first, "kind": first.str.extract(r"^([^:]*:[^:]*)", 1)})
    top = (
        kinds.group_by("kind", maintain_order=True)
        .agg(pl.len().alias("rows"), pl.col("reason").first())
        .sort("rows", descending=True, maintain_order=True)
        .row(0, named=True)
    )
    if reasons.len() == 1:
        return f"its one row could not be loaded: {top['reason']}"
    return (
        f"not one of its {reasons.len()} rows could be loaded; {top['rows']} of them: "
        f"{top['reason']}"
    )


def ingest_day(
    source: SourceSpec, folder: Path, day: dt.date, *, ingested_at: dt.datetime
) -> IngestResult:
    """Ingest every landing file of `day` in `folder`.

    Raises IngestError, naming each file and its problem, when any file cannot be used.
    """
    try:
        paths, misnamed = files_for_day(folder, day, source.file_suffixes)
    except BadLandingFile as problem:
        raise IngestError(f"{folder}: {problem}", day=day) from None
    if not paths:
        raise IngestError(
            f"no landing files for {day.isoformat()} in {folder}"
            + (f" (left out: {'; '.join(misnamed)})" if misnamed else ""),
            day=day,
        )

    declared = list(source.columns)
    frames: list[pl.DataFrame] = []
    digests: dict[str, str] = {}
    unusable: list[UnusableFile] = []
    ignored: dict[str, list[str]] = {}
    for path in paths:
        try:
            raw, digests[path.name] = read_file(path, source)
        except UnusableFile as problem:
            unusable.append(problem)
            continue
        extra = [c for c in raw.columns if c not in source.columns]
        if extra:
            ignored[path.name] = extra
        raw = raw.select([c for c in declared if c in raw.columns])
        typed, reason = _typed_with_reasons(raw.schema, source, day)
        record = pl.struct([pl.col(c).cast(pl.String) for c in raw.columns]).struct.json_encode()
        try:
            frame = raw.select(
                *typed,
                reason.alias(_REASON),
                record.alias("record"),
                pl.lit(path.name).alias(SOURCE_FILE_COLUMN),
                (pl.int_range(pl.len(), dtype=pl.Int64) + 1).alias(_ROW_NUMBER),
            )
        except pl.exceptions.PolarsError as error:  # a typed (parquet) column that won't cast
            unusable.append(
                UnusableFile(path, f"cannot convert to the declared types: {_first_line(error)}")
            )
            continue
        if frame.height and frame[_REASON].null_count() == 0:
            # Not one usable row: the file is wrong as a whole (another date format, the wrong
            # day's data). Loading it would replace the day's good rows with none.
            unusable.append(UnusableFile(path, _all_rows_rejected(frame[_REASON])))
            continue
        frames.append(frame)

    if unusable:
        files_quarantine = pl.DataFrame(
            {
                PARTITION_COLUMN: [day] * len(unusable),
                "source_file": [u.path.name for u in unusable],
                "row_number": [None] * len(unusable),
                "reason": [f"{UNUSABLE_FILE}: {u.problem}" for u in unusable],
                "record": [None] * len(unusable),
                "quarantined_at": [ingested_at] * len(unusable),
            },
            schema=QUARANTINE_SCHEMA,
        )
        raise IngestError(
            f"partition {day.isoformat()} not ingested, the raw table is unchanged: "
            + " | ".join(str(u) for u in unusable),
            day=day,
            quarantine=files_quarantine,
        )

    combined = pl.concat(frames, how="vertical_relaxed")
    # Later files and later rows win: a `_late` file corrects the day's main file.
    key_ok = pl.col(_REASON).is_null()
    clean = combined.filter(key_ok)
    dup_mask = ~clean.select(pl.struct(source.primary_key).is_last_distinct()).to_series()
    duplicates = clean.filter(dup_mask).with_columns(
        pl.lit("duplicate primary key: a later row with the same key was kept").alias(_REASON)
    )
    clean = clean.filter(~dup_mask)

    rejected = pl.concat([combined.filter(~key_ok), duplicates], how="vertical_relaxed")
    quarantine = rejected.select(
        pl.lit(day).alias(PARTITION_COLUMN),
        pl.col(SOURCE_FILE_COLUMN).alias("source_file"),
        pl.col(_ROW_NUMBER).cast(pl.Int64).alias("row_number"),
        pl.col(_REASON).alias("reason"),
        pl.col("record"),
        pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("quarantined_at"),
    )
    rows = clean.select(
        *declared,
        pl.col(SOURCE_FILE_COLUMN),
        pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias(INGESTED_AT_COLUMN),
        pl.lit(day).alias(PARTITION_COLUMN),
    )
    return IngestResult(
        day=day,
        files=paths,
        rows=rows,
        quarantine=quarantine,
        digests=digests,
        ignored_columns=ignored,
    )
