"""`ml-assets run`: how it reports a check, and how it plans its runs when sources differ. The
end-to-end output is also checked by the worked-example doc test
(ml_assets_tests/docs/test_bring_your_own_data_doc.py)."""

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.cli import prepare_dagster_home
from ml_assets.demo.generate import write_demo_data
from ml_assets.headless import PROCESS_TAG, _check_line, fail_orphaned_runs, materialize_all
from ml_assets.settings import load_settings
from ml_assets_tests.conftest import DEMO_START

KEY = dg.AssetKey(["fraud", "raw", "customers"])
RANGE_METADATA = {
    "failed_days": 2,
    "days": 30,
    "failing": {"2026-01-07": "credit_limit null rate 25.0% > 20.0%", "2026-01-05": "..."},
    "summary": "credit_limit null rate 33.3% > 20.0%",
}


def _evaluation(severity: dg.AssetCheckSeverity) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=KEY,
        check_name="null_rate",
        passed=False,
        severity=severity,
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
            for k, v in RANGE_METADATA.items()
        },
    )


def test_a_failed_error_check_says_failed_with_its_days_and_summary() -> None:
    assert _check_line(_evaluation(dg.AssetCheckSeverity.ERROR)) == (
        "  check fraud/raw/customers null_rate: FAILED (2 of 30 days failed: 2026-01-05, "
        "2026-01-07) credit_limit null rate 33.3% > 20.0%"
    )


def test_a_failed_gate_says_which_metric_and_by_how_much() -> None:
    """A gate's metadata has no summary: its findings are in `failing`/`worse`/..."""
    report = dg.AssetKey(["fraud", "reports", "fraud_detector_validation"])
    gate = dg.AssetCheckEvaluation(
        asset_key=report,
        check_name="meets_minimum_metrics",
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "failing": dg.MetadataValue.json({"roc_auc": "0.6012 vs 0.7"}),
            "thresholds": dg.MetadataValue.json({"roc_auc": 0.7}),
        },
    )
    assert _check_line(gate) == (
        "  check fraud/reports/fraud_detector_validation meets_minimum_metrics: FAILED "
        "roc_auc: 0.6012 vs 0.7"
    )


def test_a_failed_warn_check_reads_as_a_warning_not_a_failure() -> None:
    line = _check_line(_evaluation(dg.AssetCheckSeverity.WARN))
    assert line.startswith("  check fraud/raw/customers null_rate: warning (2 of 30 days failed:")
    assert "FAILED" not in line


def test_a_day_only_one_source_has_after_a_gap_is_ingested_trained_on_and_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A transactions file three days after the rest, with no customers file: each raw table is
    ingested over its own days, features over the days any input has, and the gap stays
    unbuilt. (Running every source over the first..last range failed on the missing files.)
    A misnamed file is listed as left out."""
    settings = load_settings({"ML_ASSETS_HOME": str(tmp_path / "home")})
    landing = settings.landing_root / "fraud"
    write_demo_data(landing, start=DEMO_START, days=30, rows_per_day=300, seed=3)
    last = DEMO_START + dt.timedelta(days=29)
    late = last + dt.timedelta(days=3)
    write_demo_data(tmp_path / "late", start=late, days=1, rows_per_day=300, seed=3)
    shutil.copy(tmp_path / "late" / "transactions" / f"{late}.csv", landing / "transactions")
    # A file named without dashes is left out, and the run says so; so is one for today (UTC),
    # whose daily partition does not exist yet (it failed the whole run).
    shutil.copy(landing / "customers" / f"{last}.csv", landing / "customers" / "20261020.csv")
    today = dt.datetime.now(dt.UTC).date()
    shutil.copy(landing / "customers" / f"{last}.csv", landing / "customers" / f"{today}.csv")
    monkeypatch.setenv("DAGSTER_HOME", str(prepare_dagster_home(settings)))

    assert materialize_all(settings) == 0

    out, err = capsys.readouterr()
    # Models were loaded (validation, scoring) without MLflow's download progress bars.
    assert "Downloading artifacts" not in out + err
    for line in (
        f"fraud_ingest (fraud/raw/transactions): {DEMO_START} .. {last} succeeded",
        f"fraud_ingest (fraud/raw/transactions): {late} .. {late} succeeded",
        f"fraud_ingest (fraud/raw/customers): {DEMO_START} .. {last} succeeded",
        f"fraud_ingest (fraud/features/transaction_features): {late} .. {late} succeeded",
        "fraud_train: succeeded",
        f"fraud_score: {DEMO_START} .. {last} succeeded",
        f"fraud_score: {late} .. {late} succeeded",
        f"fraud: left out {landing / 'customers' / '20261020.csv'}: '20261020.csv' is not named "
        "like a day's file (expected YYYY-MM-DD[_tag].csv)",
        f"fraud: left out {landing / 'customers' / f'{today}.csv'}: no daily partition for {today}",
    ):
        assert line in out, out
    features = pl.read_delta(f"{settings.lake_root}/fraud/features/transaction_features")
    built = set(features.get_column("event_date").unique().to_list())
    assert built == {DEMO_START + dt.timedelta(days=i) for i in range(30)} | {late}
    # The cost report is built last, over every run above, and the run says where it is.
    report = pl.read_delta(f"{settings.lake_root}/costs/cost_report")
    # Every asset that computes is priced, the model side too (validation used to be missing).
    priced = set(report.filter(pl.col("compute_seconds") > 0).get_column("asset"))
    assert {
        "fraud/raw/transactions",
        "fraud/raw/customers",
        "fraud/features/transaction_features",
        "fraud/models/fraud_detector_candidate",
        "fraud/reports/fraud_detector_validation",
        "fraud/predictions/fraud_detector",
    } <= priced, priced
    assert f"USD, per asset and day in {settings.lake_root}/costs/cost_report" in out
    assert "job clusters" not in out  # none locally


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_headless_run_is_marked_failed_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ml-assets run` killed mid-run: nothing watches a run executed in process, so it stayed
    STARTED and held its pipeline's place in `ml-assets dev`'s run queue for good."""
    settings = load_settings({"ML_ASSETS_HOME": str(tmp_path / "home")})
    write_demo_data(
        settings.landing_root / "fraud", start=DEMO_START, days=3, rows_per_day=50, seed=1
    )
    monkeypatch.setenv("DAGSTER_HOME", str(prepare_dagster_home(settings)))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ml-assets"), "run"],
        env={**os.environ, "ML_ASSETS_HOME": str(settings.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
        deadline = time.monotonic() + 120
        while not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            assert process.poll() is None and time.monotonic() < deadline, "no run started"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    [run] = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert run.tags[PROCESS_TAG] == f"{socket.gethostname()}:{process.pid}"

    # Runs of live processes, of other machines and of the UI are left alone.
    here = socket.gethostname()
    others = {
        "live": {PROCESS_TAG: f"{here}:{os.getpid()}"},
        "other_host": {PROCESS_TAG: f"elsewhere:{_dead_pid()}"},
        "ui": {},
    }
    for name, tags in others.items():
        instance.add_run(
            dg.DagsterRun(job_name=name, status=dg.DagsterRunStatus.STARTED, tags=tags)
        )

    [line] = fail_orphaned_runs(instance)
    assert line.startswith(f"marked run {run.run_id} (fraud_ingest) failed: the `ml-assets run`")
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    still = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert sorted(r.job_name for r in still) == sorted(others)
    assert fail_orphaned_runs(instance) == []
