"""Feature engineering for the fraud demo, written once with narwhals.

The same function runs on a Polars LazyFrame locally and on a PySpark DataFrame on Databricks,
so it sticks to operations narwhals implements on both: comparisons of timestamps instead of
durations (Spark has no `total_seconds`), `truncate("1d")` and `offset_by` for calendar maths,
`over(..., order_by=...)` for per-customer windows.

Point-in-time rule: a payment's features use only events strictly before it (its customer's
earlier payments, the customer record as of the payment) and only data from the `history_days`
days before its own day. The second half makes a partition computed alone (with its lookback
read from the table) equal to the same partition computed inside a long backfill.
"""

from __future__ import annotations

import datetime as dt
import operator
from functools import reduce

import narwhals as nw

_ORDER = ["event_ts", "event_id"]

# The feature table's columns, in order (the pandas benchmark twin produces the same).
FEATURE_COLUMNS = (
    "event_id", "customer_id", "event_ts", "event_date",
    "amount", "channel", "merchant_category", "hour",
    "segment", "region", "credit_limit", "new_account",
    "prev_amount", "mean_amount_prev", "amount_to_prev_mean", "n_prev_events",
    "events_prev_hour", "cust_txn_count_prev_days", "cust_amount_sum_prev_days",
    "is_fraud",
)  # fmt: skip


_CUSTOMER_ATTRIBUTES = ("segment", "region", "signup_date", "credit_limit")


def _customer_versions(customers: nw.LazyFrame) -> nw.LazyFrame:
    """Each customer record with the interval it matches payments in: from `valid_from` until
    the next version's `updated_at` (`superseded_at`, null for the current one).

    A customer's first version is stretched back to the epoch so that every payment of a known
    customer matches exactly one version, even one made before the first record; the caller
    blanks the attributes of such a payment (`updated_at` after the payment). Stretching the
    first version instead of adding a blank one keeps the join at one row per payment for
    customers with a single record, which is most of them: half the rows of a join that also
    matched a blank version. All on the small dimension table: the payments side needs no
    window.
    """
    is_first = nw.col("updated_at").shift(1).over("customer_id", order_by="updated_at").is_null()
    return customers.select("customer_id", "updated_at", *_CUSTOMER_ATTRIBUTES).with_columns(
        nw.col("updated_at")
        .shift(-1)
        .over("customer_id", order_by="updated_at")
        .alias("superseded_at"),
        nw.when(is_first)
        .then(nw.lit(dt.datetime(1970, 1, 1)).cast(nw.Datetime("us")))
        .otherwise(nw.col("updated_at"))
        .alias("valid_from"),
    )


def _previous_payments(history_days: int, recent_events: int) -> list[nw.Expr]:
    """Features from the customer's last `recent_events` payments inside the lookback."""
    window_start = nw.col("event_ts").dt.truncate("1d").dt.offset_by(f"-{history_days}d")
    hour_ago = nw.col("event_ts").dt.offset_by("-1h")
    amounts, in_window, in_last_hour = [], [], []
    for i in range(1, recent_events + 1):
        prev_ts = nw.col("event_ts").shift(i).over("customer_id", order_by=_ORDER)
        prev_amount = nw.col("amount").shift(i).over("customer_id", order_by=_ORDER)
        valid = prev_ts >= window_start  # null (no previous payment) counts as false
        amounts.append(nw.when(valid).then(prev_amount))
        in_window.append(nw.when(valid).then(1).otherwise(0))
        in_last_hour.append(nw.when(valid & (prev_ts >= hour_ago)).then(1).otherwise(0))
    n_prev = nw.sum_horizontal(*in_window)
    # Added left to right on every engine: nw.sum_horizontal adds floats in another order on
    # Polars than on Spark, which changes the last bit of the mean.
    total_prev = reduce(operator.add, [a.fill_null(0.0) for a in amounts])
    mean_prev = nw.when(n_prev > 0).then(total_prev / n_prev)
    return [
        amounts[0].alias("prev_amount"),
        mean_prev.alias("mean_amount_prev"),
        n_prev.alias("n_prev_events"),
        nw.sum_horizontal(*in_last_hour).alias("events_prev_hour"),
    ]


def _daily_activity(payments: nw.LazyFrame, history_days: int) -> nw.LazyFrame:
    """Per customer and day: payments and spend over the previous `history_days` days."""
    daily = (
        payments.with_columns(nw.col("event_ts").dt.truncate("1d").alias("day"))
        .group_by("customer_id", "day")
        .agg(nw.len().alias("n"), nw.col("amount").sum().alias("spend"))
    )
    # Shift each day's totals forward by 1..history_days days, then add up per target day:
    # cheap because `daily` is already aggregated.
    shifted = nw.concat(
        [
            daily.with_columns(nw.col("day").dt.offset_by(f"{k}d"))
            for k in range(1, history_days + 1)
        ]
    )
    return shifted.group_by("customer_id", "day").agg(
        # Int32 on every engine (a count is UInt32 on Polars, its sum Int64 on Spark).
        nw.col("n").sum().cast(nw.Int32).alias("cust_txn_count_prev_days"),
        # Rounded to cents: the sum's float order differs between runs and engines.
        nw.col("spend").sum().round(2).alias("cust_amount_sum_prev_days"),
    )


def transaction_features(
    transactions: nw.LazyFrame,
    customers: nw.LazyFrame,
    *,
    history_days: int = 7,
    recent_events: int = 3,
) -> nw.LazyFrame:
    payments = transactions.select(
        "event_id",
        "customer_id",
        "event_ts",
        "amount",
        "channel",
        "merchant_category",
        "is_fraud",
        "event_date",
    )
    with_history = payments.with_columns(
        *_previous_payments(history_days, recent_events),
        nw.col("event_ts").dt.truncate("1d").alias("day"),
        # Int8 on every engine (Spark's hour() is an Int32).
        nw.col("event_ts").dt.hour().cast(nw.Int8).alias("hour"),
    )
    # As of the payment: the customer version in force at event_ts (point in time). A payment
    # by a customer without any record keeps null attributes (left join, no version matched),
    # and so does one made before the customer's first record.
    matches = nw.col("valid_from").is_null() | (nw.col("valid_from") <= nw.col("event_ts")) & (
        nw.col("superseded_at").is_null() | (nw.col("superseded_at") > nw.col("event_ts"))
    )
    recorded = nw.col("updated_at") <= nw.col("event_ts")
    features = (
        with_history.join(_customer_versions(customers), on="customer_id", how="left")
        .filter(matches)
        .with_columns(*[nw.when(recorded).then(nw.col(c)).alias(c) for c in _CUSTOMER_ATTRIBUTES])
        .drop("updated_at", "superseded_at", "valid_from")
        .join(_daily_activity(payments, history_days), on=["customer_id", "day"], how="left")
        .with_columns(
            (nw.col("amount") / nw.col("mean_amount_prev")).alias("amount_to_prev_mean"),
            nw.when(
                nw.col("signup_date").cast(nw.Datetime("us")) >= nw.col("day").dt.offset_by("-30d")
            )
            .then(1)
            .otherwise(0)
            .alias("new_account"),
            nw.col("cust_txn_count_prev_days").fill_null(0),
            nw.col("cust_amount_sum_prev_days").fill_null(0.0),
        )
    )
    return features.select(*FEATURE_COLUMNS)
