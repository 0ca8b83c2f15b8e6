"""Batch predictions: each feature partition scored by the champion current at run time.

The table doubles as the inference log: every row says which model version scored it and when.
"""

import datetime as dt

import dagster as dg
import mlflow
import polars as pl

from ml_assets.databricks.costs import CostModel
from ml_assets.pipeline.automation import scoring_condition
from ml_assets.pipeline.keys import (
    EXTERNAL_RETRY,
    daily_partitions,
    describe_days,
    feature_key,
    model_keys,
    partition_days,
)
from ml_assets.pipeline.promotion import require_champion
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.storage.delta import PARTITION_COLUMN
from ml_assets.tracking.mlflow_resource import MlflowTracking
from ml_assets.tracking.scoring_model import conform_to_signature


def build_predictions_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)
    feature_table = feature_key(spec, model.features)
    id_columns = [c for c in model.exclude if c != PARTITION_COLUMN]

    @dg.asset(
        key=keys.predictions,
        ins={"features": dg.AssetIn(key=feature_table)},
        deps=[keys.champion],
        group_name="predictions",
        retry_policy=EXTERNAL_RETRY,
        description=f"`{model.name}` scores per row of `{feature_table.to_user_string()}`, by the "
        "champion current at run time; with model version and scoring time (inference log).",
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "mlflow", "delta"},
        owners=spec.owners,
        tags={"layer": "predictions", "pipeline": spec.name},
        automation_condition=scoring_condition(feature_table, keys.champion),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        features: pl.LazyFrame,
        mlflow_tracking: MlflowTracking,
        costs: CostModel,
    ) -> pl.DataFrame:
        costs.start(context)  # stopped by the IO manager once the scores are written
        champion = require_champion(mlflow_tracking.client, spec, "scoring needs one")
        mlflow_tracking.activate()
        scorer = mlflow.pyfunc.load_model(f"models:/{model.name}/{champion.version}")
        rows = features.collect()
        _require_features(context, rows, feature_table)
        scores = (  # scikit-learn refuses zero rows: a day without events scores empty
            scorer.predict(conform_to_signature(rows, scorer.metadata.get_input_schema()))
            if rows.height
            else []
        )
        scored = rows.select(*id_columns, PARTITION_COLUMN).with_columns(
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(model.name).alias("model_name"),
            pl.lit(int(champion.version)).alias("model_version"),
            pl.lit(dt.datetime.now(dt.UTC)).cast(pl.Datetime("us", "UTC")).alias("scored_at"),
        )
        if model.task == "classification":
            scored = scored.with_columns(
                (pl.col("score") >= model.threshold).cast(pl.Int8).alias("predicted_label")
            )
        context.add_output_metadata(
            {
                "model_version": int(champion.version),
                "mean_score": float(scored["score"].mean() or 0.0),
                **(
                    {"positive_rate": float(scored["predicted_label"].mean() or 0.0)}
                    if model.task == "classification"
                    else {}
                ),
            }
        )
        return scored

    return predictions


def _require_features(
    context: dg.AssetExecutionContext, rows: pl.DataFrame, feature_table: dg.AssetKey
) -> None:
    """Fail, before anything is written, when days to score have no feature rows and their
    feature partition was never materialized: scoring them would mark those days scored, with
    no predictions. A day materialized without rows (no events that day) is scored, empty.

    The feature table alone cannot tell the two apart (an empty day has no files), hence the
    instance's record; it is consulted only for days without rows, so a lake filled by
    another Dagster instance still scores.
    """
    with_rows = set(rows.get_column(PARTITION_COLUMN).unique().to_list())
    empty = [day for day in partition_days(context) if day not in with_rows]
    if not empty:
        return
    built = context.instance.get_materialized_partitions(feature_table)
    missing = [day for day in empty if day.isoformat() not in built]
    if missing:
        which = "that day" if len(missing) == 1 else f"these {len(missing)} days"
        raise dg.Failure(
            f"cannot score {describe_days(missing)}: {feature_table.to_user_string()} was never "
            f"materialized for {which} and has no rows there. Materialize the features first, "
            "or score only days that have features. No predictions were written.",
            allow_retries=False,
        )
