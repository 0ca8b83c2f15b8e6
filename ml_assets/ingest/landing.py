"""Which landing files belong to which daily partition.

A landing file is named after the day it holds: `YYYY-MM-DD.csv`, or `YYYY-MM-DD_<tag>.csv` for
a second or late file of the same day (`2026-01-05_late.csv`). Files whose names start with a dot
or end in a temporary suffix are still being written and are ignored.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:_[A-Za-z0-9][A-Za-z0-9_-]*)?(\.[a-z]+)$")
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")


class BadLandingFile(ValueError):
    """A landing file that can never be ingested as named or placed."""


def is_in_progress(name: str) -> bool:
    return name.startswith((".", "_", "~")) or name.endswith(IN_PROGRESS_SUFFIXES)


def partition_day(name: str, suffixes: tuple[str, ...]) -> dt.date:
    """The day a landing file belongs to, from its name; raises BadLandingFile if none."""
    match = _NAME.match(name)
    if not match:
        raise BadLandingFile(
            f"{name!r} is not named like a day's file (expected YYYY-MM-DD[_tag]{suffixes[0]})"
        )
    if match.group(2) not in suffixes:
        raise BadLandingFile(
            f"{name!r} has suffix {match.group(2)}; expected {' or '.join(suffixes)}"
        )
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        raise BadLandingFile(f"{name!r}: {match.group(1)} is not a valid date") from None


def check_inside(folder: Path, path: Path) -> None:
    """Refuse a file that resolves outside the landing folder (symlinks, `..` tricks)."""
    real_folder = folder.resolve()
    if not path.resolve().is_relative_to(real_folder):
        raise BadLandingFile(f"{path.name!r} resolves outside the landing folder {real_folder}")


@dataclass(frozen=True)
class LandingFile:
    path: Path
    day: dt.date
    # Inode change time: set on create, copy and rename, so a copied file with an old mtime is
    # still seen as new by the sensor.
    changed_ns: int
    modified_ns: int


@dataclass(frozen=True)
class LandingProblem:
    name: str
    changed_ns: int
    message: str


def scan_landing(
    folder: Path,
    suffixes: tuple[str, ...],
    *,
    is_new: Callable[[int, str], bool] | None = None,
) -> tuple[list[LandingFile], list[LandingProblem]]:
    """All usable landing files in `folder`, plus one problem per file that can never be used.

    `is_new(ctime_ns, name)`: when given, files it rejects are skipped right after their stat,
    before any name parsing or path resolution, so a sensor tick costs one listing plus one
    stat per file, however many files earlier ticks already handled.
    """
    files: list[LandingFile] = []
    problems: list[LandingProblem] = []
    if not folder.is_dir():
        return files, problems
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_in_progress(entry.name) or entry.is_dir(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:  # removed between listing and stat
                continue
            if is_new is not None and not is_new(stat.st_ctime_ns, entry.name):
                continue
            path = Path(entry.path)
            try:
                day = partition_day(entry.name, suffixes)
                # A directory entry's name has no `/`, so only a link can lead outside.
                if entry.is_symlink():
                    check_inside(folder, path)
            except BadLandingFile as problem:
                problems.append(LandingProblem(entry.name, stat.st_ctime_ns, str(problem)))
                continue
            files.append(LandingFile(path, day, stat.st_ctime_ns, stat.st_mtime_ns))
    return files, problems


def files_for_day(
    folder: Path, day: dt.date, suffixes: tuple[str, ...]
) -> tuple[list[Path], list[str]]:
    """The landing files of one day, in name order (so a `_late` file comes after the main one),
    and the problems of the files that start with the day but are not its files
    (`2026-01-05.csv.bak`, a wrong suffix): those are left out, as the sensor leaves them out.

    A file named for the day but unsafe to read (a link out of the folder) raises, naming it.
    """
    prefix = day.isoformat()
    found: list[Path] = []
    skipped: list[str] = []
    if not folder.is_dir():
        return found, skipped
    for path in sorted(folder.glob(f"{prefix}*")):
        if is_in_progress(path.name) or path.is_dir():
            continue
        try:
            named_day = partition_day(path.name, suffixes)
        except BadLandingFile as problem:
            skipped.append(str(problem))
            continue
        if named_day != day:
            continue
        check_inside(folder, path)
        found.append(path)
    return found, skipped
