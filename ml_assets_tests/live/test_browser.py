"""What a user sees: the real `ml-assets dev` UI in headless Chromium, on a fresh project home.

Before the UI starts, the home gets demo data and the whole graph materialized once
(`ml-assets run`). The landing sensor's first tick must find every landed day already ingested
and launch nothing. Then a deliberately worse challenger is trained, whose gates fail. The test then
checks, as a user would, the lineage, an asset page, a materialization launched from the UI,
the validation report with its plots, and the failed gates. A screenshot of every step is kept
under artifacts/screenshots/ (git-ignored; CI's artifacts), numbered in the order a user reads
them (lineage first), whatever order the test takes them in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from ml_assets_tests.live.browser import (
    REPO_ROOT,
    SCREENSHOTS,
    chromium_page,
    dismiss_community_dialog,
    require_chromium,
    screenshot,
)
from ml_assets_tests.live.dagster_dev import BIN, DagsterDev, dagster_dev

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

DEMO_DAYS = 30
ROWS_PER_DAY = 600
REPORT = "fraud/reports/fraud_detector_validation"
CANDIDATE = "fraud/models/fraud_detector_candidate"
# The lineage, in the order the graph lays it out from left to right.
LINEAGE = [
    "transactions",
    "transaction_features",
    "fraud_detector_candidate",
    "fraud_detector_validation",
    "fraud_detector_champion",
    "fraud_detector",  # predictions/fraud_detector
]
LINEAGE_SELECTION = '+key:"fraud/predictions/fraud_detector"'  # it and all its upstream
GATES = {
    "meets_minimum_metrics": "Failed",
    "not_worse_than_champion": "Failed",
    "no_leakage": "Succeeded",
}

LOCATION = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RUNS = """
{ runsOrError { ... on Runs { results {
    runId status pipelineName assetSelection { path } tags { key value } } } } }
"""
SENSOR_TICKS = """
query ($name: String!) {
  sensorOrError(sensorSelector: {
      repositoryLocationName: "ml_assets", repositoryName: "__repository__", sensorName: $name}) {
    ... on Sensor { sensorState { ticks(limit: 1) { status skipReason } } }
  }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
_START = time.monotonic()


def _step(what: str) -> None:
    """Elapsed time per step, in the captured output (shown when the test fails)."""
    print(f"[{time.monotonic() - _START:6.1f}s] {what}", flush=True)


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, env={**os.environ, **env}, cwd=REPO_ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise AssertionError(f"{argv} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _prepare_home(env: dict[str, str]) -> None:
    """Demo data and the whole graph once: champion v1, predictions."""
    _run(
        [
            str(BIN / "ml-assets"),
            "run",
            "--demo-days",
            str(DEMO_DAYS),
            "--rows-per-day",
            str(ROWS_PER_DAY),
        ],
        env,
    )


def _train_worse_challenger(env: dict[str, str]) -> None:
    """A challenger whose gates fail, so the UI has failed checks to show."""
    out = _run([sys.executable, "-m", "ml_assets_tests.live.worse_challenger"], env).stdout
    worse = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
    assert not worse["success"], worse
    for check, verdict in GATES.items():
        assert worse["checks"][check] is (verdict == "Succeeded"), worse


def _wait_for_code_location(server: DagsterDev) -> None:
    def loaded():
        (entry,) = server.graphql(LOCATION)["workspaceOrError"]["locationEntries"]
        if entry["loadStatus"] != "LOADED":
            return None
        location = entry["locationOrLoadError"]
        if location["__typename"] == "PythonError":  # no point waiting: say why
            raise AssertionError(f"code location failed to load: {location['message']}")
        return True

    server.wait_until(loaded, timeout=120, interval=1, what="the code location")


def _runs(server: DagsterDev) -> list[dict]:
    return server.graphql(RUNS)["runsOrError"]["results"]


def _all_runs_finished(server: DagsterDev, timeout: float) -> list[dict]:
    def finished():
        runs = _runs(server)
        return runs if all(run["status"] in FINISHED for run in runs) else None

    return server.wait_until(finished, timeout=timeout, what="every run to finish")


def _wait_for_landing_sensor(server: DagsterDev) -> None:
    """The landing sensor's first tick has run and skipped every landed day: `ml-assets run`
    ingested them through the same instance, so nothing is ingested (or retrained) twice."""

    def first_tick():
        sensor = server.graphql(SENSOR_TICKS, {"name": "fraud_landing"})["sensorOrError"]
        ticks = sensor["sensorState"]["ticks"]
        return ticks[0] if ticks and ticks[0]["status"] != "STARTED" else None

    tick = server.wait_until(first_tick, timeout=90, interval=1, what="the landing sensor's tick")
    assert tick["status"] == "SKIPPED", tick
    landed = 2 * DEMO_DAYS  # transactions and customers: one file per day each
    assert tick["skipReason"] == f"no new landing files ({landed} already ingested)", tick
    assert _runs_launched_by(server, "fraud_landing") == []


def _runs_launched_by(server: DagsterDev, sensor: str) -> list[dict]:
    tag = {"key": "dagster/sensor_name", "value": sensor}
    return [run for run in _runs(server) if tag in run["tags"]]


def _newest_day(home) -> str:
    files = (home / "landing" / "fraud" / "transactions").glob("*.csv")
    return max(path.name[:10] for path in files)


def test_dagster_ui_in_a_real_browser(tmp_path):
    require_chromium()
    from playwright.sync_api import expect

    global _START
    _START = time.monotonic()
    home = tmp_path / "home"
    env = {"ML_ASSETS_HOME": str(home)}
    _prepare_home(env)
    _step("home prepared: graph materialized")
    newest_day = _newest_day(home)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in [*SCREENSHOTS.glob("*.png"), *SCREENSHOTS.glob("*.log")]:  # this run's only
        old.unlink()

    log = tmp_path / "dagster_dev.log"
    with dagster_dev(env, log) as server:
        _wait_for_code_location(server)
        # Started from the checkout, whose dagster.yaml `dagster dev` says it will not use: the
        # user is told that the instance uses a copy of it.
        assert "'will not be used' can be ignored" in log.read_text()
        _step("dagster dev up")
        _wait_for_landing_sensor(server)
        _step("landing sensor: every landed day already ingested")
        _train_worse_challenger(env)
        _step("worse challenger blocked by its gates")
        seeded_runs = {run["runId"] for run in _runs(server)}
        with chromium_page() as page:
            expect.set_options(timeout=30_000)
            try:
                page.goto(server.url)
                seen = "skipped" if dismiss_community_dialog(page) else "not shown"
                _step(f"UI open; community dialog {seen}")
                _asset_pages(page, server.url, newest_day, expect)
                _step("asset pages")
                _validation_report(page, server.url, expect)
                _step("validation report")
                _failed_gates(page, server.url, expect)
                _step("failed gates")
                _materialize_from_ui(page, server, expect)
                _step("materialization from the UI")
                # Let whatever automation started finish, so the graph shows settled states
                # (and shutdown interrupts nothing).
                runs = _all_runs_finished(server, timeout=180)
                _lineage(page, server.url, expect)
                _step("lineage")
            except BaseException:
                # What the browser showed, and the server's log, next to the screenshots.
                with contextlib.suppress(Exception):
                    screenshot(page, "99_failure", settle=False)
                shutil.copyfile(log, SCREENSHOTS / "99_dagster_dev.log")
                raise
        failed = [r for r in runs if r["runId"] not in seeded_runs and r["status"] != "SUCCESS"]
        assert not failed, f"runs launched while the UI was up did not succeed: {failed}"
        # Nothing new landed and no gate passed: nothing to ingest or retrain.
        assert _runs_launched_by(server, "fraud_landing") == []
        assert _runs_launched_by(server, "fraud_fraud_detector_retrain") == []
    _step("dagster dev stopped, no processes left")


def _lineage(page, url: str, expect) -> None:
    """The lineage of the predictions, every group expanded: raw → features → candidate →
    report → champion → predictions. Selecting it (the graph's "everything upstream of",
    `+key:...`) keeps the picture to this story however many other assets the platform grows,
    and a wide window keeps the zoom-to-fit above the level where the UI abbreviates names."""
    page.set_viewport_size({"width": 2400, "height": 1200})
    page.goto(f"{url}/asset-groups~{quote(LINEAGE_SELECTION, safe='')}")
    expect(page.get_by_text("raw", exact=True).first).to_be_visible()
    candidate = page.get_by_text("fraud_detector_candidate", exact=True)
    try:
        expect(candidate.first).to_be_visible(timeout=2_000)
    except AssertionError:  # groups start collapsed
        page.keyboard.press("Alt+E")  # the graph's "Expand all groups"
    lefts = []
    for name in ["customers", *LINEAGE]:
        label = page.get_by_text(name, exact=True).first
        expect(label).to_be_visible()
        lefts.append((label.bounding_box()["x"], name))
    # Left to right is upstream to downstream: each step of the lineage sits right of the last.
    order = [name for _, name in sorted(lefts[1:])]
    assert order == LINEAGE, f"lineage laid out as {order}"
    page.wait_for_timeout(500)  # edges finish drawing
    screenshot(page, "01_lineage")
    page.set_viewport_size({"width": 1600, "height": 1000})


def _asset_pages(page, url: str, newest_day: str, expect) -> None:
    """Row count, column schema with descriptions, partitions, metadata plots."""
    page.goto(f"{url}/assets/fraud/raw/transactions")
    expect(page.get_by_text("Row count", exact=True)).to_be_visible()
    expect(page.get_by_text(f"{DEMO_DAYS * ROWS_PER_DAY:,}", exact=True).first).to_be_visible()
    for column in ["event_id", "customer_id", "amount", "is_fraud", "event_date"]:
        expect(page.get_by_text(column, exact=True).first).to_be_visible()
    expect(page.get_by_text("Amount in EUR")).to_be_visible()  # column descriptions
    screenshot(page, "02_asset_transactions")

    page.get_by_role("tab", name="Partitions", exact=True).click()
    expect(page.get_by_text(f"Materialized ({DEMO_DAYS})")).to_be_visible()
    page.get_by_title(newest_day, exact=True).first.click()
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text("dagster/row_count")).to_be_visible()
    screenshot(page, "03_asset_partitions")

    page.goto(f"{url}/assets/fraud/features/transaction_features")
    expect(page.get_by_text("Row count", exact=True)).to_be_visible()
    # Accessible names carry the icon's label ("asset_plot Plots").
    page.get_by_role("button", name=re.compile(r"\bPlots$")).click()
    plot_title = page.get_by_text("dagster/row_count", exact=True).first
    expect(plot_title).to_be_visible()
    plot_title.evaluate("title => title.scrollIntoView({block: 'center'})")
    expect(page.locator("canvas").first).to_be_visible()
    screenshot(page, "04_asset_feature_plots")


def _materialize_from_ui(page, server: DagsterDev, expect) -> None:
    """Materialize the candidate from its page; the run must succeed."""
    before = {run["runId"] for run in _runs(server)}
    page.goto(f"{server.url}/assets/{CANDIDATE}")
    # "materialization Materialize"; not "Materialize all…" nor "Materialize…" (a picker).
    materialize = page.get_by_role("button", name=re.compile(r"(^|\s)Materialize$"))
    expect(materialize).to_be_enabled()
    materialize.click()

    def launched():
        for run in _runs(server):
            selection = {"/".join(key["path"]) for key in run["assetSelection"] or []}
            if run["runId"] not in before and selection == {CANDIDATE}:
                return run
        return None

    run_id = server.wait_until(launched, timeout=30, interval=1, what="a run from the UI")["runId"]

    def finished():
        run = next(r for r in _runs(server) if r["runId"] == run_id)
        return run if run["status"] in FINISHED else None

    run = server.wait_until(finished, timeout=150, interval=2, what=f"run {run_id} to finish")
    assert run["status"] == "SUCCESS", f"materialization from the UI ended {run['status']}"
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
    screenshot(page, "05_run_from_ui")


def _validation_report(page, url: str, expect) -> None:
    """The report's Markdown metadata renders, its plots included."""
    page.goto(f"{url}/assets/{REPORT}")
    page.get_by_text("[Show Markdown]").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Metrics")).to_be_visible()
    images = dialog.locator("img[src^='data:image/png;base64,']")
    expect(images.first).to_be_visible()
    assert images.count() >= 2, "expected the ROC/PR and calibration plots at least"
    for i in range(images.count()):
        width = images.nth(i).evaluate("img => img.complete && img.naturalWidth")
        assert width and width > 100, f"report image {i} did not decode"
    page.set_viewport_size({"width": 1600, "height": 2400})  # the whole report in one picture
    page.wait_for_timeout(300)
    screenshot(page, "06_validation_report")
    page.set_viewport_size({"width": 1600, "height": 1000})
    dialog.get_by_role("button", name=re.compile(r"\bClose$")).click()
    expect(dialog).to_be_hidden()


def _failed_gates(page, url: str, expect) -> None:
    """The gates the worse challenger failed, on the report's Checks tab, with by how much."""
    page.goto(f"{url}/assets/{REPORT}")
    page.get_by_role("tab", name="Checks", exact=True).click()
    for check, verdict in GATES.items():
        row = page.get_by_title(check, exact=True).locator("xpath=..")
        expect(row).to_contain_text(verdict)
    page.get_by_title("not_worse_than_champion", exact=True).click()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    screenshot(page, "07_failed_gate")
    # What failed and by how much sits in the check's metadata.
    page.get_by_text("[Show JSON]").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("roc_auc")
    expect(dialog).to_contain_text("vs champion")
    screenshot(page, "08_failed_gate_detail")
    dialog.get_by_role("button", name=re.compile(r"\bClose$")).click()
    expect(dialog).to_be_hidden()
