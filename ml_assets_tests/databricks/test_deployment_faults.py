"""Faults of our dev deployment on Databricks, through the real step launcher and stand-in.

Each test runs demo pipeline assets the way `dagster dev` would (the job reconstructed from
`ml_assets.definitions`, `ML_ASSETS_DEPLOYMENT=dev`, our `MlAssetsStepLauncher`) against the
stand-in workspace, with a fault injected: the remote step raises, the cluster never comes up
(INTERNAL_ERROR), the step hangs past the launcher's timeout, the workspace stops answering. In
every case the token stays out of the event log, the metadata and the run's tags.
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import polars.testing
from dagster._core.events import DagsterEventType
from databricks.sdk import WorkspaceClient

from ml_assets.storage import delta
from ml_assets_tests.databricks.conftest import (
    DEMO_START,
    DEPLOYMENT_MARKS,
    TRANSACTIONS,
    DevDeployment,
    Outcome,
    materialize_locally,
    partition_range,
    read_table,
)

pytestmark = DEPLOYMENT_MARKS

ROWS_PER_DAY = 200  # conftest's demo data


def one_day(day: dt.date) -> dict[str, str]:
    return {"dagster/partition": day.isoformat()}


def cluster_runs(outcome: Outcome) -> dict[int, float]:
    """Databricks run id -> cluster seconds, from the launcher's observations of TRANSACTIONS."""
    observed = outcome.observations().get(TRANSACTIONS.to_user_string(), [])
    return {
        o["databricks_run_id"]: o["cluster_seconds"] for o in observed if "cluster_seconds" in o
    }


def test_a_remote_exception_fails_the_step_with_the_remote_traceback_in_the_event_log(
    dev: DevDeployment,
) -> None:
    # A landing file the ingestion cannot use: the raw asset raises on the cluster.
    day = DEMO_START + dt.timedelta(days=20)
    bad = dev.shared / "landing" / "fraud" / "transactions" / f"{day}_kaboom4711.csv"
    bad.write_text("not_a_declared_column\n1\n")

    outcome = dev.run(one_day(day), [TRANSACTIONS])

    assert not outcome.success
    error = outcome.failure_text()
    assert "kaboom4711" in error and f"partition {day} not ingested" in error
    # the traceback is the cluster's: frames of the package uploaded to (stand-in) DBFS
    assert "ml_assets/pipeline/raw.py" in error and str(dev.dbx.root) in error
    # the Databricks run itself succeeded: the failure travelled back as a Dagster event
    (run,) = outcome.databricks_runs
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS")
    assert not delta.table_exists(dev.table_uri(TRANSACTIONS)) or day not in set(
        read_table(dev.table_uri(TRANSACTIONS))["event_date"]
    )
    # the failed step's cluster was paid for too: its time is recorded
    assert cluster_runs(outcome).keys() == {run.run_id}
    assert cluster_runs(outcome)[run.run_id] > 0
    outcome.assert_token_absent(dev.dbx.token)


def test_b_internal_error_on_first_submission_is_retried_and_the_partition_materializes(
    dev: DevDeployment,
) -> None:
    day = DEMO_START + dt.timedelta(days=1)
    dev.dbx.inject_internal_error(times=1)

    outcome = dev.run(one_day(day), [TRANSACTIONS])

    assert outcome.success, outcome.failure_text()
    first, second = outcome.databricks_runs
    assert first.life_cycle_state == "INTERNAL_ERROR"
    assert (second.life_cycle_state, second.result_state) == ("TERMINATED", "SUCCESS")
    types = outcome.event_types()
    assert DagsterEventType.STEP_UP_FOR_RETRY in types
    assert types.count(DagsterEventType.ASSET_MATERIALIZATION) == 1
    # both submissions' cluster time: the one that never came up and the one that ran
    assert cluster_runs(outcome).keys() == {first.run_id, second.run_id}
    rows = read_table(dev.table_uri(TRANSACTIONS)).filter(pl.col("event_date") == day)
    assert rows.height == ROWS_PER_DAY
    outcome.assert_token_absent(dev.dbx.token)


def test_b_internal_error_past_the_retry_budget_fails_the_step(dev: DevDeployment) -> None:
    dev.configure(retries=1)
    dev.dbx.inject_internal_error(times=None)

    outcome = dev.run(one_day(DEMO_START + dt.timedelta(days=2)), [TRANSACTIONS])

    assert not outcome.success
    # the first submission and one retry (internal_error_retries: 1), then the step fails
    assert [r.life_cycle_state for r in outcome.databricks_runs] == ["INTERNAL_ERROR"] * 2
    assert "INTERNAL_ERROR" in outcome.failure_text() or "unexpected state" in (
        outcome.failure_text()
    )
    assert DagsterEventType.ASSET_MATERIALIZATION not in outcome.event_types()
    assert cluster_runs(outcome).keys() == {r.run_id for r in outcome.databricks_runs}
    outcome.assert_token_absent(dev.dbx.token)


def test_c_a_step_hanging_past_the_timeout_is_cancelled_and_leaves_the_table_as_it_was(
    dev: DevDeployment,
) -> None:
    first, last = DEMO_START + dt.timedelta(days=3), DEMO_START + dt.timedelta(days=4)
    tags = partition_range(first.isoformat(), last.isoformat())
    # the previous version of these partitions (written by the local deployment: same layout)
    materialize_locally(dev.shared, tags, [TRANSACTIONS], lake_root=dev.lake)
    uri = dev.table_uri(TRANSACTIONS)
    before_version, before = delta.table_version(uri), read_table(uri)
    assert before.filter(pl.col("event_date").is_between(first, last)).height == 2 * ROWS_PER_DAY

    # The step computes everything and hangs in the raw table's Delta write (not the
    # quarantine's) until the launcher's wait runs out: in the commit of the Parquet files
    # already written (local tables) or in delta-rs' write (remote URIs). The wait must cover
    # the remote step's start (about 10 s here) up to that write.
    wait = 30
    dev.configure(wait=wait)
    dev.dbx.inject_hang(
        at_call=["deltalake:DeltaTable.create_write_transaction", "deltalake:write_deltalake"],
        matching="raw/transactions",
    )
    cancels = len(dev.dbx.requests_to("jobs/runs/cancel"))

    outcome = dev.run(tags, [TRANSACTIONS])

    assert not outcome.success
    assert f"took more than {wait}s to complete" in outcome.failure_text()
    (run,) = outcome.databricks_runs
    assert "injected fault: hanging in deltalake:" in run.stdout
    dev.dbx.wait_for_run(run.run_id, timeout=30)
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "CANCELED")
    assert len(dev.dbx.requests_to("jobs/runs/cancel")) == cancels + 1
    assert not run.process_alive()
    # nothing of the interrupted write is visible: same Delta version, same rows
    assert delta.table_version(uri) == before_version
    polars.testing.assert_frame_equal(read_table(uri), before)
    assert DagsterEventType.ASSET_MATERIALIZATION not in outcome.event_types()
    # the cluster ran for the whole wait before it was cancelled
    assert cluster_runs(outcome)[run.run_id] >= wait
    outcome.assert_token_absent(dev.dbx.token)


def test_d_a_workspace_that_stops_answering_fails_the_step_within_its_retry_deadline(
    dev: DevDeployment,
) -> None:
    """Without a deadline the launcher held the step for about half an hour (databricks-sdk's
    300 s per call, times the launcher's retries) and failed with "Timed out after 0:05:00"."""
    day = DEMO_START + dt.timedelta(days=6)
    materialize_locally(dev.shared, one_day(day), [TRANSACTIONS], lake_root=dev.lake)
    uri = dev.table_uri(TRANSACTIONS)
    before_version = delta.table_version(uri)
    dev.configure(api_retry=2)
    dev.dbx.inject_hang()  # the run would go on; the workspace goes away once it is submitted
    dev.dbx.inject_unreachable()

    started = time.monotonic()
    outcome = dev.run(one_day(day), [TRANSACTIONS])
    waited = time.monotonic() - started

    assert not outcome.success
    (run,) = outcome.databricks_runs
    error = outcome.failure_text()
    assert f"the Databricks workspace {dev.dbx.url} did not answer for 2 s" in error, error
    assert f"waiting for Databricks run {run.run_id}; that run may still be going" in error
    assert "ConnectionError" in error
    # Every call after the submission gave up within its deadline (each call retries for 2 s
    # plus the SDK's back-off sleeps of up to 2 s): the step did not wait for minutes.
    dropped = [r for r in dev.dbx.requests if r.status == 0]
    assert dropped and waited < 90, (waited, len(dropped))
    assert DagsterEventType.ASSET_MATERIALIZATION not in outcome.event_types()
    assert delta.table_version(uri) == before_version
    outcome.assert_token_absent(dev.dbx.token)

    # What the error says to do once the workspace answers again: cancel the run that went on.
    dev.dbx.clear_faults()
    assert not run.terminal
    WorkspaceClient(host=dev.dbx.url, token=dev.dbx.token).jobs.cancel_run(run.run_id)
    dev.dbx.wait_for_run(run.run_id, timeout=30)
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "CANCELED")
