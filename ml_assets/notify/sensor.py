"""One sensor posts run failures, failed ERROR checks and champion changes to a webhook."""

from __future__ import annotations

import dagster as dg

from ml_assets.notify.events import finished_runs
from ml_assets.notify.webhook import DeliveryError, Webhook, describe_url

NOTIFICATION_SENSOR = "ml_assets_notifications"
WEBHOOK_SETTING = "ML_ASSETS_WEBHOOK_URL"


def build_notification_sensor(
    webhook_url: str | None,
    *,
    name: str = NOTIFICATION_SENSOR,
    ui_url: str | None = None,
    minimum_interval_seconds: int = 30,
    lookback_hours: float = 24.0,
    max_runs_per_tick: int = 50,
    timeout_seconds: float = 5.0,
    attempts: int = 3,
    backoff_seconds: float = 0.5,
) -> dg.SensorDefinition:
    """A sensor (on by default) that reads finished runs from the event log after its cursor
    and posts one Slack-compatible JSON message per run failure, failed ERROR check and
    champion change to `webhook_url`.

    - `webhook_url` None or empty: every tick skips, saying so; nothing is sent.
    - Delivery is at-least-once. The cursor (storage id of the last run-finished event whose
      messages were all delivered) only moves past a run once its messages went out. A 5xx,
      429, timeout or refused connection, after `attempts` tries with back-off, ends the tick
      and the same run is tried again next tick, so a message sent before the failure in that
      run may be sent twice. A 4xx is logged and the message dropped: retrying a rejected
      payload would block every later message.
    - Only runs that finished within `lookback_hours` are considered, so a first start (or a
      restart after the URL was unset for a while) does not replay old history.
    - `ui_url` (the Dagster UI's base URL) adds a link to each run.
    """
    webhook = (
        Webhook(
            webhook_url,
            timeout_seconds=timeout_seconds,
            attempts=attempts,
            backoff_seconds=backoff_seconds,
        )
        if webhook_url
        else None
    )

    @dg.sensor(
        name=name,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Posts run failures, failed ERROR asset checks and champion changes to the "
        f"webhook in {WEBHOOK_SETTING} (Slack-compatible JSON). Skips when it is unset.",
    )
    def notifications(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        if webhook is None:
            return dg.SkipReason(f"{WEBHOOK_SETTING} is not set: notifications are off")
        cursor = int(context.cursor) if context.cursor else None
        sent = dropped = runs = 0
        for run in finished_runs(
            context.instance,
            after_storage_id=cursor,
            lookback_hours=lookback_hours,
            limit=max_runs_per_tick,
        ):
            for note in run.notifications:
                try:
                    webhook.post(note.payload(ui_url))
                    sent += 1
                except DeliveryError as error:
                    if error.retryable:
                        context.log.warning(
                            f"{error}; run {run.run_id} will be notified again next tick"
                        )
                        return dg.SkipReason(
                            f"delivery to {describe_url(webhook.url)} failed ({error}); "
                            f"sent {sent} message(s) this tick, retrying from run {run.run_id}"
                        )
                    dropped += 1
                    context.log.error(f"{error}; dropped the {note.kind} message of {run.run_id}")
            runs += 1
            # Past this run only once all of its messages are out (at-least-once).
            context.update_cursor(str(run.storage_id))
        if not runs:
            return dg.SkipReason("no runs finished since the last tick")
        return dg.SkipReason(
            f"{runs} finished run(s) checked: {sent} message(s) sent"
            + (f", {dropped} rejected by the webhook and dropped" if dropped else "")
        )

    return notifications
