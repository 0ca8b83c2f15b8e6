"""Holdout metrics, per-slice metrics, single-feature leakage scan and permutation importance.

Conventions: only rows with a label are graded (`rows` counts them); a metric that is undefined
on the data (ROC AUC / PR AUC on a single-class holdout, R² on fewer than two rows) is NaN, never
an exception, so a quiet day does not fail the run -- callers comparing models must treat NaN as
"not comparable".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from scipy.stats import spearmanr
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from ml_assets.ml.estimators import (
    Task,
    canonical_order,
    categorical_values,
    labelled_rows,
    model_columns,
    numeric_values,
    predict_scores,
    target_values,
    to_pandas_features,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "LeakSuspect",
    "classification_metrics",
    "evaluate",
    "evaluate_slices",
    "expected_calibration_error",
    "feature_importance",
    "higher_is_better",
    "leakage_scan",
    "metric_names",
    "metrics_metadata",
    "regression_metrics",
]

# Metric -> True when higher is better, False when lower is better, None when not a quality
# measure (descriptive: rows, rates).
CLASSIFICATION_METRICS: dict[str, bool | None] = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "f1": True,
    "precision": True,
    "recall": True,
    "brier": False,
    "ece": False,
    "positive_rate": None,  # share of actual positives (label prevalence)
    "predicted_positive_rate": None,  # share of rows flagged at the threshold
    "rows": None,
}
REGRESSION_METRICS: dict[str, bool | None] = {
    "rmse": False,
    "mae": False,
    "r2": True,
    "rows": None,
}
_SLICE_CLASSIFICATION = [
    "positive_rate", "mean_score", "roc_auc", "pr_auc", "precision", "recall", "f1"
]  # fmt: skip
_SLICE_REGRESSION = ["mean_target", "mean_prediction", "rmse", "mae", "r2"]


def metric_names(task: Task) -> list[str]:
    """Metrics usable to rank models (search, champion/challenger) for a task."""
    table = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    return [name for name, better in table.items() if better is not None]


def higher_is_better(metric: str) -> bool:
    for table in (CLASSIFICATION_METRICS, REGRESSION_METRICS):
        if table.get(metric) is not None:
            return bool(table[metric])
    raise ValueError(f"{metric!r} is not a metric models can be ranked by")


def metrics_metadata(metrics: dict[str, float], prefix: str) -> dict[str, int | float]:
    """Metrics as Dagster metadata under `prefix`: the row count as an integer (MLflow keeps
    every metric as a float, which would show 35000 as 35000.0), the rest as floats."""
    return {
        f"{prefix}{name}": int(value) if name == "rows" else float(value)
        for name, value in metrics.items()
    }


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean |observed rate - mean score| over equal-width score bins."""
    if len(y) == 0:
        return math.nan
    # Bin i holds scores in [i/bins, (i+1)/bins); a score of exactly 1.0 goes to the last bin.
    index = np.minimum((score * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(index):
        in_bin = index == b
        total += in_bin.sum() * abs(y[in_bin].mean() - score[in_bin].mean())
    return float(total / len(y))


def _safe(metric, *args, **kwargs) -> float:
    with warnings.catch_warnings():
        # Undefined cases (no positive predictions, ...) are handled by the callers' rules.
        warnings.simplefilter("ignore")
        return float(metric(*args, **kwargs))


def classification_metrics(
    y: np.ndarray, score: np.ndarray, *, threshold: float = 0.5
) -> dict[str, float]:
    """Binary metrics from 0/1 labels and positive-class scores. See module docstring for NaN."""
    y = np.asarray(y).astype(np.int64)
    score = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
    n = len(y)
    nan = math.nan
    if n == 0:
        return {name: (0.0 if name == "rows" else nan) for name in CLASSIFICATION_METRICS}
    flagged = score >= threshold
    tp = float(np.sum(flagged & (y == 1)))
    positives = float(np.sum(y == 1))
    both = 0 < positives < n
    precision = tp / float(flagged.sum()) if flagged.any() else 0.0  # sklearn zero_division=0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        # Ranking metrics need both classes: NaN on a single-class holdout.
        "roc_auc": _safe(roc_auc_score, y, score) if both else nan,
        "pr_auc": _safe(average_precision_score, y, score) if both else nan,
        "log_loss": _safe(log_loss, y, score, labels=[0, 1]),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "brier": _safe(brier_score_loss, y, score, pos_label=1),
        "ece": expected_calibration_error(y, score),
        "positive_rate": positives / n,
        "predicted_positive_rate": float(flagged.mean()),
        "rows": float(n),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    n = len(y)
    if n == 0:
        return {"rmse": math.nan, "mae": math.nan, "r2": math.nan, "rows": 0.0}
    return {
        "rmse": math.sqrt(_safe(mean_squared_error, y, prediction)),
        "mae": _safe(mean_absolute_error, y, prediction),
        # Undefined (NaN) for a single row or a constant target.
        "r2": _safe(r2_score, y, prediction) if n > 1 and np.ptp(y) > 0 else math.nan,
        "rows": float(n),
    }


def _scored(model: Pipeline, frame: pl.DataFrame, task: Task, target: str):
    frame = labelled_rows(frame, target)
    y = target_values(frame, target, task)
    score = predict_scores(model, frame, task=task) if frame.height else np.empty(0)
    return frame, y, score


def evaluate(
    model: Pipeline,
    frame: pl.DataFrame,
    *,
    task: Task,
    target: str,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Metrics of `model` on the labelled rows of `frame`.

    classification: roc_auc, pr_auc (average precision), log_loss, f1/precision/recall at
    `threshold`, brier, ece (10 equal-width bins), positive_rate, predicted_positive_rate, rows.
    regression: rmse, mae, r2, rows.
    """
    _, y, score = _scored(model, frame, task, target)
    if task == "classification":
        return classification_metrics(y, score, threshold=threshold)
    return regression_metrics(y, score)


def evaluate_slices(
    model: Pipeline,
    frame: pl.DataFrame,
    *,
    task: Task,
    target: str,
    slice_column: str,
    threshold: float = 0.5,
    max_slices: int = 100,
) -> pl.DataFrame:
    """One row per value of `slice_column` (null included, sorted, null last) with rows and the
    main metrics. Scores are computed once for the whole frame, then grouped."""
    if slice_column not in frame.columns:
        raise ValueError(f"slice column {slice_column!r} is not in the frame")
    frame, y, score = _scored(model, frame, task, target)
    groups = (
        frame.select(pl.col(slice_column), pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"))
        .group_by(slice_column)
        .agg(pl.col("_i"))
        .sort(slice_column, nulls_last=True)
    )
    if groups.height > max_slices:
        raise ValueError(
            f"slice column {slice_column!r} has {groups.height} distinct values (max "
            f"{max_slices}); bucket it first"
        )
    names = _SLICE_CLASSIFICATION if task == "classification" else _SLICE_REGRESSION
    columns: dict[str, list[float]] = {"rows": [], **{name: [] for name in names}}
    for index in groups["_i"].to_list():
        idx = np.asarray(index, dtype=np.int64)
        ys, ss = y[idx], score[idx]
        if task == "classification":
            metrics = classification_metrics(ys, ss, threshold=threshold)
            metrics["mean_score"] = float(ss.mean())
        else:
            metrics = regression_metrics(ys, ss)
            metrics["mean_target"] = float(ys.mean())
            metrics["mean_prediction"] = float(ss.mean())
        columns["rows"].append(len(idx))
        for name in names:
            columns[name].append(metrics[name])
    return groups.select(slice_column).with_columns(
        pl.Series("rows", columns["rows"], dtype=pl.Int64),
        *[pl.Series(name, columns[name], dtype=pl.Float64) for name in names],
    )


@dataclass(frozen=True)
class LeakSuspect:
    column: str
    score: float  # max(AUC, 1 - AUC) for classification, |Spearman| for regression
    method: str  # how the column was scored, for the message shown to users


def _sample_index(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def _association(y: np.ndarray, x: np.ndarray, task: Task) -> float:
    """max(AUC, 1-AUC) or |Spearman| of one finite score vector; 0 when undefined."""
    if np.ptp(x) == 0:
        return 0.0
    if task == "classification":
        auc = _safe(roc_auc_score, y, x)
        return max(auc, 1.0 - auc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(y, x).statistic
    return 0.0 if math.isnan(rho) else abs(float(rho))


def _numeric_leak(y: np.ndarray, x: np.ndarray, task: Task) -> float:
    missing = np.isnan(x)
    if missing.all():
        return 0.0
    if not missing.any():
        return _association(y, x, task)
    # Missingness can carry the label too: score with nulls placed below and above every value.
    lo, hi = np.nanmin(x) - 1.0, np.nanmax(x) + 1.0
    return max(_association(y, np.where(missing, v, x), task) for v in (lo, hi))


def _target_encoded(y: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold target means over a fixed random 2-fold split: a category's encoding never
    sees its own rows, so an id-like column scores ~0.5 instead of a perfect (overfit) 1.0."""
    keys = pl.Series("k", np.where(pd.isna(x), "\x00null", x).astype(str))  # null: own category
    fold = np.random.default_rng(seed).permutation(len(y)) % 2
    encoded = np.empty(len(y), dtype=np.float64)
    for f in (0, 1):
        fit_rows, apply_rows = fold != f, fold == f
        stats = (
            pl.DataFrame({"k": keys.filter(fit_rows), "y": y[fit_rows].astype(np.float64)})
            .group_by("k")
            .agg(pl.col("y").mean())
        )
        prior = float(y[fit_rows].mean()) if fit_rows.any() else 0.0
        encoded[apply_rows] = (
            keys.filter(apply_rows)
            .replace_strict(stats["k"], stats["y"], default=prior, return_dtype=pl.Float64)
            .to_numpy()
        )
    return encoded


def leakage_scan(
    frame: pl.DataFrame,
    *,
    task: Task,
    target: str,
    columns: Sequence[str],
    threshold: float = 0.98,
    max_rows: int | None = 200_000,
    seed: int = 0,
) -> list[LeakSuspect]:
    """Columns that predict the target almost perfectly on their own: a feature computed from
    the label or from the future. Each column alone is scored -- classification: max(AUC, 1-AUC)
    of the column as a score (categoricals: out-of-fold target-mean encoding), regression:
    |Spearman|. Returns those >= `threshold`, highest first. A deterministic sample of
    `max_rows` keeps it fast on big tables. Single-class / constant targets: nothing to scan,
    returns []."""
    frame = labelled_rows(frame, target)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"columns missing from the frame: {missing}")
    # Sample and folds are positional: fix the order first so they depend on the rows only.
    used = list(dict.fromkeys([target, *columns]))
    frame = canonical_order(frame.select(used), used)
    frame = frame[_sample_index(frame.height, max_rows, seed)]
    y = target_values(frame, target, task)
    if task == "classification":
        if len(np.unique(y)) != 2:
            return []
        y = (y == np.max(y)).astype(np.int64)
    elif len(y) < 3 or np.ptp(y) == 0:
        return []
    suspects: list[LeakSuspect] = []
    for name in columns:
        series = frame.get_column(name)
        if series.dtype.is_numeric() or series.dtype == pl.Boolean:
            score = _numeric_leak(y, numeric_values(series), task)
            method = "auc" if task == "classification" else "spearman"
        elif series.dtype.is_temporal():
            score = _numeric_leak(y, numeric_values(series.to_physical()), task)
            method = "auc" if task == "classification" else "spearman"
        else:
            encoded = _target_encoded(y, categorical_values(series), seed)
            score = _association(y, encoded, task)
            method = "target_encoding_" + ("auc" if task == "classification" else "spearman")
        if score >= threshold:
            suspects.append(LeakSuspect(name, round(score, 6), method))
    return sorted(suspects, key=lambda s: (-s.score, s.column))


def feature_importance(
    model: Pipeline,
    frame: pl.DataFrame,
    *,
    target: str,
    task: Task,
    seed: int,
    n_repeats: int = 3,
    max_rows: int = 5000,
) -> pl.DataFrame:
    """Permutation importance of each input column (drop in ROC AUC / R² when shuffled) on a
    deterministic sample of at most `max_rows` labelled rows. Columns: feature, importance,
    importance_std; most important first. Falls back to Brier score when the sample holds a
    single class (AUC undefined)."""
    numeric, categorical = model_columns(model)
    used = list(dict.fromkeys([*numeric, *categorical, target]))
    frame = canonical_order(labelled_rows(frame, target).select(used), used)
    frame = frame[_sample_index(frame.height, max_rows, seed)]
    x = to_pandas_features(frame, numeric, categorical)
    y = target_values(frame, target, task)
    if task == "classification":
        scoring = "roc_auc" if len(np.unique(y)) == 2 else "neg_brier_score"
    else:
        scoring = "r2"
    result = permutation_importance(
        model, x, y, scoring=scoring, n_repeats=n_repeats, random_state=seed
    )
    return pl.DataFrame(
        {
            "feature": list(x.columns),
            "importance": result.importances_mean.astype(np.float64),
            "importance_std": result.importances_std.astype(np.float64),
        }
    ).sort(["importance", "feature"], descending=[True, False])
