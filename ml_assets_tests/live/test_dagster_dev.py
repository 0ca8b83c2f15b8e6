"""The README's main command, live: `ml-assets dev` picks demo data up through the sensors."""

import os
import socket
import subprocess

import pytest

from ml_assets_tests.live.dagster_dev import BIN, dagster_dev

pytestmark = pytest.mark.slow

PARTITIONS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed } }
  }
}
"""
RUNS = """
{ runsOrError { ... on Runs { results { runId status jobName tags { key value } } } } }
"""


def test_sensors_ingest_demo_data_and_build_features(tmp_path):
    env = {"ML_ASSETS_HOME": str(tmp_path / "home")}
    subprocess.run(
        [str(BIN / "ml-assets"), "demo-data", "--days", "3", "--rows-per-day", "300"],
        env={**os.environ, **env},
        check=True,
    )
    with dagster_dev(env, tmp_path / "dagster_dev.log") as server:

        def materialized(path):
            node = server.graphql(PARTITIONS, {"path": path})["assetNodeOrError"]
            return node["partitionStats"]["numMaterialized"]

        def finished_runs():
            runs = server.graphql(RUNS)["runsOrError"]["results"]
            done = {"SUCCESS", "FAILURE", "CANCELED"}
            if runs and all(r["status"] in done for r in runs):
                return runs
            return None

        runs = server.wait_until(finished_runs, timeout=240, what="both sensors' runs to finish")
        assert all(r["status"] == "SUCCESS" for r in runs), runs
        sensor_runs = [r for r in runs if any(t["key"] == "dagster/sensor_name" for t in r["tags"])]
        assert len(sensor_runs) == len(runs)
        # Listed under the ingest job (not Dagster's hidden __ASSET_JOB), with its tags.
        assert {r["jobName"] for r in sensor_runs} == {"fraud_ingest"}, runs
        for run in sensor_runs:
            assert {"key": "ml_assets/pipeline", "value": "fraud"} in run["tags"], run
        for path in (
            ["raw", "transactions"],
            ["raw", "customers"],
            ["features", "transaction_features"],
        ):
            assert materialized(["fraud", *path]) == 3, path
    # Run history is kept in the project's instance, not in a temporary folder.
    assert list((tmp_path / "home" / "dagster_home" / "history").glob("runs*"))


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    """`dagster dev` itself would print the URL, fail to bind, and keep its daemon running."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = subprocess.run(
            [str(BIN / "ml-assets"), "dev", "--port", str(port)],
            env={**os.environ, "ML_ASSETS_HOME": str(tmp_path / "home")},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert started.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in started.stderr
    assert f"make run PORT={port + 1}" in started.stderr
    assert not (tmp_path / "home" / "dagster_home").exists()  # nothing was started
