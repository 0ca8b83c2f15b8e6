"""What is worth a message: read from the Dagster event log, one finished run at a time.

The unit of work is a *finished run* (RUN_SUCCESS, RUN_FAILURE or RUN_CANCELED event), in
event-log order. For each, the run's own records give:
- the run failure itself, with the failed steps and the first line of each error;
- failed asset checks of severity ERROR (check, asset, partition, metadata summary);
- materializations of `*_champion` assets whose metadata says `changed: True` (old → new).
So one storage id (that of the run-finished event) is a complete cursor: everything a run
produced is reported together, after the run ends.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.event_api import RunStatusChangeRecordsFilter

from ml_assets.notify.scrub import redact, safe_tags

FINISHED = (
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
)
CHAMPION_SUFFIX = "_champion"
_MAX_METADATA_ENTRIES = 12
_MAX_VALUE_CHARS = 200


@dataclass(frozen=True)
class Notification:
    kind: str  # run_failure | check_failure | champion_change
    title: str
    lines: tuple[str, ...]
    run_id: str
    job_name: str
    tags: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def payload(self, ui_url: str | None = None) -> dict[str, Any]:
        """A Slack-compatible message: `text` (the fallback every webhook shows), `blocks`, and
        an `ml_assets` object with the same facts for non-Slack receivers (Slack ignores it)."""
        run_link = f"{ui_url.rstrip('/')}/runs/{self.run_id}" if ui_url else None
        context = [f"job `{self.job_name}`", f"run `{self.run_id}`"]
        if self.tags:
            context.append("tags: " + ", ".join(f"{k}={v}" for k, v in self.tags.items()))
        text = "\n".join([f"*{self.title}*", *self.lines, " · ".join(context)])
        if run_link:
            text += f"\n<{run_link}|open the run in Dagster>"
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(self.lines)[:3000]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": " · ".join(context)[:3000]}],
            },
        ]
        if run_link:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open run"},
                            "url": run_link,
                        }
                    ],
                }
            )
        return {
            "text": text,
            "blocks": blocks,
            "ml_assets": {
                "kind": self.kind,
                "run_id": self.run_id,
                "job": self.job_name,
                "tags": self.tags,
                **self.details,
            },
        }


@dataclass(frozen=True)
class FinishedRun:
    storage_id: int
    run_id: str
    status: dg.DagsterEventType
    notifications: tuple[Notification, ...]


def finished_run_records(
    instance: dg.DagsterInstance,
    *,
    after_storage_id: int | None,
    after_timestamp: float | None,
    limit: int,
) -> list[Any]:
    """Run-finished event records after the cursor, oldest first, at most `limit`.

    One query per event type; when a type fills its page, records past its last storage id
    are left for the next tick so that none is skipped between the pages.
    """
    merged: list[Any] = []
    cap: int | None = None
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(
                event_type=event_type,
                after_storage_id=after_storage_id,
                after_timestamp=after_timestamp,
            ),
            limit=limit,
            ascending=True,
        )
        merged.extend(result.records)
        if len(result.records) == limit:
            last = result.records[-1].storage_id
            cap = last if cap is None else min(cap, last)
    merged.sort(key=lambda r: r.storage_id)
    if cap is not None:
        merged = [r for r in merged if r.storage_id <= cap]
    return merged[:limit]


def _metadata_summary(metadata: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in list(metadata.items())[:_MAX_METADATA_ENTRIES]:
        raw = getattr(value, "value", value)
        if isinstance(raw, float):
            shown = f"{raw:.4g}"
        elif isinstance(raw, int | bool | str):
            shown = str(raw)
        elif isinstance(raw, dict | list):
            # JSON metadata. Not `value.text`: on most metadata values that is the
            # `MetadataValue.text` constructor, which rendered as "<function ...>".
            shown = json.dumps(raw, sort_keys=True, default=str)
        else:
            shown = str(raw)
        shown = " ".join(shown.split())
        if len(shown) > _MAX_VALUE_CHARS:
            shown = shown[: _MAX_VALUE_CHARS - 1] + "…"
        lines.append(f"• {key}: {redact(shown)}")
    if len(metadata) > _MAX_METADATA_ENTRIES:
        lines.append(f"• … {len(metadata) - _MAX_METADATA_ENTRIES} more entries")
    return lines


def _first_line(text: str | None) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return redact(first[:300])


def _metadata_value(metadata: dict[str, Any], key: str) -> Any:
    value = metadata.get(key)
    return getattr(value, "value", value)


def _run_notifications(instance: dg.DagsterInstance, record: Any) -> tuple[Notification, ...]:
    entry = record.event_log_entry
    run_id = entry.run_id
    run = instance.get_run_by_id(run_id)
    job_name = run.job_name if run else entry.job_name or "?"
    tags = safe_tags(run.tags if run else {})
    base = {"run_id": run_id, "job_name": job_name, "tags": tags}
    records = instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.STEP_FAILURE,
        },
    ).records
    notes: list[Notification] = []
    step_failures: list[str] = []
    failed_steps: list[str] = []
    for event_record in records:
        event = event_record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue
            asset = evaluation.asset_key.to_user_string()
            partition = evaluation.partition
            where = f"{asset} [{partition}]" if partition else asset
            notes.append(
                Notification(
                    kind="check_failure",
                    title=f"Check failed: {evaluation.check_name} on {where}",
                    lines=(
                        f"ERROR check `{evaluation.check_name}` failed on `{asset}`"
                        + (f", partition `{partition}`" if partition else "")
                        + (
                            " (blocking: downstream assets did not run)"
                            if evaluation.blocking
                            else ""
                        ),
                        *([redact(evaluation.description)] if evaluation.description else []),
                        *_metadata_summary(dict(evaluation.metadata)),
                    ),
                    details={
                        "check": evaluation.check_name,
                        "asset": asset,
                        "partition": partition,
                        "severity": "ERROR",
                        "blocking": evaluation.blocking,
                    },
                    **base,
                )
            )
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event_record.event_log_entry.asset_materialization
            key = materialization.asset_key
            metadata = dict(materialization.metadata)
            if not key.path[-1].endswith(CHAMPION_SUFFIX):
                continue
            if _metadata_value(metadata, "changed") is not True:
                continue
            new = _metadata_value(metadata, "champion_version")
            old = _metadata_value(metadata, "previous_champion_version") or None
            model = key.path[-1].removesuffix(CHAMPION_SUFFIX)
            change = f"v{old} → v{new}" if old else f"v{new} (first champion)"
            rollback = _metadata_value(metadata, "action") == "rollback"
            notes.append(
                Notification(
                    kind="champion_change",
                    title=f"{'Champion rolled back' if rollback else 'New champion'}: {model} "
                    f"{change}",
                    lines=(f"`{key.to_user_string()}`: champion {change}",),
                    details={
                        "asset": key.to_user_string(),
                        "model": model,
                        "previous_version": old,
                        "new_version": new,
                    },
                    **base,
                )
            )
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = getattr(event.event_specific_data, "error", None)
            # Dagster wraps user errors ("Error occurred while executing op ..."): the
            # innermost cause is the one worth reading.
            while error is not None and error.cause is not None:
                error = error.cause
            message = _first_line(error.message if error else event.message)
            step_failures.append(f"• step `{event.step_key}`: {message}")
            failed_steps.append(str(event.step_key))
    notes = _one_message_per_check(notes)
    if record.event_log_entry.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE:
        failed_at = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC)
        # Ad-hoc asset runs have hidden job names (`__ASSET_JOB`): name the failed steps instead.
        label = job_name
        if job_name.startswith("__"):
            label = ", ".join(failed_steps[:3]) or "asset run"
        notes.append(
            Notification(
                kind="run_failure",
                title=f"Run failed: {label}",
                lines=(
                    f"`{job_name}` failed at {failed_at:%Y-%m-%d %H:%M:%S} UTC",
                    *(step_failures or [f"• {_first_line(entry.message)}"]),
                ),
                details={"failed_at": failed_at.isoformat()},
                **base,
            )
        )
    return tuple(notes)


def _one_message_per_check(notes: list[Notification]) -> list[Notification]:
    """A range run records one verdict for the range (no partition) and one per day: report the
    range verdict, which lists the failing days, not each day again."""
    ranged = {
        (n.details["asset"], n.details["check"])
        for n in notes
        if n.kind == "check_failure" and n.details.get("partition") is None
    }
    return [
        n
        for n in notes
        if n.kind != "check_failure"
        or n.details.get("partition") is None
        or (n.details["asset"], n.details["check"]) not in ranged
    ]


def finished_runs(
    instance: dg.DagsterInstance,
    *,
    after_storage_id: int | None,
    lookback_hours: float,
    limit: int,
) -> Iterable[FinishedRun]:
    """Finished runs after the cursor (and within the lookback), each with its notifications."""
    records: Sequence[Any] = finished_run_records(
        instance,
        after_storage_id=after_storage_id,
        after_timestamp=time.time() - lookback_hours * 3600,
        limit=limit,
    )
    for record in records:
        yield FinishedRun(
            storage_id=record.storage_id,
            run_id=record.event_log_entry.run_id,
            status=record.event_log_entry.dagster_event.event_type,
            notifications=_run_notifications(instance, record),
        )
