"""Helpers shared by the benchmark scripts (orchestration, backfill, sensor tick, run_all).

Parent side and child side of the subprocess-per-measurement pattern: a measured run is a fresh
interpreter, so its imports, caches and peak memory are its own, and it reports one JSON line
prefixed with RESULT_PREFIX. The parent side needs the standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RESULT_PREFIX = "RESULT "
REPO = Path(__file__).resolve().parent.parent
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# The packages whose versions decide the figures; reported with every result.
PACKAGES = (
    "polars", "deltalake", "narwhals", "pyarrow", "dagster", "mlflow", "scikit-learn", "pyspark",
    "pandas",
)  # fmt: skip


# ------------------------------------------------------------------------------------------
# Parent side
# ------------------------------------------------------------------------------------------


def run_child(script: str, *args: str, timeout: float | None = None) -> dict[str, Any]:
    """Run `script --child ...` in a fresh interpreter and return its RESULT line."""
    command = [sys.executable, str(Path(script).resolve()), *args]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"{Path(script).name} {shlex.join(args)} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def emit(result: dict[str, Any]) -> None:
    """Child side: hand one result to the parent."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def fresh_copy(source: Path, target: Path) -> Path:
    """A scratch copy of a prepared project home, so every measured run starts the same."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python and the versions of the packages that matter."""
    cpu, ram_gb = platform.processor(), None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024**2, 1)
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }


def command_line(script: str, argv: list[str]) -> str:
    """The command that reproduces this run, relative to the repository when possible."""
    path = Path(script).resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(REPO)
    return shlex.join([".venv/bin/python", str(path), *argv])


def measure(name: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    """One row of the suite's table."""
    return {"measure": name, "value": value, "unit": unit, "note": note}


def report(
    title: str, measures: list[dict[str, Any]], command: str, json_path: Path | None, **extra: Any
) -> None:
    """Print the measures and, with --json, write them with the machine and the command."""
    print(f"\n{title}")
    for m in measures:
        note = f"  ({m['note']})" if m["note"] else ""
        print(f"  {m['measure']:<44} {m['value']:>12.3f} {m['unit']:<6}{note}")
    print(f"command: {command}")
    if json_path is not None:
        payload = {"machine": machine_info(), "command": command, "measures": measures, **extra}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {json_path}")


# ------------------------------------------------------------------------------------------
# Child side: these import the project (and so dagster, polars, ...) only when called.
# ------------------------------------------------------------------------------------------


def demo_settings(home: Path) -> Any:
    """The project's local settings with everything (lake, landing, MLflow) under `home`."""
    from ml_assets.settings import load_settings

    return load_settings({"ML_ASSETS_HOME": str(home)})


def dagster_instance(home: Path) -> Any:
    """A persistent (sqlite) Dagster instance under `home`, configured by the repository's
    dagster.yaml: what `ml-assets run` uses, not an in-memory ephemeral one."""
    import dagster as dg

    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(dagster_home))


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags that make one run materialize first..last (a single-run backfill)."""
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
