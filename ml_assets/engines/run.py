"""Run a narwhals feature function on whichever engine its inputs live on.

The feature asset computes days `first..last` from inputs that may extend past `last` (an
`AllPartitionMapping` loads every partition). The point-in-time rule is enforced here, the same
way on every engine: nothing after `last` reaches the function, and only rows of `first..last`
leave it. Inputs are native frames (Polars LazyFrame/DataFrame, Spark DataFrame); so is the
result, still lazy: the caller writes it with the engine's own Delta writer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import narwhals as nw

from ml_assets.storage.delta import PARTITION_COLUMN


def engine_of(frame: Any) -> str:
    """The narwhals implementation behind a native frame: "polars", "pyspark", ..."""
    return str(nw.from_native(frame).implementation.name).lower()


def run_feature_function(
    function: Callable[..., Any],
    inputs: Mapping[str, Any],
    params: Mapping[str, Any],
    first_day: dt.date,
    last_day: dt.date,
    *,
    name: str | None = None,
) -> Any:
    """`function(**inputs, **params)` restricted to the days `first_day..last_day`.

    Returns a native lazy frame of the inputs' engine (a Polars LazyFrame for Polars inputs, a
    Spark DataFrame for Spark inputs). `name` (e.g. the spec's "module:function" reference)
    names the function in errors.
    """
    frames = {key: nw.from_native(frame) for key, frame in inputs.items()}
    engines = {key: str(frame.implementation.name).lower() for key, frame in frames.items()}
    if len(set(engines.values())) > 1:
        raise TypeError(f"feature inputs must all be on one engine, got {engines}")
    lazy = {
        key: (frame.lazy() if isinstance(frame, nw.DataFrame) else frame).filter(
            nw.col(PARTITION_COLUMN) <= last_day
        )
        for key, frame in frames.items()
    }
    result = function(**lazy, **params)
    name = name or getattr(function, "__qualname__", repr(function))
    if not isinstance(result, nw.LazyFrame | nw.DataFrame):
        kind = type(result)
        raise dg.Failure(
            f"{name} must return a narwhals frame, got {kind.__module__}.{kind.__qualname__}: "
            "return the narwhals frame the function was given (or nw.from_native(...) of a "
            "native one)"
        )
    schema = result.collect_schema()
    if PARTITION_COLUMN not in schema.names():
        raise dg.Failure(f"{name} must return the {PARTITION_COLUMN!r} column of each row")
    # A bare `nw.lit(None)` has no type (Polars' Null): no Delta or Parquet column can hold it.
    untyped = [column for column, dtype in schema.items() if dtype == nw.Unknown]
    if untyped:
        raise dg.Failure(
            f"{name} returns column(s) {untyped} without a type (e.g. nw.lit(None)): give them "
            "one, e.g. nw.lit(None).cast(nw.Float64())"
        )
    return nw.to_native(result.filter(nw.col(PARTITION_COLUMN).is_between(first_day, last_day)))
