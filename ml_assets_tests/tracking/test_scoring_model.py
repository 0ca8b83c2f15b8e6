"""The stored pyfunc: scores feature rows whatever integer width their columns arrive with, and
models stored the way earlier versions did still load."""

import mlflow.pyfunc
import numpy as np
import polars as pl
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from ml_assets.ml.estimators import build_pipeline, predict_scores, to_pandas_features
from ml_assets.tracking.scoring_model import ScoringModel, conform_to_signature, scoring_model


def _fitted():
    rng = np.random.default_rng(0)
    term = rng.choice([12, 24, 36, 60], 400)
    frame = pl.DataFrame(
        {
            "term_months": pl.Series(term, dtype=pl.Int64),  # a spec `int` column
            "purpose": rng.choice(["car", "home"], 400),
            "defaulted": (term == 60).astype(int),
        }
    )
    numeric, categorical = ["term_months"], ["purpose"]
    pipeline = build_pipeline(
        task="classification",
        estimator="logistic_regression",
        params={},
        seed=0,
        numeric=numeric,
        categorical=categorical,
    ).fit(to_pandas_features(frame, numeric, categorical), frame["defaulted"].to_numpy())
    example = to_pandas_features(frame.head(5), numeric, categorical)
    signature = infer_signature(
        example, predict_scores(pipeline, frame.head(5), task="classification")
    )
    return frame, pipeline, signature


def test_an_int64_feature_column_is_scored_like_its_float_twin(tmp_path):
    frame, pipeline, signature = _fitted()
    mlflow.pyfunc.save_model(
        tmp_path / "model",
        **scoring_model(pipeline, "classification", tmp_path / "staging"),
        signature=signature,
    )
    scorer = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    schema = scorer.metadata.get_input_schema()

    # The signature says double; MLflow refuses the raw int64 column before our code runs.
    with pytest.raises(MlflowException, match="term_months"):
        scorer.predict(frame.select("term_months", "purpose").to_pandas())
    scores = scorer.predict(conform_to_signature(frame, schema))
    np.testing.assert_allclose(scores, predict_scores(pipeline, frame, task="classification"))


def test_a_model_stored_by_an_earlier_version_still_scores(tmp_path):
    """Before models were logged from code, the pyfunc was a pickled `ScoringModel`: registries
    hold such champions, and scoring must keep working with them until the next training."""
    frame, pipeline, signature = _fitted()
    mlflow.pyfunc.save_model(
        tmp_path / "model",
        python_model=ScoringModel(pipeline, "classification"),
        signature=signature,
    )
    scorer = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    scores = scorer.predict(conform_to_signature(frame, scorer.metadata.get_input_schema()))
    np.testing.assert_allclose(scores, predict_scores(pipeline, frame, task="classification"))


def test_each_model_scores_with_its_own_copy_of_the_scoring_contract(tmp_path):
    """Validation loads the challenger and the champion in one process; each must score with
    the contract it was logged with, not with the copy the process imported first."""
    frame, pipeline, signature = _fitted()
    for name in ("older", "newer"):
        mlflow.pyfunc.save_model(
            tmp_path / name,
            **scoring_model(pipeline, "classification", tmp_path / f"staging-{name}"),
            signature=signature,
        )
    # The "newer" model's contract differs: it halves every score.
    contract = tmp_path / "newer" / "code" / "ml_assets_scoring.py"
    contract.write_text(
        contract.read_text().replace(
            "return np.asarray(proba[:, 1], dtype=np.float64)",
            "return np.asarray(proba[:, 1], dtype=np.float64) / 2",
        )
    )
    older = mlflow.pyfunc.load_model(str(tmp_path / "older"))
    newer = mlflow.pyfunc.load_model(str(tmp_path / "newer"))
    rows = conform_to_signature(frame, older.metadata.get_input_schema())
    expected = predict_scores(pipeline, frame, task="classification")
    np.testing.assert_allclose(older.predict(rows), expected)
    np.testing.assert_allclose(newer.predict(rows), expected / 2)
