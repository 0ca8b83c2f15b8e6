"""Drift monitoring: each day's model inputs against the current champion's training window.

`<pipeline>/monitoring/<model>_drift` (group `monitoring`, daily) writes one row per day and
feature with its PSI (the asset's Delta table) and one summary row per day, with the live model
quality once the day's labels have arrived, to `<pipeline>/monitoring/<model>_drift_summary`.
The check `no_feature_drift` fails when at least `min_drifted_features` features reach
`psi_threshold`, naming them. See docs/quality_and_monitoring.md.
"""

import datetime as dt
import functools
import math

import dagster as dg
import numpy as np
import polars as pl

from ml_assets.databricks.costs import CostModel
from ml_assets.ml.drift import FeatureReference, build_reference, drifted, feature_drift
from ml_assets.ml.estimators import split_columns
from ml_assets.ml.evaluate import classification_metrics, regression_metrics
from ml_assets.pipeline.automation import DayVerdict, WrittenAfterFirstChampion, record_day_verdicts
from ml_assets.pipeline.keys import (
    EXTERNAL_RETRY,
    daily_partitions,
    describe_days,
    feature_key,
    model_keys,
    partition_days,
    pipeline_tags,
)
from ml_assets.pipeline.promotion import require_champion
from ml_assets.pipeline.spec import ModelSpec, PipelineSpec
from ml_assets.pipeline.training import (
    FEATURES_URI_TAG,
    FEATURES_VERSION_TAG,
    HOLDOUT_START_TAG,
    TRAIN_START_TAG,
)
from ml_assets.storage import delta
from ml_assets.storage.delta import PARTITION_COLUMN
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking

CHECK_NAME = "no_feature_drift"
_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}

SUMMARY_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Date(),
        "model_name": pl.String(),
        "model_version": pl.Int64(),
        "reference_window": pl.String(),
        "rows": pl.Int64(),
        "max_psi": pl.Float64(),
        "mean_psi": pl.Float64(),
        "n_drifted_features": pl.Int64(),
        "drifted_features": pl.String(),
        "labelled_rows": pl.Int64(),
        "live_roc_auc": pl.Float64(),
        "live_pr_auc": pl.Float64(),
        "live_rmse": pl.Float64(),
        "computed_at": pl.Datetime("us", "UTC"),
    }
)


def drift_key(spec: PipelineSpec) -> dg.AssetKey:
    assert spec.model is not None
    return dg.AssetKey([spec.name, "monitoring", f"{spec.model.name}_drift"])


def summary_key(spec: PipelineSpec) -> dg.AssetKey:
    """Not an asset: the per-day summary table the drift asset writes next to its own."""
    assert spec.model is not None
    return dg.AssetKey([spec.name, "monitoring", f"{spec.model.name}_drift_summary"])


@functools.lru_cache(maxsize=8)
def champion_reference(
    uri: str, version: int, first: str, last: str, target: str, exclude: tuple[str, ...], bins: int
) -> tuple[dict[str, FeatureReference], int]:
    """The champion's training rows (days first..last at Delta `version`), summarised once."""
    frame = (
        pl.scan_delta(uri, version=version)
        .filter(
            pl.col(PARTITION_COLUMN).is_between(
                dt.date.fromisoformat(first), dt.date.fromisoformat(last)
            )
        )
        .collect()
    )
    numeric, categorical = split_columns(frame.schema, target=target, exclude=exclude)
    return build_reference(frame, numeric, categorical, bins=bins), frame.height


def live_quality(
    model: ModelSpec, features: pl.DataFrame, predictions: pl.DataFrame | None, keys: list[str]
) -> dict[str, float]:
    """Metrics of the day's predictions against the labels that have arrived (target not null)."""
    if predictions is None or not keys or model.target not in features.columns:
        return {"labelled_rows": 0}
    labels = features.select(*keys, model.target).filter(pl.col(model.target).is_not_null())
    joined = predictions.select(*keys, "score").join(labels, on=keys, how="inner")
    if joined.is_empty():
        return {"labelled_rows": 0}
    y = joined.get_column(model.target).to_numpy()
    score = joined.get_column("score").to_numpy()
    if model.task == "classification":
        metrics = classification_metrics(y, score, threshold=model.threshold)
        result = {"live_roc_auc": metrics["roc_auc"], "live_pr_auc": metrics["pr_auc"]}
    else:
        result = {"live_rmse": regression_metrics(y.astype(np.float64), score)["rmse"]}
    return {
        "labelled_rows": joined.height,
        **{k: v for k, v in result.items() if not math.isnan(v)},
    }


def _markdown(day: dt.date, rows: list, threshold: float, top: int = 10) -> str:
    lines = [
        f"**{day}**: PSI per feature (threshold {threshold})",
        "",
        "| feature | kind | psi | null rate (ref) |",
        "|---|---|---|---|",
    ]
    for d in rows[:top]:
        flag = " ⚠" if d.psi >= threshold else ""
        lines.append(
            f"| `{d.feature}`{flag} | {d.kind} | {d.psi:.4f} | "
            f"{d.null_rate:.1%} ({d.reference_null_rate:.1%}) |"
        )
    return "\n".join(lines)


def _drift_metadata(
    summaries: list[dict], results_by_day: dict[dt.date, list], threshold: float
) -> dict[str, object]:
    """The day's figures for a one-day run. A range run's metadata is copied by Dagster onto
    every day of the range (dagster-io/dagster#18123), so it reports the range as a whole:
    its worst day, named, and the drifted features of any day; per-day figures such as the
    mean PSI or the live AUC would repeat one day's value on all days, and are only in the
    summary table."""
    worst = max(summaries, key=lambda s: s["max_psi"] if s["max_psi"] is not None else -1.0)
    # {feature: its highest PSI} over the days it drifted on.
    drifted_features: dict[str, float] = {}
    for results in results_by_day.values():
        for feature, psi in drifted(results, threshold).items():
            drifted_features[feature] = max(psi, drifted_features.get(feature, psi))
    metadata: dict[str, object] = {
        "max_psi": float(worst["max_psi"] or 0.0),
        "n_drifted_features": len(drifted_features),
        "drifted_features": dg.MetadataValue.json(drifted_features),
        "psi_by_feature": dg.MetadataValue.md(
            _markdown(worst[PARTITION_COLUMN], results_by_day[worst[PARTITION_COLUMN]], threshold)
        ),
    }
    if len(summaries) > 1:
        return {
            **metadata,
            "days": len(summaries),
            "worst_day": worst[PARTITION_COLUMN].isoformat(),
            "days_with_drift": sum(1 for s in summaries if s["n_drifted_features"]),
        }
    [day] = summaries
    metadata["mean_psi"] = float(day["mean_psi"] or 0.0)
    metadata["labelled_rows"] = day["labelled_rows"]
    for name in ("live_roc_auc", "live_pr_auc", "live_rmse"):
        if day[name] is not None:
            metadata[name] = float(day[name])
    return metadata


def drift_condition(features: dg.AssetKey, champion: dg.AssetKey) -> dg.AutomationCondition:
    """Monitor a day once its predictions are (re)written: new days, and days rescored after
    their labels arrived. Not the history written before the first champion, even when someone
    scores it (`<pipeline>_score`): its first days' lookback features are incomplete, so against
    the champion's training window they would all be flagged as drifted and start a retrain."""
    return (
        dg.AutomationCondition.any_deps_updated()
        .ignore(dg.AssetSelection.assets(features))
        .since_last_handled()
        & WrittenAfterFirstChampion(features, champion)
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("monitor each day once its predictions are written")


def build_drift_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    model = spec.model
    assert model is not None
    monitoring = model.monitoring
    keys = model_keys(spec)
    features = feature_key(spec, model.features)
    join_keys = [c for c in spec.features[model.features].primary_key if c in model.exclude]
    # Days whose lookback reaches before the feature table's first day have incomplete window
    # features (no earlier events to count): against the training window they always look
    # drifted. They are not compared.
    warm_up = dt.timedelta(days=spec.features[model.features].lookback_days)

    @dg.asset(
        key=drift_key(spec),
        ins={"features": dg.AssetIn(key=features)},
        deps=[keys.predictions],
        group_name="monitoring",
        retry_policy=EXTERNAL_RETRY,
        description=f"Daily drift of `{model.name}`'s inputs against the champion's training "
        f"window: PSI per feature (numeric: {monitoring.bins} reference quantile bins; "
        "categorical: category shares with other/missing buckets), and the live model quality "
        "once labels have arrived. One row per day and feature; the per-day summary is in "
        f"`{summary_key(spec).to_user_string()}`.",
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "delta"},
        owners=spec.owners,
        tags={"layer": "monitoring", "pipeline": spec.name},
        automation_condition=drift_condition(features, keys.champion),
    )
    def drift(
        context: dg.AssetExecutionContext,
        features: pl.LazyFrame,
        lake: DeltaLake,
        mlflow_tracking: MlflowTracking,
        costs: CostModel,
    ) -> pl.DataFrame:
        costs.start(context)  # stopped by the IO manager once the drift rows are written
        champion = require_champion(
            mlflow_tracking.client, spec, "drift is measured against its training window"
        )
        tags = champion.tags
        train_last = dt.date.fromisoformat(tags[HOLDOUT_START_TAG]) - dt.timedelta(days=1)
        window = f"{tags[TRAIN_START_TAG]} .. {train_last}"
        references, reference_rows = champion_reference(
            tags[FEATURES_URI_TAG],
            int(tags[FEATURES_VERSION_TAG]),
            tags[TRAIN_START_TAG],
            train_last.isoformat(),
            model.target,
            tuple([*model.exclude, PARTITION_COLUMN]),
            monitoring.bins,
        )
        days = partition_days(context)
        frame = features.collect()
        predictions_uri = lake.table_uri(keys.predictions)
        predictions = (
            delta.scan(predictions_uri, partitions=days).collect()
            if delta.table_exists(predictions_uri)
            else None
        )
        now = dt.datetime.now(dt.UTC)
        version = int(champion.version)
        feature_table = lake.table_uri(feature_key(spec, model.features))
        counts = delta.partition_row_counts(feature_table)
        first = min((d for d, n in counts.items() if n), default=None)
        warming = [day for day in days if first is not None and day < first + warm_up]
        if warming:
            context.log.info(
                f"{describe_days(warming)}: not compared, their {warm_up.days}-day lookback "
                f"reaches before the feature table's first day ({first})"
            )
        rows, summaries, results_by_day = [], [], {}
        for day in days:
            today = frame.filter(pl.col(PARTITION_COLUMN) == day)
            # A warm-up day is compared as a day without rows: no PSI, so no drift.
            results = feature_drift(references, today.head(0) if day in warming else today)
            drifting = drifted(results, monitoring.psi_threshold)
            scored = (
                predictions.filter(pl.col(PARTITION_COLUMN) == day)
                if predictions is not None
                else None
            )
            live = live_quality(model, today, scored, join_keys)
            psis = [d.psi for d in results if not math.isnan(d.psi)]
            results_by_day[day] = results
            rows += [
                {
                    PARTITION_COLUMN: day,
                    "model_name": model.name,
                    "model_version": version,
                    "feature": d.feature,
                    "kind": d.kind,
                    "psi": d.psi,
                    "drifted": d.psi >= monitoring.psi_threshold,
                    "rows": d.rows,
                    "null_rate": d.null_rate,
                    "reference_null_rate": d.reference_null_rate,
                    "reference_window": window,
                    "computed_at": now,
                }
                for d in results
            ]
            summaries.append(
                {
                    PARTITION_COLUMN: day,
                    "model_name": model.name,
                    "model_version": version,
                    "reference_window": window,
                    "rows": today.height,
                    "max_psi": max(psis) if psis else None,
                    "mean_psi": float(np.mean(psis)) if psis else None,
                    "n_drifted_features": len(drifting),
                    "drifted_features": ",".join(drifting),
                    "labelled_rows": live.get("labelled_rows", 0),
                    "live_roc_auc": live.get("live_roc_auc"),
                    "live_pr_auc": live.get("live_pr_auc"),
                    "live_rmse": live.get("live_rmse"),
                    "computed_at": now,
                }
            )
        summary = pl.DataFrame(summaries, schema=SUMMARY_SCHEMA)
        summary_uri = lake.table_uri(summary_key(spec))
        delta.write_partitions(summary_uri, summary, partitions=days)

        metadata = {
            "model_version": version,
            "reference_window": window,
            "reference_rows": reference_rows,
            "summary_uri": summary_uri,
            "warm_up_days_not_compared": len(warming),
            **_drift_metadata(summaries, results_by_day, monitoring.psi_threshold),
        }
        context.add_output_metadata(metadata)
        return pl.DataFrame(
            rows,
            schema={
                PARTITION_COLUMN: pl.Date(),
                "model_name": pl.String(),
                "model_version": pl.Int64(),
                "feature": pl.String(),
                "kind": pl.String(),
                "psi": pl.Float64(),
                "drifted": pl.Boolean(),
                "rows": pl.Int64(),
                "null_rate": pl.Float64(),
                "reference_null_rate": pl.Float64(),
                "reference_window": pl.String(),
                "computed_at": pl.Datetime("us", "UTC"),
            },
        )

    return drift


def _description(failing: dict[str, dict[str, float]]) -> str:
    return "drifted: " + "; ".join(f"{d}: {', '.join(f)}" for d, f in failing.items())


def build_drift_check(spec: PipelineSpec) -> dg.AssetChecksDefinition:
    model = spec.model
    assert model is not None
    monitoring = model.monitoring
    key = drift_key(spec)

    @dg.asset_check(
        asset=key,
        name=CHECK_NAME,
        partitions_def=daily_partitions(spec),
        description=f"Fewer than {monitoring.min_drifted_features} feature(s) with PSI >= "
        f"{monitoring.psi_threshold} against the champion's training window "
        f"({monitoring.severity.upper()})",
        metadata={"psi_threshold": monitoring.psi_threshold},
    )
    def no_feature_drift(context: dg.AssetCheckExecutionContext, lake: DeltaLake):
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        # A day without rows has NaN PSIs: no evidence of drift (`not_empty` reports the
        # emptiness). As null they fail the comparison; Polars orders NaN above any number.
        rows = (
            delta.scan(lake.table_uri(key), partitions=days)
            .with_columns(pl.col("psi").fill_nan(None))
            .collect()
        )
        by_day = {
            day: {
                r["feature"]: round(r["psi"], 4)
                for r in rows.filter(
                    (pl.col(PARTITION_COLUMN) == day) & (pl.col("psi") >= monitoring.psi_threshold)
                )
                .sort("psi", descending=True)
                .iter_rows(named=True)
            }
            for day in days
        }
        failing = {
            d.isoformat(): f for d, f in by_day.items() if len(f) >= monitoring.min_drifted_features
        }
        worst = rows.get_column("psi").max() if rows.height else None
        metadata = {
            "psi_threshold": monitoring.psi_threshold,
            "min_drifted_features": monitoring.min_drifted_features,
            "max_psi": float(worst) if worst is not None else 0.0,
            "n_drifted_features": max((len(f) for f in by_day.values()), default=0),
            "drifted_features": dg.MetadataValue.json(
                next(iter(failing.values()))
                if len(days) == 1 and failing
                else {f: p for feats in by_day.values() for f, p in feats.items()}
            ),
        }
        if len(days) == 1:
            metadata["partition"] = days[0].isoformat()
        else:
            metadata["failing_days"] = dg.MetadataValue.json(failing)
        if failing:
            context.log.warning(f"{key.to_user_string()}: drift on {failing}")
        # A range run also gets one verdict per day: each day shows passed or failed in the UI.
        record_day_verdicts(
            context,
            dg.AssetCheckKey(key, CHECK_NAME),
            [
                DayVerdict(
                    partition=day.isoformat(),
                    passed=day.isoformat() not in failing,
                    description=_description({day.isoformat(): features})
                    if day.isoformat() in failing
                    else "no feature drifted",
                    metadata={
                        "partition": day.isoformat(),
                        "psi_threshold": monitoring.psi_threshold,
                        "max_psi": float(
                            rows.filter(pl.col(PARTITION_COLUMN) == day).get_column("psi").max()
                            or 0.0
                        ),
                        "n_drifted_features": len(features),
                        "drifted_features": dg.MetadataValue.json(features),
                    },
                )
                for day, features in by_day.items()
            ],
            severity=_SEVERITY[monitoring.severity],
            blocking=False,
        )
        return dg.AssetCheckResult(
            passed=not failing,
            severity=_SEVERITY[monitoring.severity],
            metadata=metadata,
            description=_description(failing) if failing else "no feature drifted",
        )

    return no_feature_drift


def build_monitoring_definitions(spec: PipelineSpec) -> dg.Definitions:
    """The drift asset, its check and a `<pipeline>_monitor` job (empty without a model)."""
    if spec.model is None or not spec.model.monitoring.enabled:
        return dg.Definitions()
    asset = build_drift_asset(spec)
    return dg.Definitions(
        assets=[asset],
        asset_checks=[build_drift_check(spec)],
        jobs=[
            dg.define_asset_job(
                name=f"{spec.name}_monitor",
                description=f"Drift and live quality of {spec.model.name} for the selected days.",
                selection=dg.AssetSelection.assets(asset),
                tags=pipeline_tags(spec),
            )
        ],
    )
