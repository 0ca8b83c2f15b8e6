"""The notification sensor against a real webhook on 127.0.0.1 and real Dagster events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from ml_assets.notify import build_notification_sensor
from ml_assets.notify.scrub import looks_secret, redact, safe_tags
from ml_assets.notify.webhook import DeliveryError, Webhook

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")
TOKEN = "dapi0123456789abcdef0123456789abcdef"
PASSWORD = "hunter2-Secret!"
RUN_TAGS = {
    "team": "fraud-ml",
    ".dagster/hidden": "internal",
    "db_password": PASSWORD,
    "note": TOKEN,
}


class Receiver:
    """A webhook on 127.0.0.1: records JSON bodies; answers `statuses` in turn, then 200."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.payloads.append(json.loads(body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/XXXX"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def texts(self) -> list[str]:
        return [p["text"] for p in self.payloads]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@dg.asset(key=["fraud", "raw", "broken"])
def broken() -> None:
    raise RuntimeError(f"cannot reach the store with password={PASSWORD}")


@dg.asset(key=["fraud", "raw", "transactions"], partitions_def=DAILY)
def transactions() -> None:
    return None


@dg.asset_check(asset=transactions, blocking=True, partitions_def=DAILY)
def null_rate() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description="amount null rate above threshold",
        metadata={"column": "amount", "null_rate": 0.4213, "threshold": 0.05, "rows": 600},
    )


@dg.asset_check(asset=transactions, partitions_def=DAILY)
def only_a_warning() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


@dg.asset(key=["fraud", "features", "downstream"], deps=[transactions], partitions_def=DAILY)
def downstream() -> None:
    return None


def _champion(changed: bool, new: int, old: int, **extra: str) -> dg.AssetsDefinition:
    @dg.asset(key=["fraud", "models", "fraud_detector_champion"])
    def champion() -> dg.MaterializeResult:
        # Same metadata as ml_assets.pipeline.promotion's champion asset (and its rollback).
        return dg.MaterializeResult(
            metadata={
                "champion_version": new,
                "previous_champion_version": old,
                "changed": changed,
                **extra,
            }
        )

    return champion


def _produce_events(instance: dg.DagsterInstance) -> None:
    failed = dg.materialize([broken], instance=instance, tags=RUN_TAGS, raise_on_error=False)
    assert not failed.success
    gated = dg.materialize(
        [transactions, downstream, null_rate, only_a_warning],
        instance=instance,
        partition_key="2026-01-05",
        raise_on_error=False,
    )
    assert not gated.success
    assert dg.materialize([_champion(True, 3, 2)], instance=instance).success
    assert dg.materialize([_champion(False, 3, 3)], instance=instance).success


def _tick(instance: dg.DagsterInstance, url: str | None, cursor: str | None = None):
    sensor = build_notification_sensor(url, backoff_seconds=0.01, timeout_seconds=2)
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    result = sensor(context)
    return result, context.cursor


def test_messages_for_failures_checks_and_champion_changes(receiver: Receiver) -> None:
    with dg.instance_for_test() as instance:
        _produce_events(instance)
        result, cursor = _tick(instance, receiver.url)

        kinds = [p["ml_assets"]["kind"] for p in receiver.payloads]
        # Run 1: the failed asset. Run 2: the failed ERROR check, then its run's failure (the
        # WARN check is not reported). Run 3: the champion change; run 4 (unchanged): nothing.
        assert kinds == [
            "run_failure",
            "check_failure",
            "run_failure",
            "champion_change",
        ], receiver.texts()
        assert "4 finished run(s) checked: 4 message(s) sent" in result.skip_message

        failure, check, _, champion = receiver.payloads
        assert failure["text"].startswith("*Run failed: fraud__raw__broken*")
        assert "step `fraud__raw__broken`" in failure["text"]
        assert "cannot reach the store" in failure["text"]
        assert failure["blocks"][0]["type"] == "header"

        assert check["ml_assets"]["check"] == "null_rate"
        assert check["ml_assets"]["asset"] == "fraud/raw/transactions"
        assert check["ml_assets"]["partition"] == "2026-01-05"
        assert "downstream assets did not run" in check["text"]
        assert "null_rate: 0.4213" in check["text"]
        assert "threshold: 0.05" in check["text"]
        assert "only_a_warning" not in json.dumps(receiver.payloads)

        assert champion["ml_assets"]["previous_version"] == 2
        assert champion["ml_assets"]["new_version"] == 3
        assert "fraud_detector v2 → v3" in champion["text"]

        # Tags: `.`-prefixed and secret-looking ones are gone, the others are kept.
        assert failure["ml_assets"]["tags"]["team"] == "fraud-ml"
        everything = json.dumps(receiver.payloads)
        assert ".dagster/hidden" not in everything
        assert "db_password" not in everything
        for secret in (TOKEN, PASSWORD):
            assert secret not in everything

        # A second tick from the saved cursor sends nothing new.
        count = len(receiver.payloads)
        result, cursor2 = _tick(instance, receiver.url, cursor)
        assert len(receiver.payloads) == count
        assert result.skip_message == "no runs finished since the last tick"
        assert cursor2 == cursor

        # A new failure after that is sent, and only it.
        dg.materialize([broken], instance=instance, raise_on_error=False)
        _tick(instance, receiver.url, cursor)
        assert [p["ml_assets"]["kind"] for p in receiver.payloads[count:]] == ["run_failure"]


def test_the_first_champion_is_announced_as_such(receiver: Receiver) -> None:
    with dg.instance_for_test() as instance:
        # The promotion asset records 0 when there was no champion before.
        assert dg.materialize([_champion(True, 1, 0)], instance=instance).success
        _tick(instance, receiver.url)

        [champion] = receiver.payloads
        assert champion["ml_assets"]["previous_version"] is None
        assert "New champion: fraud_detector v1 (first champion)" in champion["text"]
        assert "none" not in champion["text"]


def test_a_rollback_is_announced_as_such(receiver: Receiver) -> None:
    with dg.instance_for_test() as instance:
        assert dg.materialize([_champion(True, 1, 2, action="rollback")], instance=instance).success
        _tick(instance, receiver.url)

        [champion] = receiver.payloads
        assert "Champion rolled back: fraud_detector v2 → v1" in champion["text"]


def test_nothing_sent_without_a_url(receiver: Receiver) -> None:
    with dg.instance_for_test() as instance:
        dg.materialize([broken], instance=instance, raise_on_error=False)
        for url in (None, ""):
            result, cursor = _tick(instance, url)
            assert result.skip_message == "ML_ASSETS_WEBHOOK_URL is not set: notifications are off"
            assert cursor is None
        assert receiver.payloads == []


def test_server_errors_are_retried_and_an_outage_keeps_the_cursor(receiver: Receiver) -> None:
    with dg.instance_for_test() as instance:
        dg.materialize([broken], instance=instance, raise_on_error=False)
        # Two 503s, then success: delivered within the tick's retries.
        receiver.statuses = [503, 503]
        _, cursor = _tick(instance, receiver.url)
        assert len(receiver.payloads) == 1
        assert cursor is not None

        # An outage longer than the retries: the cursor stays, the next tick delivers.
        dg.materialize([broken], instance=instance, raise_on_error=False)
        receiver.statuses = [500, 500, 500]
        result, kept = _tick(instance, receiver.url, cursor)
        assert "delivery to http://127.0.0.1" in result.skip_message
        assert "/services/" not in result.skip_message  # the webhook path is a secret too
        assert kept == cursor
        assert len(receiver.payloads) == 1
        _, moved = _tick(instance, receiver.url, kept)
        assert len(receiver.payloads) == 2
        assert int(moved) > int(cursor)


def test_rejected_payload_is_dropped_not_retried_forever(receiver: Receiver) -> None:
    with dg.instance_for_test() as instance:
        dg.materialize([broken], instance=instance, raise_on_error=False)
        receiver.statuses = [400]
        result, cursor = _tick(instance, receiver.url)
        assert "1 rejected by the webhook and dropped" in result.skip_message
        assert cursor is not None
        assert receiver.payloads == []


def test_unreachable_webhook_times_out_quickly() -> None:
    # Port 9 (discard) on 127.0.0.1 is closed: connection refused, retried, then given up.
    hook = Webhook("http://127.0.0.1:9/hook", timeout_seconds=0.5, attempts=2, backoff_seconds=0)
    with pytest.raises(DeliveryError) as error:
        hook.post({"text": "x"})
    assert error.value.retryable


def test_scrubbing_rules() -> None:
    assert safe_tags(RUN_TAGS) == {"team": "fraud-ml"}
    assert safe_tags({"dagster/partition": "2026-01-05", "api_key": "x"}) == {
        "dagster/partition": "2026-01-05"
    }
    assert looks_secret("ghp_abcdefghijklmnopqrstuvwxyz0123")
    assert not looks_secret("fraud/models/fraud_detector_champion")
    assert not looks_secret("7c1e0b0e-2d1f-4f7e-9c55-2b8d1f0e4a11")  # a run id
    assert redact("postgres://ml:s3cret@db:5432/x") == "postgres://[redacted]@db:5432/x"
    assert "s3cret" not in redact("connect failed, token=s3cret")
