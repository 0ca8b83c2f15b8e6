"""The landing sensor: new files in a pipeline's landing folders become runs for their days.

The cursor is a position in inode-change time (ctime): a tick lists the folder (cheap: names
and one stat each) but only looks further at files changed since the last file it handled, so
its work does not grow with the files already ingested. ctime rather than mtime because copies
that preserve an old mtime (`cp -p`, rsync) still get a fresh ctime.
"""

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType

from ml_assets.ingest.landing import BadLandingFile, files_for_day, scan_landing
from ml_assets.pipeline.automation import latest_materializations
from ml_assets.pipeline.keys import (
    FAILED_PARTITIONS,
    SOURCE_DIGESTS,
    contiguous_ranges,
    describe_days,
    feature_key,
    partition_bounds,
    raw_key,
)
from ml_assets.pipeline.spec import PipelineSpec

RUN_KEY_TAG = "dagster/run_key"
# File names a log line lists before it says how many more there are.
SHOWN_NAMES = 5
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class Cursor:
    changed_ns: int = 0
    # Names already handled whose ctime equals `changed_ns` (ties at the cursor position).
    names_at: tuple[str, ...] = ()
    newest_day: dt.date | None = None
    # Days of files that landed before their daily partition existed (today's, a future
    # day's): requested once it does. Kept here because the cursor has moved past the files.
    early_days: tuple[dt.date, ...] = ()

    @classmethod
    def parse(cls, raw: str | None) -> "Cursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        newest = data.get("newest_day")
        return cls(
            data["changed_ns"],
            tuple(data.get("names_at", ())),
            dt.date.fromisoformat(newest) if newest else None,
            tuple(dt.date.fromisoformat(day) for day in data.get("early_days", ())),
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "changed_ns": self.changed_ns,
                "names_at": list(self.names_at),
                "newest_day": self.newest_day.isoformat() if self.newest_day else None,
                "early_days": [day.isoformat() for day in self.early_days],
            }
        )

    def is_new(self, changed_ns: int, name: str) -> bool:
        return changed_ns > self.changed_ns or (
            changed_ns == self.changed_ns and name not in self.names_at
        )

    def advance(self, handled: list[tuple[int, str]], days: set[dt.date]) -> "Cursor":
        """Move past the handled (ctime, name) entries; remember the newest day seen."""
        newest = max([*days, *([self.newest_day] if self.newest_day else [])], default=None)
        if not handled:
            return Cursor(self.changed_ns, self.names_at, newest, self.early_days)
        top = max(changed for changed, _ in handled)
        names = {name for changed, name in handled if changed == top}
        if top == self.changed_ns:
            names |= set(self.names_at)
        return Cursor(top, tuple(sorted(names)), newest, self.early_days)


def _range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def _request(
    selection: list[dg.AssetKey], first: dt.date, last: dt.date, run_key: str
) -> dg.RunRequest:
    if first == last:
        return dg.RunRequest(
            run_key=run_key, asset_selection=selection, partition_key=first.isoformat()
        )
    return dg.RunRequest(run_key=run_key, asset_selection=selection, tags=_range_tags(first, last))


@dataclass(frozen=True)
class SourceTick:
    """What one tick found in one source's landing folder."""

    days: set[dt.date]
    cursor: Cursor
    waiting: int
    problems: list[str]
    already_ingested: int = 0
    # Files changed on disk (touched, delivered again) with the bytes their day was loaded from.
    unchanged: tuple[str, ...] = ()  # names of the files skipped for that


# When each of the given days was last ingested (ns), for the days a source's raw asset has.
IngestedAt = Callable[[set[dt.date]], Mapping[dt.date, int]]
# For the given days, the SHA-256 of each landing file (by name) their last load read, for the
# days whose last load can be trusted to be what the lake holds.
LoadedDigests = Callable[[set[dt.date]], Mapping[dt.date, Mapping[str, str]]]


def _loaded_as_is(path: Path, digests: Mapping[str, str] | None) -> bool:
    """Whether `path` holds the very bytes its day was last loaded from."""
    if digests is None or path.name not in digests:
        return False
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:  # gone or unreadable since the listing: the ingestion will say why
        return False
    return digest == digests[path.name]


def _still_landed(folder: Path, day: dt.date, suffixes: tuple[str, ...]) -> bool:
    try:
        return bool(files_for_day(folder, day, suffixes)[0])
    except BadLandingFile:  # there is a file, unsafe to read: its ingestion says so
        return True


def scan_source(
    spec: PipelineSpec,
    source_name: str,
    landing_root: Path,
    cursor: Cursor,
    now_ns: int,
    ingested_at: IngestedAt | None = None,
    loaded_digests: LoadedDigests | None = None,
) -> SourceTick:
    """What is new in one source's landing folder since `cursor`.

    `ingested_at` skips files whose day was ingested after they last changed: they are already
    in the lake (ingested by `ml-assets run`, by a run whose range covered the day, or by an
    instance whose sensor state was reset), so the cursor moves past them without requesting
    their days again. `loaded_digests` also skips files that changed on disk but not in content
    (a `touch`, the same file delivered again) when their day's last load read these very
    bytes: ingesting them again would rewrite the day and its features and count them as new
    training data. Only files that changed after their day's ingestion are hashed. A file for
    a day whose daily partition does not exist yet (today, UTC, or later) is requested once it
    does; one for a day before the pipeline's `start_date` is reported and never ingested.
    """
    source = spec.sources[source_name]
    folder = spec.landing_folder(source_name, landing_root)
    first_day, last_day = partition_bounds(spec)
    # Only files the cursor has not passed: a tick does not grow with the files already seen.
    new, problems = scan_landing(folder, source.file_suffixes, is_new=cursor.is_new)
    min_age_ns = int(source.min_file_age_seconds * 1e9)
    # Still being written (or just copied in): wait for a later tick. Anything changed after the
    # oldest waiting file waits too, or moving the cursor past it would skip that file.
    young = [f.changed_ns for f in new if now_ns - max(f.changed_ns, f.modified_ns) < min_age_ns]
    horizon = min(young, default=now_ns + 1)
    ready = [f for f in new if f.changed_ns < horizon]
    bad = [p for p in problems if p.changed_ns < horizon]
    messages = [f"{folder}: not ingested: {p.message}" for p in bad]
    messages += [
        f"{folder}: not ingested: {f.path.name!r} is for {f.day}, before the pipeline's "
        f"start_date {first_day}"
        for f in ready
        if f.day < first_day
    ]
    early = {f.day for f in ready if f.day > last_day}
    ripe = {day for day in cursor.early_days if day <= last_day}
    # A file removed while it waited would make a run that fails for want of it.
    due = {day for day in ripe if _still_landed(folder, day, source.file_suffixes)}
    in_range = [f for f in ready if first_day <= f.day <= last_day]
    changed = fresh = in_range
    if ingested_at is not None and in_range:
        latest = ingested_at({f.day for f in in_range})
        changed = fresh = [
            f for f in in_range if max(f.changed_ns, f.modified_ns) >= latest.get(f.day, -1)
        ]
        again = {f.day for f in changed if f.day in latest}
        if loaded_digests is not None and again:
            digests = loaded_digests(again)
            fresh = [f for f in changed if not _loaded_as_is(f.path, digests.get(f.day))]
    days = {f.day for f in fresh} | due
    handled = [(f.changed_ns, f.path.name) for f in ready] + [(p.changed_ns, p.name) for p in bad]
    moved = cursor.advance(handled, {f.day for f in in_range} | due)
    # A waiting day whose file was removed is dropped now, not once its partition exists: the
    # tick's summary would count it as waiting until then.
    kept = {
        d for d in set(cursor.early_days) - ripe if _still_landed(folder, d, source.file_suffixes)
    }
    return SourceTick(
        days=days,
        cursor=replace(moved, early_days=tuple(sorted(kept | early))),
        waiting=len(new) - len(ready),
        problems=messages,
        already_ingested=len(in_range) - len(changed),
        unchanged=tuple(sorted({f.path.name for f in changed} - {f.path.name for f in fresh})),
    )


def ingestion_times(instance: dg.DagsterInstance, key: dg.AssetKey) -> IngestedAt:
    """`IngestedAt` for one raw asset: when the run behind each day's latest materialization
    started. Not the materialization's own time: the run read the files before then, so a file
    rewritten while it ran may not be in the lake. A materialization reported without a run
    counts at its own time."""

    def ingested_at(days: set[dt.date]) -> dict[dt.date, int]:
        latest = latest_materializations(instance, key, [d.isoformat() for d in days])
        run_ids = sorted({r.run_id for r in latest.values() if r.run_id})
        runs = instance.get_run_records(dg.RunsFilter(run_ids=run_ids)) if run_ids else []
        started = {run.dagster_run.run_id: run.start_time for run in runs if run.start_time}
        return {
            dt.date.fromisoformat(p): int(started.get(r.run_id, r.timestamp) * 1e9)
            for p, r in latest.items()
        }

    return ingested_at


# Observations a raw asset's write records per day, at most: its digests and the IO manager's
# row count.
OBSERVATIONS_PER_WRITE = 4


def loaded_digests(instance: dg.DagsterInstance, key: dg.AssetKey) -> LoadedDigests:
    """`LoadedDigests` for one raw asset, from the observation it records per day.

    A day's digests count only when they come from the run behind its latest materialization,
    that run succeeded, and no later run tried to materialize the day. After a failed run (a
    broken re-delivery, a failed gate or feature step) the day shows as failed, and its file is
    ingested again even with the bytes of the last good load: that is how a user retries it.
    """

    def digests(days: set[dt.date]) -> dict[dt.date, Mapping[str, str]]:
        partitions = [d.isoformat() for d in days]
        latest = latest_materializations(instance, key, partitions)
        run_ids = sorted({r.run_id for r in latest.values() if r.run_id})
        succeeded = (
            {
                run.dagster_run.run_id
                for run in instance.get_run_records(
                    dg.RunsFilter(run_ids=run_ids, statuses=[dg.DagsterRunStatus.SUCCESS])
                )
            }
            if run_ids
            else set()
        )
        found = {}
        for partition, loaded in latest.items():
            if loaded.run_id not in succeeded:
                continue
            tried = instance.get_latest_planned_materialization_info(key, partition)
            if tried is not None and tried.run_id != loaded.run_id:
                continue
            # The day's observations, newest first: the IO manager's row count may follow the
            # digests within the same run.
            for record in instance.fetch_observations(
                dg.AssetRecordsFilter(
                    asset_key=key,
                    asset_partitions=[partition],
                    before_storage_id=loaded.storage_id,
                ),
                limit=OBSERVATIONS_PER_WRITE,
            ).records:
                observation = record.asset_observation
                if record.run_id != loaded.run_id or observation is None:
                    break  # an earlier run's: this load recorded no digests
                if SOURCE_DIGESTS in observation.metadata:
                    found[dt.date.fromisoformat(partition)] = observation.metadata[
                        SOURCE_DIGESTS
                    ].value
                    break
        return found

    return digests


def plan_ingestion(
    spec: PipelineSpec, new_days: dict[str, set[dt.date]]
) -> list[tuple[list[dg.AssetKey], dt.date, dt.date]]:
    """(selection, first day, last day) for each ingestion run, in day order.

    Days with new files for the same set of sources share a run that ingests those sources and
    builds their feature tables, so a feature never reads a raw day that is still being
    ingested, and a failed ingestion skips the features of its days.
    """
    by_day: dict[dt.date, frozenset[str]] = {}
    for source, days in new_days.items():
        for day in days:
            by_day[day] = by_day.get(day, frozenset()) | {source}
    runs: list[tuple[list[dg.AssetKey], dt.date, dt.date]] = []
    for sources in sorted(set(by_day.values()), key=sorted):
        days = {day for day, group in by_day.items() if group == sources}
        features = [f for f in spec.features if set(spec.features[f].inputs) & sources]
        selection = [raw_key(spec, s) for s in spec.sources if s in sources]
        selection += [feature_key(spec, f) for f in features]
        runs += [(selection, first, last) for first, last in contiguous_ranges(days)]
    runs.sort(key=lambda run: run[1])
    return runs


@dataclass(frozen=True)
class PendingIngestion:
    """An ingestion run the sensor follows until it finishes.

    Two things wait for it. Late files change what later days' lookback reads; rebuilding
    those days in the same tick would rebuild them even when the late file fails to ingest
    (from unchanged raw data, and counted as new training data), so the rebuild waits for the
    run to succeed. And a range run fails as a whole when one day's file is unusable; its
    other days are then requested again without that day.
    """

    run_key: str
    requested_ns: int
    days: Mapping[str, tuple[dt.date, ...]]  # source -> the days the run ingests
    # Source -> every day of it ingested in the same tick: the runs of that tick build those
    # days' features (of the feature tables reading the source).
    tick_days: Mapping[str, tuple[dt.date, ...]]

    def dump(self) -> dict:
        return {
            "run_key": self.run_key,
            "requested_ns": self.requested_ns,
            "days": _dump_days(self.days),
            "tick_days": _dump_days(self.tick_days),
        }

    @classmethod
    def parse(cls, data: dict) -> "PendingIngestion":
        return cls(
            data["run_key"],
            data["requested_ns"],
            _parse_days(data["days"]),
            _parse_days(data["tick_days"]),
        )


def _dump_days(days: Mapping[str, tuple[dt.date, ...]]) -> dict[str, list[str]]:
    return {source: [d.isoformat() for d in values] for source, values in days.items()}


def _parse_days(data: Mapping[str, list[str]]) -> dict[str, tuple[dt.date, ...]]:
    return {source: tuple(map(dt.date.fromisoformat, values)) for source, values in data.items()}


# A pending rebuild whose ingestion run never appeared (e.g. deleted) is given up after this.
PENDING_EXPIRY_NS = 24 * 3600 * 10**9


@dataclass(frozen=True)
class IngestionOutcome:
    """What a finished ingestion run did, per source."""

    ingested: dict[str, set[dt.date]]
    # The days of a failed run to request again: those its raw assets did not name as failed.
    retry: dict[str, set[dt.date]]


def failed_partitions(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[dt.date]]:
    """Source -> the days a run's raw assets could not ingest (their unusable files)."""
    failed: dict[str, set[dt.date]] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data.user_failure_data
        value = data.metadata.get(FAILED_PARTITIONS) if data is not None else None
        if isinstance(value, dg.JsonMetadataValue) and isinstance(value.data, dict):
            days = {dt.date.fromisoformat(day) for day in value.data["days"]}
            failed.setdefault(value.data["source"], set()).update(days)
    return failed


def resolve_pending(
    instance: dg.DagsterInstance, spec: PipelineSpec, pending: PendingIngestion, now_ns: int
) -> IngestionOutcome | None:
    """What `pending`'s run did, once it is done; None while it may still ingest some days.

    With the run in the instance: None until it finishes. If it failed, nothing counts as
    ingested: a day can be written and then fail a blocking quality check of the same run, and
    the later days must not be rebuilt from data that failed its gate. The days its raw assets
    did not name as failed are to be requested again. Without a run (deleted, or the days were
    ingested another way): the days materialized after the request, once all of them are or
    the request expired.
    """
    runs = instance.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: pending.run_key}), limit=1)
    if runs:
        run = runs[0].dagster_run
        if not run.is_finished:
            return None
        if run.status != dg.DagsterRunStatus.SUCCESS:
            failed = failed_partitions(instance, run.run_id)
            retry = {
                source: set(pending.days.get(source, ())) - days for source, days in failed.items()
            }
            return IngestionOutcome(
                ingested={source: set() for source in pending.days},
                retry={source: days for source, days in retry.items() if days},
            )
    ingested = {}
    for source, days in pending.days.items():
        at = ingestion_times(instance, raw_key(spec, source))(set(days))
        ingested[source] = {d for d in days if at.get(d, -1) >= pending.requested_ns}
    if runs or all(ingested[s] == set(days) for s, days in pending.days.items()):
        return IngestionOutcome(ingested, retry={})
    if now_ns - pending.requested_ns > PENDING_EXPIRY_NS:
        return IngestionOutcome(ingested, retry={})
    return None


def plan_rebuilds(
    spec: PipelineSpec,
    ingested: Mapping[str, Collection[dt.date]],
    tick_days: Mapping[str, Collection[dt.date]],
    newest: dt.date,
    built: Callable[[dg.AssetKey], set[str]] | None,
) -> list[tuple[list[dg.AssetKey], dt.date, dt.date]]:
    """Feature-only runs for the later days whose lookback covers an ingested day.

    Only days the feature table already has (`built`): a day that was never built has nothing
    to rebuild (it is built when its own files land), and building it now would write an
    empty partition for a day without data. Not the days that had new files, in the same tick,
    for a source the table reads (`tick_days`): their ingestion runs build them. `built` None:
    every day counts as built.
    """
    runs = []
    for name in spec.features:
        later: set[dt.date] = set()
        for source, reach in downstream_reach(spec, name).items():
            for day in ingested.get(source, ()):
                stop = newest if reach is None else min(newest, day + dt.timedelta(days=reach))
                later |= {day + dt.timedelta(days=i) for i in range(1, (stop - day).days + 1)}
        for source in spec.features[name].inputs:
            later -= set(tick_days.get(source, ()))
        if not later:
            continue
        key = feature_key(spec, name)
        if built is not None:
            existing = built(key)
            later = {day for day in later if day.isoformat() in existing}
        runs += [([key], first, last) for first, last in contiguous_ranges(later)]
    return runs


def _days_of_run(
    spec: PipelineSpec,
    days: Mapping[str, Collection[dt.date]],
    selection: list[dg.AssetKey],
    first: dt.date,
    last: dt.date,
) -> dict[str, tuple[dt.date, ...]]:
    """Source -> the days of it one planned ingestion run ingests."""
    return {
        source: tuple(sorted(d for d in source_days if first <= d <= last))
        for source, source_days in days.items()
        if raw_key(spec, source) in selection
    }


# The sensor's cursor: {"v": 2, "sources": {source: Cursor}, "pending": [PendingIngestion]}.
# Version 1 was {source: Cursor} alone.
_STATE_VERSION = 2


def _parse_state(raw: str | None) -> tuple[dict[str, str], list[PendingIngestion]]:
    stored = json.loads(raw) if raw else {}
    if stored.get("v") != _STATE_VERSION:
        return stored, []
    return stored["sources"], [PendingIngestion.parse(p) for p in stored["pending"]]


def _dump_state(cursors: dict[str, Cursor], pending: list[PendingIngestion]) -> str:
    return json.dumps(
        {
            "v": _STATE_VERSION,
            "sources": {name: cursor.dump() for name, cursor in cursors.items()},
            "pending": [p.dump() for p in pending],
        }
    )


def downstream_reach(spec: PipelineSpec, feature: str) -> dict[str, int | None]:
    """For each source a feature table reads: how many later days one day of it affects
    (None: every later day, for history inputs)."""
    return {
        source: None if read.history == "all" else read.lookback_days
        for source, read in spec.features[feature].inputs.items()
        if source in spec.sources
    }


def build_landing_sensor(
    spec: PipelineSpec, landing_root: Path, ingest_job: str
) -> dg.SensorDefinition:
    """One sensor per pipeline, with one cursor per source.

    One sensor rather than one per source: with two sources landing the same day, per-source
    sensors launch two runs in no guaranteed order, and the first one builds features before the
    other source's raw table exists. Its runs are runs of the job `ingest_job`, each selecting
    the assets its days need: they are listed under that job rather than Dagster's hidden
    `__ASSET_JOB`, and carry the job's run tags (the pipeline's, and on Databricks the
    concurrency tag).
    """
    folders = {name: spec.landing_folder(name, landing_root) for name in spec.sources}

    @dg.sensor(
        name=f"{spec.name}_landing",
        description="Starts ingestion when new files land in "
        + ", ".join(str(folder) for folder in folders.values()),
        job_name=ingest_job,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        sources, pending = _parse_state(context.cursor)
        now_ns = time.time_ns()
        ticks = {
            name: scan_source(
                spec,
                name,
                landing_root,
                Cursor.parse(sources.get(name)),
                now_ns,
                ingestion_times(context.instance, raw_key(spec, name)),
                loaded_digests(context.instance, raw_key(spec, name)),
            )
            for name in spec.sources
        }
        problems = [p for tick in ticks.values() for p in tick.problems]
        for problem in problems:
            context.log.warning(problem)
        new_days = {name: tick.days for name, tick in ticks.items() if tick.days}
        skipped = sum(tick.already_ingested for tick in ticks.values())
        if skipped:
            context.log.info(
                f"{skipped} landing file(s) skipped: their days were ingested after the files "
                "last changed"
            )
        unchanged = sorted(
            f"{source}/{n}" for source, tick in ticks.items() for n in tick.unchanged
        )
        if unchanged:
            shown = ", ".join(unchanged[:SHOWN_NAMES])
            more = (
                f" and {len(unchanged) - SHOWN_NAMES} more" if len(unchanged) > SHOWN_NAMES else ""
            )
            context.log.info(
                f"{len(unchanged)} landing file(s) skipped: changed on disk, but with the same "
                f"bytes (SHA-256) their day was last ingested from: {shown}{more}"
            )
        newest_days = [tick.cursor.newest_day for tick in ticks.values() if tick.cursor.newest_day]
        newest = max(newest_days, default=None)

        requests: list[dg.RunRequest] = []
        # Earlier ticks' ingestion runs first: a rebuild waits for its late days' ingestion.
        waiting = []
        for entry in pending:
            outcome = resolve_pending(context.instance, spec, entry, now_ns)
            if outcome is None:
                waiting.append(entry)
                continue
            ingested = outcome.ingested
            # A range run failed on some days' files: its other days again, without them.
            retries = plan_ingestion(spec, outcome.retry)
            for selection, first, last in retries:
                run_key = f"{'+'.join(k.path[-1] for k in selection)}:{first}:{last}:retry:"
                run_key += entry.run_key
                requests.append(_request(selection, first, last, run_key))
                run_days = _days_of_run(spec, outcome.retry, selection, first, last)
                waiting.append(PendingIngestion(run_key, now_ns, run_days, entry.tick_days))
            if retries:
                context.log.warning(
                    f"run key {entry.run_key} failed on the files of "
                    + "; ".join(
                        f"{source} {describe_days(set(entry.days[source]) - days)}"
                        for source, days in outcome.retry.items()
                    )
                    + ": ingesting its other days again, "
                    + ", ".join(f"{first}..{last}" for _, first, last in retries)
                )
            assert newest is not None  # a pending entry comes from a tick that saw files
            # Said only where later days were waiting for a rebuild, and not of the days
            # requested again just above.
            if plan_rebuilds(spec, entry.days, entry.tick_days, newest, built=None):
                for source, days in entry.days.items():
                    failed = set(days) - ingested[source] - outcome.retry.get(source, set())
                    if failed:
                        context.log.warning(
                            f"{source} {describe_days(failed)} not ingested, or failed a "
                            f"quality gate (run key {entry.run_key}): the later days that look "
                            "back on them are not rebuilt"
                        )
            for selection, first, last in plan_rebuilds(
                spec,
                ingested,
                entry.tick_days,
                newest,
                context.instance.get_materialized_partitions,
            ):
                run_key = f"{selection[0].path[-1]}:{first}:{last}:after:{entry.run_key}"
                requests.append(_request(selection, first, last, run_key))
                changed = "; ".join(
                    f"{source} {describe_days(days)}" for source, days in ingested.items() if days
                )
                context.log.info(
                    f"rebuilding {selection[0].to_user_string()} {first}..{last}: their "
                    f"lookback covers {changed}, just ingested"
                )

        # The run key makes a re-evaluated tick (same cursor) launch nothing twice.
        position = max(tick.cursor.changed_ns for tick in ticks.values())
        tick_days = {source: tuple(sorted(days)) for source, days in new_days.items()}
        for selection, first, last in plan_ingestion(spec, new_days):
            run_key = f"{'+'.join(k.path[-1] for k in selection)}:{first}:{last}:{position}"
            requests.append(_request(selection, first, last, run_key))
            run_days = _days_of_run(spec, new_days, selection, first, last)
            if first < last or plan_rebuilds(spec, run_days, tick_days, newest, built=None):
                waiting.append(PendingIngestion(run_key, now_ns, run_days, tick_days))

        cursor = _dump_state({name: tick.cursor for name, tick in ticks.items()}, waiting)
        if not requests:
            reason = "no new landing files"
            if skipped or unchanged:
                reason += f" ({skipped + len(unchanged)} already ingested)"
            if still := sum(tick.waiting for tick in ticks.values()):
                reason += f" ({still} still being written)"
            if early := sum(len(tick.cursor.early_days) for tick in ticks.values()):
                reason += f"; {early} day(s) of files waiting for their partition (after the day)"
            if waiting:
                reason += f"; following {len(waiting)} ingestion run(s) until they finish"
            if problems:
                reason += f"; {len(problems)} file(s) not ingested: " + "; ".join(problems)
            return dg.SensorResult(skip_reason=reason, cursor=cursor)
        if new_days:
            context.log.info(
                "new files for "
                + ", ".join(f"{name}: {len(days)} day(s)" for name, days in new_days.items())
                + f"; {len(requests)} run(s)"
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return landing_sensor
