"""Engine routing: Polars or Spark for one materialization, decided from the Delta log.

"Pandas vs Spark" rules from the field, made explicit: a single machine (Polars) wins by an
order of magnitude below a few GB (see docs/decisions.md); Spark pays off when the input no
longer fits one machine. The input size is read from the Delta log (add actions: size_bytes,
num_records), for exactly the partitions the step will read, without touching data files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
from deltalake import DeltaTable

from ml_assets.storage import delta
from ml_assets.storage.delta import PARTITION_COLUMN

ENGINES = ("auto", "polars", "spark")


@dataclass(frozen=True)
class InputSize:
    bytes: int = 0
    rows: int = 0
    files: int = 0

    def __add__(self, other: InputSize) -> InputSize:
        return InputSize(self.bytes + other.bytes, self.rows + other.rows, self.files + other.files)


@dataclass(frozen=True)
class Thresholds:
    spark_min_bytes: int
    spark_min_rows: int
    streaming_min_bytes: int


@dataclass(frozen=True)
class Decision:
    engine: str  # "polars" | "spark"
    reason: str
    streaming: bool = False
    size: InputSize = InputSize()
    requested: str = "auto"

    def metadata(self) -> dict[str, object]:
        return {
            "engine": self.engine + (" (streaming)" if self.streaming else ""),
            "engine_requested": self.requested,
            "engine_reason": self.reason,
            "input_bytes": self.size.bytes,
            "input_rows": self.size.rows,
            "input_files": self.size.files,
        }


def input_size(
    uri: str,
    partitions: Sequence[dt.date | str] | None,
    partition_column: str = PARTITION_COLUMN,
) -> InputSize:
    """Bytes, rows and files of `partitions` of the table at `uri` (all when None), from the log."""
    if not delta.table_exists(uri):
        return InputSize()
    actions = pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True))
    if actions.is_empty():
        return InputSize()
    column = f"partition.{partition_column}"
    if partitions is not None and column in actions.columns:
        dtype = actions.schema[column]
        # ISO strings for a date column: Polars 2 no longer casts strings to dates
        values = [
            dt.date.fromisoformat(p) if isinstance(p, str) and dtype == pl.Date else p
            for p in partitions
        ]
        wanted = pl.Series(values).cast(dtype, strict=False)
        actions = actions.filter(pl.col(column).is_in(wanted.implode()))
    rows = actions.get_column("num_records").fill_null(0).sum() if "num_records" in actions else 0
    return InputSize(int(actions.get_column("size_bytes").sum()), int(rows), actions.height)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def decide(
    requested: str,
    sizes: Mapping[str, InputSize],
    thresholds: Thresholds,
    *,
    spark_available: bool,
) -> Decision:
    """The engine for one materialization, with the reason in words."""
    if requested not in ENGINES:
        raise ValueError(f"engine {requested!r} is not one of {', '.join(ENGINES)}")
    total = sum(sizes.values(), InputSize())
    described = f"inputs: {_gb(total.bytes)}, {total.rows:,} rows in {total.files} files"
    if requested == "spark":
        if not spark_available:
            raise ValueError("engine 'spark' was requested but no Spark is configured here")
        return Decision(
            "spark", f"engine set to spark ({described})", size=total, requested=requested
        )
    if requested == "polars":
        return Decision(
            "polars", f"engine set to polars ({described})", size=total, requested=requested
        )
    big = total.bytes >= thresholds.spark_min_bytes or total.rows >= thresholds.spark_min_rows
    limits = f"{_gb(thresholds.spark_min_bytes)} / {thresholds.spark_min_rows:,} rows"
    if big and spark_available:
        return Decision("spark", f"{described} reach the Spark threshold ({limits})", size=total)
    if big:
        streaming = total.bytes >= thresholds.streaming_min_bytes
        how = (
            f"at or above {_gb(thresholds.streaming_min_bytes)}: Polars streaming engine"
            if streaming
            else "Polars in memory"
        )
        return Decision(
            "polars",
            f"{described} reach the Spark threshold ({limits}) but no Spark is configured; {how}",
            streaming=streaming,
            size=total,
        )
    return Decision("polars", f"{described} are below the Spark threshold ({limits})", size=total)
