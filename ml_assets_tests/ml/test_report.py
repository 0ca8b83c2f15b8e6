"""Plots and the Markdown report."""

from __future__ import annotations

import base64
import re

import numpy as np
import polars as pl

from ml_assets.ml.estimators import predict_scores
from ml_assets.ml.evaluate import evaluate, evaluate_slices, feature_importance
from ml_assets.ml.report import render_markdown, report_images, save_report
from ml_assets.ml.train import fit
from ml_assets_tests.ml.conftest import TARGET

PNG = b"\x89PNG\r\n\x1a\n"


def _fit(train, columns, estimator, params):
    numeric, categorical = columns
    return fit(
        train,
        task="classification",
        estimator=estimator,
        params=params,
        target=TARGET,
        numeric=numeric,
        categorical=categorical,
        seed=0,
    ).model


def test_challenger_vs_champion_report(split, columns, demo_model, tmp_path):
    train, holdout, _ = split
    challenger = demo_model.model
    champion = _fit(train, columns, "logistic_regression", {})
    y = holdout[TARGET].to_numpy()
    scores = {
        "challenger": predict_scores(challenger, holdout, task="classification"),
        "champion": predict_scores(champion, holdout, task="classification"),
    }
    importance = feature_importance(
        challenger, holdout, target=TARGET, task="classification", seed=0, n_repeats=1
    )
    images = report_images(task="classification", y_true=y, scores=scores, importance=importance)
    assert set(images) == {"roc_pr", "calibration", "feature_importance"}
    assert all(png.startswith(PNG) and len(png) < 150_000 for png in images.values())

    metrics = {
        name: evaluate(model, holdout, task="classification", target=TARGET)
        for name, model in [("challenger", challenger), ("champion", champion)]
    }
    slices = evaluate_slices(
        challenger,
        holdout,
        task="classification",
        target=TARGET,
        slice_column="segment",
        threshold=0.5,
    )
    markdown = render_markdown(
        title="fraud: challenger vs champion",
        metrics=metrics,
        slices=slices,
        images=images,
        notes=["holdout: last 2 days"],
    )
    assert markdown.startswith("# fraud: challenger vs champion")
    assert "| metric | challenger | champion | Δ challenger − champion |" in markdown
    roc_row = next(line for line in markdown.splitlines() if line.startswith("| roc_auc |"))
    assert f"{metrics['challenger']['roc_auc']:.4f}" in roc_row
    assert "better" in roc_row or "worse" in roc_row
    assert "| segment | rows |" in markdown
    embedded = re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert [name for name, _ in embedded] == list(images)
    assert all(base64.b64decode(data) == images[name] for name, data in embedded)
    assert "- holdout: last 2 days" in markdown

    paths = save_report(tmp_path / "report", markdown, images)
    assert [p.name for p in paths] == [
        "report.md",
        "roc_pr.png",
        "calibration.png",
        "feature_importance.png",
    ]
    assert paths[0].read_text() == markdown and paths[1].read_bytes() == images["roc_pr"]


def test_regression_images_and_a_single_model_report():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    images = report_images(task="regression", y_true=y, scores={"model": y + rng.normal(size=500)})
    assert list(images) == ["residuals"] and images["residuals"].startswith(PNG)
    markdown = render_markdown(
        title="t",
        metrics={"model": {"rmse": 1.0, "r2": float("nan"), "rows": 500.0}},
        slices=None,
        images={},
        notes=[],
    )
    assert "| metric | model |" in markdown and "| r2 | n/a |" in markdown
    assert "Δ" not in markdown and "## Plots" not in markdown


def test_single_class_plots_do_not_crash():
    y = np.zeros(50)
    images = report_images(task="classification", y_true=y, scores={"m": np.linspace(0, 1, 50)})
    assert all(png.startswith(PNG) for png in images.values())
    frame = pl.DataFrame({"feature": ["a", "b"], "importance": [0.1, -0.01]})
    assert report_images(task="classification", y_true=y, scores={}, importance=frame)
