"""The model as MLflow stores it: a pyfunc that takes raw feature rows and returns scores.

Batch predictions and the REST endpoint (`mlflow models serve`) both call this pyfunc, so they
agree by construction. The wrapper converts whatever the caller sends (JSON → pandas with None,
ints, strings) into the exact column types the sklearn pipeline was fitted on. A bare sklearn
flavour would leave that conversion to every caller.
"""

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from ml_assets.ml.estimators import predict_scores

SCORE_COLUMN = "score"


class ScoringModel(mlflow.pyfunc.PythonModel):
    def __init__(self, pipeline: Any, task: str) -> None:
        self.pipeline = pipeline
        self.task = task

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        frame = pl.from_pandas(pd.DataFrame(model_input))
        return predict_scores(self.pipeline, frame, task=self.task)  # type: ignore[arg-type]
