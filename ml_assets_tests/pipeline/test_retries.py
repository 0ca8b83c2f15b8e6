"""Retries: transient failures of the systems an asset touches are retried with back-off;
failures that would repeat are not."""

import datetime as dt
import threading
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.pipeline.keys import EXTERNAL_RETRY, raw_key
from ml_assets.pipeline.raw import build_raw_asset
from ml_assets.pipeline.spec import parse_spec

DAY = dt.date(2026, 1, 5)
SPEC = {
    "name": "shop",
    "start_date": "2026-01-01",
    "sources": {
        "sales": {
            "format": "csv",
            "event_time": "ts",
            "primary_key": ["id"],
            "min_file_age_seconds": 0,
            "columns": {"id": "string", "ts": "datetime", "amount": "float"},
        }
    },
}


def _event_types(result: dg.ExecuteInProcessResult) -> list[dg.DagsterEventType]:
    return [event.event_type for event in result.all_events]


def test_assets_that_touch_other_systems_carry_the_retry_policy(settings):
    defs = build_definitions(settings)
    policies = {
        key.to_user_string(): assets_def.op.retry_policy
        for assets_def in defs.assets
        if isinstance(assets_def, dg.AssetsDefinition)
        for key in assets_def.keys
    }
    touching = [
        "fraud/raw/transactions",  # landing storage; Databricks in dev/prod
        "fraud/raw/customers",
        "fraud/models/fraud_detector_candidate",  # MLflow
        "fraud/reports/fraud_detector_validation",
        "fraud/models/fraud_detector_champion",
        "fraud/predictions/fraud_detector",
        "fraud/monitoring/fraud_detector_drift",
    ]
    assert {key: policies[key] for key in touching} == dict.fromkeys(touching, EXTERNAL_RETRY)


def _landing_file(settings, spec) -> None:
    folder = spec.landing_folder("sales", settings.landing_root)
    folder.mkdir(parents=True)
    (folder / f"{DAY}.csv").write_text(f"id,ts,amount\na,{DAY}T08:00:00,1.5\n")


def test_storage_that_is_back_after_a_moment_gets_the_partition_written(settings):
    """The lake root is unusable (a file where its folder belongs) on the first attempt and
    fixed a moment later, as after a network share reconnects: the retry writes the day."""
    spec = parse_spec(SPEC, base_dir=Path("."))
    _landing_file(settings, spec)
    lake = Path(settings.lake_root)
    lake.parent.mkdir(parents=True, exist_ok=True)
    lake.write_text("not a folder")
    fixer = threading.Timer(2.0, lake.unlink)
    fixer.start()
    try:
        result = dg.materialize(
            [build_raw_asset(spec, "sales", settings.landing_root)],
            resources=build_resources(settings),
            partition_key=DAY.isoformat(),
        )
    finally:
        fixer.join()
    assert result.success
    assert _event_types(result).count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1
    [materialization] = result.asset_materializations_for_node("shop__raw__sales")
    assert materialization.asset_key == raw_key(spec, "sales")


@pytest.mark.parametrize("content", ["", 'id,ts,amount\n"a,2026-01-05T08:00:00,1.5\n'])
def test_a_bad_file_fails_at_once_without_retries(settings, content):
    spec = parse_spec(SPEC, base_dir=Path("."))
    _landing_file(settings, spec)
    (spec.landing_folder("sales", settings.landing_root) / f"{DAY}.csv").write_text(content)
    result = dg.materialize(
        [build_raw_asset(spec, "sales", settings.landing_root)],
        resources=build_resources(settings),
        partition_key=DAY.isoformat(),
        raise_on_error=False,
    )
    assert not result.success
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in _event_types(result)
