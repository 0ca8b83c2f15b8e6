"""The benchmark suite runs end to end: `benchmarks/run_all.py --quick` (tiny inputs)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = ("feature_build", "retrain", "orchestration", "backfill", "sensor_tick")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_suite_prints_every_benchmark_with_positive_figures(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run_all.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    table = proc.stdout.split("command:", 1)[1]
    for name in BENCHMARKS:
        mine = [r for r in rows if r["benchmark"] == name]
        assert mine, f"{name} is missing from the table"
        assert name in table
        # Times, memory and ratios are positive; a difference (an overhead, growth per 1,000
        # files) may be about 0 or, within noise, below it; only a variant the benchmark says
        # it skipped has no value.
        for row in mine:
            if row["note"].startswith("skipped"):
                continue
            assert math.isfinite(row["value"]), row
            if row["unit"] in ("s", "MB", "x") and "overhead" not in row["measure"]:
                assert row["value"] > 0, row
    assert (tmp_path / "results.md").read_text().count("|") > 10 * len(BENCHMARKS)
