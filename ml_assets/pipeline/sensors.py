"""Landing sensors: new files in a source's landing folder become runs for their days.

The cursor is a position in inode-change time (ctime): a tick lists the folder (cheap: names
and one stat each) but only looks further at files changed since the last file it handled, so
its work does not grow with the files already ingested. ctime rather than mtime because copies
that preserve an old mtime (`cp -p`, rsync) still get a fresh ctime.
"""


import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ml_assets.ingest.landing import scan_landing
from ml_assets.pipeline.keys import feature_key, pipeline_tags, raw_key
from ml_assets.pipeline.spec import PipelineSpec

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class Cursor:
    changed_ns: int = 0
    # Names already handled whose ctime equals `changed_ns` (ties at the cursor position).
    names_at: tuple[str, ...] = ()
    newest_day: dt.date | None = None

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
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "changed_ns": self.changed_ns,
                "names_at": list(self.names_at),
                "newest_day": self.newest_day.isoformat() if self.newest_day else None,
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
            return Cursor(self.changed_ns, self.names_at, newest)
        top = max(changed for changed, _ in handled)
        names = {name for changed, name in handled if changed == top}
        if top == self.changed_ns:
            names |= set(self.names_at)
        return Cursor(top, tuple(sorted(names)), newest)


def contiguous_ranges(days: set[dt.date]) -> Iterator[tuple[dt.date, dt.date]]:
    if not days:
        return
    ordered = sorted(days)
    start = prev = ordered[0]
    for day in ordered[1:]:
        if day != prev + dt.timedelta(days=1):
            yield start, prev
            start = day
        prev = day
    yield start, prev


def _range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def _request(
    selection: list[dg.AssetKey], first: dt.date, last: dt.date, tags: dict[str, str], run_key: str
) -> dg.RunRequest:
    if first == last:
        return dg.RunRequest(
            run_key=run_key, asset_selection=selection, partition_key=first.isoformat(), tags=tags
        )
    return dg.RunRequest(
        run_key=run_key, asset_selection=selection, tags={**tags, **_range_tags(first, last)}
    )


def downstream_features(spec: PipelineSpec, source: str) -> dict[str, int | None]:
    """Feature tables that read `source`, with how many later days one day of it affects
    (None: every later day, for history inputs)."""
    affected: dict[str, int | None] = {}
    for name, feature in spec.features.items():
        read = feature.inputs.get(source)
        if read is not None:
            affected[name] = None if read.history == "all" else read.lookback_days
    return affected


def build_landing_sensor(
    spec: PipelineSpec, source_name: str, landing_root: Path
) -> dg.SensorDefinition:
    source = spec.sources[source_name]
    folder = spec.landing_folder(source_name, landing_root)
    features = downstream_features(spec, source_name)
    raw = raw_key(spec, source_name)
    feature_keys = [feature_key(spec, name) for name in features]
    tags = pipeline_tags(spec)
    min_age_ns = int(source.min_file_age_seconds * 1e9)

    @dg.sensor(
        name=f"{spec.name}_{source_name}_landing",
        description=f"Starts ingestion when new {source.format} files land in {folder}",
        asset_selection=[raw, *feature_keys],
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = Cursor.parse(context.cursor)
        files, problems = scan_landing(folder, source.file_suffixes)
        now_ns = time.time_ns()
        new = [f for f in files if cursor.is_new(f.changed_ns, f.path.name)]
        # Still being written (or just copied in): wait for a later tick. Anything changed after
        # the oldest waiting file waits too, or moving the cursor past it would skip that file.
        young = [f.changed_ns for f in new if now_ns - max(f.changed_ns, f.modified_ns) < min_age_ns]
        horizon = min(young, default=now_ns + 1)
        ready = [f for f in new if f.changed_ns < horizon]
        waiting = len(new) - len(ready)
        bad = [p for p in problems if cursor.is_new(p.changed_ns, p.name) and p.changed_ns < horizon]
        for problem in bad:
            context.log.warning(f"{folder}: not ingested: {problem.message}")
        days = {f.day for f in ready}
        new_cursor = cursor.advance(
            [(f.changed_ns, f.path.name) for f in ready] + [(p.changed_ns, p.name) for p in bad],
            days,
        )

        if not ready:
            reason = f"no new files in {folder}"
            if waiting:
                reason += f" ({waiting} still being written)"
            if bad:
                reason += f"; {len(bad)} file(s) not ingested: " + "; ".join(p.message for p in bad)
            return dg.SensorResult(skip_reason=reason, cursor=new_cursor.dump())

        requests: list[dg.RunRequest] = []
        for first, last in contiguous_ranges(days):
            requests.append(
                _request([raw, *feature_keys], first, last, tags,
                         run_key=f"{source_name}:{first}:{last}:{new_cursor.changed_ns}")
            )
        # A late file also changes the features of the later days that look back on it.
        newest = new_cursor.newest_day or max(days)
        for name, reach in features.items():
            later: set[dt.date] = set()
            for day in days:
                stop = newest if reach is None else min(newest, day + dt.timedelta(days=reach))
                later |= {day + dt.timedelta(days=i) for i in range(1, (stop - day).days + 1)}
            for first, last in contiguous_ranges(later - days):
                requests.append(
                    _request([feature_key(spec, name)], first, last, tags,
                             run_key=f"{source_name}:{name}:{first}:{last}:{new_cursor.changed_ns}")
                )
        context.log.info(
            f"{len(ready)} new file(s) for {len(days)} day(s) in {folder}: {len(requests)} run(s)"
        )
        return dg.SensorResult(run_requests=requests, cursor=new_cursor.dump())

    return landing_sensor
