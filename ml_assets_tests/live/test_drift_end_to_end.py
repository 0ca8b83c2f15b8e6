"""Issue #4, done when: drift found and acted on by `ml-assets dev` itself, observed over GraphQL.

Demo data with drift injected from DRIFT_FROM arrives in two deliveries, as from an upstream
system. The history lands first; the landing sensor ingests it and builds the features, and the
user launches `fraud_train` (README, step 2): candidate → validation gates → champion. Meanwhile
the newest days land (README, step 4). From there nothing is launched by hand: the landing
sensor ingests them once the training is done (one run per pipeline at a time), the automation
sensor scores them with the new champion and monitors their drift, the
drift check passes on the days before DRIFT_FROM and fails on the days after, the retrain sensor
launches `fraud_train`, and the notification sensor posts the champion change and the failed
drift check to a webhook on 127.0.0.1.

Small on purpose (CI budget: 3 minutes on two cores): 600 rows a day, a 6 + 4 day training
window after the features' 5-day ramp-up, and four new days.
"""

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest
import yaml

from ml_assets.demo.generate import write_demo_data
from ml_assets.settings import DEMO_PIPELINE_SPEC
from ml_assets_tests.live.dagster_dev import WebhookReceiver, dagster_dev

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

# Days counted back from yesterday, so every day is a partition that already exists.
HISTORY_DAYS, NEW_DAYS = 15, 4
FIRST = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS + NEW_DAYS)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(HISTORY_DAYS + NEW_DAYS)]
HISTORY, NEW = DAYS[:HISTORY_DAYS], DAYS[HISTORY_DAYS:]
DRIFT_FROM = NEW[2]  # two undrifted new days, then two drifted ones
UNDRIFTED_NEW = [d.isoformat() for d in NEW if d < DRIFT_FROM]
DRIFTED = [d.isoformat() for d in NEW if d >= DRIFT_FROM]

FEATURES = ["fraud", "features", "transaction_features"]
PREDICTIONS = ["fraud", "predictions", "fraud_detector"]
DRIFT = ["fraud", "monitoring", "fraud_detector_drift"]
CHAMPION = ["fraud", "models", "fraud_detector_champion"]
# Tags a user might put on a run in the Launchpad: the credential-like one must never leave.
LAUNCH_TAGS = {"team": "fraud-ml", "db_password": "hunter2-Secret!"}

MATERIALIZATIONS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetMaterializations(limit: 100) {
        runId partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on BoolMetadataEntry { boolValue }
        }
      }
    }
  }
}
"""
CHECK_EXECUTIONS = """
query ($path: [String!]!, $check: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: 50) {
    runId status partition
    evaluation { description }
  }
}
"""


def _spec(tmp_path: Path) -> Path:
    """The demo spec with a window that fits the small data; retraining only on drift."""
    spec = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    spec["model"]["window"] = {"train_days": 6, "holdout_days": 4}
    # Settle for 20 s after an ingestion, not 60: still past the landing sensor's next tick.
    spec["model"]["retrain"] = {"after_new_partitions": 0, "ingestion_settle_seconds": 20}
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _deliver(source: Path, landing: Path, days: list[dt.date]) -> None:
    for feed in ("transactions", "customers"):
        (landing / feed).mkdir(parents=True, exist_ok=True)
        for day in days:
            file = source / feed / f"{day.isoformat()}.csv"
            if file.exists():  # a quiet day may have no customer changes
                shutil.copy(file, landing / feed / file.name)


def test_drift_is_detected_and_retrains_the_model_by_itself(tmp_path):
    started = time.monotonic()
    home = tmp_path / "home"
    source = tmp_path / "upstream"
    write_demo_data(
        source, start=FIRST, days=len(DAYS), rows_per_day=600, seed=42, drift_from=DRIFT_FROM
    )
    landing = home / "landing" / "fraud"
    _deliver(source, landing, HISTORY)

    with WebhookReceiver() as webhook:
        env = {
            "ML_ASSETS_HOME": str(home),
            "ML_ASSETS_PIPELINES": str(_spec(tmp_path)),
            "ML_ASSETS_WEBHOOK_URL": webhook.url,
        }
        with dagster_dev(env, tmp_path / "dagster_dev.log") as server:
            phases = {"webserver up": time.monotonic() - started}

            def materializations(path: list[str]) -> list[dict]:
                node = server.graphql(MATERIALIZATIONS, {"path": path})["assetNodeOrError"]
                return [
                    {
                        **m,
                        "metadata": {
                            e["label"]: e.get("intValue", e.get("boolValue"))
                            for e in m["metadataEntries"]
                        },
                    }
                    for m in node["assetMaterializations"]
                ]

            def partitions(path: list[str]) -> set[str]:
                return {m["partition"] for m in materializations(path)}

            def sensor_runs(sensor: str) -> list[dict]:
                return [r for r in server.runs() if r["tags"].get("dagster/sensor_name") == sensor]

            # 1. The landing sensor ingests the history and builds its features.
            server.wait_until(
                lambda: partitions(FEATURES) == {d.isoformat() for d in HISTORY},
                timeout=120,
                interval=1,
                what="the history's features",
            )
            [ingest] = sensor_runs("fraud_landing")
            assert server.wait_for_run(ingest["runId"], timeout=60)["status"] == "SUCCESS"
            phases["history ingested"] = time.monotonic() - started
            # The user trains right away: even if the first champion lands on the same automation
            # tick as the history's features, that history is not scored (it was written first).
            # 2. The user trains the first model (README, step 2).
            train = server.launch_job("fraud_train", tags=LAUNCH_TAGS)
            # 3. New days land while it trains. Everything from here on runs by itself. One run
            # per pipeline at a time (dagster.yaml): their ingestion waits for the training.
            _deliver(source, landing, NEW)
            assert server.wait_for_run(train, timeout=120)["status"] == "SUCCESS"
            [promoted] = materializations(CHAMPION)
            assert promoted["metadata"]["changed"] is True
            assert promoted["metadata"]["champion_version"] == 1
            phases["first champion"] = time.monotonic() - started

            def retrain_runs() -> list[dict]:
                return sensor_runs("fraud_fraud_detector_retrain")

            [retrain] = server.wait_until(
                retrain_runs, timeout=150, interval=1, what="the retrain after the drift"
            )
            phases["retrain launched"] = time.monotonic() - started

            # The landing sensor ingested the new days (after the training: one run at a time)...
            ingests = sensor_runs("fraud_landing")
            assert len(ingests) >= 2, ingests
            assert all(r["status"] == "SUCCESS" for r in ingests), ingests
            assert partitions(FEATURES) == {d.isoformat() for d in DAYS}
            # ...the automation sensor scored exactly the new days (history is not rescored:
            # it landed before there was a champion) and monitored their drift.
            new = {d.isoformat() for d in NEW}
            server.wait_until(
                lambda: partitions(PREDICTIONS) == new and partitions(DRIFT) == new,
                timeout=60,
                interval=1,
                what="the new days scored and monitored",
            )
            assert partitions(PREDICTIONS) == new, "the history is not scored"
            automated = [
                r
                for r in server.runs()
                if r["tags"].get("dagster/sensor_name") == "fraud_automation"
                or "dagster/backfill" in r["tags"]
            ]
            assert automated and all(r["status"] == "SUCCESS" for r in automated), automated
            assert all(r["tags"].get("ml_assets/pipeline") == "fraud" for r in automated)
            # The drift check: one verdict per day, passed before the drift, failed after it.
            executions = server.graphql(
                CHECK_EXECUTIONS, {"path": DRIFT, "check": "no_feature_drift"}
            )["assetCheckExecutions"]
            by_day = {e["partition"]: e for e in executions if e["partition"]}
            assert sorted(by_day) == sorted(d.isoformat() for d in NEW), executions
            assert {d for d, e in by_day.items() if e["status"] == "SUCCEEDED"} == set(
                UNDRIFTED_NEW
            ), executions
            assert {d for d, e in by_day.items() if e["status"] == "FAILED"} == set(DRIFTED)
            for day in DRIFTED:
                assert "amount" in by_day[day]["evaluation"]["description"]
            # The retrain: the train job, started because the drift check failed. It runs on
            # after the test: shutting down interrupts it, as Ctrl-C would.
            assert retrain["jobName"] == "fraud_train"
            assert retrain["tags"]["ml_assets/retrain_reason"] == "drift check failed"

            # 4. The webhook got the champion change and the failed drift check.
            def delivered():
                changes = webhook.of_kind("champion_change")
                drift = [
                    p
                    for p in webhook.of_kind("check_failure")
                    if p["ml_assets"]["check"] == "no_feature_drift"
                ]
                return (changes, drift) if changes and drift else None

            changes, drift = server.wait_until(
                delivered, timeout=60, interval=1, what="the webhook messages"
            )
            phases["messages delivered"] = time.monotonic() - started
        phases["shut down"] = time.monotonic() - started

    first = next(p for p in changes if p["ml_assets"]["run_id"] == train)
    assert first["ml_assets"]["new_version"] == 1
    assert first["ml_assets"]["previous_version"] is None
    assert first["ml_assets"]["job"] == "fraud_train"
    assert first["ml_assets"]["tags"]["team"] == "fraud-ml"
    [alarm] = drift  # one message for the run, not one per day
    assert alarm["ml_assets"]["asset"] == "fraud/monitoring/fraud_detector_drift"
    assert alarm["ml_assets"]["severity"] == "ERROR"
    # What failed, where and how much: the drifted days and features, not the undrifted days.
    details = alarm["blocks"][1]["text"]["text"]
    assert all(day in details for day in DRIFTED), details
    assert not any(day in details for day in UNDRIFTED_NEW), details
    assert "amount" in details and "<function" not in details
    # No other failure: every run of this deployment succeeded.
    assert webhook.of_kind("run_failure") == []
    for payload in webhook.payloads:
        # Slack-compatible: a fallback text and header / section / context blocks.
        assert payload["text"].startswith("*")
        assert [b["type"] for b in payload["blocks"]][:3] == ["header", "section", "context"]
        body = str(payload)
        assert "hunter2" not in body and "db_password" not in body
        assert "/services/" not in body  # the webhook's secret path
        assert not any(key.startswith(".") for key in payload["ml_assets"]["tags"])
    # Every message is about this deployment's runs, and nothing is reported twice.
    keys = [
        (p["ml_assets"]["kind"], p["ml_assets"]["run_id"], p["ml_assets"].get("check"))
        for p in webhook.payloads
    ]
    assert len(keys) == len(set(keys)), keys
    print({k: round(v, 1) for k, v in phases.items()}, f"total {time.monotonic() - started:.1f}s")
