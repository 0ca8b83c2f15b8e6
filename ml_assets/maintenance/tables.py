"""Delta table maintenance without Dagster: find tables, protect model lineage, compact, vacuum.

Daily predicate overwrites leave one small file per partition per rewrite, and every rewrite
tombstones the previous files. Compaction (`optimize.compact`) rewrites each partition's small
files into files of about `target_size` bytes; vacuum deletes tombstoned files older than the
retention. Time travel to a version needs its files, so a version that a registered model
version was trained on (tags `features_uri` + `features_delta_version`) is passed to vacuum's
`keep_versions`: its files stay whatever the retention.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import PostCommitHookProperties
from mlflow.entities.model_registry import ModelVersion
from mlflow.store.entities import PagedList
from mlflow.tracking import MlflowClient

FEATURES_URI_TAG = "features_uri"
FEATURES_VERSION_TAG = "features_delta_version"
# Our own commits keep the Delta log: expired-log cleanup would make old versions unreadable
# even with their data files present. (Writers' checkpoints may still clean logs older than
# delta.logRetentionDuration, 30 days by default; see docs/operations.md.)
_HOOKS = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def local_path(uri: str) -> Path | None:
    """A local folder for a lake root or table URI, or None for a remote one (s3://, dbfs:/)."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" in uri or uri.startswith("dbfs:"):
        return None
    return Path(uri)


def find_tables(root: str) -> list[Path]:
    """Every Delta table under a local lake root: folders holding a `_delta_log`."""
    base = local_path(root)
    if base is None:
        raise ValueError(
            f"lake root {root!r} is not a local folder: maintenance walks local lakes only "
            "(on Databricks, use its OPTIMIZE/VACUUM with the same protected versions)"
        )
    if not base.exists():
        return []
    found = []
    for folder, dirs, _ in os.walk(base):
        if "_delta_log" in dirs:
            found.append(Path(folder))
            dirs.clear()  # partitions and the log itself are not tables
        else:
            dirs.sort()
    return sorted(found)


def _key(path: str | Path) -> str:
    local = local_path(str(path))
    return str(local.resolve()) if local is not None else str(path).rstrip("/")


@dataclass(frozen=True)
class Lineage:
    """A registered model version that points at a Delta table version."""

    model: str
    version: str
    table_version: int


def _pages(search: Callable[..., PagedList], **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(max_results=100, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _version_tags(client: MlflowClient, mv: ModelVersion) -> Mapping[str, str]:
    tags = mv.tags
    if isinstance(tags, Mapping):
        return tags
    # Unity Catalog's search results carry no tags: MLflow's ModelVersionSearch turns `tags`
    # into a method that raises, and says to read the version on its own.
    return client.get_model_version(mv.name, mv.version).tags


def protected_versions(client: MlflowClient) -> dict[str, list[Lineage]]:
    """Table path (resolved) → the registered model versions trained on one of its versions.

    Model by model: Unity Catalog searches versions only by model name (or run), and returns
    them without tags, so each version's tags are read on their own there."""
    found: dict[str, list[Lineage]] = defaultdict(list)
    for model in _pages(client.search_registered_models):
        search = f"name = '{model.name}'"
        for mv in _pages(client.search_model_versions, filter_string=search):
            tags = _version_tags(client, mv)
            uri = tags.get(FEATURES_URI_TAG)
            version = tags.get(FEATURES_VERSION_TAG)
            if uri and version not in (None, ""):
                found[_key(uri)].append(Lineage(mv.name, str(mv.version), int(version)))
    return dict(found)


@dataclass(frozen=True)
class Footprint:
    active_files: int
    active_bytes: int
    disk_files: int  # data files on disk, referenced or not (what vacuum can remove)
    disk_bytes: int
    version: int


def data_files(path: Path) -> dict[str, int]:
    """The table's data files on disk, referenced or not: path relative to the table -> bytes."""
    found = {}
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != "_delta_log"]
        for name in files:
            if name.endswith(".parquet"):
                file = Path(folder) / name
                found[file.relative_to(path).as_posix()] = file.stat().st_size
    return found


def footprint(path: Path) -> Footprint:
    table = DeltaTable(str(path))
    actions = pl.DataFrame(table.get_add_actions(flatten=True))
    sizes = actions.get_column("size_bytes").to_list() if "size_bytes" in actions.columns else []
    on_disk = data_files(path)
    return Footprint(
        active_files=len(sizes),
        active_bytes=int(sum(sizes)),
        disk_files=len(on_disk),
        disk_bytes=sum(on_disk.values()),
        version=table.version(),
    )


@dataclass
class TableReport:
    table: str
    before: Footprint
    after: Footprint | None = None
    compacted_files_removed: int = 0
    compacted_files_added: int = 0
    vacuumed_files: int = 0
    protected: list[Lineage] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def protected_note(self) -> str:
        if not self.protected:
            return ""
        return "; ".join(
            f"v{p.table_version} (model {p.model} v{p.version})" for p in self.protected
        )


def _retry(action, *, attempts: int = 5, base_delay: float = 0.2):
    """Compaction loses against a concurrent overwrite: retry, the table is re-read each time."""
    for attempt in range(attempts):
        try:
            return action()
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(base_delay * 2**attempt)
    return None


def maintain_table(
    path: Path,
    *,
    retention_hours: float,
    target_size: int,
    dry_run: bool,
    protected: Iterable[Lineage] = (),
) -> TableReport:
    started = time.perf_counter()
    uri = str(path)
    # Sorted by table version (then model), so reports read in order.
    ordered = sorted(protected, key=lambda p: (p.table_version, p.model, int(p.version)))
    report = TableReport(table=uri, before=footprint(path), protected=ordered)
    current = report.before.version
    keep = sorted({p.table_version for p in report.protected if p.table_version <= current})
    missing = [p for p in report.protected if p.table_version > current]
    if missing:
        # A tag naming a version this table never had: recorded, nothing to keep for it.
        report.notes.append(f"tags name versions newer than the table (v{current}): {missing}")
    if not dry_run:
        metrics = _retry(
            lambda: DeltaTable(uri).optimize.compact(
                target_size=target_size, post_commithook_properties=_HOOKS
            )
        )
        report.compacted_files_removed = int(metrics.get("numFilesRemoved", 0))
        report.compacted_files_added = int(metrics.get("numFilesAdded", 0))
    on_disk = data_files(path)
    removed = DeltaTable(uri).vacuum(
        retention_hours=max(0, round(retention_hours)),
        dry_run=dry_run,
        enforce_retention_duration=False,
        keep_versions=keep or None,
        post_commithook_properties=_HOOKS,
    )
    # delta-rs lists every tombstoned file past the retention, also the ones an earlier vacuum
    # already deleted (the log keeps their tombstones): count only files that were on disk.
    report.vacuumed_files = sum(unquote(file) in on_disk for file in removed)
    report.after = footprint(path)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def markdown(reports: list[TableReport], root: str, *, dry_run: bool) -> str:
    lines = [
        f"Lake `{root}`{' (dry run: nothing changed)' if dry_run else ''}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| table | active files | on-disk files | on-disk bytes | compacted | vacuumed "
        "| protected versions |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        name = _relative(r.table, root)
        if r.after is None:
            lines.append(f"| {name} | skipped: {r.skipped} | | | | | |")
            continue
        lines.append(
            f"| {name} | {r.before.active_files} → {r.after.active_files} "
            f"| {r.before.disk_files} → {r.after.disk_files} "
            f"| {_size(r.before.disk_bytes)} → {_size(r.after.disk_bytes)} "
            f"| {r.compacted_files_removed} → {r.compacted_files_added} "
            f"| {r.vacuumed_files} | {r.protected_note or '-'} |"
        )
    return "\n".join(lines)


def _relative(table: str, root: str) -> str:
    base = local_path(root)
    try:
        return str(Path(table).relative_to(base)) if base else table
    except ValueError:
        return table


def maintain_lake(
    root: str,
    *,
    client: MlflowClient | None,
    retention_hours: float,
    target_size: int,
    dry_run: bool,
    log=None,
) -> list[TableReport]:
    """Compact and vacuum every table under `root`. A table that fails is reported as skipped
    and the others still run. Without an MLflow client, nothing is protected: refused."""
    if client is None:
        raise ValueError("maintenance needs the model registry to know which versions to keep")
    lineage: Mapping[str, list[Lineage]] = protected_versions(client)
    reports = []
    for path in find_tables(root):
        protected = lineage.get(_key(path), [])
        try:
            report = maintain_table(
                path,
                retention_hours=retention_hours,
                target_size=target_size,
                dry_run=dry_run,
                protected=protected,
            )
        except Exception as error:  # one broken table must not stop the others
            empty = Footprint(0, 0, 0, 0, -1)
            try:
                before = footprint(path)
            except Exception:
                before = empty
            report = TableReport(table=str(path), before=before, protected=protected)
            report.skipped = f"{type(error).__name__}: {error}"
            if log:
                log.warning(f"{path}: maintenance failed: {report.skipped}")
        reports.append(report)
        if log:
            log.info(
                f"{path}: files {report.before.disk_files} → "
                f"{report.after.disk_files if report.after else '?'}"
                + (f"; kept versions {report.protected_note}" if protected else "")
            )
    return reports
