"""The pure-ML layer: Polars feature frames in, fitted sklearn pipelines, metrics and reports out.

No Dagster and no MLflow here: the assets and the tracking call these functions, so they stay
testable (and reusable from a notebook) without an orchestrator or a tracking server.
"""

from ml_assets.ml.estimators import (
    ESTIMATORS,
    build_pipeline,
    model_columns,
    predict_scores,
    split_columns,
    to_pandas_features,
)
from ml_assets.ml.evaluate import (
    LeakSuspect,
    evaluate,
    evaluate_slices,
    feature_importance,
    higher_is_better,
    leakage_scan,
    metric_names,
)
from ml_assets.ml.report import render_markdown, report_images, save_report
from ml_assets.ml.train import FitResult, TimeWindow, Trial, fit, search, time_split

__all__ = [
    "ESTIMATORS",
    "FitResult",
    "LeakSuspect",
    "TimeWindow",
    "Trial",
    "build_pipeline",
    "evaluate",
    "evaluate_slices",
    "feature_importance",
    "fit",
    "higher_is_better",
    "leakage_scan",
    "metric_names",
    "model_columns",
    "predict_scores",
    "render_markdown",
    "report_images",
    "save_report",
    "search",
    "split_columns",
    "time_split",
    "to_pandas_features",
]
