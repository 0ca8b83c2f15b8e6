"""The code of every registered model (MLflow "models from code").

MLflow copies this file into each logged model and runs it to load the model; ml_assets never
imports it. With it the model carries the fitted sklearn pipeline (artifact ``pipeline``), its
task (model config), and a copy of `ml_assets/ml/scoring.py` (code path ``ml_assets_scoring``):
loading needs the model's pip requirements, not this package.
"""

import importlib.util
from importlib.machinery import PathFinder
from types import ModuleType
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import polars as pl


def _own_scoring() -> ModuleType:
    """This model's copy of the scoring contract, found on the path MLflow puts first (the
    model's code folder). Loaded by file and kept out of `sys.modules`: a process that loads
    two models (validation loads the challenger and the champion) must score each with its own
    copy, not with whichever was imported first under the shared name."""
    spec = PathFinder.find_spec("ml_assets_scoring")
    if spec is None or spec.loader is None:
        # MLflow also runs this file while logging, before the copy is on the path.
        from ml_assets.ml import scoring

        return scoring
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scoring = _own_scoring()


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
