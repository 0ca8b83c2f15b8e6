"""The model as MLflow stores it: a pyfunc that takes raw feature rows and returns scores.

Batch predictions and the REST endpoint (`mlflow models serve`) both call this pyfunc, so they
agree by construction. The pyfunc converts whatever the caller sends (JSON → pandas with None,
ints, strings) into the exact column types the sklearn pipeline was fitted on. A bare sklearn
flavour would leave that conversion to every caller.

The pyfunc is logged from code (`model_code.py`) with the pipeline as an artifact and the
scoring contract (`ml_assets/ml/scoring.py`) as a code path: a registered model loads and
scores with its pip requirements alone, e.g. on a serving endpoint, without ml_assets.
"""

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import polars as pl
from mlflow.types import DataType, Schema

from ml_assets.ml import scoring

SCORE_COLUMN = "score"
# The registered model's code: a file MLflow runs, never imported here (it registers the model
# with MLflow when run).
MODEL_CODE = Path(__file__).with_name("model_code.py")
# The name the scoring contract is logged under (model_code.py imports it by this name).
SCORING_MODULE = "ml_assets_scoring"


def scoring_model(pipeline: Any, task: str, staging: Path) -> dict[str, Any]:
    """The arguments of `mlflow.pyfunc.log_model` / `save_model` that store `pipeline` as a
    self-contained scoring model; its files are staged under `staging` (a folder that must
    outlive the logging call)."""
    scoring.check_task(task)
    pipeline_dir = staging / "pipeline"
    with _quiet("mlflow.sklearn"):
        # Pickled (cloudpickle), which MLflow warns about on every save. The safe skops format
        # would need HistGradientBoosting's internals trusted by hand; loading stays behind
        # MLflow's MLFLOW_ALLOW_PICKLE_DESERIALIZATION switch either way.
        mlflow.sklearn.save_model(
            pipeline, pipeline_dir, serialization_format="cloudpickle", pip_requirements=[]
        )
    contract = staging / f"{SCORING_MODULE}.py"
    shutil.copyfile(scoring.__file__, contract)
    return {
        "python_model": str(MODEL_CODE),
        "artifacts": {"pipeline": str(pipeline_dir)},
        "model_config": {"task": task},
        "code_paths": [str(contract)],
    }


@contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class ScoringModel(mlflow.pyfunc.PythonModel):
    """How models were stored before they were logged from code: pickled with a reference to
    this class, which must stay here for them to load."""

    def __init__(self, pipeline: Any, task: str) -> None:
        self.pipeline = pipeline
        self.task = task

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        frame = pl.from_pandas(pd.DataFrame(model_input))
        return scoring.predict_scores(self.pipeline, frame, task=self.task)  # type: ignore[arg-type]


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
