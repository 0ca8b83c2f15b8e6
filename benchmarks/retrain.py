"""Benchmark: one full retrain of the demo model, and where its time goes.

A retrain is the `fraud_train` job: candidate (read the window, fit, evaluate, log and register
with MLflow) → validation report (score challenger and champion, importance, leakage scan,
plots, MLflow artifacts) → gates → champion. The question is how much of its wall time is the
platform (Dagster and MLflow) rather than the work itself: reading the data, fitting, and the
model computations of the report.

    .venv/bin/python benchmarks/retrain.py --rows 1000000

The feature table is prepared once per size (not timed) under --workdir. Each timed run starts
from a copy of it with a fresh MLflow store, so it is a first training (no champion to compare).
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import time
from pathlib import Path

import dagster as dg
import polars as pl

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.pipeline.keys import model_keys
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings

DAYS = 28  # the demo model's 21 training + 7 holdout days
START = dt.date(2026, 1, 1)
KEYS = model_keys(load_spec(DEMO_PIPELINE_SPEC))


def _settings(home: Path):
    return load_settings({"ML_ASSETS_HOME": str(home)})


def prepare(workdir: Path, rows: int) -> Path:
    """Landing files → raw → features for `rows` transactions over DAYS days (cached)."""
    home = workdir / f"features_{rows}"
    if (home / "lake" / "fraud" / "features").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    settings = _settings(home)
    write_demo_data(
        settings.landing_root / "fraud", start=START, days=DAYS, rows_per_day=rows // DAYS, seed=5
    )
    defs = build_definitions(settings)
    result = dg.materialize(
        list(defs.assets),
        resources=build_resources(settings),
        selection=dg.AssetSelection.groups("raw", "features"),
        tags={
            "dagster/asset_partition_range_start": START.isoformat(),
            "dagster/asset_partition_range_end": (START + dt.timedelta(days=DAYS - 1)).isoformat(),
        },
    )
    assert result.success, "preparing the feature table failed"
    return home


def retrain_once(prepared: Path, scratch: Path) -> dict[str, float]:
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(prepared / "lake", scratch / "lake")
    settings = _settings(scratch)
    job = build_definitions(settings).resolve_job_def("fraud_train")
    started = time.perf_counter()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    wall = time.perf_counter() - started
    assert result.success, "the retrain failed"
    meta = {
        e.materialization.asset_key: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    candidate, report = meta[KEYS.candidate], meta[KEYS.report]
    work = candidate["load_seconds"] + candidate["fit_seconds"] + report["compute_seconds"]
    return {
        "wall_seconds": wall,
        "load_seconds": candidate["load_seconds"],
        "fit_seconds": candidate["fit_seconds"],
        "report_compute_seconds": report["compute_seconds"],
        "mlflow_seconds": candidate["tracking_seconds"] + report["tracking_seconds"],
        "overhead_seconds": wall - work,
        "overhead_share": (wall - work) / wall,
        "train_rows": candidate["train_rows"],
        "holdout_roc_auc": candidate["holdout_roc_auc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions in all")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs; the best is kept")
    parser.add_argument("--workdir", default="/tmp/ml_assets_bench_retrain")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    prepared = prepare(workdir, args.rows)
    # A fresh folder per run: MLflow keeps a connection to a store path once it has used it.
    runs = [retrain_once(prepared, workdir / f"scratch_{i}") for i in range(args.repeat)]
    best = min(runs, key=lambda r: r["wall_seconds"])
    print(f"machine: {os.cpu_count()} cores, {platform.python_version()}, polars {pl.__version__}")
    print(f"retrain of the demo model on {args.rows:,} rows ({best['train_rows']:,} to train on)")
    for name in (
        "wall_seconds",
        "load_seconds",
        "fit_seconds",
        "report_compute_seconds",
        "mlflow_seconds",
        "overhead_seconds",
    ):
        print(f"  {name:24s} {best[name]:8.2f}")
    print(f"  {'overhead_share':24s} {best['overhead_share']:8.1%}  (target: under 20%)")
    print(f"  {'holdout_roc_auc':24s} {best['holdout_roc_auc']:8.3f}")
    print(f"command: python benchmarks/retrain.py --rows {args.rows} --repeat {args.repeat}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": args.rows, "runs": runs, "best": best}))


if __name__ == "__main__":
    main()
