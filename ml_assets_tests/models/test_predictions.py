"""Batch predictions with the champion, and the REST endpoint that serves it."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import polars as pl
import pytest

from ml_assets.tracking.scoring_model import conform_to_signature
from ml_assets_tests.automation.ticks import Ticks
from ml_assets_tests.live.dagster_dev import free_port
from ml_assets_tests.models.conftest import KEYS, LAST_DAY, _range

FEATURES = "fraud/features/transaction_features"
PREDICTIONS = "fraud/predictions/fraud_detector"


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return str(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)


def test_without_a_champion_scoring_fails_with_a_clear_message_and_writes_nothing(deployment):
    result = deployment.score(LAST_DAY)
    assert not result.success
    assert "no champion for fraud_detector yet" in _failure(result)
    assert not (Path(deployment.settings.lake_root) / PREDICTIONS).exists()


def test_predictions_are_the_champion_scores_with_version_and_time(deployment):
    assert deployment.train().success
    assert deployment.score(LAST_DAY).success

    lake = deployment.settings.lake_root
    predictions = pl.read_delta(f"{lake}/{PREDICTIONS}")
    features = pl.read_delta(f"{lake}/{FEATURES}").filter(pl.col("event_date") == LAST_DAY)
    assert predictions.height == features.height
    assert predictions["model_version"].unique().to_list() == [1]
    assert predictions["model_name"].unique().to_list() == ["fraud_detector"]
    assert predictions["scored_at"].null_count() == 0

    # The same rows scored by loading the champion from the registry directly.
    mlflow.set_tracking_uri(deployment.settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model("models:/fraud_detector@champion")
    inputs = features.select(model.metadata.get_input_schema().input_names()).to_pandas()
    expected = features.select("event_id").with_columns(pl.Series("score", model.predict(inputs)))
    joined = predictions.join(expected, on="event_id", suffix="_direct")
    assert joined.height == features.height
    assert (joined["score"] - joined["score_direct"]).abs().max() < 1e-12
    assert set(predictions["predicted_label"].unique().to_list()) <= {0, 1}


def _scored_rows(deployment, n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train a champion, score the last day, and return `n` of its feature rows with their batch
    predictions; MLflow is pointed at the deployment's store."""
    assert deployment.train().success
    assert deployment.score(LAST_DAY).success
    lake = deployment.settings.lake_root
    rows = pl.read_delta(f"{lake}/{FEATURES}").filter(pl.col("event_date") == LAST_DAY).head(n)
    batch = pl.read_delta(f"{lake}/{PREDICTIONS}").join(rows.select("event_id"), on="event_id")
    mlflow.set_tracking_uri(deployment.settings.mlflow_tracking_uri)
    return rows, batch


# Loads the champion and scores rows in a Python where `ml_assets` cannot be imported, as on a
# serving endpoint that only installed the model's requirements.
_SCORE_WITHOUT_ML_ASSETS = """
import importlib.abc, json, sys
class NoMlAssets(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "ml_assets":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoMlAssets())
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/fraud_detector@champion")
rows = pd.read_parquet(sys.argv[2])
print(json.dumps({
    "scores": model.predict(rows).tolist(),
    "ml_assets_loaded": [m for m in sys.modules if m.split(".")[0] == "ml_assets"],
}))
"""


def test_the_registered_champion_scores_without_the_ml_assets_package(deployment, tmp_path):
    """The registry's model is self-contained: its code, the scoring contract and the fitted
    pipeline travel with it, so it scores wherever its pip requirements are installed."""
    rows, batch = _scored_rows(deployment, 50)
    # Every requirement pinned to the training environment's version, cloudpickle included (it
    # reads the pipeline back): an endpoint that installs them scores like batch scoring.
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/fraud_detector@champion"))
    pins = dict(line.split("==") for line in requirements.read_text().split())
    assert {"mlflow", "scikit-learn", "polars", "pandas", "numpy", "cloudpickle"} <= set(pins)
    assert pins["pandas"] == pd.__version__
    schema = mlflow.pyfunc.load_model("models:/fraud_detector@champion").metadata
    conform_to_signature(rows, schema.get_input_schema()).to_parquet(tmp_path / "rows.parquet")

    done = subprocess.run(
        [sys.executable, "-c", _SCORE_WITHOUT_ML_ASSETS, deployment.settings.mlflow_tracking_uri,
         str(tmp_path / "rows.parquet")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["ml_assets_loaded"] == []
    scored = rows.select("event_id").with_columns(pl.Series("standalone", answer["scores"]))
    compared = batch.join(scored, on="event_id")
    assert compared.height == 50
    assert (compared["score"] - compared["standalone"]).abs().max() < 1e-9


def test_scoring_days_without_features_fails_naming_them_and_writes_nothing(deployment):
    assert deployment.train().success
    assert deployment.score(LAST_DAY).success
    lake = deployment.settings.lake_root
    before = pl.read_delta(f"{lake}/{PREDICTIONS}")
    day_after = LAST_DAY + dt.timedelta(days=1)

    # A range reaching two days past the last day with features.
    result = deployment.materialize(
        [KEYS.predictions], tags=_range(LAST_DAY, LAST_DAY + dt.timedelta(days=2))
    )
    assert not result.success
    message = _failure(result)
    assert f"cannot score {day_after}..{day_after + dt.timedelta(days=1)}:" in message
    assert "was never materialized for these 2 days" in message
    # The day with features was not rewritten either.
    assert pl.read_delta(f"{lake}/{PREDICTIONS}").equals(before)


def test_a_day_materialized_without_rows_is_scored_empty(deployment):
    """No events that day: the feature partition exists, empty, and scoring it succeeds."""
    assert deployment.train().success
    day_after = (LAST_DAY + dt.timedelta(days=1)).isoformat()
    features = dg.AssetKey.from_user_string(FEATURES)
    with dg.instance_for_test() as instance:
        # A real feature run for a day without raw rows (its blocking not_empty check fails,
        # after the empty partition was written).
        deployment.materialize([features], partition_key=day_after, instance=instance)
        assert day_after in instance.get_materialized_partitions(features)
        result = deployment.materialize(
            [KEYS.predictions], partition_key=day_after, instance=instance
        )
    assert result.success
    [scored] = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == KEYS.predictions
    ]
    assert scored.partition == day_after
    assert scored.metadata["dagster/row_count"].value == 0


def test_scoring_waits_for_a_champion_then_reacts_to_new_feature_partitions(deployment):
    """The automation condition: a new feature partition is scored once a champion exists."""
    node = deployment.defs.resolve_asset_graph().get(KEYS.predictions)
    assert node.automation_condition is not None
    instance = dg.DagsterInstance.ephemeral()
    defs = deployment.defs
    features = dg.AssetKey(["fraud", "features", "transaction_features"])

    requested = Ticks(defs, instance, KEYS.predictions).partitions

    # New feature partitions but no champion materialized yet: nothing to score.
    for day in ("2026-01-29", "2026-01-30"):
        instance.report_runless_asset_event(dg.AssetMaterialization(features, partition=day))
    assert requested() == set()

    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.champion))
    # A real run of the feature partition with its blocking quality checks, which pass.
    run = deployment.materialize(
        dg.AssetSelection.assets(features), partition_key="2026-01-30", instance=instance
    )
    assert run.success
    assert requested() == {"2026-01-30"}
    # Handled: the next tick asks for nothing more.
    assert requested() == set()


@pytest.mark.slow
def test_the_served_champion_answers_like_batch_predictions(deployment, tmp_path):
    rows, batch = _scored_rows(deployment, 25)
    columns = (
        mlflow.pyfunc.load_model("models:/fraud_detector@champion")
        .metadata.get_input_schema()
        .input_names()
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "ml-assets"), "serve", "--port", str(port)],
        env={**os.environ, "ML_ASSETS_HOME": str(deployment.settings.home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        body = json.dumps(
            {"dataframe_split": {"columns": columns, "data": rows.select(columns).rows()}}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "serve.log").read_text()[-2000:]) from None
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    served = rows.select("event_id").with_columns(pl.Series("served", answer["predictions"]))
    compared = batch.join(served, on="event_id")
    assert compared.height == 25
    assert (compared["score"] - compared["served"]).abs().max() < 1e-9
    assert "Downloading artifacts" not in (tmp_path / "serve.log").read_text()  # no progress bars
