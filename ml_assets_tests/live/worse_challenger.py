"""Train a deliberately worse challenger, headless, so the UI has failed gates to show.

Run as `python -m ml_assets_tests.live.worse_challenger` with `ML_ASSETS_HOME` pointing at a
home that already has a champion (after `ml-assets run`). It runs the `fraud_train` job with a
one-tree, depth-one model into that home's Dagster instance and prints one JSON line:
`{"run_id": ..., "success": ..., "checks": {check name: passed}}`.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from ml_assets.cli import prepare_dagster_home
from ml_assets.definitions import build_definitions
from ml_assets.settings import load_settings

CANDIDATE_OP = "fraud__models__fraud_detector_candidate"
# The launchpad config a user would paste: one boosting iteration of depth one cannot reach
# the spec's floors, nor come near the champion.
WORSE_CONFIG = {"ops": {CANDIDATE_OP: {"config": {"params": {"max_iter": 1, "max_depth": 1}}}}}


def main() -> int:
    settings = load_settings()
    prepare_dagster_home(settings)  # DAGSTER_HOME: the same instance `ml-assets dev` shows
    job = build_definitions(settings).resolve_job_def("fraud_train")
    result = job.execute_in_process(
        run_config=WORSE_CONFIG, instance=dg.DagsterInstance.get(), raise_on_error=False
    )
    checks = {
        event.event_specific_data.check_name: event.event_specific_data.passed
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    print(json.dumps({"run_id": result.run_id, "success": result.success, "checks": checks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
