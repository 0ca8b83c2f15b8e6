"""run_feature_function: one point-in-time rule on every engine."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import narwhals as nw
import polars as pl
import pytest

from ml_assets.engines.run import engine_of, run_feature_function

DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(5)]


def events() -> pl.DataFrame:
    return pl.DataFrame({"event_date": DAYS, "value": [1, 2, 3, 4, 5]})


def running_total(events: nw.LazyFrame, *, scale: int) -> nw.LazyFrame:
    """Sums every row it is given: the total shows whether later days leaked in."""
    return events.with_columns((nw.col("value").sum() * scale).alias("total"))


def test_polars_inputs_are_cut_at_the_last_day_and_output_to_the_days():
    result = run_feature_function(
        running_total, {"events": events().lazy()}, {"scale": 10}, DAYS[1], DAYS[2]
    )
    assert isinstance(result, pl.LazyFrame)
    frame = result.collect()
    assert frame["event_date"].to_list() == DAYS[1:3]
    # Sum over days 1..3 only: day 4 and 5 never reached the function.
    assert frame["total"].to_list() == [60, 60]
    # Eager Polars inputs are accepted too.
    eager = run_feature_function(running_total, {"events": events()}, {"scale": 1}, *DAYS[:2])
    assert eager.collect().height == 2


def test_a_result_without_the_partition_column_fails_the_run():
    with pytest.raises(dg.Failure, match="must return the 'event_date' column"):
        run_feature_function(
            lambda events: events.drop("event_date"), {"events": events().lazy()}, {}, *DAYS[:2]
        )


def test_a_native_frame_instead_of_a_narwhals_one_is_named_with_its_module():
    with pytest.raises(dg.Failure, match=r"got polars\.lazyframe\.frame\.LazyFrame: return"):
        run_feature_function(
            lambda events: nw.to_native(events), {"events": events().lazy()}, {}, *DAYS[:2]
        )


def test_a_column_without_a_type_fails_naming_it():
    """It used to fail at the write, in Arrow: `C Data interface error: The datatype "Null"`."""
    with pytest.raises(dg.Failure, match=r"column\(s\) \['flag'\] without a type"):
        run_feature_function(
            lambda events: events.with_columns(nw.lit(None).alias("flag")),
            {"events": events().lazy()},
            {},
            *DAYS[:2],
        )


@pytest.mark.spark
def test_spark_inputs_give_a_spark_frame_with_the_same_rows(spark):
    native = spark.createDataFrame(events().to_arrow())
    result = run_feature_function(running_total, {"events": native}, {"scale": 10}, *DAYS[1:3])
    assert engine_of(result) == "pyspark"
    assert sorted(map(tuple, result.select("event_date", "total").collect())) == [
        (DAYS[1], 60),
        (DAYS[2], 60),
    ]
    with pytest.raises(TypeError, match="one engine"):
        run_feature_function(
            lambda events, other: events,
            {"events": native, "other": events().lazy()},
            {},
            *DAYS[:2],
        )
