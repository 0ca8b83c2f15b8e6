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
from mlflow.types import DataType, Schema

from ml_assets.ml.estimators import predict_scores

SCORE_COLUMN = "score"


class ScoringModel(mlflow.pyfunc.PythonModel):
    def __init__(self, pipeline: Any, task: str) -> None:
        self.pipeline = pipeline
        self.task = task

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        frame = pl.from_pandas(pd.DataFrame(model_input))
        return predict_scores(self.pipeline, frame, task=self.task)  # type: ignore[arg-type]


# Polars type for each signature type the training asset logs (see `to_pandas_features`).
_POLARS_TYPES = {DataType.double: pl.Float64, DataType.string: pl.String}


def conform_to_signature(frame: pl.DataFrame, schema: Schema) -> pd.DataFrame:
    """`frame`'s signature columns with the signature's types, ready for `pyfunc.predict`.

    MLflow enforces the signature before our `predict` runs and refuses int64 for a double
    column ("can not safely convert"), so an integer feature (a spec `int` column) must be cast
    here; JSON requests to `ml-assets serve` are cast by MLflow's scoring server instead.
    """
    columns = []
    for column in schema.inputs:
        target = _POLARS_TYPES.get(column.type)
        expr = pl.col(column.name)
        columns.append(expr.cast(target) if target is not None else expr)
    return frame.select(columns).to_pandas()
