"""Freshness-driven retraining, live: `ml-assets dev` retrains a model that has gone stale.

The demo spec is copied with a 2-minute freshness window (warn after 1 minute). After one
headless run has trained the first model, the real daemon must notice the staleness and the
automation sensor must launch exactly one retrain of the candidate.
"""

import os
import subprocess

import pytest
import yaml

from ml_assets.settings import DEMO_PIPELINE_SPEC
from ml_assets_tests.live.dagster_dev import BIN, dagster_dev

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CANDIDATE = ["fraud", "models", "fraud_detector_candidate"]
MATERIALIZATIONS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { assetMaterializations(limit: 10) { runId } }
  }
}
"""
RUNS = """
{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }
"""


def test_a_stale_model_retrains_itself_once(tmp_path):
    spec = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    spec["model"]["retrain"] = {
        "max_age_hours": 2 / 60,
        "warn_after_hours": 1 / 60,
        "after_new_partitions": 0,
    }
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(spec))
    env = {
        "ML_ASSETS_HOME": str(tmp_path / "home"),
        "ML_ASSETS_PIPELINES": str(tmp_path / "fraud.yaml"),
    }
    subprocess.run(
        [str(BIN / "ml-assets"), "run", "--demo-days", "30", "--rows-per-day", "600"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )

    with dagster_dev(env, tmp_path / "dagster_dev.log") as server:

        def runs_of_candidate() -> list[str]:
            node = server.graphql(MATERIALIZATIONS, {"path": CANDIDATE})["assetNodeOrError"]
            return [m["runId"] for m in node["assetMaterializations"]]

        trained_headless = runs_of_candidate()
        assert len(trained_headless) == 1

        def retrained():
            runs = {r["runId"]: r for r in server.graphql(RUNS)["runsOrError"]["results"]}
            new = [run_id for run_id in runs_of_candidate() if run_id not in trained_headless]
            return [runs[run_id] for run_id in new] or None

        [retrain] = server.wait_until(
            retrained, timeout=240, interval=5, what="the stale model to retrain"
        )

        def finished():
            runs = server.graphql(RUNS)["runsOrError"]["results"]
            run = next(r for r in runs if r["runId"] == retrain["runId"])
            return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        retrain = server.wait_until(finished, timeout=120, what="the retrain run to finish")
        assert retrain["status"] == "SUCCESS"
        tags = {t["key"]: t["value"] for t in retrain["tags"]}
        assert tags.get("dagster/sensor_name") == "fraud_automation", tags
        assert tags.get("ml_assets/pipeline") == "fraud", tags  # listed and queued with the rest
        # Still stale-looking for a while after the request: no second retrain in the meantime.
        assert len(runs_of_candidate()) == 2
