"""What a fitted model does with feature rows: the scoring contract, shared by training and by
the registered model.

A model is a `sklearn.pipeline.Pipeline` of two steps, ``preprocess`` (a ColumnTransformer with
a ``numeric`` and a ``categorical`` block of named columns) and ``model``, fed a pandas frame
built by `to_pandas_features`.

This module imports nothing from ml_assets: a copy of it is logged with every registered model
(see `ml_assets.tracking.scoring_model`), so the model scores wherever MLflow can load it,
without this package installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl
from sklearn.pipeline import Pipeline

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")

PREPROCESS_STEP = "preprocess"
NUMERIC_BLOCK = "numeric"
CATEGORICAL_BLOCK = "categorical"


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def numeric_values(series: pl.Series) -> np.ndarray:
    try:
        values = series.cast(pl.Float64).to_numpy()
    except pl.exceptions.PolarsError as error:
        raise ValueError(
            f"numeric feature {series.name!r} has dtype {series.dtype} and cannot be read as "
            f"numbers: {error}"
        ) from None
    values = np.array(values, dtype=np.float64)  # writable copy, nulls already NaN
    # sklearn rejects infinities (e.g. a ratio over a zero mean); treat them as missing values.
    values[~np.isfinite(values)] = np.nan
    return values


def categorical_values(series: pl.Series) -> np.ndarray:
    values = series.cast(pl.String).to_numpy().astype(object)
    # SimpleImputer only recognises NaN (not None) as missing in object columns.
    values[pd.isna(values)] = np.nan
    return values


def to_pandas_features(
    frame: pl.DataFrame, numeric: Sequence[str], categorical: Sequence[str] = ()
) -> pd.DataFrame:
    """The model input: numeric columns as float64 (null/inf -> NaN), categoricals as object
    strings (null -> NaN). Explicit so that the same columns get the same types at fit and at
    scoring time, whatever Polars dtype they arrive with."""
    wanted = [*numeric, *categorical]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    data: dict[str, np.ndarray] = {}
    for name in numeric:
        data[name] = numeric_values(frame.get_column(name))
    for name in categorical:
        data[name] = categorical_values(frame.get_column(name))
    return pd.DataFrame(data, columns=wanted)


def model_columns(model: Pipeline) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns of a pipeline made by `build_pipeline`."""
    try:
        preprocess = model.named_steps[PREPROCESS_STEP]
    except (AttributeError, KeyError):
        raise ValueError("model was not built by build_pipeline (no 'preprocess' step)") from None
    columns = {name: list(cols) for name, _, cols in preprocess.transformers}
    return columns.get(NUMERIC_BLOCK, []), columns.get(CATEGORICAL_BLOCK, [])


def predict_scores(model: Pipeline, frame: pl.DataFrame, *, task: Task) -> np.ndarray:
    """Positive-class probability (classification) or the prediction (regression), per row."""
    check_task(task)
    numeric, categorical = model_columns(model)
    features = to_pandas_features(frame, numeric, categorical)
    if task == "regression":
        return np.asarray(model.predict(features), dtype=np.float64)
    proba = model.predict_proba(features)
    # Binary models only (see train.fit): classes_ is sorted, so column 1 is the positive class.
    return np.asarray(proba[:, 1], dtype=np.float64)
