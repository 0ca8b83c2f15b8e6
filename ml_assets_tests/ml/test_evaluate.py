"""Metrics edge cases, slices, leakage scan, permutation importance."""

from __future__ import annotations

import math
import time

import numpy as np
import polars as pl
import pytest

from ml_assets.ml.evaluate import (
    classification_metrics,
    evaluate,
    evaluate_slices,
    expected_calibration_error,
    feature_importance,
    leakage_scan,
)
from ml_assets_tests.ml.conftest import IDS, TARGET


@pytest.fixture(scope="module")
def fitted(demo_model, split):
    return demo_model.model, split[1]


def test_classification_metrics_on_a_known_case():
    y = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.6, 0.4, 0.9])
    m = classification_metrics(y, score, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert m["positive_rate"] == 0.5 and m["predicted_positive_rate"] == 0.5
    assert m["brier"] == pytest.approx(np.mean((score - y) ** 2))
    assert all(isinstance(v, float) for v in m.values())
    # Perfectly calibrated bins -> ECE 0; systematic over-confidence shows up.
    assert expected_calibration_error(np.array([0, 1] * 50), np.full(100, 0.5)) == 0.0
    assert expected_calibration_error(np.zeros(10), np.full(10, 0.3)) == pytest.approx(0.3)


def test_single_class_holdout_gives_nan_not_an_error(fitted):
    model, holdout = fitted
    no_fraud = holdout.filter(pl.col(TARGET) == 0)
    m = evaluate(model, no_fraud, task="classification", target=TARGET)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert math.isfinite(m["log_loss"]) and math.isfinite(m["brier"])
    assert m["recall"] == 0.0 and m["rows"] == no_fraud.height
    empty = evaluate(model, holdout.head(0), task="classification", target=TARGET)
    assert empty["rows"] == 0.0 and math.isnan(empty["roc_auc"])


def test_unlabelled_rows_are_not_graded(fitted):
    model, holdout = fitted
    partly = holdout.with_columns(
        pl.when(pl.int_range(pl.len()) < 100).then(None).otherwise(pl.col(TARGET)).alias(TARGET)
    )
    m = evaluate(model, partly, task="classification", target=TARGET)
    assert m["rows"] == holdout.height - 100


def test_slices_include_every_value_and_the_null_slice(fitted):
    model, holdout = fitted
    slices = evaluate_slices(
        model, holdout, task="classification", target=TARGET, slice_column="channel", threshold=0.5
    )
    expected = holdout["channel"].unique().to_list()
    assert None in expected
    assert sorted(slices["channel"].to_list(), key=str) == sorted(expected, key=str)
    assert slices["channel"].to_list()[-1] is None  # null slice last
    assert slices["rows"].sum() == holdout.height
    assert {"rows", "positive_rate", "roc_auc", "pr_auc", "recall"} <= set(slices.columns)
    null_rows = slices.filter(pl.col("channel").is_null())["rows"][0]
    assert null_rows == holdout["channel"].null_count()
    with pytest.raises(ValueError, match="distinct values"):
        evaluate_slices(
            model,
            holdout,
            task="classification",
            target=TARGET,
            slice_column="event_id",
            threshold=0.5,
        )


def test_leakage_scan_flags_planted_leaks_and_no_real_feature(features, columns):
    numeric, categorical = columns
    rng = np.random.default_rng(1)
    label = features[TARGET].cast(pl.Float64)
    planted = features.with_columns(
        # A "chargeback amount" only known after the fact: the label plus a little noise.
        (label + pl.Series(rng.normal(0, 0.1, features.height))).alias("chargeback_score"),
        # A categorical spelling out the case outcome.
        pl.when(pl.col(TARGET) == 1)
        .then(pl.lit("confirmed"))
        .otherwise(pl.lit("none"))
        .alias("case_status"),
    )
    real = [*numeric, *categorical, *IDS]
    suspects = leakage_scan(
        planted,
        task="classification",
        target=TARGET,
        columns=[*real, "chargeback_score", "case_status"],
    )
    assert sorted(s.column for s in suspects) == ["case_status", "chargeback_score"]
    assert all(s.score >= 0.98 for s in suspects)
    assert suspects == sorted(suspects, key=lambda s: -s.score)
    # The real demo features (and ids) are far from suspicious.
    assert leakage_scan(features, task="classification", target=TARGET, columns=real) == []


def test_leakage_scan_regression_and_null_pattern_leak(features):
    rng = np.random.default_rng(2)
    y = pl.Series(rng.normal(size=features.height))
    frame = features.with_columns(
        y.alias("y"),
        (y * 2 + pl.Series(rng.normal(0, 0.01, features.height))).alias("doubled"),
    )
    suspects = leakage_scan(frame, task="regression", target="y", columns=["amount", "doubled"])
    assert [s.column for s in suspects] == ["doubled"] and suspects[0].method == "spearman"
    # Classification: the leak can hide in which rows are null.
    nulls = features.with_columns(
        pl.when(pl.col(TARGET) == 1).then(None).otherwise(pl.col("amount")).alias("refund")
    )
    found = leakage_scan(nulls, task="classification", target=TARGET, columns=["refund"])
    assert [s.column for s in found] == ["refund"]


def test_feature_importance_is_fast_and_covers_every_feature(fitted, columns):
    model, holdout = fitted
    started = time.perf_counter()
    importance = feature_importance(
        model, holdout, target=TARGET, task="classification", seed=0, n_repeats=3, max_rows=5000
    )
    assert time.perf_counter() - started < 10
    numeric, categorical = columns
    assert sorted(importance["feature"].to_list()) == sorted([*numeric, *categorical])
    values = importance["importance"].to_list()
    assert values == sorted(values, reverse=True) and values[0] > 0
    # Deterministic for a seed (checked on a smaller sample to keep the test quick).
    small = {"target": TARGET, "task": "classification", "seed": 1, "max_rows": 1000}
    first = feature_importance(model, holdout, n_repeats=1, **small)
    assert feature_importance(model, holdout, n_repeats=1, **small).equals(first)
