"""Batch predictions: each feature partition scored by the champion current at run time.

The table doubles as the inference log: every row says which model version scored it and when.
"""

import datetime as dt

import dagster as dg
import mlflow
import polars as pl

from ml_assets.pipeline.automation import scoring_condition
from ml_assets.pipeline.keys import EXTERNAL_RETRY, daily_partitions, feature_key, model_keys
from ml_assets.pipeline.promotion import require_champion
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.storage.delta import PARTITION_COLUMN
from ml_assets.tracking.mlflow_resource import MlflowTracking
from ml_assets.tracking.scoring_model import conform_to_signature


def build_predictions_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)
    features = feature_key(spec, model.features)
    id_columns = [c for c in model.exclude if c != PARTITION_COLUMN]

    @dg.asset(
        key=keys.predictions,
        ins={"features": dg.AssetIn(key=features)},
        deps=[keys.champion],
        group_name="predictions",
        retry_policy=EXTERNAL_RETRY,
        description=f"`{model.name}` scores per row of `{features.to_user_string()}`, by the "
        "champion current at run time; with model version and scoring time (inference log).",
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "mlflow", "delta"},
        owners=spec.owners,
        tags={"layer": "predictions", "pipeline": spec.name},
        automation_condition=scoring_condition(features, keys.champion),
    )
    def predictions(
        context: dg.AssetExecutionContext, features: pl.LazyFrame, mlflow_tracking: MlflowTracking
    ) -> pl.DataFrame:
        champion = require_champion(mlflow_tracking.client, spec, "scoring needs one")
        mlflow_tracking.activate()
        scorer = mlflow.pyfunc.load_model(f"models:/{model.name}/{champion.version}")
        rows = features.collect()
        scores = scorer.predict(conform_to_signature(rows, scorer.metadata.get_input_schema()))
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
