"""Time split, deterministic fits, the demo signal, regression, search."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml_assets.ml.estimators import predict_scores
from ml_assets.ml.evaluate import evaluate
from ml_assets.ml.train import fit, search, time_split
from ml_assets_tests.ml.conftest import DAYS, DEMO_CONFIG, START, TARGET

LAST = START + dt.timedelta(days=DAYS - 1)


def _split(features):
    return time_split(features, date_column="event_date", train_days=7, holdout_days=2)


def _fit(train, columns, *, estimator="hist_gradient_boosting", params=None, seed=0, task=None):
    numeric, categorical = columns
    return fit(
        train,
        task=task or "classification",
        estimator=estimator,
        params=params if params is not None else {"max_iter": 50},
        target=TARGET,
        numeric=numeric,
        categorical=categorical,
        seed=seed,
    )


def test_time_split_puts_the_latest_days_in_the_holdout(features):
    train, holdout, window = _split(features)
    assert window.holdout_end == LAST
    assert window.holdout_start == LAST - dt.timedelta(days=1)
    assert window.train_end == window.holdout_start - dt.timedelta(days=1)
    assert window.train_start == window.train_end - dt.timedelta(days=6)
    assert sorted(holdout["event_date"].unique()) == [window.holdout_start, LAST]
    train_days = set(train["event_date"].unique())
    assert len(train_days) == 7 and max(train_days) < window.holdout_start
    assert not train_days & set(holdout["event_date"].unique())
    assert (window.train_rows, window.holdout_rows) == (train.height, holdout.height)
    # The first day is older than the training window: dropped, not leaked into either side.
    assert features.height == train.height + holdout.height + 2000


def test_time_split_as_of_gap_and_datetime_column(features):
    as_of = START + dt.timedelta(days=5)
    train, holdout, window = time_split(
        features, date_column="event_ts", train_days=3, holdout_days=1, as_of=as_of, gap_days=1
    )
    assert holdout["event_date"].unique().to_list() == [as_of]
    assert sorted(train["event_date"].unique()) == [START + dt.timedelta(days=d) for d in (1, 2, 3)]
    assert window.as_dict()["holdout_end"] == as_of.isoformat()


def test_time_split_counts_the_training_days_that_have_data(features):
    """A window reaching back before the data's first day: its range is what was asked for,
    and `train_days_with_data` says how much of it the model saw."""
    _, _, window = time_split(features, date_column="event_date", train_days=30, holdout_days=2)
    days = features["event_date"].n_unique()
    assert window.train_days == 30
    assert window.train_days_with_data == days - 2
    assert window.as_dict()["train_days_with_data"] == days - 2


def test_time_split_errors_name_the_days(features):
    with pytest.raises(ValueError, match=r"empty holdout.*2027-01-01.*2027-01-02") as error:
        time_split(
            features,
            date_column="event_date",
            train_days=3,
            holdout_days=2,
            as_of=dt.date(2027, 1, 2),
        )
    assert "2026-01-01..2026-01-10" in str(error.value)
    with pytest.raises(ValueError, match=r"empty training set.*2025-12-29 and 2025-12-31"):
        time_split(
            features,
            date_column="event_date",
            train_days=3,
            holdout_days=2,
            as_of=START + dt.timedelta(days=1),
        )


def test_same_seed_same_model(split, columns, demo_model):
    train, holdout, _ = split

    def scores(result) -> np.ndarray:
        return predict_scores(result.model, holdout, task="classification")

    forest = {"n_estimators": 15, "min_samples_leaf": 5}
    for estimator, params, seed in [
        ("hist_gradient_boosting", DEMO_CONFIG["params"], 0),  # same config as demo_model
        ("random_forest", forest, 7),
    ]:
        a = (
            demo_model
            if seed == 0
            else _fit(train, columns, estimator=estimator, params=params, seed=seed)
        )
        b = _fit(train, columns, estimator=estimator, params=params, seed=seed)
        np.testing.assert_array_equal(scores(a), scores(b))
        ma = evaluate(a.model, holdout, task="classification", target=TARGET)
        assert ma == evaluate(b.model, holdout, task="classification", target=TARGET)
        assert a.params_resolved == b.params_resolved and a.params_resolved["random_state"] == seed
        # Row order is not part of the data (a Delta scan or a join may return any order): the
        # same rows shuffled give the same model, early-stopping split and bootstraps included.
        shuffled = train.sample(fraction=1.0, shuffle=True, seed=3)
        c = _fit(shuffled, columns, estimator=estimator, params=params, seed=seed)
        np.testing.assert_array_equal(scores(a), scores(c))

    # A random forest's bootstrap depends on the seed: another seed gives another model.
    other = _fit(train, columns, estimator="random_forest", params=forest, seed=8)
    assert not np.array_equal(scores(a), scores(other))


def test_demo_model_learns_the_fraud_signal(split, demo_model):
    train, holdout, _ = split
    result = demo_model
    metrics = evaluate(result.model, holdout, task="classification", target=TARGET)
    assert metrics["roc_auc"] > 0.7, metrics
    assert metrics["pr_auc"] > 2 * metrics["positive_rate"], metrics
    assert metrics["rows"] == holdout.height
    assert result.fit_seconds > 0 and result.train_rows == train.height


def test_single_class_training_data_is_refused(features, columns):
    with pytest.raises(ValueError, match=r"exactly 2 classes in 'is_fraud', found \[0\]"):
        _fit(features.filter(pl.col(TARGET) == 0), columns)
    # A yes/no target is reported with its own values, not their numeric codes.
    no_fraud = features.filter(pl.col(TARGET) == 0).with_columns(pl.col(TARGET).cast(pl.Boolean))
    with pytest.raises(ValueError, match=r"found \[False\]"):
        _fit(no_fraud, columns)


def test_regression_task(features, columns):
    # A synthetic target, linear in the features (so both model families can fit it) + noise.
    rng = np.random.default_rng(0)
    frame = features.with_columns(
        (
            pl.col("n_prev_events")
            + 2 * pl.col("new_account")
            + pl.col("hour") / 4
            + pl.when(pl.col("channel") == "web").then(2.0).otherwise(0.0)
            + pl.Series(rng.normal(0, 0.5, features.height))
        ).alias("y")
    )
    numeric, categorical = columns
    train, holdout, _ = _split(frame)
    for estimator in ("hist_gradient_boosting", "linear_regression"):
        result = fit(
            train,
            task="regression",
            estimator=estimator,
            params={},
            target="y",
            numeric=numeric,
            categorical=categorical,
            seed=0,
        )
        metrics = evaluate(result.model, holdout, task="regression", target="y")
        assert set(metrics) == {"rmse", "mae", "r2", "rows"}
        assert metrics["r2"] > 0.8, (estimator, metrics)


def _search(features, columns, kind, trials, seed=0, metric="roc_auc"):
    numeric, categorical = columns
    train, holdout, _ = _split(features)
    return search(
        train,
        holdout,
        space={"max_iter": [10, 30], "learning_rate": [0.05, 0.2], "max_depth": [2, 4, None]},
        kind=kind,
        trials=trials,
        metric=metric,
        seed=seed,
        task="classification",
        estimator="hist_gradient_boosting",
        target=TARGET,
        numeric=numeric,
        categorical=categorical,
    )


def test_random_search_is_deterministic_and_sorted_best_first(features, columns):
    first = _search(features, columns, "random", 4, seed=5)
    again = _search(features, columns, "random", 4, seed=5)
    assert len(first) == 4
    assert [t.params for t in first] == [t.params for t in again]
    assert [t.metrics for t in first] == [t.metrics for t in again]
    scores = [t.metrics["roc_auc"] for t in first]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(sorted(t.params.items(), key=str)) for t in first}) == 4  # no repeats
    # The trial's model is the one that was graded.
    holdout = _split(features)[1]
    best = evaluate(first[0].model, holdout, task="classification", target=TARGET)
    assert best == first[0].metrics


def test_grid_search_is_capped_and_lower_is_better_metrics_sort_ascending(features, columns):
    trials = _search(features, columns, "grid", 3, metric="log_loss")
    assert len(trials) == 3
    losses = [t.metrics["log_loss"] for t in trials]
    assert losses == sorted(losses)
    with pytest.raises(ValueError, match=r"unknown metric 'accuracy'.*roc_auc"):
        _search(features, columns, "grid", 1, metric="accuracy")
