"""Tests for the deterministic fraud-demo landing-file generator."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from ml_assets.demo.generate import (
    CHANNELS,
    CUSTOMER_COLUMNS,
    MERCHANT_CATEGORIES,
    REGIONS,
    SEGMENTS,
    TRANSACTION_COLUMNS,
    DemoSummary,
    generate_demo_frames,
    write_demo_data,
)

START = dt.date(2026, 1, 5)
# Big enough for stable statistics (80k transactions, 1000+ customers), still ~0.1 s.
STATS_DAYS = 4
STATS_ROWS = 20_000

Frames = dict[str, dict[dt.date, pl.DataFrame]]


def _day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read_csv(path: Path) -> pl.DataFrame:
    # Keep every column as text except the known numeric ones, as an ingest job would.
    return pl.read_csv(
        path,
        infer_schema=False,
        schema_overrides={"amount": pl.Float64, "is_fraud": pl.Int64, "credit_limit": pl.Float64},
    )


@pytest.fixture(scope="module")
def frames() -> Frames:
    return generate_demo_frames(start=START, days=STATS_DAYS, rows_per_day=STATS_ROWS, seed=11)


@pytest.fixture(scope="module")
def transactions(frames: Frames) -> pl.DataFrame:
    return pl.concat(list(frames["transactions"].values()))


@pytest.fixture(scope="module")
def customers(frames: Frames) -> pl.DataFrame:
    return pl.concat(
        [df.with_columns(pl.lit(day).alias("file_day")) for day, df in frames["customers"].items()]
    )


# --- files, determinism, atomicity -----------------------------------------------------------


def test_same_args_give_byte_identical_files(tmp_path: Path) -> None:
    kwargs = {"start": START, "days": 3, "rows_per_day": 500, "seed": 3}
    write_demo_data(tmp_path / "a", **kwargs)
    write_demo_data(tmp_path / "b", **kwargs)
    write_demo_data(tmp_path / "c", **{**kwargs, "seed": 4})

    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert sorted(a) == [
        f"{feed}/{_day(i).isoformat()}.csv"
        for feed in ("customers", "transactions")
        for i in range(3)
    ]
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_day_content_does_not_depend_on_number_of_days(tmp_path: Path) -> None:
    write_demo_data(tmp_path / "short", start=START, days=3, rows_per_day=500, seed=5)
    write_demo_data(tmp_path / "long", start=START, days=5, rows_per_day=500, seed=5)
    short, long = _file_bytes(tmp_path / "short"), _file_bytes(tmp_path / "long")
    assert len(short) == 6 and len(long) == 10
    assert all(long[name] == content for name, content in short.items())


def test_summary_files_and_no_temp_leftovers(tmp_path: Path) -> None:
    summary = write_demo_data(tmp_path, start=START, days=2, rows_per_day=300, seed=1)

    assert isinstance(summary, DemoSummary)
    assert summary.out_dir == tmp_path
    assert (summary.start, summary.end, summary.days) == (START, _day(1), 2)
    assert summary.transaction_rows == 600
    assert all(p.is_file() for p in summary.files)
    assert len(summary.files) == 4
    assert summary.customer_rows == sum(
        _read_csv(p).height for p in summary.files if p.parent.name == "customers"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.days = 3  # type: ignore[misc]
    # Atomic writes go through hidden ".<name>.tmp" files; none may survive.
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_csv_round_trips_to_in_memory_frames(tmp_path: Path) -> None:
    write_demo_data(tmp_path, start=START, days=2, rows_per_day=400, seed=9)
    mem = generate_demo_frames(start=START, days=2, rows_per_day=400, seed=9)
    for feed in ("transactions", "customers"):
        for day, expected in mem[feed].items():
            got = _read_csv(tmp_path / feed / f"{day.isoformat()}.csv")
            assert got.equals(expected), (feed, day)


def test_parquet_format(tmp_path: Path) -> None:
    summary = write_demo_data(
        tmp_path / "a", start=START, days=2, rows_per_day=400, seed=9, fmt="parquet"
    )
    write_demo_data(tmp_path / "b", start=START, days=2, rows_per_day=400, seed=9, fmt="parquet")
    mem = generate_demo_frames(start=START, days=2, rows_per_day=400, seed=9)

    assert all(p.suffix == ".parquet" for p in summary.files)
    assert _file_bytes(tmp_path / "a") == _file_bytes(tmp_path / "b")
    for feed in ("transactions", "customers"):
        for day, expected in mem[feed].items():
            got = pl.read_parquet(tmp_path / "a" / feed / f"{day.isoformat()}.parquet")
            assert got.equals(expected), (feed, day)
    assert not [p for p in (tmp_path / "a").rglob("*") if ".tmp" in p.name]


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_demo_data(tmp_path, start=START, days=1, rows_per_day=10, seed=1, fmt="json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="days"):
        generate_demo_frames(start=START, days=0, rows_per_day=10, seed=1)
    with pytest.raises(ValueError, match="seed"):
        generate_demo_frames(start=START, days=1, rows_per_day=10, seed=-1)


# --- schema and referential integrity ----------------------------------------------------------


def test_schema_and_column_order(frames: Frames) -> None:
    assert list(frames["transactions"]) == [_day(i) for i in range(STATS_DAYS)]
    for df in frames["transactions"].values():
        assert df.columns == list(TRANSACTION_COLUMNS)
        assert df.schema == pl.Schema(
            {
                "event_id": pl.String,
                "customer_id": pl.String,
                "event_ts": pl.String,
                "amount": pl.Float64,
                "channel": pl.String,
                "merchant_category": pl.String,
                "is_fraud": pl.Int64,
            }
        )
        assert df.height == STATS_ROWS
    for df in frames["customers"].values():
        assert df.columns == list(CUSTOMER_COLUMNS)
        assert df.schema == pl.Schema(
            {
                "customer_id": pl.String,
                "updated_at": pl.String,
                "segment": pl.String,
                "region": pl.String,
                "signup_date": pl.String,
                "credit_limit": pl.Float64,
            }
        )


def test_value_formats_and_domains(transactions: pl.DataFrame, customers: pl.DataFrame) -> None:
    assert transactions["event_id"].str.contains(r"^t\d{8}-\d{6}$").all()
    assert transactions["customer_id"].str.contains(r"^c\d{6}$").all()
    assert transactions["event_ts"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$").all()
    assert customers["updated_at"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$").all()
    assert customers["signup_date"].str.contains(r"^\d{4}-\d\d-\d\d$").all()
    assert set(transactions["channel"].drop_nulls()) == set(CHANNELS)
    assert set(transactions["merchant_category"].drop_nulls()) == set(MERCHANT_CATEGORIES)
    assert set(transactions["is_fraud"]) == {0, 1}
    assert set(customers["segment"]) == set(SEGMENTS)
    assert set(customers["region"]) == set(REGIONS)
    assert (transactions["amount"] > 0).all()
    assert (transactions["amount"] == transactions["amount"].round(2)).all()


def test_transactions_sorted_within_their_day(frames: Frames) -> None:
    for day, df in frames["transactions"].items():
        assert df["event_ts"].is_sorted()
        assert (df["event_ts"].str.slice(0, 10) == day.isoformat()).all()
        assert df["event_id"].str.starts_with(f"t{day:%Y%m%d}-").all()


def test_event_id_unique_across_days(transactions: pl.DataFrame) -> None:
    assert transactions["event_id"].n_unique() == transactions.height


def test_customer_id_is_primary_key_within_each_file(frames: Frames) -> None:
    for df in frames["customers"].values():
        assert df["customer_id"].n_unique() == df.height


def test_initial_snapshot_and_daily_changes(frames: Frames) -> None:
    first = frames["customers"][START]
    assert first.height == max(200, STATS_ROWS // 20)
    assert (first["updated_at"] == f"{START.isoformat()}T00:00:00").all()
    assert (first["signup_date"] < START.isoformat()).all()
    # Some accounts are young at start, so "account age" is a usable feature from day one.
    assert (first["signup_date"] >= _day(-30).isoformat()).mean() > 0.03

    known = set(first["customer_id"])
    n_new = n_changed = 0
    for i in range(1, STATS_DAYS):
        df = frames["customers"][_day(i)]
        assert (df["updated_at"].str.slice(0, 10) == _day(i).isoformat()).all()
        new = df.filter(~pl.col("customer_id").is_in(known))
        changed = df.filter(pl.col("customer_id").is_in(known))
        # New customers: signup that day, record stamped at the signup moment.
        assert new.height > 0
        assert (new["signup_date"] == _day(i).isoformat()).all()
        assert (changed["signup_date"] < _day(i).isoformat()).all()
        known |= set(new["customer_id"])
        n_new += new.height
        n_changed += changed.height
    # Daily counts are Poisson; only the totals are meaningful.
    assert n_new >= STATS_DAYS and n_changed >= STATS_DAYS


def test_every_transaction_has_an_earlier_customer_record(
    transactions: pl.DataFrame, customers: pl.DataFrame
) -> None:
    first_seen = customers.group_by("customer_id").agg(pl.col("updated_at").min())
    joined = transactions.join(first_seen, on="customer_id", how="left")
    assert joined["updated_at"].null_count() == 0
    # ISO strings of equal width compare chronologically.
    assert (joined["updated_at"] <= joined["event_ts"]).all()
    # Customers who signed up mid-demo do transact (after their signup time).
    late = joined.filter(pl.col("updated_at") > f"{START.isoformat()}T00:00:00")
    assert late.height > 0
    assert (late["updated_at"] < late["event_ts"]).all()


def test_null_rates(transactions: pl.DataFrame, customers: pl.DataFrame) -> None:
    n = transactions.height
    assert 0.005 < transactions["channel"].null_count() / n < 0.02
    assert 0.01 < transactions["merchant_category"].null_count() / n < 0.03
    for col in ("event_id", "customer_id", "event_ts", "amount", "is_fraud"):
        assert transactions[col].null_count() == 0, col
    assert 0.025 < customers["credit_limit"].null_count() / customers.height < 0.08
    for col in ("customer_id", "updated_at", "segment", "region", "signup_date"):
        assert customers[col].null_count() == 0, col


# --- realism: skew, daily cycle, fraud signal ---------------------------------------------------


def test_activity_is_skewed_and_daily_cycle_is_visible(transactions: pl.DataFrame) -> None:
    per_customer = transactions.group_by("customer_id").len()["len"]
    assert per_customer.max() > 8 * per_customer.median()
    hour = transactions["event_ts"].str.slice(11, 2).cast(pl.Int32)
    night_share = (hour < 6).mean()
    assert night_share < 0.25 * 6 / 24  # far fewer than a uniform day would give


def _with_signals(transactions: pl.DataFrame) -> pl.DataFrame:
    return transactions.with_columns(
        (pl.col("amount") / pl.col("amount").median().over("customer_id")).alias("ratio"),
        (pl.col("event_ts").str.slice(11, 2).cast(pl.Int32) < 6).alias("night"),
    )


def test_fraud_base_rate(transactions: pl.DataFrame) -> None:
    assert 0.02 <= transactions["is_fraud"].mean() <= 0.045


def test_fraud_has_learnable_signal(transactions: pl.DataFrame) -> None:
    df = _with_signals(transactions)
    overall = df["is_fraud"].mean()

    def rate(mask: pl.Expr) -> float:
        return df.filter(mask)["is_fraud"].mean()

    assert rate(pl.col("ratio") > 3) > 2.0 * overall
    assert rate(pl.col("night")) > 2.0 * overall
    assert rate(pl.col("channel") == "web") > 1.3 * rate(pl.col("channel") != "web")
    risky = pl.col("merchant_category").is_in(["electronics", "gaming", "travel"])
    assert rate(risky) > 1.3 * rate(~risky & pl.col("merchant_category").is_not_null())


def test_no_single_column_predicts_fraud_perfectly(transactions: pl.DataFrame) -> None:
    df = _with_signals(transactions)
    for col in ("channel", "merchant_category", "night"):
        per_value = df.group_by(col).agg(pl.col("is_fraud").mean().alias("rate"))
        # Every value of a categorical signal holds both labels, the riskiest still mostly clean.
        assert ((per_value["rate"] > 0) & (per_value["rate"] < 0.5)).all(), col
    # Large amounts relative to the customer's median are risky, but far from always fraud.
    assert df.filter(pl.col("ratio") > 10)["is_fraud"].mean() < 0.8
    # No customer is a pure fraudster (the label lives on transactions, not on accounts).
    per_customer = df.group_by("customer_id").agg(pl.col("is_fraud").mean().alias("rate"), pl.len())
    assert per_customer.filter(pl.col("len") >= 20)["rate"].max() < 0.5


# --- drift ----------------------------------------------------------------------------------


def test_drift_changes_later_days_only(tmp_path: Path) -> None:
    drift_from = _day(2)
    kwargs = {"start": START, "days": 4, "rows_per_day": 3_000, "seed": 21}
    base = write_demo_data(tmp_path / "base", **kwargs)
    drifted = write_demo_data(tmp_path / "drift", drift_from=drift_from, **kwargs)
    assert base.files != drifted.files  # different roots

    base_bytes, drift_bytes = _file_bytes(tmp_path / "base"), _file_bytes(tmp_path / "drift")
    for name, content in base_bytes.items():
        day = dt.date.fromisoformat(Path(name).stem)
        if day < drift_from:
            assert drift_bytes[name] == content, name
        elif name.startswith("transactions"):
            assert drift_bytes[name] != content, name

    tx = pl.concat(
        _read_csv(p).with_columns(pl.lit(p.stem).alias("day"))
        for p in drifted.files
        if p.parent.name == "transactions"
    )
    before = tx.filter(pl.col("day") < drift_from.isoformat())
    after = tx.filter(pl.col("day") >= drift_from.isoformat())
    assert after["amount"].mean() > 1.5 * before["amount"].mean()
    assert (after["channel"] == "web").mean() > (before["channel"] == "web").mean() + 0.2
    travel_like = pl.col("merchant_category").is_in(["electronics", "travel"])
    assert after.select(travel_like.mean()).item() > before.select(travel_like.mean()).item() + 0.15


def test_drift_changes_region_mix_of_new_customers() -> None:
    # A larger population so each day has enough signups to compare region mixes.
    frames = generate_demo_frames(
        start=START, days=6, rows_per_day=200_000, seed=2, drift_from=_day(3)
    )
    new = pl.concat(
        df.filter(pl.col("signup_date") == day.isoformat()).with_columns(
            (pl.lit(day) >= _day(3)).alias("drifted")
        )
        for day, df in frames["customers"].items()
    )
    east = new.group_by("drifted").agg((pl.col("region") == "east").mean()).sort("drifted")
    before, after = east["region"].to_list()
    assert after > before + 0.15
