"""The demo feature function gives the same table on Polars and on local Spark.

Both engines read the same raw Delta tables (Spark through the Delta bridge), compute the same
partitions with `run_feature_function`, and the Spark result, brought back through Arrow, must
equal the Polars one: same columns, same dtypes, floats exactly equal.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from ml_assets.demo.generate import write_demo_data
from ml_assets.engines import spark_delta
from ml_assets.engines.run import run_feature_function
from ml_assets.ingest.ingest import ingest_day
from ml_assets.pipeline.spec import load_spec
from ml_assets.pipelines.fraud.features import transaction_features
from ml_assets.settings import DEMO_PIPELINE_SPEC
from ml_assets.storage import delta
from ml_assets_tests.conftest import DEMO_START

pytestmark = pytest.mark.spark

SPEC = load_spec(DEMO_PIPELINE_SPEC)
FEATURE = SPEC.features["transaction_features"]
DAYS = [DEMO_START + dt.timedelta(days=i) for i in range(10)]
# Four partitions whose 7-day lookback reaches back to the first day of data.
FIRST, LAST = DAYS[6], DAYS[9]


@pytest.fixture(scope="module")
def raw_lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parity")
    write_demo_data(root / "landing", start=DEMO_START, days=len(DAYS), rows_per_day=200, seed=3)
    now = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for name, source in SPEC.sources.items():
        rows = pl.concat(
            [ingest_day(source, root / "landing" / name, day, ingested_at=now).rows for day in DAYS]
        )
        delta.write_partitions(str(root / "raw" / name), rows, partitions=DAYS)
    return root


def _ranges() -> dict[str, tuple[dt.date, dt.date] | None]:
    """What the feature asset's partition mappings load for FIRST..LAST."""
    return {
        name: None
        if read.history == "all"
        else (FIRST - dt.timedelta(days=read.lookback_days), LAST)
        for name, read in FEATURE.inputs.items()
    }


def polars_features(raw_lake: Path, function) -> pl.DataFrame:
    inputs = {
        name: delta.scan(str(raw_lake / "raw" / name), date_range=date_range)
        for name, date_range in _ranges().items()
    }
    result = run_feature_function(function, inputs, FEATURE.params, FIRST, LAST)
    return result.collect().sort("event_id")


def spark_features(spark, raw_lake: Path, function):
    inputs = {
        name: spark_delta.read_delta(spark, str(raw_lake / "raw" / name), date_range=date_range)
        for name, date_range in _ranges().items()
    }
    return run_feature_function(function, inputs, FEATURE.params, FIRST, LAST)


@pytest.fixture(scope="module")
def results(spark, raw_lake):
    on_spark = spark_features(spark, raw_lake, transaction_features).cache()
    yield polars_features(raw_lake, transaction_features), on_spark
    on_spark.unpersist()


def test_demo_features_are_identical_on_polars_and_spark(results):
    on_polars, on_spark = results
    assert on_polars.height > 500
    assert on_polars["event_date"].unique().sort().to_list() == DAYS[6:]
    assert_frame_equal(
        spark_delta.to_polars(on_spark).sort("event_id"), on_polars, check_exact=True
    )


def test_both_engines_write_the_same_feature_table(results, tmp_path):
    on_polars, on_spark = results
    uri = str(tmp_path / "transaction_features")
    # Polars writes the first two days, Spark the last two, into one table.
    polars_days, spark_days = DAYS[6:8], DAYS[8:10]
    delta.write_partitions(
        uri, on_polars.filter(pl.col("event_date").is_in(polars_days)), partitions=polars_days
    )
    from pyspark.sql import functions as F

    result = spark_delta.write_partitions(
        on_spark.filter(F.col("event_date").isin(spark_days)), uri, partitions=spark_days
    )
    assert result.table_rows == on_polars.height
    assert_frame_equal(delta.scan(uri).collect().sort("event_id"), on_polars, check_exact=True)
    types = {f.name: str(f.type.type) for f in DeltaTable(uri).schema().fields}
    assert (types["event_ts"], types["hour"], types["cust_txn_count_prev_days"]) == (
        "timestamp_ntz",
        "byte",
        "integer",
    )
