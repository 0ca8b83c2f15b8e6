"""The candidate model: trained on a window of feature partitions, tracked in MLflow, registered
as a new version with the alias `challenger`."""

import datetime as dt
import difflib
import json
import tempfile
import time
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import polars as pl
from deltalake import DeltaTable
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.models import infer_signature
from pydantic import Field

import ml_assets
from ml_assets.databricks.costs import CostModel
from ml_assets.ml.estimators import predict_scores, split_columns, to_pandas_features
from ml_assets.ml.evaluate import evaluate, metrics_metadata
from ml_assets.ml.train import fit, search, time_split
from ml_assets.pipeline.automation import (
    TRAINING_POOL,
    model_freshness_policy,
    retrain_condition,
)
from ml_assets.pipeline.keys import EXTERNAL_RETRY, feature_key, model_keys
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.storage.delta import PARTITION_COLUMN
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking
from ml_assets.tracking.registry import CHALLENGER
from ml_assets.tracking.scoring_model import scoring_model


def model_column_problems(spec: PipelineSpec, schema: pl.Schema) -> list[str]:
    """What the model section names that the feature table does not have, or has with a type
    the model cannot use. Checked before training: a misspelt `exclude` would otherwise train
    on the id column it meant to leave out, and fail only when scoring."""
    model = spec.model
    assert model is not None
    named = [("target", model.target), *(("exclude", c) for c in model.exclude)]
    if model.slice_column:
        named.append(("slice_column", model.slice_column))
    problems = []
    for field, column in named:
        if column not in schema:
            close = difflib.get_close_matches(column, schema.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"model.{field} names {column!r}, not a column of the table{hint}")
    dtype = schema.get(model.target)
    if dtype is not None and not (dtype.is_numeric() or dtype == pl.Boolean):
        kind = "bool or 0/1" if model.task == "classification" else "numeric"
        problems.append(f"target {model.target!r} is {dtype}; a {model.task} target is {kind}")
    return problems


# Version tags the validation report reads back: which rows it must evaluate on.
TRAIN_START_TAG = "train_start"
HOLDOUT_START_TAG = "holdout_start"
HOLDOUT_END_TAG = "holdout_end"
FEATURES_URI_TAG = "features_uri"
FEATURES_VERSION_TAG = "features_delta_version"


class TrainConfig(dg.Config):
    """Launchpad overrides for one training run; unset fields come from the pipeline spec."""

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Estimator hyper-parameters, merged over the spec's `model.params`.",
    )
    search_trials: int | None = Field(
        default=None, description="Hyper-parameter search trials (0: no search)."
    )
    seed: int | None = Field(default=None, description="Random seed.")
    train_days: int | None = Field(default=None, description="Days of partitions to train on.")
    holdout_days: int | None = Field(default=None, description="Newest days held out.")
    as_of: str | None = Field(
        default=None, description="Last holdout day, YYYY-MM-DD (default: newest partition)."
    )


def _pip_requirements() -> list[str]:
    # Explicit: MLflow's requirement inference costs seconds per model and guesses. Pinned to
    # what the model was trained and pickled with (cloudpickle reads the pipeline back), so a
    # serving endpoint that installs only these scores exactly as batch scoring does.
    return [
        f"{name}=={installed_version(name)}"
        for name in ("mlflow", "scikit-learn", "polars", "pandas", "numpy", "cloudpickle")
    ]


def newest_partition(uri: str) -> dt.date:
    """The newest partition day, from the Delta log alone."""
    days = [dict(p)[PARTITION_COLUMN] for p in DeltaTable(uri).partitions()]
    if not days:
        raise dg.Failure(f"feature table {uri} has no partitions yet")
    return max(dt.date.fromisoformat(day) for day in days)


def build_candidate_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)
    features = feature_key(spec, model.features)

    @dg.asset(
        key=keys.candidate,
        deps=[features],
        group_name="models",
        description=(model.description or f"Model {model.name}")
        + f"\n\nTrained on `{features.to_user_string()}` ({model.window.train_days} days, then "
        + (f"{model.window.gap_days} left out, then " if model.window.gap_days else "")
        + f"the newest {model.window.holdout_days} held out), registered in MLflow as "
        f"`{model.name}` with the alias `{CHALLENGER}`.",
        kinds={"sklearn", "mlflow"},
        owners=spec.owners,
        tags={"layer": "models", "pipeline": spec.name},
        code_version=ml_assets.__version__,
        # MLflow may be a remote server: retry what can be transient (config errors are not).
        retry_policy=EXTERNAL_RETRY,
        freshness_policy=model_freshness_policy(spec),
        pool=TRAINING_POOL,
        automation_condition=retrain_condition(),
    )
    def candidate(
        context: dg.AssetExecutionContext,
        config: TrainConfig,
        lake: DeltaLake,
        mlflow_tracking: MlflowTracking,
        costs: CostModel,
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        costs.start(context)
        seed = model.seed if config.seed is None else config.seed
        train_days = config.train_days or model.window.train_days
        holdout_days = config.holdout_days or model.window.holdout_days
        trials = model.search.trials if config.search_trials is None else config.search_trials
        params = {**model.params, **config.params}

        uri = lake.table_uri(features)
        table_version = DeltaTable(uri).version()
        as_of = dt.date.fromisoformat(config.as_of) if config.as_of else newest_partition(uri)
        gap_days = model.window.gap_days
        first = as_of - dt.timedelta(days=train_days + gap_days + holdout_days - 1)
        # Only the window is read: the filter on the partition column prunes files.
        frame = (
            pl.scan_delta(uri, version=table_version)
            .filter(pl.col(PARTITION_COLUMN).is_between(first, as_of))
            .collect()
        )
        problems = model_column_problems(spec, frame.schema)
        if problems:
            raise dg.Failure(
                f"cannot train {model.name} on {features.to_user_string()}: " + "; ".join(problems),
                allow_retries=False,
            )
        try:
            train, holdout, window = time_split(
                frame,
                date_column=PARTITION_COLUMN,
                train_days=train_days,
                holdout_days=holdout_days,
                gap_days=gap_days,
                as_of=as_of,
            )
        except ValueError as error:
            raise dg.Failure(
                f"cannot train {model.name} on {uri}: {error}", allow_retries=False
            ) from None
        if window.train_days_with_data < window.train_days:
            context.log.warning(
                f"training {model.name} on {window.train_days_with_data} of the "
                f"{window.train_days} days of its window {window.train_start} .. "
                f"{window.train_end}: {features.to_user_string()} has no rows on the others"
            )
        numeric, categorical = split_columns(
            frame.schema, target=model.target, exclude=[*model.exclude, PARTITION_COLUMN]
        )
        common = {
            "task": model.task,
            "estimator": model.estimator,
            "target": model.target,
            "numeric": numeric,
            "categorical": categorical,
            "seed": seed,
        }
        loaded_at = time.perf_counter()

        with mlflow_tracking.asset_run(
            context,
            pipeline=spec.name,
            run_name=f"{model.name}-candidate",
            tags={FEATURES_URI_TAG: uri, FEATURES_VERSION_TAG: table_version},
        ) as run:
            mlflow.log_params(
                {
                    "estimator": model.estimator,
                    "seed": seed,
                    "search_trials": trials,
                    "features_table": features.to_user_string(),
                    "features_delta_version": table_version,
                    **{f"window.{k}": v for k, v in window.as_dict().items()},
                    "numeric_features": ",".join(numeric),
                    "categorical_features": ",".join(categorical),
                    "config": json.dumps(config.model_dump(), sort_keys=True, default=str),
                }
            )
            try:
                if trials > 0:
                    ranked = search(
                        train,
                        holdout,
                        space=model.search.space,
                        kind=model.search.kind,
                        trials=trials,
                        metric="roc_auc" if model.task == "classification" else "rmse",
                        base_params=params,
                        threshold=model.threshold,
                        **common,
                    )
                    for trial in ranked:
                        with mlflow.start_run(
                            run_name=f"trial-{trial.index}",
                            nested=True,
                            experiment_id=run.info.experiment_id,
                        ):
                            mlflow.log_params(trial.params)
                            mlflow.log_metrics({k: v for k, v in trial.metrics.items()})
                    params = {**params, **ranked[0].params}
                fitted = fit(train, params=params, **common)
            except ValueError as error:
                # A bad parameter or estimator name: retrying would fail the same way.
                raise dg.Failure(
                    f"cannot train {model.name}: {error}", allow_retries=False
                ) from None
            fitted_at = time.perf_counter()
            metrics = evaluate(
                fitted.model,
                holdout,
                task=model.task,
                target=model.target,
                threshold=model.threshold,
            )
            mlflow.log_params({f"model.{k}": v for k, v in fitted.params_resolved.items()})
            mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
            mlflow.log_metric("fit_seconds", fitted.fit_seconds)
            for context_name, part in (("training", train), ("validation", holdout)):
                source = DeltaDatasetSource(path=uri, delta_table_version=table_version)
                dataset = mlflow.data.from_polars(
                    # MLflow's schema has no date type: it maps dates to datetimes anyway, and
                    # warns once per dataset on the console.
                    part.with_columns(pl.col(pl.Date).cast(pl.Datetime("us"))),
                    source=source,
                    targets=model.target,
                    name=f"{model.features}-{context_name}",
                )
                mlflow.log_input(dataset, context=context_name)

            example = holdout.head(5)
            inputs = to_pandas_features(example, numeric, categorical)
            signature = infer_signature(
                inputs, predict_scores(fitted.model, example, task=model.task)
            )
            with tempfile.TemporaryDirectory() as staging:
                info = mlflow.pyfunc.log_model(
                    name="model",
                    **scoring_model(fitted.model, model.task, Path(staging)),
                    signature=signature,
                    input_example=inputs,
                    pip_requirements=_pip_requirements(),
                    registered_model_name=model.name,
                )
            version = str(info.registered_model_version)
            client = mlflow_tracking.client
            client.set_registered_model_alias(model.name, CHALLENGER, version)
            for key, value in {
                TRAIN_START_TAG: window.train_start.isoformat(),
                HOLDOUT_START_TAG: window.holdout_start.isoformat(),
                HOLDOUT_END_TAG: window.holdout_end.isoformat(),
                FEATURES_URI_TAG: uri,
                FEATURES_VERSION_TAG: str(table_version),
                "dagster_run_id": context.run.run_id,
                "code_version": ml_assets.__version__,
            }.items():
                client.set_model_version_tag(model.name, version, key, value)
            run_id = run.info.run_id
            experiment_id = run.info.experiment_id
            # What this training cost, by the deployment's cost model (the same numbers as every
            # materialization's cost metadata), on the run next to its quality metrics.
            cost = costs.stop(context.run.run_id, context.asset_key)
            if cost is not None:
                mlflow.log_metrics(cost.metrics())
        finished = time.perf_counter()

        url = mlflow_tracking.run_url(experiment_id, run_id)
        return dg.MaterializeResult(
            metadata={
                "model_name": model.name,
                "model_version": int(version),
                "mlflow_run_id": run_id,
                **({"mlflow_run_url": dg.MetadataValue.url(url)} if url else {}),
                "features_delta_version": table_version,
                "train_rows": window.train_rows,
                "holdout_rows": window.holdout_rows,
                "train_window": f"{window.train_start} .. {window.train_end}",
                "train_days_with_data": window.train_days_with_data,
                "holdout_window": f"{window.holdout_start} .. {window.holdout_end}",
                **metrics_metadata(metrics, "holdout_"),
                "fit_seconds": round(fitted.fit_seconds, 3),
                # Where a retrain's time goes (the benchmark reports the same split).
                "load_seconds": round(loaded_at - started, 3),
                "tracking_seconds": round(finished - fitted_at, 3),
                "wall_seconds": round(finished - started, 3),
                **(cost.metadata() if cost is not None else {}),
            }
        )

    return candidate
