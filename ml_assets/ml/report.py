"""Evaluation plots (PNG bytes) and a Markdown report comparing a challenger to a champion.

Plots are drawn on `matplotlib.figure.Figure` objects directly, never through pyplot: rendering
then always goes through the non-interactive Agg canvas, needs no display, keeps no global
figure registry (safe in threads of a long-lived code server) and leaves the process-wide
backend of whoever imports this module alone. They are small (80 dpi) because they end up
inlined in run metadata.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from ml_assets.ml.evaluate import CLASSIFICATION_METRICS, REGRESSION_METRICS, higher_is_better

__all__ = [
    "plot_calibration",
    "plot_feature_importance",
    "plot_residuals",
    "plot_roc_pr",
    "render_markdown",
    "report_images",
    "save_report",
]

DPI = 80
_MAX_POINTS = 5000  # scatter plots: more points add bytes, not information


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    # No "Software" tag: the same plot gives the same bytes across matplotlib versions.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _binary(y_true: np.ndarray) -> bool:
    return len(np.unique(y_true)) == 2


def plot_roc_pr(y_true: np.ndarray, scores: Mapping[str, np.ndarray]) -> bytes:
    """ROC and precision-recall curves side by side, one line per model (label -> scores)."""
    y_true = np.asarray(y_true)
    fig = Figure(figsize=(8, 3.6))
    roc_ax, pr_ax = fig.subplots(1, 2)
    if _binary(y_true):
        for label, score in scores.items():
            fpr, tpr, _ = roc_curve(y_true, score)
            auc = roc_auc_score(y_true, score)
            roc_ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
            precision, recall, _ = precision_recall_curve(y_true, score)
            pr_ax.plot(recall, precision, label=label)
        pr_ax.axhline(y_true.mean(), color="grey", linestyle=":", label="base rate")
    else:
        for ax in (roc_ax, pr_ax):
            ax.text(0.5, 0.5, "single-class data: undefined", ha="center", va="center")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    pr_ax.set(title="Precision-recall", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="lower right" if ax is roc_ax else "upper right")
    return _png(fig)


def plot_calibration(y_true: np.ndarray, scores: Mapping[str, np.ndarray], bins: int = 10) -> bytes:
    """Reliability diagram. Quantile bins: fraud scores crowd near 0, so equal-width bins would
    put nearly every row in the first bin and show nothing."""
    y_true = np.asarray(y_true)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    top = 0.0
    if _binary(y_true):
        for label, score in scores.items():
            observed, predicted = calibration_curve(y_true, score, n_bins=bins, strategy="quantile")
            ax.plot(predicted, observed, marker="o", label=label)
            top = max(top, float(predicted.max()), float(observed.max()))
    top = min(1.0, top * 1.05) if top > 0 else 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
    ax.set(
        title="Calibration",
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(fontsize="small")
    return _png(fig)


def _sample(n: int, seed: int = 0) -> np.ndarray:
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=_MAX_POINTS, replace=False))


def plot_residuals(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> bytes:
    """Regression: residual vs prediction scatter (sampled) and residual histograms."""
    y_true = np.asarray(y_true, dtype=np.float64)
    fig = Figure(figsize=(8, 3.6))
    scatter_ax, hist_ax = fig.subplots(1, 2)
    idx = _sample(len(y_true))
    for label, prediction in predictions.items():
        prediction = np.asarray(prediction, dtype=np.float64)
        residual = y_true - prediction
        scatter_ax.scatter(prediction[idx], residual[idx], s=4, alpha=0.4, label=label)
        hist_ax.hist(residual, bins=40, alpha=0.5, label=label)
    scatter_ax.axhline(0, color="grey", linestyle=":")
    scatter_ax.set(title="Residuals", xlabel="prediction", ylabel="actual - prediction")
    hist_ax.set(title="Residual distribution", xlabel="actual - prediction", ylabel="rows")
    for ax in (scatter_ax, hist_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return _png(fig)


def plot_feature_importance(importance: pl.DataFrame, top: int = 20) -> bytes:
    """Horizontal bars of a `feature_importance` frame (feature, importance[, importance_std])."""
    rows = importance.sort("importance", descending=True).head(top).reverse()
    fig = Figure(figsize=(6, max(2.5, 0.25 * rows.height + 1)))
    ax = fig.subplots()
    errors = rows["importance_std"].to_numpy() if "importance_std" in rows.columns else None
    ax.barh(rows["feature"].to_list(), rows["importance"].to_numpy(), xerr=errors, color="C0")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(title="Permutation importance", xlabel="score drop when shuffled")
    ax.tick_params(axis="y", labelsize="small")
    return _png(fig)


def report_images(
    *,
    task: str,
    y_true: np.ndarray,
    scores: Mapping[str, np.ndarray],
    importance: pl.DataFrame | None = None,
) -> dict[str, bytes]:
    """The standard plots for a task, for models scored on the same rows (label -> scores)."""
    images: dict[str, bytes] = {}
    if task == "classification":
        images["roc_pr"] = plot_roc_pr(y_true, scores)
        images["calibration"] = plot_calibration(y_true, scores)
    else:
        images["residuals"] = plot_residuals(y_true, scores)
    if importance is not None and importance.height:
        images["feature_importance"] = plot_feature_importance(importance)
    return images


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _fmt(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _delta(metric: str, new: float | None, old: float | None) -> str:
    if new is None or old is None or math.isnan(new) or math.isnan(old):
        return "n/a"
    diff = new - old
    text = f"{diff:+,.0f}" if metric == "rows" else f"{diff:+.4f}"
    try:
        better = higher_is_better(metric)
    except ValueError:  # descriptive metric (rows, rates): no judgement
        return text
    if diff == 0:
        return text
    return f"{text} ({'better' if (diff > 0) == better else 'worse'})"


def _metric_order(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    known = [*CLASSIFICATION_METRICS, *REGRESSION_METRICS]
    present: list[str] = []
    for values in metrics.values():
        present += [name for name in values if name not in present]
    # Known metrics in their canonical order first (rows last), then anything custom.
    ordered = [m for m in known if m in present and m != "rows"]
    ordered += [m for m in present if m not in ordered and m != "rows"]
    return ordered + (["rows"] if "rows" in present else [])


def render_markdown(
    *,
    title: str,
    metrics: Mapping[str, Mapping[str, float]],
    slices: pl.DataFrame | None = None,
    images: Mapping[str, bytes] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """A self-contained Markdown report.

    `metrics` maps a model label to its metrics; the first entry is the model under review
    (the challenger) and every other one gets a delta column "first - other", annotated better
    or worse by the metric's direction. Images are inlined as base64 data URIs so the report is
    one string (Dagster metadata, an MLflow artifact) with no side files.
    """
    lines = [f"# {title}", ""]
    if metrics:
        labels = list(metrics)
        first = labels[0]
        header = ["metric", *labels] + [f"Δ {first} − {other}" for other in labels[1:]]
        rows = []
        for name in _metric_order(metrics):
            values = [metrics[label].get(name) for label in labels]
            row = [name, *(_fmt(v) for v in values)]
            row += [_delta(name, values[0], v) for v in values[1:]]
            rows.append(row)
        lines += ["## Metrics", "", *_table(header, rows), ""]
    if slices is not None and slices.height:
        lines += [f"## Slices by `{slices.columns[0]}`", ""]
        body = [[_fmt(v) for v in row] for row in slices.iter_rows()]
        lines += [*_table(slices.columns, body), ""]
    if images:
        lines += ["## Plots", ""]
        for name, png in images.items():
            data = base64.b64encode(png).decode("ascii")
            lines += [f"### {name}", "", f"![{name}](data:image/png;base64,{data})", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "image"


def save_report(
    directory: str | Path, markdown: str, images: Mapping[str, bytes] | None = None
) -> list[Path]:
    """Write report.md and one <name>.png per image into `directory` (created); returns the
    paths, ready to log as artifacts."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.md"
    report.write_text(markdown, encoding="utf-8")
    paths = [report]
    used: set[str] = {"report"}
    for name, png in (images or {}).items():
        stem = _file_name(name)
        while stem in used:  # two names sanitising to the same file must not overwrite
            stem += "_"
        used.add(stem)
        path = directory / f"{stem}.png"
        path.write_bytes(png)
        paths.append(path)
    return paths
