"""The code of every registered model (MLflow "models from code").

MLflow copies this file into each logged model and runs it to load the model; ml_assets never
imports it. With it the model carries the fitted sklearn pipeline (artifact ``pipeline``), its
task (model config), and a copy of `ml_assets/ml/scoring.py` (code path ``ml_assets_scoring``):
loading needs the model's pip requirements, not this package.
"""

from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import polars as pl

try:
    import ml_assets_scoring as scoring  # the copy logged with the model
except ModuleNotFoundError:  # MLflow also runs this file while logging, before that copy exists
    from ml_assets.ml import scoring


class PipelineScorer(mlflow.pyfunc.PythonModel):
    """Feature rows in (as the caller sends them: JSON → pandas with None, ints, strings),
    scores out: positive-class probability, or the prediction for a regression."""

    def load_context(self, context: Any) -> None:
        self.pipeline = mlflow.sklearn.load_model(context.artifacts["pipeline"])
        self.task = context.model_config["task"]

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        frame = pl.from_pandas(pd.DataFrame(model_input))
        return scoring.predict_scores(self.pipeline, frame, task=self.task)


mlflow.models.set_model(PipelineScorer())
