"""Estimator registry, preprocessing and column handling."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.tree import DecisionTreeClassifier

from ml_assets.ml.estimators import build_pipeline, predict_scores, split_columns
from ml_assets.ml.estimators import to_pandas_features as to_pandas
from ml_assets.ml.train import fit
from ml_assets_tests.ml.conftest import TARGET

SMALL = {
    "hist_gradient_boosting": {"max_iter": 30},
    "logistic_regression": {},
    "random_forest": {"n_estimators": 15, "min_samples_leaf": 5},
}


def make_tree(task: str, seed: int) -> DecisionTreeClassifier:
    """A user estimator function, referenced as 'ml_assets_tests.ml.test_estimators:make_tree'."""
    assert task == "classification"
    return DecisionTreeClassifier(max_depth=4)


def test_split_columns_by_dtype():
    schema = pl.Schema(
        {
            "event_id": pl.String(),
            "amount": pl.Float64(),
            "n": pl.UInt32(),
            "flag": pl.Boolean(),
            "channel": pl.String(),
            "segment": pl.Categorical(),
            "day": pl.Date(),
            "ts": pl.Datetime("us"),
            "tags": pl.List(pl.String()),
            "is_fraud": pl.Int64(),
        }
    )
    numeric, categorical = split_columns(schema, target="is_fraud", exclude=["event_id"])
    assert numeric == ["amount", "n", "flag"]
    assert categorical == ["channel", "segment"]


def test_to_pandas_keeps_missing_values_as_nan():
    frame = pl.DataFrame(
        {"x": [1.0, None, float("inf")], "flag": [True, None, False], "c": ["a", None, "b"]}
    )
    out = to_pandas(frame, ["x", "flag"], ["c"])
    assert out["x"].isna().tolist() == [False, True, True]  # inf is a missing value too
    assert out["flag"].tolist()[0] == 1.0
    assert out["c"].isna().tolist() == [False, True, False]
    with pytest.raises(ValueError, match="missing from the frame: \\['nope'\\]"):
        to_pandas(frame, ["nope"])


def test_unknown_estimator_and_wrong_task_are_explained():
    with pytest.raises(ValueError, match=r"unknown estimator 'xgboost'.*hist_gradient_boosting"):
        build_pipeline(
            task="classification",
            estimator="xgboost",
            params={},
            numeric=["a"],
            categorical=[],
            seed=0,
        )
    with pytest.raises(ValueError, match="'logistic_regression' does not support task 'regr"):
        build_pipeline(
            task="regression",
            estimator="logistic_regression",
            params={},
            numeric=["a"],
            categorical=[],
            seed=0,
        )


def test_unknown_param_names_the_param_and_the_valid_ones():
    with pytest.raises(ValueError) as error:
        build_pipeline(
            task="classification",
            estimator="hist_gradient_boosting",
            params={"learning_rte": 0.1},
            numeric=["a"],
            categorical=[],
            seed=0,
        )
    message = str(error.value)
    assert "learning_rte" in message and "HistGradientBoostingClassifier" in message
    assert "learning_rate" in message  # the valid parameters are listed
    with pytest.raises(ValueError, match=r"random_state.*seed"):
        build_pipeline(
            task="classification",
            estimator="random_forest",
            params={"random_state": 1},
            numeric=["a"],
            categorical=[],
            seed=0,
        )


def test_seed_reaches_the_estimator():
    model = build_pipeline(
        task="regression",
        estimator="random_forest",
        params={"n_estimators": 5},
        numeric=["a"],
        categorical=["c"],
        seed=42,
    )
    assert model.named_steps["model"].random_state == 42
    assert model.named_steps["model"].n_estimators == 5


def test_user_estimator_reference(features, columns):
    numeric, categorical = columns
    ref = "ml_assets_tests.ml.test_estimators:make_tree"
    result = fit(
        features,
        task="classification",
        estimator=ref,
        params={"min_samples_leaf": 20},
        target=TARGET,
        numeric=numeric,
        categorical=categorical,
        seed=3,
    )
    tree = result.model.named_steps["model"]
    assert tree.max_depth == 4 and tree.min_samples_leaf == 20 and tree.random_state == 3
    assert result.params_resolved["min_samples_leaf"] == 20

    for bad, expected in [
        ("ml_assets_tests.ml.nope:make", "cannot import module 'ml_assets_tests.ml.nope'"),
        ("ml_assets_tests.ml.test_estimators:nope", "has no 'nope'"),
    ]:
        with pytest.raises(ValueError, match=expected) as error:
            build_pipeline(
                task="classification",
                estimator=bad,
                params={},
                numeric=["a"],
                categorical=[],
                seed=0,
            )
        assert bad in str(error.value)
    with pytest.raises(ValueError, match=r"unknown parameter.*'depth'.*max_depth"):
        build_pipeline(
            task="classification",
            estimator=ref,
            params={"depth": 3},
            numeric=["a"],
            categorical=[],
            seed=0,
        )


@pytest.mark.parametrize("estimator", sorted(SMALL))
def test_unseen_categories_and_nulls_at_scoring_do_not_crash(split, columns, estimator):
    numeric, categorical = columns
    train, holdout, _ = split
    result = fit(
        train,
        task="classification",
        estimator=estimator,
        params=SMALL[estimator],
        target=TARGET,
        numeric=numeric,
        categorical=categorical,
        seed=0,
    )
    n = 50
    odd = holdout.head(n).with_columns(
        pl.lit("carrier-pigeon").alias("channel"),  # never seen in training
        pl.lit(None, dtype=pl.String).alias("merchant_category"),
        pl.Series("region", ["atlantis", None] * (n // 2)),
        pl.lit(None, dtype=pl.Float64).alias("amount"),
        pl.lit(float("inf")).alias("amount_to_prev_mean"),
    )
    scores = predict_scores(result.model, odd, task="classification")
    assert scores.shape == (n,)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    # Categoricals may also arrive as pl.Categorical/Enum at scoring time.
    as_cat = holdout.head(n).with_columns(pl.col("channel").cast(pl.Categorical))
    np.testing.assert_array_equal(
        predict_scores(result.model, as_cat, task="classification"),
        predict_scores(result.model, holdout.head(n), task="classification"),
    )


def test_date_columns_are_not_features():
    schema = {"d": pl.Date(), "x": pl.Int8(), "y": pl.Float32()}
    assert split_columns(schema, target="y") == (["x"], [])
