"""Gates, promotion and rollback: a worse or leaky model never becomes champion."""

import math
import textwrap

import dagster as dg
import polars as pl
import yaml
from mlflow.tracking import MlflowClient

from ml_assets.definitions import build_definitions
from ml_assets.pipeline.validation import gate_verdicts
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings
from ml_assets.tracking.registry import CHAMPION
from ml_assets_tests.models.conftest import KEYS, SPEC, Deployment


def _champion(deployment) -> int:
    client = MlflowClient(tracking_uri=deployment.settings.mlflow_tracking_uri)
    return int(client.get_model_version_by_alias("fraud_detector", CHAMPION).version)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def _audit(deployment) -> pl.DataFrame:
    return pl.read_delta(f"{deployment.settings.lake_root}/fraud/audit/model_promotions").sort("at")


def test_a_worse_challenger_is_refused_and_the_champion_stays(deployment):
    assert deployment.train().success
    # A single one-split tree: far worse than the champion.
    worse = deployment.train(params={"max_iter": 1, "max_depth": 1})

    assert _checks(worse)["not_worse_than_champion"] is False
    assert not any(
        e.materialization.asset_key == KEYS.champion
        for e in worse.get_asset_materialization_events()
    ), "the blocking gate must stop promotion in the same run"
    assert _champion(deployment) == 1
    assert _audit(deployment).height == 1

    # Materializing the champion alone, in another run, is refused too.
    again = deployment.materialize([KEYS.champion])
    assert not again.success
    failure = next(e for e in again.all_events if e.is_step_failure)
    assert "not_worse_than_champion" in str(failure.step_failure_data.error)
    assert _champion(deployment) == 1


def test_a_better_challenger_replaces_the_champion_with_an_audit_record(deployment):
    assert deployment.train(params={"max_iter": 6, "max_depth": 2, "learning_rate": 0.1}).success
    assert deployment.train().success  # the spec's 100 rounds beat 6 shallow ones

    assert _champion(deployment) == 2
    audit = _audit(deployment)
    assert audit.select("action", "from_version", "to_version").rows() == [
        ("promote", None, 1),
        ("promote", 1, 2),
    ]
    client = MlflowClient(tracking_uri=deployment.settings.mlflow_tracking_uri)
    tags = client.get_model_version("fraud_detector", "2").tags
    assert tags["champion_previous_version"] == "1"
    assert tags["gate.not_worse_than_champion"] == "passed"


def test_rollback_moves_the_champion_back_is_audited_and_holds(deployment):
    assert deployment.train(params={"max_iter": 6, "max_depth": 2, "learning_rate": 0.1}).success
    assert deployment.train().success
    job = deployment.defs.resolve_job_def("fraud_fraud_detector_rollback")
    op = "fraud_fraud_detector_rollback_op"

    result = job.execute_in_process(
        run_config={"ops": {op: {"config": {"version": 1, "reason": "alerts up after v2"}}}},
        resources=deployment.resources,
    )
    assert result.success
    assert _champion(deployment) == 1
    last = _audit(deployment).row(-1, named=True)
    assert (last["action"], last["from_version"], last["to_version"]) == ("rollback", 2, 1)
    assert last["reason"] == "alerts up after v2"

    # The UI shows the champion asset's latest materialization: it names the rolled-back-to
    # version, not the one rolled back from.
    [shown] = [
        e.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    assert shown.asset_key == KEYS.champion
    assert shown.metadata["champion_version"].value == 1
    assert shown.metadata["action"].value == "rollback"

    unknown = job.execute_in_process(
        run_config={"ops": {op: {"config": {"version": 9, "reason": "typo"}}}},
        resources=deployment.resources,
        raise_on_error=False,
    )
    assert not unknown.success
    assert _champion(deployment) == 1

    # The rollback holds: a retrain that passes every gate is registered, not promoted...
    held = deployment.train()
    assert held.success
    [champion] = [
        e.materialization
        for e in held.get_asset_materialization_events()
        if e.materialization.asset_key == KEYS.champion
    ]
    assert champion.metadata["changed"].value is False
    assert champion.metadata["held_by_rollback"].value.startswith("version 1 (rollback by run")
    assert _champion(deployment) == 1
    # ...until a promotion lifts the hold.
    released = deployment.materialize(
        [KEYS.champion],
        run_config={
            "ops": {"fraud__models__fraud_detector_champion": {"config": {"release_hold": True}}}
        },
    )
    assert released.success
    assert _champion(deployment) == 3
    released_row = _audit(deployment).row(-1, named=True)
    assert released_row["action"] == "promote"
    assert "released the hold at version 1 (rollback by run" in released_row["reason"]
    [promoted] = [
        e.materialization
        for e in released.get_asset_materialization_events()
        if e.materialization.asset_key == KEYS.champion
    ]
    assert promoted.metadata["released_hold"].value.startswith("version 1")
    assert deployment.train().success  # and later retrains promote again
    assert _champion(deployment) == 4


LEAKY_FEATURES = """
import narwhals as nw
from ml_assets.pipelines.fraud.features import transaction_features

def leaky(transactions, customers, **params):
    # "chargeback_flag" is filled in after the fact: it is the label under another name.
    out = transaction_features(transactions, customers, **params)
    return out.with_columns(nw.col("is_fraud").alias("chargeback_flag"))
"""


def test_a_leaky_feature_is_caught_by_name(demo_home, empty_mlflow_store, tmp_path):
    spec = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    spec["features"]["transaction_features"]["function"] = "leaky.py:leaky"
    (tmp_path / "leaky.py").write_text(textwrap.dedent(LEAKY_FEATURES))
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    settings = load_settings(
        {
            "ML_ASSETS_HOME": str(home),
            "ML_ASSETS_LANDING_ROOT": str(demo_home / "landing"),
            "ML_ASSETS_PIPELINES": str(tmp_path / "fraud.yaml"),
        }
    )
    deployment = Deployment(settings, build_definitions(settings))
    assert deployment.materialize(
        dg.AssetSelection.groups("raw", "features"),
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-30",
        },
    ).success

    result = deployment.train()

    assert _checks(result)["no_leakage"] is False
    evaluation = next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "no_leakage"
    )
    assert "chargeback_flag" in evaluation.metadata["leaky_features"].value
    assert not any(
        e.materialization.asset_key == KEYS.champion
        for e in result.get_asset_materialization_events()
    )


def test_an_undefined_holdout_metric_fails_its_floor_saying_why():
    """A holdout with one class has no ROC AUC: the gate said `nan vs 0.7`."""
    report = {"challenger_roc_auc": math.nan, "challenger_pr_auc": 0.5, "leak_suspects": "[]"}
    passed, metadata = gate_verdicts(SPEC.model, report)["meets_minimum_metrics"]
    assert not passed
    assert metadata["failing"] == {
        "roc_auc": "undefined vs 0.7: the holdout has no rows, only one class, or one target value"
    }
