"""Benchmark: the landing sensor's tick time with many files already in the landing folder.

The real `fraud_landing` sensor, from `build_definitions`, is evaluated the way the daemon does
it (`sensor.evaluate_tick(dg.build_sensor_context(instance=..., cursor=..., definitions=...))`
on a persistent instance) against a landing folder of N transaction files (20 per day, named
`YYYY-MM-DD_pNN.csv`; the sensor never reads their contents). Three ticks per size:

* ``first``  -- no cursor: all N files are new (one range run request for all their days).
* ``steady`` -- the cursor the first tick returned: all N files already seen, nothing to do.
* ``new10``  -- that cursor again after 10 more files landed (10 new days among N seen).

The steady tick must not grow with the files already seen; it is measured at two folder sizes
(default 1,000 and 10,000) so the growth per 1,000 seen files is visible. Each tick is timed
best-of-`--repeat` (evaluating with the same cursor is repeatable: a tick changes nothing on
disk). The sensor skips files younger than `min_file_age_seconds`, so the script waits that
long after writing files. For context it also times `scan_landing` alone (list + stat +
name parse + symlink check of every file), the part of a tick that sees every file, and a bare
`os.scandir` + stat of the folder, the floor of any tick that stats every file.

    .venv/bin/python benchmarks/sensor_tick.py --files 1000,10000 --json out.json
    .venv/bin/python benchmarks/sensor_tick.py --quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import command_line, dagster_instance, demo_settings, measure, report

FILES_PER_DAY = 20
NEW_FILES = 10
FIRST_DAY = dt.date(2025, 1, 1)  # the demo pipeline's start_date: every day is a partition
SENSOR = "fraud_landing"


def _write(folder: Path, days: range, per_day: int) -> None:
    for index in days:
        day = FIRST_DAY + dt.timedelta(days=index)
        for part in range(per_day):
            (folder / f"{day.isoformat()}_p{part:02d}.csv").write_text("event_id\n")


def _wait_until_old(source: Any) -> None:
    # The sensor leaves files younger than min_file_age_seconds for a later tick.
    time.sleep(source.min_file_age_seconds + 0.5)


def _best(fn: Any, repeat: int) -> tuple[float, list[float], Any]:
    """(best seconds, all seconds, last result) of `repeat` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, result


def _list_and_stat(folder: Path) -> int:
    """The floor of any tick that looks at every file: one listing and one stat per file."""
    with os.scandir(folder) as entries:
        return sum(1 for entry in entries if entry.stat(follow_symlinks=False).st_ctime_ns)


def _tick(defs: Any, instance: Any, cursor: str | None) -> Any:
    """One evaluation of the landing sensor, as the daemon runs it."""
    import dagster as dg

    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return defs.get_sensor_def(SENSOR).evaluate_tick(context)


def measure_sizes(sizes: list[int], repeat: int, workdir: Path) -> list[dict[str, Any]]:
    """Every size's folder is written first, so the sensor's file-age wait is paid once per
    phase rather than once per size."""
    from ml_assets.definitions import build_definitions
    from ml_assets.ingest.landing import scan_landing
    from ml_assets.pipeline.spec import load_spec
    from ml_assets.settings import DEMO_PIPELINE_SPEC

    spec = load_spec(DEMO_PIPELINE_SPEC)
    source = spec.sources["transactions"]
    homes = {n: workdir / f"files_{n}" for n in sizes}
    folders = {}
    for n, home in homes.items():
        folders[n] = spec.landing_folder("transactions", demo_settings(home).landing_root)
        folders[n].mkdir(parents=True)
        _write(folders[n], range(n // FILES_PER_DAY), FILES_PER_DAY)
    _wait_until_old(source)

    results, pending = {}, {}
    for n, home in homes.items():
        defs = build_definitions(demo_settings(home))
        tick = functools.partial(_tick, defs, dagster_instance(home))
        first_s, first_all, first = _best(functools.partial(tick, None), repeat)
        assert first.run_requests, "the first tick must request runs for the landed days"
        cursor = first.cursor
        steady_s, steady_all, steady = _best(functools.partial(tick, cursor), repeat)
        assert not steady.run_requests, "a tick with nothing new must request nothing"
        scan = functools.partial(scan_landing, folders[n], source.file_suffixes)
        scan_s, _, (files, _) = _best(scan, repeat)
        assert len(files) == n // FILES_PER_DAY * FILES_PER_DAY
        stat_s, _, _ = _best(functools.partial(_list_and_stat, folders[n]), repeat)
        results[n] = {
            "files": len(files),
            "first_seconds": first_s,
            "steady_seconds": steady_s,
            "scan_landing_seconds": scan_s,
            "list_and_stat_seconds": stat_s,
            "first_all": first_all,
            "steady_all": steady_all,
            "first_run_requests": len(first.run_requests),
            "cursor_bytes": len(cursor or ""),
        }
        pending[n] = functools.partial(tick, cursor)

    for n in sizes:  # NEW_FILES files of one new day, then the same cursor again
        _write(folders[n], range(n // FILES_PER_DAY, n // FILES_PER_DAY + 1), NEW_FILES)
    _wait_until_old(source)
    for n, later_tick in pending.items():
        new_s, new_all, new = _best(later_tick, repeat)
        assert new.run_requests, "the new files must be picked up"
        results[n].update(new10_seconds=new_s, new10_all=new_all)
    return [results[n] for n in sizes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--files", default="1000,10000", help="comma-separated folder sizes (default: %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="ticks per measure; best is kept")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 200 and 1,000 files")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    sizes = [200, 1000] if args.quick else sorted(int(x) for x in args.files.split(","))
    if any(n < FILES_PER_DAY for n in sizes):
        parser.error(f"each --files value must be at least {FILES_PER_DAY}")
    repeat = 2 if args.quick else args.repeat

    with tempfile.TemporaryDirectory(prefix="ml_assets_bench_sensor_") as tmp:
        results = measure_sizes(sizes, repeat, Path(tmp))

    small, large = results[0], results[-1]
    seen = f"{large['files']:,} seen"
    measures = [
        measure(f"first tick, {large['files']:,} new files", large["first_seconds"], "s"),
        measure(f"steady tick, {seen}, none new", large["steady_seconds"], "s"),
        measure(f"tick with {NEW_FILES} new among {seen}", large["new10_seconds"], "s"),
        measure(
            f"scan_landing alone, {large['files']:,} files", large["scan_landing_seconds"], "s"
        ),
        measure(
            f"list + stat only, {large['files']:,} files",
            large["list_and_stat_seconds"],
            "s",
            "the floor of a tick that stats every file",
        ),
    ]
    if len(results) > 1:
        per_1000 = (large["steady_seconds"] - small["steady_seconds"]) / (
            (large["files"] - small["files"]) / 1000
        )
        measures += [
            measure(
                f"steady tick, {small['files']:,} seen, none new", small["steady_seconds"], "s"
            ),
            measure(
                "steady tick growth per 1,000 seen files",
                per_1000 * 1000,
                "ms",
                "0 if the tick does not grow with files already seen",
            ),
        ]
    report(
        f"landing sensor tick (best of {repeat})",
        measures,
        command_line(__file__, sys.argv[1:] if argv is None else argv),
        args.json,
        sizes=results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
