"""The validation report and the gates on it.

The report evaluates the challenger and the current champion on the same rows: the challenger's
holdout window, read at the Delta version it was trained on. Three blocking checks gate
promotion. A failed gate stops the champion asset in the same run. Each verdict is also tagged
on the model version, so a promotion attempted later, in another run, is refused too.
"""

import datetime as dt
import json
import math
import tempfile
import time

import dagster as dg
import mlflow
import numpy as np
import polars as pl

from ml_assets.databricks.costs import CostModel
from ml_assets.ml.estimators import predict_scores, split_columns, target_values
from ml_assets.ml.evaluate import (
    evaluate,
    evaluate_slices,
    feature_importance,
    higher_is_better,
    leakage_scan,
    metrics_metadata,
)
from ml_assets.ml.report import render_markdown, report_images, save_report
from ml_assets.pipeline.automation import follow_condition
from ml_assets.pipeline.keys import EXTERNAL_RETRY, model_keys
from ml_assets.pipeline.spec import ModelSpec, PipelineSpec
from ml_assets.pipeline.training import (
    FEATURES_URI_TAG,
    FEATURES_VERSION_TAG,
    HOLDOUT_END_TAG,
    HOLDOUT_START_TAG,
    TRAIN_START_TAG,
)
from ml_assets.storage import delta
from ml_assets.storage.delta import PARTITION_COLUMN
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking
from ml_assets.tracking.registry import CHALLENGER, CHAMPION, GATE_TAG_PREFIX, version_for_alias

# The gates, by check name; a version may become champion only when all have passed.
GATES = ("meets_minimum_metrics", "not_worse_than_champion", "no_leakage")


def _pipeline_of(name: str, version: str):
    """The fitted sklearn pipeline inside a registered pyfunc model."""
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().pipeline


def _window(uri: str, version: int, first: str, last: str) -> pl.DataFrame:
    """Days first..last (inclusive) of a feature table, as it was at `version`."""
    days = (dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    return (
        pl.scan_delta(uri, version=version)
        .filter(pl.col(PARTITION_COLUMN).is_between(*days))
        .collect()
    )


def build_validation_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)

    @dg.asset(
        key=keys.report,
        deps=[keys.candidate],
        group_name="reports",
        retry_policy=EXTERNAL_RETRY,
        description=f"`{CHALLENGER}` vs `{CHAMPION}` of `{model.name}` on the challenger's "
        "holdout window: metrics, per-slice metrics, plots and a leakage scan. Gates: "
        "minimum metrics, no regression against the champion, no leaky feature.",
        kinds={"sklearn", "mlflow", "polars"},
        owners=spec.owners,
        tags={"layer": "reports", "pipeline": spec.name},
        automation_condition=follow_condition(),
    )
    def validation(
        context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, costs: CostModel
    ) -> pl.DataFrame:
        costs.start(context)  # stopped by the IO manager once the report table is written
        client = mlflow_tracking.client
        mlflow_tracking.activate()
        challenger = version_for_alias(client, model.name, CHALLENGER)
        if challenger is None:
            raise dg.Failure(
                f"{model.name} has no {CHALLENGER}: materialize the candidate first",
                allow_retries=False,
            )
        champion = version_for_alias(client, model.name, CHAMPION)
        tags = challenger.tags
        uri, version = tags[FEATURES_URI_TAG], int(tags[FEATURES_VERSION_TAG])
        holdout = _window(uri, version, tags[HOLDOUT_START_TAG], tags[HOLDOUT_END_TAG])
        train_end = dt.date.fromisoformat(tags[HOLDOUT_START_TAG]) - dt.timedelta(days=1)
        train = _window(uri, version, tags[TRAIN_START_TAG], train_end.isoformat())

        pipelines = {
            f"challenger v{challenger.version}": _pipeline_of(model.name, challenger.version)
        }
        if champion is not None and champion.version != challenger.version:
            pipelines[f"champion v{champion.version}"] = _pipeline_of(model.name, champion.version)
        labelled = holdout.filter(pl.col(model.target).is_not_null())
        started = time.perf_counter()
        metrics = {
            label: evaluate(
                pipe, labelled, task=model.task, target=model.target, threshold=model.threshold
            )
            for label, pipe in pipelines.items()
        }
        challenger_pipe = next(iter(pipelines.values()))
        numeric, categorical = split_columns(
            holdout.schema, target=model.target, exclude=[*model.exclude, PARTITION_COLUMN]
        )
        suspects = leakage_scan(
            train,
            task=model.task,
            target=model.target,
            columns=[*numeric, *categorical],
            threshold=model.gates.leakage_threshold,
            seed=model.seed,
        )
        # A 2,000-row sample and two repeats rank features well enough for a report, in a
        # second rather than several.
        importance = feature_importance(
            challenger_pipe,
            labelled,
            target=model.target,
            task=model.task,
            seed=model.seed,
            n_repeats=2,
            max_rows=2000,
        )
        images = report_images(
            task=model.task,
            y_true=target_values(labelled, model.target, model.task),
            scores={
                label: predict_scores(pipe, labelled, task=model.task)
                for label, pipe in pipelines.items()
            },
            importance=importance,
        )
        slices = (
            evaluate_slices(
                challenger_pipe,
                labelled,
                task=model.task,
                target=model.target,
                slice_column=model.slice_column,
                threshold=model.threshold,
            )
            if model.slice_column
            else None
        )
        notes = [
            f"Holdout {tags[HOLDOUT_START_TAG]} .. {tags[HOLDOUT_END_TAG]} of `{uri}` at Delta "
            f"version {version}: {labelled.height} labelled rows.",
            "No champion yet: the challenger is judged on the absolute gates only."
            if champion is None
            else f"Champion: version {champion.version}.",
        ]
        notes += [
            f"Leak suspect: `{s.column}` alone scores {s.score:.3f} ({s.method})." for s in suspects
        ]
        markdown = render_markdown(
            title=f"{model.name} v{challenger.version}: validation",
            metrics=metrics,
            slices=slices,
            images=images,
            notes=notes,
        )

        challenger_metrics = next(iter(metrics.values()))
        champion_metrics = list(metrics.values())[1] if len(metrics) > 1 else {}
        computed = time.perf_counter()
        with mlflow_tracking.asset_run(
            context,
            pipeline=spec.name,
            run_name=f"{model.name}-validation",
            tags={"model_name": model.name, "model_version": challenger.version},
        ):
            mlflow.log_metrics({f"challenger_{k}": v for k, v in challenger_metrics.items()})
            mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items()})
            with tempfile.TemporaryDirectory() as folder:
                save_report(folder, markdown, images)
                mlflow.log_artifacts(folder, artifact_path="validation_report")

        logged = time.perf_counter()
        context.add_output_metadata(
            {
                "report": dg.MetadataValue.md(markdown),
                # Model compute (scoring, importance, leakage scan, plots) vs MLflow logging.
                "analysis_seconds": round(computed - started, 3),
                "tracking_seconds": round(logged - computed, 3),
                "challenger_version": int(challenger.version),
                "champion_version": int(champion.version) if champion else 0,
                **metrics_metadata(challenger_metrics, "challenger_"),
                **metrics_metadata(champion_metrics, "champion_"),
                "leak_suspects": len(suspects),
            }
        )
        return pl.DataFrame(
            {
                "challenger_version": [int(challenger.version)],
                "champion_version": [int(champion.version) if champion else None],
                **{f"challenger_{k}": [float(v)] for k, v in challenger_metrics.items()},
                **{f"champion_{k}": [float(v)] for k, v in champion_metrics.items()},
                "leak_suspects": [json.dumps([[s.column, s.score] for s in suspects])],
            },
            schema_overrides={"champion_version": pl.Int64},
        )

    return validation


def _compare(metric: str, value: float, bound: float) -> bool:
    """value is at least as good as bound, by the metric's direction; NaN never passes."""
    if math.isnan(value):
        return False
    return value >= bound if higher_is_better(metric) else value <= bound


# Why a holdout metric is NaN (see ml_assets.ml.evaluate): said in the gate's verdict.
UNDEFINED_METRIC = "the holdout has no rows, only one class, or one target value"


def gate_verdicts(model: ModelSpec, report: dict) -> dict[str, tuple[bool, dict]]:
    """(passed, metadata) per gate, from one row of the validation report."""
    minimums = {
        metric: (report.get(f"challenger_{metric}", np.nan), floor)
        for metric, floor in model.gates.min_metrics.items()
    }
    short = {
        m: f"{v:.4f} vs {b}" if not math.isnan(v) else f"undefined vs {b}: {UNDEFINED_METRIC}"
        for m, (v, b) in minimums.items()
        if not _compare(m, v, b)
    }
    verdicts = {
        "meets_minimum_metrics": (
            not short,
            {"failing": short or "none", "thresholds": model.gates.min_metrics},
        )
    }
    if report.get("champion_version") is None:
        verdicts["not_worse_than_champion"] = (True, {"note": "no champion yet: nothing to beat"})
    else:
        worse = {}
        for metric, tolerance in model.gates.max_regression.items():
            new, old = report.get(f"challenger_{metric}", np.nan), report[f"champion_{metric}"]
            bound = old - tolerance if higher_is_better(metric) else old + tolerance
            if not _compare(metric, new, bound):
                worse[metric] = f"{new:.4f} vs champion {old:.4f} (tolerance {tolerance})"
        verdicts["not_worse_than_champion"] = (
            not worse,
            {"worse": worse or "none", "champion_version": report["champion_version"]},
        )
    suspects = json.loads(report["leak_suspects"])
    verdicts["no_leakage"] = (
        not suspects,
        {
            "leaky_features": {c: round(s, 4) for c, s in suspects} or "none",
            "threshold": model.gates.leakage_threshold,
        },
    )
    return verdicts


def build_gate_checks(spec: PipelineSpec) -> list[dg.AssetChecksDefinition]:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)
    gates = model.gates

    descriptions = {
        "meets_minimum_metrics": "The challenger meets the spec's floors: "
        + ", ".join(
            f"{m} {'≥' if higher_is_better(m) else '≤'} {v}" for m, v in gates.min_metrics.items()
        ),
        "not_worse_than_champion": "The challenger is not worse than the champion by more than: "
        + (", ".join(f"{m} {v}" for m, v in gates.max_regression.items()) or "none"),
        "no_leakage": "No single feature predicts the target on its own with a score of "
        f"{gates.leakage_threshold} or more (a leak)",
    }

    def build(gate: str) -> dg.AssetChecksDefinition:
        @dg.asset_check(asset=keys.report, name=gate, blocking=True, description=descriptions[gate])
        def check(lake: DeltaLake, mlflow_tracking: MlflowTracking) -> dg.AssetCheckResult:
            report = delta.scan(lake.table_uri(keys.report)).collect().row(0, named=True)
            passed, metadata = gate_verdicts(model, report)[gate]
            version = str(report["challenger_version"])
            mlflow_tracking.client.set_model_version_tag(
                model.name, version, f"{GATE_TAG_PREFIX}{gate}", "passed" if passed else "failed"
            )
            return dg.AssetCheckResult(
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "model_version": int(version),
                    **{
                        k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
                        for k, v in metadata.items()
                    },
                },
            )

        return check

    return [build(gate) for gate in GATES]
