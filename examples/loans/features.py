"""Features of the loans example: one row per application, point in time.

Written with narwhals so the same function runs on Polars locally and on Spark. A feature may
look back no further than the input's `lookback_days` (see docs/pipelines.md), so the previous
application only counts when it falls inside that window.
"""

import narwhals as nw


def application_features(applications: nw.LazyFrame, *, lookback_days: int) -> nw.LazyFrame:
    order = ["applied_at", "application_id"]
    previous_at = nw.col("applied_at").shift(1).over("applicant_id", order_by=order)
    previous_amount = nw.col("amount").shift(1).over("applicant_id", order_by=order)
    # Compare timestamps, not durations: Spark has no total_seconds.
    within = previous_at >= nw.col("applied_at").dt.offset_by(f"-{lookback_days}d")
    return applications.with_columns(
        (nw.col("amount") / nw.col("annual_income")).alias("loan_to_income"),
        nw.when(within).then(1).otherwise(0).alias("applied_within_lookback"),
        nw.when(within).then(previous_amount).alias("prev_amount"),
    ).select(
        "application_id",
        "applicant_id",
        "applied_at",
        "event_date",
        "amount",
        "annual_income",
        "loan_to_income",
        "term_months",
        "purpose",
        "employment_years",
        "applied_within_lookback",
        "prev_amount",
        "defaulted",
    )
