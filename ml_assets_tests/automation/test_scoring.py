"""Which feature days the automation sensor scores, evaluated tick by tick on real runs.

The landing sensor ingests several days at once as one range run. Dagster records such a run's
check result without a partition, so each day also needs its own verdict: otherwise
`all_deps_blocking_checks_passed()` never sees the days pass and they are never scored.
"""

import datetime as dt

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.pipeline.keys import model_keys
from ml_assets.pipeline.monitoring import drift_key
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings
from ml_assets_tests.automation.ticks import Ticks
from ml_assets_tests.conftest import DEMO_START
from ml_assets_tests.models.conftest import _range

SPEC = load_spec(DEMO_PIPELINE_SPEC)
KEYS = model_keys(SPEC)
DAYS = [DEMO_START + dt.timedelta(days=i) for i in range(6)]
HISTORY, LATER = DAYS[:3], DAYS[3:]


@pytest.fixture
def deployment(tmp_path):
    settings = load_settings({"ML_ASSETS_HOME": str(tmp_path / "home")})
    write_demo_data(
        settings.landing_root / "fraud", start=DEMO_START, days=len(DAYS), rows_per_day=60, seed=3
    )
    return settings, build_definitions(settings), dg.DagsterInstance.ephemeral()


def _ingest(settings, defs, instance, days: list[dt.date]) -> None:
    """What the landing sensor launches for several new days: one range run with its checks."""
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=build_resources(settings),
        selection=dg.AssetSelection.groups("raw", "features"),
        tags=_range(days[0], days[-1]),
        instance=instance,
    )
    assert result.success


def _promote(instance: dg.DagsterInstance) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(KEYS.champion))


def test_days_ingested_in_one_run_after_the_first_champion_are_scored_history_is_not(
    deployment,
):
    settings, defs, instance = deployment
    tick = Ticks(defs, instance, KEYS.predictions).partitions

    assert tick() == set()
    _ingest(settings, defs, instance, HISTORY)
    assert tick() == set(), "no champion yet"
    _promote(instance)
    # The first champion does not score the history it was trained on.
    assert tick() == set()

    _ingest(settings, defs, instance, LATER)
    # Each day of the range run passed its blocking checks on its own: all of them are scored.
    assert tick() == {d.isoformat() for d in LATER}
    assert tick() == set(), "requested once"


def test_history_landing_in_the_same_tick_as_the_first_champion_is_not_scored(deployment):
    """A quick first training: the history's features and the first champion are both new on
    one tick. The history must still not be scored (nor flagged as drifted)."""
    settings, defs, instance = deployment
    tick = Ticks(defs, instance, KEYS.predictions).partitions

    assert tick() == set()
    _ingest(settings, defs, instance, HISTORY)
    _promote(instance)
    assert tick() == set()

    _ingest(settings, defs, instance, LATER)
    assert tick() == {d.isoformat() for d in LATER}


def test_new_days_landing_in_the_same_tick_as_a_later_champion_are_scored(deployment):
    """New days whose ingestion queued behind a retrain land on the tick its champion does."""
    settings, defs, instance = deployment
    tick = Ticks(defs, instance, KEYS.predictions).partitions

    assert tick() == set()
    _ingest(settings, defs, instance, HISTORY)
    assert tick() == set()
    _promote(instance)
    assert tick() == set()

    _ingest(settings, defs, instance, LATER)
    _promote(instance)
    assert tick() == {d.isoformat() for d in LATER}


def _score(instance: dg.DagsterInstance, days: list[dt.date]) -> None:
    for day in days:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(KEYS.predictions, partition=day.isoformat())
        )


def test_history_scored_on_request_is_not_monitored_new_days_are(deployment):
    """Scoring the history by hand (`fraud_score`) must not monitor it: its first days have
    empty lookback features and would all be flagged as drifted, which starts a retrain."""
    settings, defs, instance = deployment
    tick = Ticks(defs, instance, drift_key(SPEC)).partitions

    assert tick() == set()
    _ingest(settings, defs, instance, HISTORY)
    _promote(instance)
    _score(instance, HISTORY)
    assert tick() == set()

    _ingest(settings, defs, instance, LATER)
    _score(instance, LATER)
    assert tick() == {d.isoformat() for d in LATER}
    assert tick() == set(), "requested once"
