"""Training, tracking and the registry: reproducible, fully tracked, never left RUNNING."""

import datetime as dt

import dagster as dg
import mlflow
import polars as pl
import yaml
from mlflow.tracking import MlflowClient

from ml_assets.definitions import build_definitions
from ml_assets.pipeline.training import model_column_problems
from ml_assets.pipelines.fraud.features import FEATURE_COLUMNS
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings
from ml_assets.tracking.registry import CHALLENGER, CHAMPION
from ml_assets_tests.models.conftest import KEYS, LAST_DAY, SPEC, Deployment


def _materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey):
    events = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == key
    ]
    assert events, f"{key.to_user_string()} was not materialized"
    return events[-1]


def _client(deployment) -> MlflowClient:
    return MlflowClient(tracking_uri=deployment.settings.mlflow_tracking_uri)


def _all_runs(deployment):
    mlflow.set_tracking_uri(deployment.settings.mlflow_tracking_uri)
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_first_model_trains_registers_and_becomes_champion(deployment, caplog):
    result = deployment.train()
    assert result.success
    # Logging the datasets to MLflow does not warn about the date column on the console.
    assert not [r for r in caplog.records if "Data type of Column" in r.getMessage()]
    metadata = _materialization(result, KEYS.candidate).metadata
    assert metadata["model_version"].value == 1
    assert metadata["holdout_roc_auc"].value > 0.7
    # The newest days are held out; the train window ends the day before.
    assert metadata["holdout_window"].value.endswith(LAST_DAY.isoformat())
    assert metadata["train_rows"].value > metadata["holdout_rows"].value > 0
    assert metadata["train_days_with_data"].value == 21  # the whole window: 30 days, 7 held out
    # Row counts read as integers in the UI, though MLflow keeps them as float metrics.
    assert isinstance(metadata["holdout_rows"], dg.IntMetadataValue)
    report = _materialization(result, KEYS.report).metadata
    assert isinstance(report["challenger_rows"], dg.IntMetadataValue)
    assert isinstance(report["challenger_roc_auc"], dg.FloatMetadataValue)

    client = _client(deployment)
    assert int(client.get_model_version_by_alias("fraud_detector", CHALLENGER).version) == 1
    assert int(client.get_model_version_by_alias("fraud_detector", CHAMPION).version) == 1
    audit = pl.read_delta(f"{deployment.settings.lake_root}/fraud/audit/model_promotions")
    assert audit.select("action", "from_version", "to_version").rows() == [("promote", None, 1)]
    # No previous champion: absent everywhere, not 0 in one place and "none" in another.
    assert "previous_champion_version" not in _materialization(result, KEYS.champion).metadata
    assert "champion_previous_version" not in client.get_model_version("fraud_detector", "1").tags


def test_training_run_is_tracked_with_params_metrics_model_and_dataset_lineage(deployment):
    result = deployment.train()
    run_id = _materialization(result, KEYS.candidate).metadata["mlflow_run_id"].value
    run = _client(deployment).get_run(run_id)

    assert run.data.params["estimator"] == "hist_gradient_boosting"
    assert run.data.params["model.learning_rate"] == "0.05"
    assert run.data.params["window.holdout_end"] == LAST_DAY.isoformat()
    assert run.data.metrics["holdout_roc_auc"] > 0.7
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["dagster_asset_key"] == KEYS.candidate.to_user_string()
    assert run.data.tags["features_delta_version"] == "0"  # tagged: MLflow drops version 0
    contexts = {inp.tags[0].value: inp.dataset for inp in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation"}
    assert "transaction_features" in contexts["training"].source
    # Nested under the Dagster run's parent MLflow run.
    parent = _client(deployment).get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["dagster_run_id"] == result.run_id


def test_same_data_and_config_give_the_same_metrics(deployment):
    first = _materialization(deployment.train(), KEYS.candidate).metadata
    second = _materialization(deployment.train(), KEYS.candidate).metadata
    assert second["model_version"].value == first["model_version"].value + 1
    for name in ("holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss"):
        assert second[name].value == first[name].value, name


def test_launchpad_config_overrides_the_spec(deployment):
    result = deployment.train(params={"max_iter": 20}, seed=3)
    run_id = _materialization(result, KEYS.candidate).metadata["mlflow_run_id"].value
    params = _client(deployment).get_run(run_id).data.params
    assert params["model.max_iter"] == "20"
    assert params["seed"] == "3"


def test_search_logs_each_trial_as_a_nested_run(deployment):
    result = deployment.train(search_trials=3)
    assert result.success
    run_id = _materialization(result, KEYS.candidate).metadata["mlflow_run_id"].value
    trials = [r for r in _all_runs(deployment) if r.data.tags.get("mlflow.parentRunId") == run_id]
    assert len(trials) == 3
    assert all("holdout_roc_auc" in t.data.metrics or "roc_auc" in t.data.metrics for t in trials)


def test_no_mlflow_run_is_left_running_after_success_or_failure(deployment):
    assert deployment.train().success
    failed = deployment.train(params={"no_such_param": 1})
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    assert "no_such_param" in str(failure.step_failure_data.error)
    # A config error is not retried: it would fail the same way.
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in failed.all_events)
    runs = _all_runs(deployment)
    statuses = {r.info.status for r in runs}
    assert "RUNNING" not in statuses
    assert "FAILED" in statuses  # the failed step's run, and its parent
    parents = [r for r in runs if r.data.tags.get("ml_assets_role") == "dagster_run"]
    assert {p.data.tags["dagster_run_id"]: p.info.status for p in parents}[failed.run_id] == (
        "FAILED"
    )


def test_every_run_and_artifact_stays_in_the_deployment(deployment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a stray default experiment would drop ./mlruns
    assert deployment.train(search_trials=2).success
    runs = _all_runs(deployment)
    experiments = {r.info.experiment_id for r in runs}
    assert len(experiments) == 1
    [experiment] = experiments
    assert _client(deployment).get_experiment(experiment).name == "ml_assets/fraud"
    artifacts = deployment.settings.home / "mlflow" / "artifacts"
    assert all(r.info.artifact_uri.startswith(artifacts.as_uri()) for r in runs)
    assert not (tmp_path / "mlruns").exists()


def test_training_run_logs_its_compute_time_and_estimated_cost_as_mlflow_metrics(deployment):
    # A price per CPU hour of 3600 USD makes the estimate equal the CPU seconds.
    settings = load_settings(
        {
            "ML_ASSETS_HOME": str(deployment.settings.home),
            "ML_ASSETS_LOCAL_CPU_PRICE_PER_HOUR": "3600",
        }
    )
    priced = Deployment(settings, build_definitions(settings))
    result = priced.materialize([KEYS.candidate])
    assert result.success
    metadata = {k: v.value for k, v in _materialization(result, KEYS.candidate).metadata.items()}
    metrics = _client(priced).get_run(metadata["mlflow_run_id"]).data.metrics

    assert metrics["cpu_seconds"] > 0 and metrics["compute_seconds"] > 0
    assert metrics["compute_seconds"] <= metadata["wall_seconds"]
    assert metrics["estimated_cost_usd"] > 0
    assert abs(metrics["estimated_cost_usd"] - metrics["cpu_seconds"]) < 0.01
    # the same numbers as the materialization's (numeric, plotted) cost metadata
    for key in ("compute_seconds", "cpu_seconds", "estimated_cost_usd"):
        assert metadata[key] == metrics[key]
    assert metadata["cost_basis"].startswith("local: 3600.000 USD/CPU-h")


def _with_model(deployment: Deployment, tmp_path, **model) -> Deployment:
    """The same deployment (lake, MLflow store) with the demo spec's model section changed."""
    spec = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    spec["model"].update(model)
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"ML_ASSETS_HOME": str(deployment.settings.home), "ML_ASSETS_PIPELINES": str(path)}
    settings = load_settings(env)
    return Deployment(settings, build_definitions(settings))


def test_gap_days_leave_days_out_between_training_and_holdout(deployment, tmp_path):
    gapped = _with_model(
        deployment, tmp_path, window={"train_days": 10, "holdout_days": 5, "gap_days": 2}
    )
    result = gapped.train()
    assert result.success
    run_id = _materialization(result, KEYS.candidate).metadata["mlflow_run_id"].value
    params = _client(gapped).get_run(run_id).data.params

    day = dt.timedelta(days=1)
    assert params["window.holdout_start"] == (LAST_DAY - 4 * day).isoformat()
    assert params["window.train_end"] == (LAST_DAY - 7 * day).isoformat()  # 2 days left out
    assert params["window.train_start"] == (LAST_DAY - 16 * day).isoformat()


def test_model_columns_missing_from_the_feature_table_fail_training_and_register_nothing(
    deployment, tmp_path
):
    """A misspelt `exclude` used to train on the column it meant to leave out (event_id) and
    fail only when scoring; a misspelt slice column failed after the model was registered."""
    misspelt = _with_model(
        deployment,
        tmp_path,
        exclude=["event_idd", "customer_id", "event_ts"],
        slice_column="chanel",
    )

    result = misspelt.train()

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert "cannot train fraud_detector on fraud/features/transaction_features" in message
    assert "model.exclude names 'event_idd', not a column of the table" in message
    assert "(did you mean 'event_id'?)" in message
    assert "model.slice_column names 'chanel'" in message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert _client(misspelt).search_model_versions(f"name='{KEYS.candidate.path[-1]}'") == []


def test_a_text_target_is_refused_before_training():
    """A yes/no target loaded as text failed inside scikit-learn (`invalid literal for int()`)
    and was retried; the check names the column and what the task needs."""
    schema = pl.Schema({name: pl.Float64 for name in FEATURE_COLUMNS} | {"is_fraud": pl.String})
    assert model_column_problems(SPEC, schema) == [
        "target 'is_fraud' is String; a classification target is bool or 0/1"
    ]
    assert model_column_problems(SPEC, schema | {"is_fraud": pl.Int32}) == []
