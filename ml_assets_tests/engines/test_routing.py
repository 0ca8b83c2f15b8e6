"""Engine routing: `auto` picks Polars or Spark from the Delta log, with the reason recorded.

Unit tests of `decide` cover every rule; `input_size` is checked against the files on disk of
exactly the partitions asked for; and real materializations of the demo feature asset (local
deployment, routing thresholds from a compute config made tiny or huge) show each decision and
its reason in the materialization metadata.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.engines.routing import Decision, InputSize, Thresholds, decide, input_size
from ml_assets.settings import DEFAULT_COMPUTE_CONFIG, load_settings
from ml_assets.storage import delta
from ml_assets_tests.conftest import DEMO_START

GB = 1_000_000_000
THRESHOLDS = Thresholds(
    spark_min_bytes=2 * GB, spark_min_rows=50_000_000, streaming_min_bytes=8 * GB
)
SMALL = {"transactions": InputSize(bytes=300_000_000, rows=4_000_000, files=20)}
BIG_BYTES = {"transactions": InputSize(bytes=3 * GB, rows=1_000_000, files=40)}
BIG_ROWS = {"transactions": InputSize(bytes=GB, rows=60_000_000, files=40)}
HUGE = {
    "a": InputSize(bytes=5 * GB, rows=1, files=1),
    "b": InputSize(bytes=4 * GB, rows=1, files=1),
}

DAYS = [DEMO_START + dt.timedelta(days=i) for i in range(10)]
FEATURES = dg.AssetKey(["fraud", "features", "transaction_features"])
TRANSACTIONS = dg.AssetKey(["fraud", "raw", "transactions"])
CUSTOMERS = dg.AssetKey(["fraud", "raw", "customers"])
FEATURE_DAY = DAYS[8]
LOOKBACK = 7  # the demo spec: transactions {lookback_days: 7}, customers {history: all}


# ----------------------------------------------------------------------------- decide()
def test_auto_picks_polars_below_both_thresholds() -> None:
    decision = decide("auto", SMALL, THRESHOLDS, spark_available=True)
    assert (decision.engine, decision.streaming) == ("polars", False)
    assert "below the Spark threshold" in decision.reason
    assert decision.size == SMALL["transactions"] and decision.requested == "auto"


@pytest.mark.parametrize("sizes", [BIG_BYTES, BIG_ROWS], ids=["bytes", "rows"])
def test_auto_picks_spark_at_either_threshold_when_spark_is_configured(sizes) -> None:
    decision = decide("auto", sizes, THRESHOLDS, spark_available=True)
    assert decision.engine == "spark"
    assert "reach the Spark threshold" in decision.reason


def test_auto_without_spark_stays_on_polars_in_memory_below_the_streaming_threshold() -> None:
    decision = decide("auto", BIG_BYTES, THRESHOLDS, spark_available=False)
    assert (decision.engine, decision.streaming) == ("polars", False)
    assert "no Spark is configured; Polars in memory" in decision.reason


def test_auto_without_spark_falls_back_to_polars_streaming_above_the_streaming_threshold() -> None:
    # 5 GB + 4 GB: the inputs are summed, only together above the 8 GB streaming threshold
    decision = decide("auto", HUGE, THRESHOLDS, spark_available=False)
    assert (decision.engine, decision.streaming) == ("polars", True)
    assert "Polars streaming engine" in decision.reason
    assert decision.metadata()["engine"] == "polars (streaming)"
    assert decision.size == InputSize(bytes=9 * GB, rows=2, files=2)


def test_explicit_engines_are_respected_whatever_the_size() -> None:
    polars = decide("polars", HUGE, THRESHOLDS, spark_available=True)
    assert (polars.engine, polars.streaming, polars.requested) == ("polars", False, "polars")
    assert "engine set to polars" in polars.reason
    spark = decide("spark", SMALL, THRESHOLDS, spark_available=True)
    assert (spark.engine, spark.requested) == ("spark", "spark")
    assert "engine set to spark" in spark.reason


def test_spark_requested_without_spark_and_unknown_engines_are_errors() -> None:
    with pytest.raises(ValueError, match="no Spark is configured"):
        decide("spark", SMALL, THRESHOLDS, spark_available=False)
    with pytest.raises(ValueError, match="not one of auto, polars, spark"):
        decide("duckdb", SMALL, THRESHOLDS, spark_available=True)


# ----------------------------------------------------------------------------- input_size()
def _on_disk(uri: str, days: list[dt.date] | None) -> tuple[int, int]:
    """Bytes and number of the data files of `days` (all when None), from the file system."""
    files = [
        f
        for f in Path(uri).glob(f"{delta.PARTITION_COLUMN}=*/*.parquet")
        if days is None or dt.date.fromisoformat(f.parent.name.split("=")[1]) in days
    ]
    return sum(f.stat().st_size for f in files), len(files)


def test_input_size_reads_exactly_the_listed_partitions_from_the_delta_log(tmp_path: Path) -> None:
    uri = str(tmp_path / "table")
    days = DAYS[:3]
    frame = pl.concat(
        pl.DataFrame({delta.PARTITION_COLUMN: [day] * n, "x": list(range(n))})
        for day, n in zip(days, (10, 20, 30), strict=True)
    )
    delta.write_partitions(uri, frame, partitions=days)

    both = input_size(uri, [days[0], days[2]])
    assert (both.rows, (both.bytes, both.files)) == (40, _on_disk(uri, [days[0], days[2]]))
    every = input_size(uri, None)
    assert (every.rows, (every.bytes, every.files)) == (60, _on_disk(uri, None))
    # ISO strings select the same partitions; days without data add nothing
    assert input_size(uri, [d.isoformat() for d in (days[0], days[2])]) == both
    assert input_size(uri, [DAYS[9]]) == InputSize()
    assert input_size(str(tmp_path / "missing"), None) == InputSize()


# ----------------------------------------------------------------------------- materializations
@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A local deployment's home with the demo raw tables for DAYS."""
    home = tmp_path_factory.mktemp("routing")
    write_demo_data(
        home / "landing" / "fraud", start=DAYS[0], days=len(DAYS), rows_per_day=150, seed=7
    )
    settings = load_settings({"ML_ASSETS_HOME": str(home)})
    defs = build_definitions(settings)
    result = dg.materialize(
        [defs.resolve_assets_def(TRANSACTIONS), defs.resolve_assets_def(CUSTOMERS)],
        selection=[TRANSACTIONS, CUSTOMERS],
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
    )
    assert result.success
    return home


def materialize_features(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, routing: dict[str, int], **env: str
) -> dict[str, Any]:
    """Materialize the demo feature partition FEATURE_DAY in the local deployment with these
    routing thresholds; returns the materialization's metadata (raw values)."""
    config = yaml.safe_load(DEFAULT_COMPUTE_CONFIG.read_text())
    config["routing"] = routing
    path = tmp_path / "compute.yaml"
    path.write_text(yaml.safe_dump(config))
    variables = {"ML_ASSETS_HOME": str(home), "ML_ASSETS_COMPUTE_CONFIG": str(path), **env}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)  # asset definitions read the engine setting too
    settings = load_settings(variables)
    defs = build_definitions(settings)
    # the whole graph, so the inputs are known as partitioned assets; only the feature runs
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=build_resources(settings),
        selection=dg.AssetSelection.assets(FEATURES).without_checks(),
        partition_key=str(FEATURE_DAY),
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node(
        defs.resolve_assets_def(FEATURES).node_def.name
    )
    return {k: v.value for k, v in materialization.metadata.items()}


TINY = {"spark_min_bytes": 1, "spark_min_rows": 1, "streaming_min_bytes": 1}
HUGE_LIMITS = {"spark_min_bytes": 10**15, "spark_min_rows": 10**12, "streaming_min_bytes": 10**15}


def _expected_input(home: Path) -> tuple[int, int, int]:
    """Rows, bytes, files of what the feature partition reads: transactions of the lookback
    window (FEATURE_DAY - 7 .. FEATURE_DAY), every customers partition."""
    lake = home / "lake"
    window = [FEATURE_DAY - dt.timedelta(days=i) for i in range(LOOKBACK + 1)]
    t_uri, c_uri = str(lake / "fraud/raw/transactions"), str(lake / "fraud/raw/customers")
    rows = (
        pl.scan_delta(t_uri).filter(pl.col(delta.PARTITION_COLUMN).is_in(window)).collect().height
        + pl.scan_delta(c_uri).collect().height
    )
    (t_bytes, t_files), (c_bytes, c_files) = _on_disk(t_uri, window), _on_disk(c_uri, None)
    return rows, t_bytes + c_bytes, t_files + c_files


def test_materialization_below_the_thresholds_runs_on_polars_and_says_why(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = materialize_features(home, tmp_path, monkeypatch, HUGE_LIMITS)
    assert (meta["engine"], meta["engine_requested"]) == ("polars", "auto")
    assert "below the Spark threshold" in meta["engine_reason"]
    # the sizes are those of exactly the partitions the step reads, from the Delta log
    rows, size, files = _expected_input(home)
    assert (meta["input_rows"], meta["input_bytes"], meta["input_files"]) == (rows, size, files)
    everything = sum(
        pl.scan_delta(str(home / "lake" / k.to_user_string())).collect().height
        for k in (TRANSACTIONS, CUSTOMERS)
    )
    assert rows < everything  # not the whole transactions table: only the lookback window


def test_materialization_above_the_thresholds_without_spark_streams_on_polars(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ML_ASSETS_SPARK_MASTER", raising=False)
    meta = materialize_features(home, tmp_path, monkeypatch, TINY)
    assert meta["engine"] == "polars (streaming)"
    assert "no Spark is configured" in meta["engine_reason"]
    assert "Polars streaming engine" in meta["engine_reason"]


def test_an_explicit_engine_overrides_the_thresholds(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = materialize_features(home, tmp_path, monkeypatch, TINY, ML_ASSETS_ENGINE="polars")
    assert (meta["engine"], meta["engine_requested"]) == ("polars", "polars")
    assert "engine set to polars" in meta["engine_reason"]


@pytest.mark.spark
# the suite's one local Spark session (skips without Java): the engine's session attaches to it
@pytest.mark.usefixtures("spark")
def test_materialization_above_the_thresholds_with_spark_runs_on_spark(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = materialize_features(
        home, tmp_path, monkeypatch, TINY, ML_ASSETS_SPARK_MASTER="local[2]"
    )
    assert (meta["engine"], meta["engine_requested"]) == ("spark", "auto")
    assert "reach the Spark threshold" in meta["engine_reason"]
    rows, size, _ = _expected_input(home)
    assert (meta["input_rows"], meta["input_bytes"]) == (rows, size)


def test_decision_metadata_is_numeric_for_the_ui() -> None:
    meta = Decision("polars", "why", size=InputSize(1, 2, 3)).metadata()
    assert all(isinstance(meta[k], int) for k in ("input_bytes", "input_rows", "input_files"))
