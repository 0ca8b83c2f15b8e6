"""The README's main command, live: `ml-assets dev` picks demo data up through the sensors."""

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from ml_assets_tests.live.dagster_dev import BIN, LOCATION, REPOSITORY, dagster_dev

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


CURSOR = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { typeSpecificData { ... on SensorData { lastCursor } } } }
  }
}
"""


def _land(folder: Path, name: str, text: str) -> None:
    """Atomically, as the docs ask: the sensor ignores dot-files."""
    (folder / f".{name}").write_text(text)
    os.replace(folder / f".{name}", folder / name)


def _late_files_rebuild_later_days_only_once_ingested(server, home: Path, seen: int) -> None:
    """The real daemon, a late file for the first day: while it fails to ingest, nothing after
    it is rebuilt; once a good one is ingested, a second run rebuilds the two later days."""
    folder = home / "landing" / "fraud" / "transactions"
    first, second, third = sorted(p.name[:10] for p in folder.glob("*.csv"))
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": "fraud_landing",
    }

    def pending() -> list:
        state = server.graphql(CURSOR, {"selector": selector})["sensorOrError"]["sensorState"]
        cursor = json.loads(state["typeSpecificData"]["lastCursor"] or "{}")
        return cursor.get("pending", [])

    def new_runs(count: int):
        runs = server.runs()
        done = len(runs) >= seen + count and all(
            r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs
        )
        return runs[: len(runs) - seen] if done else None

    _land(folder, f"{first}_late.csv", 'event_id,customer_id\n"unterminated,c2\n')
    [failed] = server.wait_until(lambda: new_runs(1), timeout=120, what="the late file's run")
    assert failed["status"] == "FAILURE" and failed["tags"]["dagster/partition"] == first
    # The sensor drops the rebuild it was keeping for the failed day, and requests nothing.
    server.wait_until(lambda: pending() == [], timeout=60, what="the sensor to drop the rebuild")
    assert len(server.runs()) == seen + 1

    good = (folder / f"{first}.csv").read_text()
    _land(folder, f"{first}_late.csv", good)
    rebuild, ingest, _ = server.wait_until(lambda: new_runs(3), timeout=180, what="two runs")
    assert ingest["status"] == "SUCCESS" and ingest["tags"]["dagster/partition"] == first
    assert rebuild["status"] == "SUCCESS", rebuild
    assert rebuild["tags"]["dagster/asset_partition_range_start"] == second
    assert rebuild["tags"]["dagster/asset_partition_range_end"] == third


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

        _late_files_rebuild_later_days_only_once_ingested(server, tmp_path / "home", len(runs))
    # Run history is kept in the project's instance, not in a temporary folder.
    assert list((tmp_path / "home" / "dagster_home" / "history").glob("runs*"))
    # Without the notice, on every start, that `dg dev` supersedes `dagster dev`.
    assert "is superseded" not in (tmp_path / "dagster_dev.log").read_text()


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
