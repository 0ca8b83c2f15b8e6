"""`ml-assets mlflow-ui` serves the deployment's own tracking store, on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ml_assets_tests.live.dagster_dev import free_port

pytestmark = pytest.mark.slow


def _get_json(url: str, deadline: float, server: subprocess.Popen, log: Path) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError(log.read_text()[-2000:]) from None
            time.sleep(1)


def test_mlflow_ui_shows_the_runs_of_the_project_store(settings, tmp_path):
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.create_experiment("shop")
    run = client.create_run(experiment, run_name="first training")
    client.log_metric(run.info.run_id, "roc_auc", 0.81)

    port = free_port()
    log = tmp_path / "mlflow-ui.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "ml-assets"), "mlflow-ui", "--port", str(port)],
        env={**os.environ, "ML_ASSETS_HOME": str(settings.home)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        query = urllib.parse.urlencode({"experiment_name": "shop"})
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        found = _get_json(
            f"{base}/experiments/get-by-name?{query}", time.monotonic() + 90, server, log
        )
        assert found["experiment"]["experiment_id"] == experiment
        # The same run through the server, as the UI's pages fetch it.
        [shown] = MlflowClient(f"http://127.0.0.1:{port}").search_runs([experiment])
        assert shown.info.run_name == "first training"
        assert shown.data.metrics == {"roc_auc": 0.81}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # One server process, without its dependencies' deprecation warnings at every start.
    output = log.read_text()
    assert output.count("Started server process") == 1, output
    assert "DeprecationWarning" not in output, output
