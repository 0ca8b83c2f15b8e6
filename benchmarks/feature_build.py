"""Benchmark of the local feature build: IO floor vs the Polars production path vs pandas/Spark.

Measures one single-run backfill of `transaction_features` over all days of a generated demo
data set, the way the Dagster asset does it, against references:

* ``io_floor`` -- read the raw transactions Delta table and write it back unchanged to a new
  table through the same write path (`write_partitions`): what any feature build has to pay.
* ``polars``   -- the production path: `storage.delta.scan` the raw tables, run the narwhals
  function on Polars LazyFrames, keep the partition days, `write_partitions` the result.
* ``output_floor`` -- read the feature table `polars` wrote and write it back unchanged: the
  IO cost of the output alone. At 10M rows the output holds about 1.6x the bytes of the raw
  transactions in memory and 3.7x on disk (20 columns of mostly high-entropy floats vs 10
  mostly repetitive ones). Informational.
* ``pandas``   -- the same feature logic written straightforwardly in pandas
  (`DeltaTable.to_pandas`, groupby/shift/merge, `write_deltalake`).
* ``spark``    -- the same narwhals function on local PySpark (``local[2]``: the project's
  `LazySparkResource` defaults plus `SPARK_CONFIG`, a driver big enough for 10M rows) through
  the project's Spark engine: `spark_delta.read_delta` (the Delta bridge: file list from the
  log -> `spark.read.parquet`), `run_feature_function`, `spark_delta.write_partitions` (Arrow
  -> the same `write_partitions`). The session is started before the clock (a warm Spark); its
  start-up is reported as ``startup_seconds``. ``--spark-max-rows`` (default 1,000,000) skips
  it above a size: at 10M rows it takes minutes.

Each measured run is a fresh interpreter (a subprocess, never a fork). Peak RSS is the high-water
mark (VmHWM) of that process plus, for Spark, its JVM (the sum of the two peaks); CPU seconds
include the JVM's too. The input tables are read once before every run so each starts from the
same warm page cache. Only the build itself is timed, not interpreter start-up, imports or data
generation. Generated input is cached under ``--workdir`` keyed by size, so reruns skip it.

    python benchmarks/feature_build.py --rows 1000000,10000000 --days 10 --json bench.json
    python benchmarks/feature_build.py --quick          # tiny CI smoke run

``--json FILE`` writes one object (the numbers here only illustrate the shape)::

    {
      "machine": {"cores": 2, "cpu": ..., "ram_gb": ..., "python": ..., "polars": ..., ...},
      "command": "python benchmarks/feature_build.py ...",   # reproduces the run
      "days": 10, "repeat": 1,
      "results": [                  # one entry per variant and size that ran
        {"variant": "polars",       # io_floor | polars | output_floor | pandas | spark
         "rows": 10000000,          # the --rows size
         "input_rows": 10000000, "rows_written": 10000000,
         "seconds": 8.7,            # best wall-clock run
         "all_seconds": [...], "cpu_seconds": 14.2, "peak_rss_mb": 2715.0,
         "ratio_vs_io_floor": 2.1,  # seconds / io_floor seconds at that size (null if absent)
         "ratio_vs_pandas": 0.1,    # seconds / pandas seconds (pandas speed-up = 1 / this)
         "ratio_vs_polars": 1.0,
         "cpu_busy_before": 0.02,   # machine's busy share just before the best run
         "startup_seconds": 11.8}   # spark only: session start, not in "seconds"
      ],
      "skipped": [{"variant": "spark", "rows": 10000000, "reason": "..."}],
      "parity": {"ok": true, "rows": ..., "size": ..., "problems": [], ...},  # polars vs pandas
      "parity_spark": {...},        # polars vs spark, same shape (null if not run)
      "targets": {"polars_vs_pandas_speedup": 9.2, "polars_10x_faster_than_pandas": false,
                  "polars_vs_io_floor": 1.9, "polars_within_2x_io_floor": true, ...}
    }
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import machine_info

START = dt.date(2026, 1, 1)
SEED = 7
VARIANTS = ("io_floor", "polars", "output_floor", "pandas", "spark")
QUICK_ROWS = 20_000
# Local Spark needs minutes at 10M rows on 2 cores, more than the whole suite's budget allows.
SPARK_MAX_ROWS = 1_000_000
# The Delta bridge collects the result into the driver (toArrow): at 10M rows that is 1.5 GB of
# Arrow, past the default 1 GB heap and 1 GB spark.driver.maxResultSize.
SPARK_CONFIG = {"spark.driver.memory": "8g", "spark.driver.maxResultSize": "4g"}
FEATURE = "transaction_features"
RESULT_PREFIX = "RESULT "
# Share of the machine's CPU in use just before a run above which the run is flagged.
BUSY_WARNING = 0.15
# Float columns compared with a tolerance in the parity check; the rounded daily spend sums
# may legitimately differ by a cent when the engines add the same amounts in another order.
FLOAT_TOLERANCE = {"cust_amount_sum_prev_days": 0.011}


# ------------------------------------------------------------------------------------------
# Child side: everything that imports polars / deltalake / pandas runs in a fresh process.
# ------------------------------------------------------------------------------------------


def _days(n_days: int) -> list[dt.date]:
    return [START + dt.timedelta(days=i) for i in range(n_days)]


@functools.cache
def _spec():
    from ml_assets.pipeline.spec import load_spec
    from ml_assets.settings import DEMO_PIPELINE_SPEC

    return load_spec(DEMO_PIPELINE_SPEC)


def _typed(frame, source, day: dt.date, ingested_at: dt.datetime):
    """A generated day shaped like the ingestion output (see ml_assets.ingest.ingest)."""
    import polars as pl

    from ml_assets.ingest.ingest import INGESTED_AT_COLUMN, SOURCE_FILE_COLUMN
    from ml_assets.storage.delta import PARTITION_COLUMN

    columns = []
    for name, col in source.columns.items():
        if col.type == "datetime":
            expr = pl.col(name).str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="us")
        elif col.type == "date":
            expr = pl.col(name).str.to_date("%Y-%m-%d")
        else:
            expr = pl.col(name).cast(col.dtype)
        columns.append(expr.alias(name))
    return frame.select(
        *columns,
        pl.lit(f"{day.isoformat()}.csv").alias(SOURCE_FILE_COLUMN),
        pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias(INGESTED_AT_COLUMN),
        pl.lit(day).alias(PARTITION_COLUMN),
    )


def child_generate(input_dir: Path, rows: int, n_days: int) -> dict[str, Any]:
    """Generate the demo data and write the raw Delta tables (one single-run ingestion)."""
    import polars as pl

    from ml_assets.demo.generate import generate_demo_frames
    from ml_assets.ingest.ingest import output_schema
    from ml_assets.storage.delta import write_partitions

    spec = _spec()
    days = _days(n_days)
    frames = generate_demo_frames(start=START, days=n_days, rows_per_day=rows // n_days, seed=SEED)
    ingested_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    counts = {}
    for name, by_day in frames.items():
        source = spec.sources[name]
        typed = pl.concat([_typed(df, source, day, ingested_at) for day, df in by_day.items()])
        assert typed.schema == output_schema(source), (typed.schema, output_schema(source))
        result = write_partitions(str(input_dir / name), typed, partitions=days)
        counts[name] = result.rows_written
    return counts


def _production_inputs(input_dir: Path, days: list[dt.date]):
    """The LazyFrames the Dagster IO manager hands the feature asset for a range run."""
    from ml_assets.storage import delta

    spec = _spec()
    feature = spec.features[FEATURE]
    frames = {
        name: delta.scan(str(input_dir / name), partitions=_input_keys(spec, read, days))
        for name, read in feature.inputs.items()
    }
    return spec, feature, frames


def _input_keys(spec, read, days: list[dt.date]) -> list[dt.date]:
    """The partition keys the asset's partition mapping loads for an input."""
    if read.history == "all":  # AllPartitionMapping: every partition key up to today
        first = spec.start_date
    else:  # TimeWindowPartitionMapping(start_offset=-lookback_days)
        first = days[0] - dt.timedelta(days=read.lookback_days)
    last = days[-1]
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def run_io_floor(input_dir: Path, out: Path, days: list[dt.date]) -> int:
    from ml_assets.storage import delta

    frame = delta.scan(str(input_dir / "transactions"), partitions=days)
    return delta.write_partitions(str(out), frame, partitions=days).rows_written


def _run_feature_function():
    """The helper the feature asset calls (input filter, function, output day filter)."""
    try:
        from ml_assets.engines.run import run_feature_function
    except ImportError:  # older layout: the same steps inline in the asset body
        run_feature_function = None
    return run_feature_function


def run_polars(input_dir: Path, out: Path, days: list[dt.date]) -> int:
    """The feature asset's body on the Polars engine plus the IO manager's write."""
    import narwhals as nw
    import polars as pl

    from ml_assets.storage import delta

    spec, feature, inputs = _production_inputs(input_dir, days)
    function = spec.feature_function(FEATURE)
    first, last = days[0], days[-1]
    run_feature_function = _run_feature_function()
    if run_feature_function is not None:
        output = run_feature_function(
            function, inputs, feature.params, first, last, name=feature.function
        )
    else:
        frames = {
            name: nw.from_native(frame.filter(pl.col(delta.PARTITION_COLUMN) <= last))
            for name, frame in inputs.items()
        }
        result = nw.to_native(function(**frames, **feature.params))
        output = result.filter(pl.col(delta.PARTITION_COLUMN).is_between(first, last))
    output.collect_schema()  # the asset reads the schemas for its metadata
    for frame in inputs.values():
        frame.collect_schema()
    return delta.write_partitions(str(out), output, partitions=days).rows_written


def pandas_transaction_features(
    transactions,
    customers,
    *,
    first: dt.date,
    last: dt.date,
    history_days: int = 7,
    recent_events: int = 3,
):
    """`ml_assets.pipelines.fraud.features.transaction_features`, written in plain pandas."""
    import numpy as np
    import pandas as pd

    from ml_assets.pipelines.fraud.features import FEATURE_COLUMNS

    tx = transactions[transactions["event_date"] <= last]
    cust = customers[customers["event_date"] <= last]
    p = tx[
        [
            "event_id",
            "customer_id",
            "event_ts",
            "amount",
            "channel",
            "merchant_category",
            "is_fraud",
            "event_date",
        ]
    ]
    p = p.sort_values(["customer_id", "event_ts", "event_id"]).reset_index(drop=True)
    day = p["event_ts"].dt.floor("D")
    p["day"] = day
    p["hour"] = p["event_ts"].dt.hour.astype("int8")

    # The customer's last `recent_events` payments, if inside the lookback window.
    window_start = day - pd.Timedelta(days=history_days)
    hour_ago = p["event_ts"] - pd.Timedelta(hours=1)
    by_customer = p.groupby("customer_id", sort=False)
    n_prev = np.zeros(len(p), dtype="int32")
    in_hour = np.zeros(len(p), dtype="int32")
    total = np.zeros(len(p))
    for i in range(1, recent_events + 1):
        prev_ts = by_customer["event_ts"].shift(i)
        prev_amount = by_customer["amount"].shift(i)
        valid = prev_ts >= window_start  # NaT compares false
        amount_i = prev_amount.where(valid)
        if i == 1:
            p["prev_amount"] = amount_i
        n_prev += valid.to_numpy()
        in_hour += (valid & (prev_ts >= hour_ago)).to_numpy()
        total += amount_i.fillna(0.0).to_numpy()
    p["mean_amount_prev"] = np.where(n_prev > 0, total / np.maximum(n_prev, 1), np.nan)
    p["n_prev_events"] = n_prev
    p["events_prev_hour"] = in_hour

    # The customer record as of the payment: the latest version with updated_at <= event_ts.
    versions = cust[
        ["customer_id", "updated_at", "segment", "region", "signup_date", "credit_limit"]
    ].sort_values("updated_at")
    asof = (
        pd.merge_asof(
            p[["customer_id", "event_ts"]].reset_index().sort_values("event_ts"),
            versions,
            left_on="event_ts",
            right_on="updated_at",
            by="customer_id",
            direction="backward",
        )
        .set_index("index")
        .sort_index()
    )
    for column in ["segment", "region", "signup_date", "credit_limit"]:
        p[column] = asof[column].to_numpy()

    # Per customer and day: payments and spend over the previous `history_days` days.
    daily = (
        p.groupby(["customer_id", "day"], sort=False)["amount"].agg(["size", "sum"]).reset_index()
    )
    shifted = pd.concat(
        [daily.assign(day=daily["day"] + pd.Timedelta(days=k)) for k in range(1, history_days + 1)]
    )
    activity = (
        shifted.groupby(["customer_id", "day"], sort=False)
        .agg(cust_txn_count_prev_days=("size", "sum"), cust_amount_sum_prev_days=("sum", "sum"))
        .reset_index()
    )
    activity["cust_amount_sum_prev_days"] = activity["cust_amount_sum_prev_days"].round(2)
    p = p.merge(activity, on=["customer_id", "day"], how="left")

    p["amount_to_prev_mean"] = p["amount"] / p["mean_amount_prev"]
    signup = pd.to_datetime(p["signup_date"]).astype(p["day"].dtype)
    p["new_account"] = (signup >= p["day"] - pd.Timedelta(days=30)).astype("int32")
    p["cust_txn_count_prev_days"] = p["cust_txn_count_prev_days"].fillna(0).astype("int32")
    p["cust_amount_sum_prev_days"] = p["cust_amount_sum_prev_days"].fillna(0.0)
    p = p[(p["event_date"] >= first) & (p["event_date"] <= last)]
    return p[list(FEATURE_COLUMNS)]


def run_pandas(input_dir: Path, out: Path, days: list[dt.date]) -> int:
    from deltalake import DeltaTable, write_deltalake

    transactions = DeltaTable(str(input_dir / "transactions")).to_pandas()
    customers = DeltaTable(str(input_dir / "customers")).to_pandas()
    features = pandas_transaction_features(
        transactions, customers, first=days[0], last=days[-1], **_spec().features[FEATURE].params
    )
    write_deltalake(str(out), features, mode="append", partition_by=["event_date"])
    return len(features)


def run_output_floor(features_table: Path, out: Path, days: list[dt.date]) -> int:
    """Read the feature table the polars variant wrote and write it back unchanged: the IO
    floor for the *output* (20 columns; at 10M rows 1.6x the raw transactions' bytes in memory,
    3.7x on disk)."""
    from ml_assets.storage import delta

    frame = delta.scan(str(features_table), partitions=days)
    return delta.write_partitions(str(out), frame, partitions=days).rows_written


def run_spark(input_dir: Path, out: Path, days: list[dt.date]) -> int:
    """The feature asset's body on the Spark engine plus the Spark IO manager's write."""
    from ml_assets.engines import spark_delta
    from ml_assets.engines.run import run_feature_function

    spark = _spark_session()
    spec = _spec()
    feature = spec.features[FEATURE]
    inputs = {
        name: spark_delta.read_delta(
            spark, str(input_dir / name), partitions=_input_keys(spec, read, days)
        )
        for name, read in feature.inputs.items()
    }
    output = run_feature_function(
        spec.feature_function(FEATURE), inputs, feature.params, days[0], days[-1]
    )
    return spark_delta.write_partitions(output, str(out), partitions=days).rows_written


@functools.cache
def _spark_session():
    from ml_assets.engines.spark_session import LazySparkResource

    session = LazySparkResource(app_name="ml_assets_bench", spark_config=SPARK_CONFIG).spark_session
    session.sparkContext.setLogLevel("ERROR")
    return session


RUNNERS = {
    "io_floor": run_io_floor,
    "polars": run_polars,
    "output_floor": run_output_floor,
    "pandas": run_pandas,
    "spark": run_spark,
}


def child_parity(polars_out: Path, pandas_out: Path) -> dict[str, Any]:
    """Compare the two feature tables row by row (by event_id), floats with a tolerance."""
    import polars as pl
    from polars.testing import assert_series_equal

    left = pl.read_delta(str(polars_out)).sort("event_id")
    right = pl.read_delta(str(pandas_out)).sort("event_id")
    problems = []
    if left.height != right.height:
        problems.append(f"row count {left.height} (polars) != {right.height} (pandas)")
    if left.columns != right.columns:
        problems.append(f"columns differ: {left.columns} != {right.columns}")
    dtypes = {
        c: (str(left.schema[c]), str(right.schema[c]))
        for c in left.columns
        if c in right.schema and left.schema[c] != right.schema[c]
    }
    if not problems:
        for column in left.columns:
            a, b = left[column], right[column]
            numeric = a.dtype.is_numeric() and b.dtype.is_numeric()
            try:
                assert_series_equal(
                    a,
                    b,
                    check_dtypes=False,
                    check_exact=not a.dtype.is_float(),
                    rel_tol=1e-9,
                    abs_tol=FLOAT_TOLERANCE.get(column, 1e-9),
                ) if numeric else assert_series_equal(a, b, check_dtypes=False)
            except AssertionError as error:
                problems.append(f"{column}: {str(error).splitlines()[0]}")
    return {
        "ok": not problems,
        "rows": left.height,
        "problems": problems,
        "dtype_differences": dtypes,
    }


def child_main(args: argparse.Namespace) -> None:
    task = args.child
    if task == "generate":
        result: dict[str, Any] = {"rows": child_generate(args.input, args.n_rows, args.days)}
    elif task == "parity":
        result = child_parity(args.input, args.output)
    else:
        # Import what the variant needs and load the spec before the clock starts; pyarrow
        # is imported lazily by both Polars' to_arrow and deltalake's to_pandas.
        import deltalake  # noqa: F401
        import pyarrow  # noqa: F401

        startup = None
        if task == "pandas":
            import pandas  # noqa: F401
        elif task == "spark":
            import ml_assets.engines.run
            import ml_assets.engines.spark_delta

            started = time.perf_counter()
            _spark_session()
            startup = time.perf_counter() - started
        else:
            import narwhals  # noqa: F401
            import polars  # noqa: F401

            import ml_assets.storage.delta  # noqa: F401

            if task == "polars":
                _run_feature_function()  # imports dagster
        _spec().feature_function(FEATURE)

        start, cpu_start = time.perf_counter(), _cpu_seconds()
        rows = RUNNERS[task](args.input, args.output, _days(args.days))
        seconds = time.perf_counter() - start
        cpu_seconds = _cpu_seconds() - cpu_start
        result = {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "rows_written": rows,
            "peak_rss_mb": _peak_rss_mb(),
        }
        if startup is not None:
            result["startup_seconds"] = startup
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _descendants(pid: int) -> list[int]:
    """Processes started by `pid`, at any depth (the Spark JVM is a grandchild: spark-submit)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) and its live descendants."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _peak_rss_mb() -> float:
    """Peak RSS of this process plus that of each live descendant (the Spark JVM)."""
    total_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# ------------------------------------------------------------------------------------------
# Parent side: standard library only, so it never holds deltalake state across a fork.
# ------------------------------------------------------------------------------------------


def run_child(task: str, *extra: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", task, *extra]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {task} failed with exit code {proc.returncode}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def warm_cache(folder: Path) -> int:
    """Read every file of the input tables so each variant starts from the same page cache."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 23):
                    total += len(chunk)
    return total


def cpu_busy(interval: float = 0.5) -> float | None:
    """Share of the machine's CPU time used by anything over `interval` (None off Linux).

    Measured just before each run: the benchmark is only meaningful on an otherwise idle
    machine, and other processes show up here rather than silently inflating the timings."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return 1 - (idle1 - idle0) / elapsed if elapsed else None


def wait_for_idle(timeout: float) -> float | None:
    """Wait up to `timeout` seconds for the machine to be idle; return the last busy share."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy is not None and busy > BUSY_WARNING and time.monotonic() < deadline:
        time.sleep(2)
        busy = cpu_busy()
    return busy


def ensure_input(workdir: Path, rows: int, n_days: int) -> Path:
    folder = workdir / "input" / f"rows{rows}_days{n_days}_seed{SEED}"
    marker = folder / "complete.json"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    counts = run_child(
        "generate", "--input", str(folder), "--n-rows", str(rows), "--days", str(n_days)
    )
    marker.write_text(json.dumps(counts))
    print(f"  generated {rows:,} rows in {time.perf_counter() - start:.1f}s -> {folder}")
    return folder


def _ratio(value: float, reference: float | None) -> float | None:
    return value / reference if reference else None


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'variant':<12} {'rows':>12} {'seconds':>9} {'vs polars':>10} {'vs pandas':>10} "
        f"{'vs io_floor':>12} {'CPU s':>8} {'peak RSS MB':>12}"
    )
    print(header)
    print("-" * len(header))
    flagged = False
    for r in results:
        busy = r.get("cpu_busy_before")
        mark = " *" if busy is not None and busy > BUSY_WARNING else ""
        flagged = flagged or bool(mark)
        print(
            f"{r['variant']:<12} {r['rows']:>12,} {r['seconds']:>9.2f} "
            f"{_fmt_ratio(r['ratio_vs_polars']):>10} {_fmt_ratio(r['ratio_vs_pandas']):>10} "
            f"{_fmt_ratio(r['ratio_vs_io_floor']):>12} "
            f"{r['cpu_seconds']:>8.2f} {r['peak_rss_mb']:>12,.0f}{mark}"
        )
    print(
        "(seconds: best wall-clock run; CPU s: user+system time of that run, all threads and "
        "the Spark JVM; peak RSS: this process + the JVM)"
    )
    if flagged:
        print(f"* the machine was over {BUSY_WARNING:.0%} busy just before this run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        default="1000000,10000000",
        help="comma-separated total transaction rows (default: %(default)s)",
    )
    parser.add_argument("--days", type=int, default=10, help="days of data (default: 10)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny smoke run ({QUICK_ROWS:,} rows), overrides --rows",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per variant and size; the best is reported (default: 1)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/ml_assets_bench"),
        help="cache of generated input and scratch output (default: %(default)s)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to go quiet (default: 0)",
    )
    parser.add_argument(
        "--spark-max-rows",
        type=int,
        default=SPARK_MAX_ROWS,
        metavar="ROWS",
        help="skip the spark variant at sizes above this; local Spark takes minutes at 10M "
        "rows (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    # Internal: the subprocess side.
    parser.add_argument(
        "--child", choices=["generate", "parity", *VARIANTS], help=argparse.SUPPRESS
    )
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None:
        args.sizes = [QUICK_ROWS] if args.quick else [int(x) for x in args.rows.split(",")]
        args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = set(args.variant_list) - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
        if any(n < args.days for n in args.sizes):
            parser.error("each --rows value must be at least --days")
    return args


def reproduce_command(args: argparse.Namespace) -> str:
    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    parts = ["python", str(script)]
    parts += ["--quick"] if args.quick else ["--rows", ",".join(str(n) for n in args.sizes)]
    parts += [
        "--days",
        str(args.days),
        "--repeat",
        str(args.repeat),
        "--variants",
        ",".join(args.variant_list),
        "--workdir",
        str(args.workdir),
    ]
    if args.wait_idle:
        parts += ["--wait-idle", f"{args.wait_idle:g}"]
    if "spark" in args.variant_list:
        parts += ["--spark-max-rows", str(args.spark_max_rows)]
    if args.json:
        parts += ["--json", str(args.json)]
    return shlex.join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return 0

    machine = machine_info()
    command = reproduce_command(args)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    print(f"command: {command}")

    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    parity: dict[str, Any] | None = None
    parity_spark: dict[str, Any] | None = None
    for rows in args.sizes:
        print(f"\n== {rows:,} rows over {args.days} days ({rows // args.days:,} rows/day) ==")
        input_dir = ensure_input(args.workdir, rows, args.days)
        actual_rows = json.loads((input_dir / "complete.json").read_text())["rows"]
        size_results: dict[str, dict[str, Any]] = {}
        out_root = args.workdir / "output" / f"rows{rows}_days{args.days}"
        for variant in args.variant_list:
            if variant == "spark" and rows > args.spark_max_rows:
                reason = f"above --spark-max-rows {args.spark_max_rows:,}"
                skipped.append({"variant": variant, "rows": rows, "reason": reason})
                print(f"  spark skipped: {reason}")
                continue
            out = out_root / variant
            source = input_dir
            if variant == "output_floor":
                source = out_root / "polars"  # the feature table the polars variant wrote
                if not (source / "_delta_log").is_dir():
                    print("  output_floor skipped: run the polars variant first")
                    continue
            runs = []
            for _ in range(args.repeat):
                shutil.rmtree(out, ignore_errors=True)
                warm_cache(source)
                busy = wait_for_idle(args.wait_idle)
                run = run_child(
                    variant, "--input", str(source), "--output", str(out),
                    "--days", str(args.days),
                )  # fmt: skip
                run["cpu_busy_before"] = busy
                runs.append(run)
                note = ""
                if busy is not None and busy > BUSY_WARNING:
                    note = f"  (machine {busy:.0%} busy before the run: timings may be inflated)"
                if "startup_seconds" in run:
                    note = f"  (session start {run['startup_seconds']:.1f}s, not counted)" + note
                print(
                    f"  {variant:<12} run {len(runs)}: {run['seconds']:.2f}s wall, "
                    f"{run['cpu_seconds']:.2f}s CPU, peak RSS {run['peak_rss_mb']:,.0f} MB{note}",
                    flush=True,
                )
            best = min(runs, key=lambda r: r["seconds"])
            size_results[variant] = {
                "variant": variant,
                "rows": rows,
                "input_rows": actual_rows["transactions"],
                "rows_written": best["rows_written"],
                "seconds": best["seconds"],
                "cpu_seconds": best["cpu_seconds"],
                "peak_rss_mb": best["peak_rss_mb"],
                "cpu_busy_before": best["cpu_busy_before"],
                "all_seconds": [r["seconds"] for r in runs],
            }
            if "startup_seconds" in best:
                size_results[variant]["startup_seconds"] = best["startup_seconds"]
        polars_s = size_results.get("polars", {}).get("seconds")
        floor_s = size_results.get("io_floor", {}).get("seconds")
        pandas_s = size_results.get("pandas", {}).get("seconds")
        for r in size_results.values():
            r["ratio_vs_polars"] = _ratio(r["seconds"], polars_s)
            r["ratio_vs_io_floor"] = _ratio(r["seconds"], floor_s)
            r["ratio_vs_pandas"] = _ratio(r["seconds"], pandas_s)
        results.extend(size_results.values())

        if parity is None and {"polars", "pandas"} <= set(size_results):
            parity = run_child(
                "parity", "--input", str(out_root / "polars"), "--output", str(out_root / "pandas")
            )
            parity["size"] = rows
            status = "ok" if parity["ok"] else "FAILED: " + "; ".join(parity["problems"])
            print(f"  parity ({rows:,} rows, polars vs pandas): {status}")
        if parity_spark is None and {"polars", "spark"} <= set(size_results):
            parity_spark = run_child(
                "parity", "--input", str(out_root / "polars"), "--output", str(out_root / "spark")
            )
            parity_spark["size"] = rows
            status = (
                "ok" if parity_spark["ok"] else "FAILED: " + "; ".join(parity_spark["problems"])
            )
            print(f"  parity ({rows:,} rows, polars vs spark): {status}")

    print()
    print_table(results)
    if parity is not None:
        print(
            f"\nparity: {'ok' if parity['ok'] else 'FAILED'} "
            f"({parity['rows']:,} rows at size {parity['size']:,}, sorted by event_id)"
        )
        if parity["dtype_differences"]:
            print(f"  dtype differences (polars, pandas): {parity['dtype_differences']}")
    if parity_spark is not None:
        print(
            f"parity: {'ok' if parity_spark['ok'] else 'FAILED'} "
            f"({parity_spark['rows']:,} rows at size {parity_spark['size']:,}, polars vs spark)"
        )

    largest = max(args.sizes)
    by_variant = {r["variant"]: r for r in results if r["rows"] == largest}
    targets = {}
    if {"polars", "pandas"} <= set(by_variant):
        speedup = by_variant["pandas"]["seconds"] / by_variant["polars"]["seconds"]
        targets["polars_vs_pandas_speedup"] = speedup
        targets["polars_10x_faster_than_pandas"] = speedup >= 10
        print(
            f"target: polars >= 10x faster than pandas at {largest:,} rows: "
            f"{speedup:.1f}x -> {'met' if speedup >= 10 else 'NOT met'}"
        )
    if {"polars", "io_floor"} <= set(by_variant):
        ratio = by_variant["polars"]["ratio_vs_io_floor"]
        targets["polars_vs_io_floor"] = ratio
        targets["polars_within_2x_io_floor"] = ratio <= 2
        print(
            f"target: polars within 2x of the IO floor at {largest:,} rows: "
            f"{ratio:.2f}x -> {'met' if ratio <= 2 else 'NOT met'}"
        )
    if {"polars", "output_floor", "io_floor"} <= set(by_variant):
        out_floor = by_variant["output_floor"]["seconds"]
        targets["polars_vs_output_floor"] = by_variant["polars"]["seconds"] / out_floor
        print(
            f"context: rewriting the feature table alone takes "
            f"{out_floor / by_variant['io_floor']['seconds']:.2f}x the IO floor; polars is "
            f"{targets['polars_vs_output_floor']:.2f}x that output floor"
        )

    if args.json:
        payload = {
            "machine": machine,
            "command": command,
            "days": args.days,
            "repeat": args.repeat,
            "results": results,
            "skipped": skipped,
            "parity": parity,
            "parity_spark": parity_spark,
            "targets": targets,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    if any(check is not None and not check["ok"] for check in (parity, parity_spark)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
