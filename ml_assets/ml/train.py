"""Time-based splits, deterministic fits and hyper-parameter search."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from sklearn.model_selection import ParameterGrid, ParameterSampler
from sklearn.pipeline import Pipeline

from ml_assets.ml.estimators import (
    Task,
    build_pipeline,
    canonical_order,
    labelled_rows,
    target_values,
    to_pandas_features,
)
from ml_assets.ml.evaluate import evaluate, higher_is_better, metric_names

__all__ = ["FitResult", "TimeWindow", "Trial", "fit", "search", "time_split"]


@dataclass(frozen=True)
class TimeWindow:
    """Inclusive day ranges of a time split, and how many rows fell on each side."""

    train_start: dt.date
    train_end: dt.date
    holdout_start: dt.date
    holdout_end: dt.date
    train_rows: int
    holdout_rows: int
    # Days of the training range that have rows: fewer than the range when the data starts
    # later or has gaps.
    train_days_with_data: int

    @property
    def train_days(self) -> int:
        return (self.train_end - self.train_start).days + 1

    def as_dict(self) -> dict[str, str | int]:
        """Flat, JSON-friendly form (for run metadata / tracking params)."""
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "holdout_start": self.holdout_start.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "train_days_with_data": self.train_days_with_data,
        }


def _day_expr(frame: pl.DataFrame, date_column: str) -> pl.Expr:
    if date_column not in frame.columns:
        raise ValueError(f"date column {date_column!r} is not in the frame")
    dtype = frame.schema[date_column]
    if isinstance(dtype, pl.Datetime):
        return pl.col(date_column).dt.date()
    if isinstance(dtype, pl.Date):
        return pl.col(date_column)
    raise ValueError(f"date column {date_column!r} must be a Date or Datetime, not {dtype}")


def time_split(
    frame: pl.DataFrame,
    *,
    date_column: str,
    train_days: int,
    holdout_days: int,
    as_of: dt.date | None = None,
    gap_days: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame, TimeWindow]:
    """Split by day, never at random: the holdout is the `holdout_days` days ending at `as_of`
    (default: the latest day in the frame), train the `train_days` days before it.

    `gap_days` leaves days out between train and holdout (e.g. while labels are still maturing).
    Rows after `as_of` and before the training window are dropped. Raises ValueError naming the
    days when either side is empty.
    """
    if train_days < 1 or holdout_days < 1 or gap_days < 0:
        raise ValueError(
            f"need train_days >= 1, holdout_days >= 1, gap_days >= 0; got {train_days}, "
            f"{holdout_days}, {gap_days}"
        )
    day = _day_expr(frame, date_column)
    days = frame.select(day.min().alias("lo"), day.max().alias("hi")).row(0)
    if days[1] is None:
        raise ValueError(f"cannot split: no rows with a {date_column!r} value")
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    as_of = as_of or days[1]
    holdout_start = as_of - dt.timedelta(days=holdout_days - 1)
    train_end = holdout_start - dt.timedelta(days=gap_days + 1)
    train_start = train_end - dt.timedelta(days=train_days - 1)

    train = frame.filter(day.is_between(train_start, train_end))
    holdout = frame.filter(day.is_between(holdout_start, as_of))
    covers = f"the data covers {days[0]}..{days[1]}"
    if holdout.is_empty():
        raise ValueError(
            f"empty holdout: no rows between {holdout_start} and {as_of} "
            f"(holdout_days={holdout_days}); {covers}"
        )
    if train.is_empty():
        raise ValueError(
            f"empty training set: no rows between {train_start} and {train_end} "
            f"(train_days={train_days} before the holdout starting {holdout_start}); {covers}"
        )
    window = TimeWindow(
        train_start=train_start,
        train_end=train_end,
        holdout_start=holdout_start,
        holdout_end=as_of,
        train_rows=train.height,
        holdout_rows=holdout.height,
        train_days_with_data=train.select(day.n_unique()).item(),
    )
    return train, holdout, window


@dataclass
class FitResult:
    model: Pipeline
    fit_seconds: float  # Pipeline.fit only (preprocessing + estimator), not data preparation
    # Every constructor parameter of the final estimator (defaults included), JSON-friendly:
    # what to log as run params so a run can be reproduced without knowing sklearn defaults.
    params_resolved: dict[str, Any]
    train_rows: int = 0
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return repr(value)


def fit(
    train: pl.DataFrame,
    *,
    task: Task,
    estimator: str,
    params: Mapping[str, Any] | None,
    target: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int,
) -> FitResult:
    """Fit `build_pipeline(...)` on the labelled rows of `train`.

    Deterministic: rows are put in a canonical order first (see `canonical_order`) and every
    random_state is the seed, so the same rows -- in any order -- and the same config give
    identical predictions.
    """
    model = build_pipeline(
        task=task,
        estimator=estimator,
        params=params,
        numeric=numeric,
        categorical=categorical,
        seed=seed,
    )
    used = list(dict.fromkeys([*numeric, *categorical, target]))
    missing = [c for c in used if c not in train.columns]
    if missing:
        raise ValueError(f"columns missing from the training frame: {missing}")
    train = canonical_order(labelled_rows(train, target).select(used), used)
    if train.is_empty():
        raise ValueError(f"no training rows with a {target!r} label")
    y = target_values(train, target, task)
    if task == "classification":
        classes = np.unique(y)
        if len(classes) != 2:
            # The column's own values (False, "no"), not their numeric codes.
            found = train.get_column(target).unique().sort().to_list()[:10]
            raise ValueError(
                f"binary classification needs exactly 2 classes in {target!r}, "
                f"found {found} in {train.height} training rows"
            )
    x = to_pandas_features(train, numeric, categorical)
    started = time.perf_counter()
    model.fit(x, y)
    seconds = time.perf_counter() - started
    final = model.named_steps["model"]
    resolved = {k: _plain(v) for k, v in sorted(final.get_params(deep=False).items())}
    return FitResult(
        model=model,
        fit_seconds=seconds,
        params_resolved=resolved,
        train_rows=train.height,
        numeric=list(numeric),
        categorical=list(categorical),
    )


@dataclass
class Trial:
    params: dict[str, Any]  # the searched values only (merged over `base_params` for the fit)
    metrics: dict[str, float]
    model: Pipeline
    fit_seconds: float = 0.0
    index: int = 0  # position in the candidate order, the tie-breaker when sorting


def _candidates(
    space: Mapping[str, Sequence[Any]], kind: str, trials: int | None, seed: int
) -> list[dict[str, Any]]:
    if not space:
        return [{}]
    for name, values in space.items():
        if isinstance(values, str) or not hasattr(values, "__len__") or len(values) == 0:
            raise ValueError(f"search space {name!r} must be a non-empty list of values")
    grid = ParameterGrid({k: list(v) for k, v in space.items()})
    if kind == "grid":
        # ParameterGrid enumerates in a fixed order (sorted keys): capping keeps a stable prefix.
        return [dict(c) for c in itertools.islice(grid, trials)]
    if kind == "random":
        if trials is None or trials < 1:
            raise ValueError("random search needs trials >= 1")
        # Lists only -> ParameterSampler samples without replacement; capping at the grid size
        # avoids its warning and duplicate work.
        sampler = ParameterSampler(
            {k: list(v) for k, v in space.items()},
            n_iter=min(trials, len(grid)),
            random_state=seed,
        )
        return [dict(c) for c in sampler]
    raise ValueError(f"search kind must be 'grid' or 'random', got {kind!r}")


def search(
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    *,
    space: Mapping[str, Sequence[Any]],
    kind: Literal["grid", "random"],
    trials: int | None,
    metric: str,
    seed: int,
    task: Task,
    estimator: str,
    target: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    base_params: Mapping[str, Any] | None = None,
    threshold: float = 0.5,
) -> list[Trial]:
    """Fit one model per candidate and grade it on `holdout`; best first by `metric`.

    Random search draws candidates from `seed`, so it is reproducible; grid search tries the
    grid in order, capped at `trials` when given. NaN scores sort last, ties keep candidate
    order. Every candidate is fitted with the same seed so only the parameters differ.
    """
    valid = metric_names(task)
    if metric not in valid:
        raise ValueError(f"unknown metric {metric!r} for {task}; use one of {valid}")
    if trials is not None and trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    candidates = _candidates(space, kind, trials, seed)
    results: list[Trial] = []
    for index, candidate in enumerate(candidates):
        fitted = fit(
            train,
            task=task,
            estimator=estimator,
            params={**(base_params or {}), **candidate},
            target=target,
            numeric=numeric,
            categorical=categorical,
            seed=seed,
        )
        metrics = evaluate(fitted.model, holdout, task=task, target=target, threshold=threshold)
        results.append(Trial(candidate, metrics, fitted.model, fitted.fit_seconds, index))

    sign = 1.0 if higher_is_better(metric) else -1.0

    def order(trial: Trial) -> tuple[bool, float, int]:
        score = trial.metrics[metric]
        missing = math.isnan(score)
        return (missing, 0.0 if missing else -sign * score, trial.index)

    return sorted(results, key=order)
