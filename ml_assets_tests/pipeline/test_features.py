"""Demo feature engineering: point-in-time correctness and partition independence."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import narwhals as nw
import polars as pl
import pytest

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.ingest.ingest import ingest_day
from ml_assets.pipeline.spec import load_spec
from ml_assets.pipelines.fraud.features import transaction_features
from ml_assets.settings import DEMO_PIPELINE_SPEC
from ml_assets_tests.conftest import DEMO_START

SPEC = load_spec(DEMO_PIPELINE_SPEC)
DAYS = [DEMO_START + dt.timedelta(days=i) for i in range(10)]
FEATURES = dg.AssetKey(["fraud", "features", "transaction_features"])


def _range(first: dt.date, last: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    write_demo_data(root / "fraud", start=DEMO_START, days=len(DAYS), rows_per_day=400, seed=3)
    return root


@pytest.fixture(scope="module")
def raw_frames(landing) -> dict[str, pl.DataFrame]:
    now = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    return {
        name: pl.concat(
            [
                ingest_day(source, landing / "fraud" / name, day, ingested_at=now).rows
                for day in DAYS
            ]
        )
        for name, source in SPEC.sources.items()
    }


def _features(transactions: pl.DataFrame, customers: pl.DataFrame) -> pl.DataFrame:
    out = transaction_features(
        nw.from_native(transactions.lazy()), nw.from_native(customers.lazy()), history_days=7
    )
    return nw.to_native(out).collect().sort("event_id")


def test_features_use_only_information_from_before_each_payment(raw_frames):
    transactions, customers = raw_frames["transactions"], raw_frames["customers"]
    before = _features(transactions, customers)
    cutoff = transactions.sort("event_ts")["event_ts"][transactions.height // 2]

    # Rewrite everything from the cutoff on: later payments get other amounts and channels, every
    # customer record changes at the cutoff, and a burst of extra payments lands at the cutoff.
    later = pl.col("event_ts") >= cutoff
    tampered_tx = pl.concat(
        [
            transactions.with_columns(
                pl.when(later).then(pl.col("amount") * 50).otherwise(pl.col("amount")),
                pl.when(later).then(pl.lit("web")).otherwise(pl.col("channel")).alias("channel"),
            ),
            transactions.filter(later)
            .head(200)
            .with_columns(
                pl.lit(cutoff).alias("event_ts"),
                (pl.col("event_id") + "-extra").alias("event_id"),
            ),
        ]
    )
    tampered_customers = pl.concat(
        [
            customers,
            customers.unique("customer_id").with_columns(
                pl.lit(cutoff).alias("updated_at"),
                pl.lit("business").alias("segment"),
                pl.lit(1.0).alias("credit_limit"),
            ),
        ]
    )
    after = _features(tampered_tx, tampered_customers)

    earlier_ids = transactions.filter(pl.col("event_ts") < cutoff)["event_id"]
    assert earlier_ids.len() > 1000
    expected = before.filter(pl.col("event_id").is_in(earlier_ids.implode()))
    actual = after.filter(pl.col("event_id").is_in(earlier_ids.implode()))
    assert actual.equals(expected)
    # The tampering did reach the later payments, so the comparison above means something.
    assert not after.filter(pl.col("event_ts") > cutoff)["prev_amount"].equals(
        before.filter(pl.col("event_ts") > cutoff)["prev_amount"]
    )


def test_customer_record_is_the_version_in_force_at_payment_time(raw_frames):
    features = _features(raw_frames["transactions"], raw_frames["customers"])
    customers = raw_frames["customers"]
    changed = customers.filter(pl.col("customer_id").is_duplicated())["customer_id"].unique()
    assert changed.len() > 0, "demo data should contain customers whose record changes"
    for row in features.filter(pl.col("customer_id").is_in(changed.implode())).iter_rows(
        named=True
    ):
        in_force = (
            customers.filter(
                (pl.col("customer_id") == row["customer_id"])
                & (pl.col("updated_at") <= row["event_ts"])
            )
            .sort("updated_at")
            .tail(1)
        )
        assert in_force["segment"][0] == row["segment"]
        assert in_force["credit_limit"][0] == row["credit_limit"]


def test_a_payment_before_the_customers_first_record_keeps_its_row_without_attributes(
    raw_frames,
):
    transactions, customers = raw_frames["transactions"], raw_frames["customers"]
    # Move one customer's first record to after their second payment, and give another
    # customer no record at all: neither may drop or duplicate a payment, and no payment may see
    # a record that did not exist yet.
    one_record = customers.filter(pl.col("customer_id").is_unique())["customer_id"]
    payments = transactions.filter(
        pl.col("customer_id").is_duplicated() & pl.col("customer_id").is_in(one_record.implode())
    ).sort("event_ts")
    late = payments["customer_id"][0]
    theirs = payments.filter(pl.col("customer_id") == late)
    first_record = customers.filter(pl.col("customer_id") == late)["updated_at"].min()
    recorded_at = theirs["event_ts"][1] + dt.timedelta(seconds=1)
    unknown = transactions.filter(pl.col("customer_id") != late)["customer_id"][0]
    tampered = customers.filter(pl.col("customer_id") != unknown).with_columns(
        pl.when((pl.col("customer_id") == late) & (pl.col("updated_at") == first_record))
        .then(pl.lit(recorded_at))
        .otherwise(pl.col("updated_at"))
        .alias("updated_at")
    )

    features = _features(transactions, tampered)

    assert features.height == transactions.height
    assert features["event_id"].is_unique().all()
    late_rows = features.filter(pl.col("customer_id") == late).sort("event_ts")
    before = late_rows.filter(pl.col("event_ts") < recorded_at)
    assert before.height >= 2
    attributes = before.select("segment", "region", "credit_limit")
    assert attributes.null_count().row(0) == (before.height,) * 3
    after = late_rows.filter(pl.col("event_ts") >= recorded_at)
    assert after.height and after["segment"].null_count() == 0
    assert features.filter(pl.col("customer_id") == unknown)["segment"].null_count() == (
        transactions.filter(pl.col("customer_id") == unknown).height
    )


def test_previous_payment_features_follow_the_customer_history(raw_frames):
    features = _features(raw_frames["transactions"], raw_frames["customers"])
    one = features.filter(pl.col("customer_id") == features["customer_id"][0]).sort(
        "event_ts", "event_id"
    )
    # prev_amount is the amount of the previous payment within the lookback.
    assert one["prev_amount"][1:].to_list() == one["amount"][:-1].to_list()
    assert one["prev_amount"][0] is None or one["event_date"][0] > DAYS[0]
    assert features["n_prev_events"].max() == 3


def test_a_partition_computed_alone_equals_the_same_partition_in_a_backfill(landing, tmp_path):
    def settings_for(home: Path):
        from ml_assets.settings import load_settings

        return load_settings({"ML_ASSETS_HOME": str(home), "ML_ASSETS_LANDING_ROOT": str(landing)})

    backfill = settings_for(tmp_path / "backfill")
    defs = build_definitions(backfill)
    assets = list(defs.assets)
    dg.materialize(
        assets,
        resources=build_resources(backfill),
        selection=dg.AssetSelection.groups("raw", "features"),
        tags=_range(DAYS[0], DAYS[-1]),
    )

    alone = settings_for(tmp_path / "alone")
    # Raw tables as ingested; the feature partition is then computed on its own and must fetch
    # its 7-day lookback from the table.
    for table in ("raw/transactions", "raw/customers"):
        shutil.copytree(
            Path(backfill.lake_root) / "fraud" / table, Path(alone.lake_root) / "fraud" / table
        )
    day = DAYS[8]
    dg.materialize(
        assets,
        resources=build_resources(alone),
        partition_key=day.isoformat(),
        selection=[FEATURES],
    )
    table = "fraud/features/transaction_features"
    full = pl.read_delta(f"{backfill.lake_root}/{table}").filter(pl.col("event_date") == day)
    single = pl.read_delta(f"{alone.lake_root}/{table}")
    assert single["event_date"].unique().to_list() == [day]
    assert single.sort("event_id").equals(full.sort("event_id"))
    # Lookback features are populated, so the equality is not trivially about nulls.
    assert single["cust_txn_count_prev_days"].sum() > 0


def test_the_specs_column_descriptions_reach_the_feature_tables_metadata(landing, tmp_path):
    from ml_assets.settings import load_settings

    settings = load_settings(
        {"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_LANDING_ROOT": str(landing)}
    )
    result = dg.materialize(
        list(build_definitions(settings).assets),
        resources=build_resources(settings),
        selection=dg.AssetSelection.groups("raw", "features"),
        partition_key=DAYS[0].isoformat(),
    )

    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "transaction_features"
    ]
    schema = event.materialization.metadata["dagster/column_schema"].schema
    descriptions = {c.name: c.description for c in schema.columns}
    declared = load_spec(DEMO_PIPELINE_SPEC).features["transaction_features"].column_descriptions
    assert declared and {name: descriptions[name] for name in declared} == declared
    # Columns the spec does not describe keep their written type, without a description.
    assert descriptions["event_id"] is None
