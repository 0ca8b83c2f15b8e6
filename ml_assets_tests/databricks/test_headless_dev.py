"""`ml-assets run` in the dev deployment, against the Databricks stand-in.

The raw and feature steps go through the Databricks step launcher, which rebuilds their job on
the cluster: the headless run must hand it a job it can rebuild. Configuration mistakes are
caught before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ml_assets.cli import main
from ml_assets.settings import DEMO_PIPELINE_SPEC
from ml_assets_tests.databricks.conftest import (
    DEMO_DAYS,
    DEPLOYMENT_MARKS,
    FEATURES,
    TRANSACTIONS,
    DevDeployment,
    read_table,
)

pytestmark = DEPLOYMENT_MARKS


@pytest.fixture
def without_model(dev: DevDeployment, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo pipeline without its model (training is local and covered elsewhere), its
    features on Polars (the cluster's Spark is covered by the deployment tests)."""
    spec = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    del spec["model"]
    path = dev.shared / "specs" / "fraud.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("ML_ASSETS_PIPELINES", str(path))
    monkeypatch.setenv("ML_ASSETS_ENGINE", "polars")
    return path


def test_ml_assets_run_runs_the_steps_on_databricks(
    dev: DevDeployment, without_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(dev.dbx.runs)

    assert main(["run"]) == 0, capsys.readouterr()

    out = capsys.readouterr().out
    assert "fraud_ingest (fraud/raw/transactions): 2026-01-01 .. 2026-01-08 succeeded" in out
    # One Databricks run per step: the two raw tables, then the feature table.
    new = [run for i, run in dev.dbx.runs.items() if i not in before]
    assert len(new) == 3 and all(run.result_state == "SUCCESS" for run in new), new
    # Built last, over the runs above, with what their job clusters cost.
    assert "costs/cost_report (every run of this Dagster instance so far): " in out
    assert ", job clusters " in out
    for key in (TRANSACTIONS, FEATURES):
        days = read_table(dev.table_uri(key))["event_date"].unique()
        assert days.len() == DEMO_DAYS, key


@pytest.mark.parametrize("command", [["run"], ["dev", "--port", "3479"]], ids=["run", "dev"])
def test_a_missing_token_is_named_before_anything_is_written_or_started(
    dev: DevDeployment,
    without_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.delenv("DATABRICKS_TOKEN")
    landing = dev.shared / "empty_landing"
    monkeypatch.setenv("ML_ASSETS_LANDING_ROOT", str(landing))
    monkeypatch.setenv("ML_ASSETS_HOME", str(dev.shared / "untouched_home"))

    # `dev` would otherwise serve the UI with a broken code location.
    assert main([*command, "--demo-days", "30"]) == 2

    assert "set DATABRICKS_TOKEN to a Databricks token" in capsys.readouterr().err
    # No demo payments in a shared deployment's landing folder, no instance folder either.
    assert not landing.exists()
    assert not (dev.shared / "untouched_home").exists()


def test_demo_data_is_never_written_outside_the_local_deployment(
    dev: DevDeployment, without_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ml_assets.cli import demo_data_if_missing
    from ml_assets.settings import load_settings

    monkeypatch.setenv("ML_ASSETS_LANDING_ROOT", str(dev.shared / "prod_landing"))
    monkeypatch.delenv("ML_ASSETS_PIPELINES")  # the demo pipeline, as in the worked example

    assert not demo_data_if_missing(load_settings(), days=30, rows_per_day=10)
    assert not (dev.shared / "prod_landing").exists()


def test_a_run_failing_before_any_step_says_why(
    dev: DevDeployment,
    without_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The step launcher cannot be set up (here: no credentials, which `ml-assets run` checks
    first; an expired login fails the same way): the summary gives the reason, not only FAILED."""
    from ml_assets.cli import prepare_dagster_home
    from ml_assets.headless import materialize_all
    from ml_assets.settings import load_settings

    monkeypatch.delenv("DATABRICKS_TOKEN")
    settings = load_settings()
    prepare_dagster_home(settings)

    assert materialize_all(settings) == 1

    out = capsys.readouterr().out
    assert "fraud_ingest (fraud/raw/transactions): 2026-01-01 .. 2026-01-08 FAILED" in out
    # Dagster resolves the token's variable in the run config before the run, or the Databricks
    # SDK looks for credentials when the launcher is set up: either way, the reason is printed.
    assert (
        '"DATABRICKS_TOKEN" which is not set' in out
        or "  ValueError: cannot configure default credentials" in out
    ), out
