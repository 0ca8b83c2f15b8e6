"""The landing sensor: new files in a pipeline's landing folders become runs for their days.

Ticks are evaluated by Dagster itself (`evaluate_tick` with the pipeline's definitions), so the
run requests are checked the way the daemon would resolve them; files are real files in tmp_path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from ml_assets.definitions import build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.pipeline.factory import build_pipeline
from ml_assets.pipeline.keys import (
    PIPELINE_TAG,
    SOURCE_DIGESTS,
    daily_partitions,
    feature_key,
    raw_key,
)
from ml_assets.pipeline.sensors import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    Cursor,
    plan_rebuilds,
)
from ml_assets.pipeline.spec import PipelineSpec, parse_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC, Settings
from ml_assets.storage.io_manager import DeltaLake

JAN = [dt.date(2026, 1, d) for d in range(1, 32)]


def _day(n: int) -> dt.date:
    return JAN[n - 1]


def demo_spec(min_file_age_seconds: float = 0) -> PipelineSpec:
    """The demo pipeline as declared, with the sensors' wait for young files set."""
    data = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    for source in data["sources"].values():
        source["min_file_age_seconds"] = min_file_age_seconds
    return parse_spec(data, base_dir=DEMO_PIPELINE_SPEC.parent)


def featureless_spec(tmp_path: Path) -> PipelineSpec:
    return parse_spec(
        {
            "name": "shop",
            "start_date": "2026-01-01",
            "sources": {
                "sales": {
                    "event_time": "ts",
                    "primary_key": ["id"],
                    "columns": {"id": "string", "ts": "datetime"},
                    "min_file_age_seconds": 0,
                }
            },
        },
        base_dir=tmp_path,
    )


class Landing:
    """One source's landing folder and the pipeline's sensor, ticked the way the daemon does."""

    def __init__(self, spec: PipelineSpec, source: str, settings: Settings) -> None:
        self.spec = spec
        self.source = source
        self.settings = settings
        self.folder = spec.landing_folder(source, settings.landing_root)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.defs = dg.Definitions.merge(
            build_pipeline(spec, landing_root=settings.landing_root),
            dg.Definitions(resources=build_resources(settings)),
        )
        self.sensor = self.defs.resolve_sensor_def(f"{spec.name}_landing")
        self.cursor: str | None = None

    def source_cursor(self, raw: str | None) -> Cursor:
        """This source's part of the pipeline sensor's cursor."""
        return Cursor.parse(json.loads(raw)["sources"][self.source]) if raw else Cursor()

    def add(self, *names: str) -> None:
        for name in names:
            (self.folder / name).write_text("id,ts\n")

    def add_days(self, *days: dt.date, tag: str = "") -> None:
        self.add(*[f"{day.isoformat()}{tag}.csv" for day in days])

    def tick(self, instance: dg.DagsterInstance | None = None) -> dg.SensorExecutionData:
        """One tick, against `instance` (a fresh, empty one by default)."""
        with dg.DagsterInstance.ephemeral() as empty:
            context = dg.build_sensor_context(
                instance=instance or empty, cursor=self.cursor, definitions=self.defs
            )
            result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result

    def runner(self, instance: dg.DagsterInstance) -> Callable[[dg.RunRequest], bool]:
        """Runs a request of the sensor with the real pipeline, as the daemon would launch it."""
        assets = list(build_pipeline(self.spec, landing_root=self.settings.landing_root).assets)

        def run(request: dg.RunRequest) -> bool:
            return dg.materialize(
                assets,
                resources=build_resources(self.settings),
                instance=instance,
                tags={**request.tags, "dagster/run_key": request.run_key},
                partition_key=request.partition_key,
                selection=request.asset_selection,
                raise_on_error=False,
            ).success

        return run

    def record_features(self, instance: dg.DagsterInstance, *days: dt.date) -> None:
        """Feature days built earlier (what a later day's rebuild needs to exist)."""
        for day in days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=dg.AssetKey.from_user_string(FEATURES), partition=day.isoformat()
                )
            )

    def record_ingestion(self, instance: dg.DagsterInstance, *days: dt.date) -> None:
        """What a run outside the sensor (`ml-assets run`) leaves in the instance, after the
        files landed."""
        time.sleep(0.05)  # past the file system's timestamp granularity
        for day in days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=raw_key(self.spec, self.source), partition=day.isoformat()
                )
            )


def _days(request: dg.RunRequest) -> tuple[dt.date, dt.date]:
    """First and last day a request covers, from its partition key or its range tags."""
    if request.partition_key is not None:
        assert RANGE_START_TAG not in request.tags and RANGE_END_TAG not in request.tags
        day = dt.date.fromisoformat(request.partition_key)
        return day, day
    return (
        dt.date.fromisoformat(request.tags[RANGE_START_TAG]),
        dt.date.fromisoformat(request.tags[RANGE_END_TAG]),
    )


def _summary(result: dg.SensorExecutionData) -> list[tuple[tuple[dt.date, dt.date], list[str]]]:
    """Each request as ((first, last), [asset keys]), in order."""
    return [
        (_days(r), [k.to_user_string() for k in r.asset_selection]) for r in result.run_requests
    ]


RAW_TX = "fraud/raw/transactions"
RAW_CUST = "fraud/raw/customers"
FEATURES = "fraud/features/transaction_features"


@pytest.fixture
def transactions(settings: Settings) -> Landing:
    return Landing(demo_spec(), "transactions", settings)


@pytest.fixture
def customers(settings: Settings) -> Landing:
    return Landing(demo_spec(), "customers", settings)


def test_first_tick_requests_one_range_run_for_contiguous_days(transactions: Landing) -> None:
    transactions.add_days(_day(1), _day(2), _day(3))

    result = transactions.tick()

    [request] = result.run_requests
    assert request.partition_key is None
    assert request.tags[RANGE_START_TAG] == "2026-01-01"
    assert request.tags[RANGE_END_TAG] == "2026-01-03"
    # A run of the ingest job, which gives it the pipeline's tags.
    assert transactions.sensor.job_name == "fraud_ingest"
    job = transactions.defs.resolve_job_def(transactions.sensor.job_name)
    assert job.run_tags[PIPELINE_TAG] == "fraud"
    assert request.asset_selection == [
        raw_key(transactions.spec, "transactions"),
        feature_key(transactions.spec, "transaction_features"),
    ]
    assert transactions.source_cursor(result.cursor).newest_day == _day(3)


def test_a_single_day_is_requested_by_partition_key(transactions: Landing) -> None:
    transactions.add_days(_day(7))

    [request] = transactions.tick().run_requests

    assert request.partition_key == "2026-01-07"
    assert RANGE_START_TAG not in request.tags
    assert [k.to_user_string() for k in request.asset_selection] == [RAW_TX, FEATURES]


def test_a_tick_with_nothing_new_skips_and_keeps_the_cursor(transactions: Landing) -> None:
    transactions.add_days(_day(1), _day(2))
    first = transactions.tick()
    assert first.run_requests

    second = transactions.tick()

    assert second.run_requests == []
    # (The range run it requested never appears in this empty instance: it is still followed.)
    assert second.skip_message == (
        "no new landing files; following 1 ingestion run(s) until they finish"
    )
    assert transactions.source_cursor(second.cursor) == transactions.source_cursor(first.cursor)


def test_files_already_seen_never_produce_requests_again(transactions: Landing) -> None:
    transactions.add_days(_day(1), _day(2), _day(3))
    assert _summary(transactions.tick()) == [((_day(1), _day(3)), [RAW_TX, FEATURES])]

    transactions.add_days(_day(4))
    assert _summary(transactions.tick()) == [((_day(4), _day(4)), [RAW_TX, FEATURES])]

    transactions.add_days(_day(5), _day(6))
    assert _summary(transactions.tick()) == [((_day(5), _day(6)), [RAW_TX, FEATURES])]
    assert transactions.tick().run_requests == []


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def test_first_tick_skips_days_ingested_after_their_files_changed(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    transactions.add_days(_day(1), _day(2), _day(3))
    transactions.record_ingestion(instance, _day(1), _day(2))

    first = transactions.tick(instance)

    # Days 1 and 2 are in the lake already; day 3 was never ingested.
    assert _summary(first) == [((_day(3), _day(3)), [RAW_TX, FEATURES])]
    assert transactions.source_cursor(first.cursor).newest_day == _day(3)
    assert transactions.tick(instance).run_requests == []


def test_a_file_changed_after_its_day_was_ingested_is_requested_on_the_first_tick(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    transactions.add_days(_day(1), _day(2))
    transactions.record_ingestion(instance, _day(1), _day(2))
    time.sleep(0.05)

    (transactions.folder / "2026-01-02.csv").write_text("id,ts\ncorrected,\n")

    assert _summary(transactions.tick(instance)) == [((_day(2), _day(2)), [RAW_TX, FEATURES])]


def test_a_file_rewritten_while_a_run_ingested_its_day_is_requested_on_the_first_tick(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    transactions.add_days(_day(1), _day(2))
    time.sleep(0.05)
    rewritten = transactions.folder / "2026-01-01.csv"

    @dg.asset(
        key=raw_key(transactions.spec, "transactions"),
        partitions_def=daily_partitions(transactions.spec),
    )
    def ingestion(context) -> None:  # annotated, dagster cannot resolve the postponed type
        # The run has read day 1's file when a corrected one lands, before the run ends.
        if context.partition_key == "2026-01-01":
            time.sleep(0.05)
            rewritten.write_text("id,ts\ncorrected,\n")
            time.sleep(0.05)

    for day in ("2026-01-01", "2026-01-02"):
        assert dg.materialize([ingestion], instance=instance, partition_key=day).success

    # Day 1's file changed after its run started, though before the day was materialized: day 1
    # is ingested again.
    assert _summary(transactions.tick(instance)) == [((_day(1), _day(1)), [RAW_TX, FEATURES])]


def test_a_file_ingested_before_a_later_tick_saw_it_is_not_requested(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    """E.g. `ml-assets run` while `dagster dev` was stopped: the sensor has a cursor already."""
    transactions.add_days(_day(1))
    assert transactions.tick(instance).run_requests
    transactions.record_ingestion(instance, _day(1))

    transactions.add_days(_day(2))
    transactions.record_ingestion(instance, _day(2))

    result = transactions.tick(instance)
    assert result.run_requests == []
    assert result.skip_message == "no new landing files (1 already ingested)"


def test_a_first_tick_with_every_day_ingested_says_so_and_moves_the_cursor(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    transactions.add_days(_day(1), _day(2))
    transactions.record_ingestion(instance, _day(1), _day(2))

    result = transactions.tick(instance)

    assert result.run_requests == []
    assert result.skip_message == "no new landing files (2 already ingested)"
    assert transactions.source_cursor(result.cursor).newest_day == _day(2)
    # Later ticks trust the cursor: the files stay handled even against an empty instance.
    assert transactions.tick().run_requests == []


def test_a_rewritten_file_is_requested_again(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    transactions.add_days(_day(1), _day(2))
    transactions.tick(instance)
    transactions.record_ingestion(instance, _day(1), _day(2))
    transactions.record_features(instance, _day(1), _day(2))
    time.sleep(0.05)  # past the file system's timestamp granularity

    (transactions.folder / "2026-01-01.csv").write_text("id,ts\ncorrected,\n")

    assert _summary(transactions.tick(instance)) == [((_day(1), _day(1)), [RAW_TX, FEATURES])]
    # Once day 1 is ingested again: day 2's features, which look back on day 1.
    transactions.record_ingestion(instance, _day(1))
    assert _summary(transactions.tick(instance)) == [((_day(2), _day(2)), [FEATURES])]


def _ingested_demo_days(
    settings: Settings, instance: dg.DagsterInstance, days: int
) -> tuple[Landing, Callable[[dg.RunRequest], bool]]:
    """Demo files for days 1..`days`, ingested by the sensor's runs of the real pipeline."""
    landing = Landing(demo_spec(), "transactions", settings)
    write_demo_data(
        settings.landing_root / "fraud", start=_day(1), days=days, rows_per_day=15, seed=5
    )
    run = landing.runner(instance)
    assert all(run(request) for request in landing.tick(instance).run_requests)
    time.sleep(0.05)  # past the file system's timestamp granularity
    return landing, run


def test_files_changed_on_disk_but_not_in_content_are_not_ingested_again(
    settings: Settings,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A `touch`, or the same file delivered again: ingesting it again would rewrite its day and
    the feature days looking back on it, and count them as new training data."""
    landing, _ = _ingested_demo_days(settings, instance, days=3)
    touched, resent = landing.folder / f"{_day(2)}.csv", landing.folder / f"{_day(3)}.csv"
    os.utime(touched)
    resent.write_bytes(resent.read_bytes())

    result = landing.tick(instance)

    assert result.run_requests == []
    assert result.skip_message == "no new landing files (2 already ingested)"
    logged = capsys.readouterr().err + caplog.text
    assert (
        "2 landing file(s) skipped: changed on disk, but with the same bytes (SHA-256) their day "
        "was last ingested from: transactions/2026-01-02.csv, transactions/2026-01-03.csv"
    ) in logged
    # New bytes (the same rows in another order) are ingested again.
    header, *rows = touched.read_text().splitlines()
    touched.write_text("\n".join([header, *reversed(rows)]) + "\n")
    assert _summary(landing.tick(instance)) == [((_day(2), _day(2)), [RAW_TX, FEATURES])]


def test_an_unchanged_file_of_a_day_whose_last_run_failed_is_ingested_again_when_touched(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    """Touching a file is how a user retries its day, e.g. after relaxing the quality gate that
    failed it: the digests of a run that failed are not trusted."""
    landing, _ = _ingested_demo_days(settings, instance, days=3)
    day_file = landing.folder / f"{_day(2)}.csv"
    raw = dg.AssetKey.from_user_string(RAW_TX)

    # Day 2 ingested again from the same file, and then failing a blocking check of its run.
    @dg.asset(
        key=raw,
        partitions_def=daily_partitions(landing.spec),
        check_specs=[dg.AssetCheckSpec("null_rate", asset=raw, blocking=True)],
    )
    def failed_gate(context):  # annotated, dagster cannot resolve the postponed type
        digest = hashlib.sha256(day_file.read_bytes()).hexdigest()
        context.log_event(
            dg.AssetObservation(
                asset_key=raw,
                partition=context.partition_key,
                metadata={SOURCE_DIGESTS: {day_file.name: digest}},
            )
        )
        yield dg.Output(None)
        yield dg.AssetCheckResult(check_name="null_rate", passed=False)

    failed = dg.materialize(
        [failed_gate], instance=instance, partition_key=_day(2).isoformat(), raise_on_error=False
    )
    assert not failed.success
    time.sleep(0.05)
    os.utime(day_file)

    assert _summary(landing.tick(instance)) == [((_day(2), _day(2)), [RAW_TX, FEATURES])]


def test_a_restored_file_is_ingested_again_after_its_broken_redelivery_failed(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    """The broken file failed its day's run (the lake kept the last good load, the UI shows the
    day failed). Putting the good file back, byte for byte, must retry the day."""
    landing, run = _ingested_demo_days(settings, instance, days=3)
    day_file = landing.folder / f"{_day(2)}.csv"
    good = day_file.read_bytes()
    day_file.write_text('event_id,customer_id\n"unterminated,c2\n')
    [broken] = landing.tick(instance).run_requests
    assert not run(broken)
    time.sleep(0.05)

    day_file.write_bytes(good)

    assert _summary(landing.tick(instance)) == [((_day(2), _day(2)), [RAW_TX, FEATURES])]


def _late_file_for_day_2(landing: Landing, instance: dg.DagsterInstance):
    """Twelve days ingested and built, then a late file for day 2: the tick that sees it."""
    landing.add_days(*JAN[:12])
    landing.tick(instance)
    landing.record_ingestion(instance, *JAN[:12])
    landing.record_features(instance, *JAN[:12])
    landing.add_days(_day(2), tag="_late")
    return landing.tick(instance)


def _fail_as(asset: dg.AssetsDefinition, request: dg.RunRequest, instance) -> None:
    """The run the daemon launches for `request`, done by `asset`, which fails it."""
    failed = dg.materialize(
        [asset],
        instance=instance,
        partition_key=request.partition_key,
        tags={"dagster/run_key": request.run_key},
        raise_on_error=False,
    )
    assert not failed.success


def test_late_transactions_file_reruns_its_day_then_the_features_looking_back_on_it(
    transactions: Landing,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ingest = _late_file_for_day_2(transactions, instance)
    assert _summary(ingest) == [((_day(2), _day(2)), [RAW_TX, FEATURES])]
    # The later days wait for day 2's ingestion.
    waiting = transactions.tick(instance)
    assert waiting.run_requests == []
    assert "following 1 ingestion run(s) until they finish" in waiting.skip_message

    transactions.record_ingestion(instance, _day(2))
    rebuild = transactions.tick(instance)
    # transaction_features reads 7 days of transactions: days 3..9 see day 2; day 10 does not.
    assert _summary(rebuild) == [((_day(3), _day(9)), [FEATURES])]
    assert (
        f"rebuilding {FEATURES} 2026-01-03..2026-01-09: their lookback covers transactions "
        "2026-01-02, just ingested" in capsys.readouterr().err + caplog.text
    )
    assert rebuild.run_requests[0].run_key != ingest.run_requests[0].run_key
    assert transactions.tick(instance).run_requests == []


def test_a_late_file_that_fails_to_ingest_rebuilds_no_later_day(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    """A failed ingestion leaves the raw day as it was: rebuilding the days after it would
    recompute the same features and count them as new training data."""
    [request] = _late_file_for_day_2(transactions, instance).run_requests

    # The run the daemon launches for the request fails before day 2 is materialized.
    @dg.asset(
        key=dg.AssetKey.from_user_string(RAW_TX), partitions_def=daily_partitions(transactions.spec)
    )
    def unreadable_file() -> None:
        raise ValueError("2026-01-02_late.csv: cannot read as csv")

    _fail_as(unreadable_file, request, instance)

    result = transactions.tick(instance)
    assert result.run_requests == []
    assert result.skip_message == "no new landing files"  # nothing left waiting


def test_a_late_file_that_fails_a_quality_gate_after_its_write_rebuilds_no_later_day(
    transactions: Landing,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The raw day is materialized, then a blocking check of the same run fails: the later
    days must not be rebuilt from data that failed its gate."""
    [request] = _late_file_for_day_2(transactions, instance).run_requests

    @dg.asset(
        key=dg.AssetKey.from_user_string(RAW_TX),
        partitions_def=daily_partitions(transactions.spec),
        check_specs=[
            dg.AssetCheckSpec(
                "not_empty", asset=dg.AssetKey.from_user_string(RAW_TX), blocking=True
            ),
        ],
    )
    def emptied_day():
        yield dg.Output(None)
        yield dg.AssetCheckResult(check_name="not_empty", passed=False)

    _fail_as(emptied_day, request, instance)
    assert instance.get_materialized_partitions(dg.AssetKey.from_user_string(RAW_TX)) >= {
        _day(2).isoformat()
    }

    result = transactions.tick(instance)
    assert result.run_requests == []
    logged = capsys.readouterr().err + caplog.text
    assert "transactions 2026-01-02 not ingested, or failed a quality gate" in logged


def test_late_customers_file_reaches_the_newest_day(
    customers: Landing, instance: dg.DagsterInstance
) -> None:
    customers.add_days(*JAN[:12])
    customers.tick(instance)
    customers.record_ingestion(instance, *JAN[:12])
    customers.record_features(instance, *JAN[:12])

    customers.add_days(_day(2), tag="_late")
    assert _summary(customers.tick(instance)) == [((_day(2), _day(2)), [RAW_CUST, FEATURES])]
    customers.record_ingestion(instance, _day(2))

    # transaction_features reads the whole customer history: every later day sees the change.
    assert _summary(customers.tick(instance)) == [((_day(3), _day(12)), [FEATURES])]


def test_young_files_wait_for_a_later_tick(settings: Settings) -> None:
    waiting = Landing(demo_spec(min_file_age_seconds=3600), "transactions", settings)
    waiting.add_days(_day(1))
    # Copied with its old modification time kept (cp -p): the inode change time is still now.
    hours_ago = time.time() - 7200
    os.utime(waiting.folder / "2026-01-01.csv", (hours_ago, hours_ago))

    result = waiting.tick()

    assert result.run_requests == []
    assert result.skip_message == "no new landing files (1 still being written)"
    assert waiting.source_cursor(result.cursor) == Cursor()

    ready = Landing(demo_spec(min_file_age_seconds=0), "transactions", settings)
    ready.cursor = result.cursor
    assert _summary(ready.tick()) == [((_day(1), _day(1)), [RAW_TX, FEATURES])]


def test_files_still_being_written_are_ignored(transactions: Landing) -> None:
    transactions.add(".2026-01-05.csv.tmp", "2026-01-05.csv.part", "2026-01-06.csv.partial")

    result = transactions.tick()

    assert result.run_requests == []
    assert result.skip_message == "no new landing files"

    # The writer publishes the finished file with a rename.
    os.replace(transactions.folder / ".2026-01-05.csv.tmp", transactions.folder / "2026-01-05.csv")
    assert _summary(transactions.tick()) == [((_day(5), _day(5)), [RAW_TX, FEATURES])]


def test_badly_named_files_are_reported_once_and_never_requested(
    transactions: Landing, tmp_path: Path
) -> None:
    transactions.add("transactions.csv", "2026-13-45.csv", "2026-01-05.json")
    (tmp_path / "secret.csv").write_text("id,ts\n")
    (transactions.folder / "2026-01-06_x.csv").symlink_to(tmp_path / "secret.csv")

    first = transactions.tick()

    assert first.run_requests == []
    message = first.skip_message
    assert message.startswith("no new landing files; 4 file(s) not ingested: ")
    assert "'transactions.csv' is not named like a day's file" in message
    assert "'2026-13-45.csv': 2026-13-45 is not a valid date" in message
    assert "'2026-01-05.json' has suffix .json; expected .csv" in message
    assert "'2026-01-06_x.csv' resolves outside the landing folder" in message

    # Reported once: the next tick has nothing to say about them.
    assert transactions.tick().skip_message == "no new landing files"
    transactions.add_days(_day(7))
    assert _summary(transactions.tick()) == [((_day(7), _day(7)), [RAW_TX, FEATURES])]


def test_gaps_between_days_split_the_requests(settings: Settings, tmp_path: Path) -> None:
    sales = Landing(featureless_spec(tmp_path), "sales", settings)
    sales.add_days(_day(1), _day(2), _day(4))

    assert _summary(sales.tick()) == [
        ((_day(1), _day(2)), ["shop/raw/sales"]),
        ((_day(4), _day(4)), ["shop/raw/sales"]),
    ]


def test_a_day_without_files_between_landed_days_is_not_built(
    transactions: Landing, instance: dg.DagsterInstance
) -> None:
    transactions.add_days(_day(1), _day(2), _day(4))

    assert _summary(transactions.tick(instance)) == [
        ((_day(1), _day(2)), [RAW_TX, FEATURES]),
        ((_day(4), _day(4)), [RAW_TX, FEATURES]),
    ]
    transactions.record_ingestion(instance, _day(1), _day(2), _day(4))
    transactions.record_features(instance, _day(1), _day(2), _day(4))
    # Day 3's features look back on days 1 and 2, but day 3 has no data and was never built:
    # nothing to rebuild (an empty feature day would fail its checks). Its own file builds it.
    assert transactions.tick(instance).run_requests == []


def test_cursor_round_trips_and_records_the_last_file_handled(transactions: Landing) -> None:
    assert Cursor.parse(None) == Cursor.parse("") == Cursor()
    cursor = Cursor(1_767_225_600_123_456_789, ("2026-01-02.csv", "2026-01-03.csv"), _day(3))
    assert Cursor.parse(cursor.dump()) == cursor
    assert Cursor.parse(Cursor().dump()) == Cursor()

    transactions.add_days(_day(1), _day(2), _day(3))
    parsed = transactions.source_cursor(transactions.tick().cursor)

    changed = {p.name: p.stat().st_ctime_ns for p in transactions.folder.iterdir()}
    assert parsed.changed_ns == max(changed.values())
    assert parsed.names_at == tuple(sorted(n for n, c in changed.items() if c == parsed.changed_ns))
    assert parsed.newest_day == _day(3)
    assert Cursor.parse(parsed.dump()) == parsed


def test_sources_landing_together_are_ingested_in_one_run_before_their_features(
    settings: Settings,
) -> None:
    """Per-source sensors would launch two runs in no guaranteed order, and the first would
    build features before the other raw table exists. One pipeline tick gives one run."""
    spec = demo_spec()
    write_demo_data(settings.landing_root / "fraud", start=_day(1), days=3, rows_per_day=15, seed=5)

    [request] = Landing(spec, "transactions", settings).tick().run_requests

    assert request.asset_selection == [
        raw_key(spec, "transactions"),
        raw_key(spec, "customers"),
        feature_key(spec, "transaction_features"),
    ]
    assert request.partition_key is None  # a range: the days travel in the tags
    result = dg.materialize(
        list(build_pipeline(spec, landing_root=settings.landing_root).assets),
        resources=build_resources(settings),
        tags=request.tags,
        selection=request.asset_selection,
    )
    assert result.success
    lake = DeltaLake(root=settings.lake_root)
    for key in request.asset_selection:
        days = pl.read_delta(lake.table_uri(key))["event_date"].unique().sort().to_list()
        assert days == [_day(1), _day(2), _day(3)], key
    transactions = pl.read_delta(lake.table_uri(raw_key(spec, "transactions")))
    assert transactions.group_by("event_date").len()["len"].to_list() == [15, 15, 15]


def test_days_with_different_sources_get_their_own_runs(settings: Settings) -> None:
    spec = demo_spec()
    transactions = Landing(spec, "transactions", settings)
    customers = Landing(spec, "customers", settings)
    transactions.add_days(_day(1), _day(2), _day(3))
    customers.add_days(_day(1))

    assert _summary(transactions.tick()) == [
        ((_day(1), _day(1)), [RAW_TX, RAW_CUST, FEATURES]),
        ((_day(2), _day(3)), [RAW_TX, FEATURES]),
    ]


def test_a_rebuild_leaves_out_days_built_in_the_same_tick_only_by_sources_it_reads() -> None:
    spec = demo_spec()
    ingested = {"transactions": {_day(2)}}

    def plan(tick_days: dict[str, tuple[dt.date, ...]]) -> list[tuple[dt.date, dt.date]]:
        runs = plan_rebuilds(spec, ingested, tick_days, _day(12), built=None)
        return [(first, last) for _, first, last in runs]

    # Day 5's customers file was ingested with its features in the same tick: not again.
    assert plan({"customers": (_day(5),)}) == [(_day(3), _day(4)), (_day(6), _day(9))]
    # A source the feature table does not read builds none of its days.
    assert plan({"elsewhere": (_day(5),)}) == [(_day(3), _day(9))]


def test_a_range_run_failing_on_one_days_file_is_followed_by_its_other_days(
    settings: Settings,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A range run fails as a whole when one file is unusable, and the cursor has moved past
    every file of the range: without a follow-up, fixing that one file would ingest that day
    alone, and the range's other days never."""
    spec = demo_spec()
    landing = Landing(spec, "transactions", settings)
    write_demo_data(settings.landing_root / "fraud", start=_day(1), days=5, rows_per_day=15, seed=5)
    broken = landing.folder / f"{_day(3)}.csv"
    good = broken.read_text()
    broken.write_text('event_id,customer_id\n"unterminated,c2\n')
    run = landing.runner(instance)

    [whole] = landing.tick(instance).run_requests
    assert not run(whole)

    retries = landing.tick(instance)
    assert _summary(retries) == [
        ((_day(1), _day(2)), [RAW_TX, FEATURES]),
        ((_day(4), _day(5)), [RAW_TX, FEATURES]),
    ]
    logged = capsys.readouterr().err + caplog.text
    assert (
        "failed on the files of transactions 2026-01-03: ingesting its other days again, "
        "2026-01-01..2026-01-02, 2026-01-04..2026-01-05" in logged
    )
    assert "not rebuilt" not in logged  # no later day was waiting for this run
    assert all(run(request) for request in retries.run_requests)
    lake = DeltaLake(root=settings.lake_root)
    built = pl.read_delta(lake.table_uri(feature_key(spec, "transaction_features")))
    assert sorted(built["event_date"].unique()) == [_day(1), _day(2), _day(4), _day(5)]
    assert landing.tick(instance).run_requests == []  # nothing followed any more

    # The file is fixed: its day is ingested, then the later days that look back on it rebuilt.
    broken.write_text(good)
    assert _summary(landing.tick(instance)) == [((_day(3), _day(3)), [RAW_TX, FEATURES])]


def test_files_before_their_partition_exists_wait_for_it_and_never_stop_the_tick(
    transactions: Landing, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A file for today (UTC) or a later day has no daily partition yet: requesting it failed
    the whole tick (`DagsterUnknownPartitionError`), so no other file was picked up either."""
    today = dt.datetime.now(dt.UTC).date()
    yesterday, later = today - dt.timedelta(days=1), today + dt.timedelta(days=3)
    start = transactions.spec.start_date
    transactions.add_days(today, later, yesterday, start - dt.timedelta(days=1))

    result = transactions.tick()

    assert _summary(result) == [((yesterday, yesterday), [RAW_TX, FEATURES])]
    cursor = transactions.source_cursor(result.cursor)
    assert cursor.early_days == (today, later)
    assert cursor.newest_day == yesterday  # a future day must not widen later rebuilds
    logged = capsys.readouterr().err + caplog.text
    assert f"is for {start - dt.timedelta(days=1)}, before the pipeline's start_date {start}" in (
        logged
    )

    # The next day: today's partition exists, and its file is requested without a new file
    # (played here by yesterday's file, already handled: the cursor cannot be moved in time).
    # A waiting day whose file was removed meanwhile is dropped: its run would fail.
    state = json.loads(transactions.cursor)
    waited = Cursor.parse(state["sources"]["transactions"])
    removed = yesterday - dt.timedelta(days=5)
    waiting = (removed, yesterday, later)
    state["sources"]["transactions"] = replace(waited, early_days=waiting).dump()
    transactions.cursor = json.dumps(state)
    released = transactions.tick()
    assert _summary(released) == [((yesterday, yesterday), [RAW_TX, FEATURES])]
    assert transactions.source_cursor(released.cursor).early_days == (later,)

    # Removed before its partition exists: no longer counted as waiting.
    for file in transactions.folder.glob(f"{later}*"):
        file.unlink()
    caplog.clear()
    gone = transactions.tick()
    assert transactions.source_cursor(gone.cursor).early_days == ()
    assert "waiting for their partition" not in caplog.text + capsys.readouterr().err
