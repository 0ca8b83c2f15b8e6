"""The quality rules on small frames: what, where and how much."""

import datetime as dt

import polars as pl

from ml_assets.pipeline.spec import QualitySpec, SourceSpec
from ml_assets.quality.rules import evaluate_days, evaluate_rule, rules_for_source

DAY = dt.date(2026, 1, 10)
SOURCE = SourceSpec(
    event_time="ts",
    primary_key=["id"],
    columns={
        "id": {"type": "string", "nullable": False},
        "ts": {"type": "datetime", "nullable": False},
        "amount": {"type": "float"},
        "channel": "string",
    },
    quality=QualitySpec(
        columns={"amount": {"min": 0, "max": 100}, "channel": {"allowed": ["web", "app"]}}
    ),
)
TABLE = rules_for_source("payments", SOURCE)


def _frame(n: int = 10, **overrides) -> pl.DataFrame:
    data = {
        "id": [f"e{i}" for i in range(n)],
        "ts": [dt.datetime(2026, 1, 10, 23, 0) - dt.timedelta(minutes=i) for i in range(n)],
        "amount": [float(i) for i in range(n)],
        "channel": ["web"] * n,
        "event_date": [DAY] * n,
    }
    return pl.DataFrame({**data, **overrides})


def test_a_clean_day_passes_every_rule():
    frame = _frame()
    for rule in TABLE.enabled():
        assert evaluate_rule(rule, TABLE, frame, DAY).passed, rule


def test_failures_say_what_where_and_how_much():
    frame = _frame(amount=[None] * 5 + [-1.0, 500.0, 1.0, 2.0, 3.0], channel=["web"] * 9 + ["fax"])
    nulls = evaluate_rule("null_rate", TABLE, frame, DAY)
    assert not nulls.passed
    assert (nulls.metadata["column"], nulls.metadata["null_rate"]) == ("amount", 0.5)
    values = evaluate_rule("values", TABLE, frame, DAY).metadata["failing_columns"]
    assert values["amount"]["below_min"] == 1 and values["amount"]["above_max"] == 1
    assert values["channel"]["examples"] == ["fax"]
    dupes = evaluate_rule("primary_key_unique", TABLE, _frame(id=["a"] * 10), DAY)
    assert not dupes.passed and dupes.metadata["duplicate_rows"] == 9
    schema = evaluate_rule("schema_conformance", TABLE, frame.drop("channel"), DAY)
    assert not schema.passed and schema.metadata["missing_columns"] == ["channel"]
    assert not evaluate_rule("not_empty", TABLE, frame.clear(), DAY).passed


def test_a_required_column_allows_no_nulls():
    frame = _frame(ts=[None] + [dt.datetime(2026, 1, 10, 23)] * 9)
    result = evaluate_rule("null_rate", TABLE, frame, DAY)
    assert result.metadata["failing_columns"]["ts"]["max"] == 0.0


def test_row_count_band_against_the_previous_days():
    history = {DAY - dt.timedelta(days=i): 10 for i in range(1, 8)}
    assert evaluate_rule("row_count", TABLE, _frame(10), DAY, history).passed
    drop = evaluate_rule("row_count", TABLE, _frame(4), DAY, history)
    assert not drop.passed and drop.metadata["ratio"] == 0.4
    assert not evaluate_rule("row_count", TABLE, _frame(21), DAY, history).passed
    # Too little history: nothing to compare with.
    assert evaluate_rule(
        "row_count", TABLE, _frame(1), DAY, {DAY - dt.timedelta(days=1): 10}
    ).passed


def test_freshness_of_the_newest_event():
    late = _frame(ts=[dt.datetime(2026, 1, 10, 12, 0)] * 10)
    result = evaluate_rule("freshness", TABLE, late, DAY)
    assert not result.passed and result.metadata["hours_before_end"] == 12.0


def test_each_day_of_a_range_gets_its_own_verdict():
    other = DAY + dt.timedelta(days=1)
    frame = pl.concat(
        [_frame(), _frame(amount=[None] * 10, event_date=[other] * 10)], how="vertical_relaxed"
    )
    results = evaluate_days("null_rate", TABLE, frame, [DAY, other])
    assert [(r.day, r.passed) for r in results] == [(DAY, True), (other, False)]
