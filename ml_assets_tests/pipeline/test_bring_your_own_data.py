"""A second, different pipeline declared in a few lines runs without touching the library."""

import datetime as dt
import json
import textwrap

import dagster as dg
import polars as pl

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.settings import load_settings

SPEC = """
name: turbines
owners: ["team:energy"]
start_date: "2026-03-01"
sources:
  readings:
    format: json
    event_time: measured_at
    primary_key: [turbine, measured_at]
    columns:
      turbine: {type: string, nullable: false}
      measured_at: {type: datetime, nullable: false}
      rpm: float
      temperature_c: float
      failed_within_24h: {type: bool, nullable: false}
features:
  turbine_features:
    function: turbine_features.py:build
    inputs: {readings: {lookback_days: 1}}
    primary_key: [turbine, measured_at]
"""

FEATURES = """
import narwhals as nw

def build(readings):
    order = ["measured_at"]
    return readings.with_columns(
        (nw.col("temperature_c") - nw.col("temperature_c").shift(1).over("turbine", order_by=order))
        .alias("temperature_change"),
    ).select("turbine", "measured_at", "event_date", "rpm", "temperature_change",
             "failed_within_24h")
"""


def _write_readings(folder, day: dt.date, temperatures: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "turbine": "T1",
                "measured_at": f"{day}T{hour:02d}:00:00",
                "rpm": 12.5,
                "temperature_c": temperature,
                "failed_within_24h": temperature > 80,
            }
        )
        for hour, temperature in enumerate(temperatures)
    ]
    (folder / f"{day}.json").write_text("\n".join(lines) + "\n")


def test_a_user_pipeline_from_a_spec_folder_materializes(tmp_path):
    spec_dir = tmp_path / "my_pipelines"
    spec_dir.mkdir()
    (spec_dir / "turbines.yaml").write_text(SPEC)
    (spec_dir / "turbine_features.py").write_text(textwrap.dedent(FEATURES))
    landing = tmp_path / "landing" / "turbines" / "readings"
    _write_readings(landing, dt.date(2026, 3, 1), [60.0, 61.5])
    _write_readings(landing, dt.date(2026, 3, 2), [63.0, 85.0])

    settings = load_settings(
        {
            "ML_ASSETS_HOME": str(tmp_path / "home"),
            "ML_ASSETS_LANDING_ROOT": str(tmp_path / "landing"),
            "ML_ASSETS_PIPELINES": str(spec_dir),
        }
    )
    defs = build_definitions(settings)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {k for k in keys if k.startswith("turbines/")} == {
        "turbines/raw/readings",
        "turbines/features/turbine_features",
    }

    result = dg.materialize(
        list(defs.assets),
        resources=build_resources(settings),
        tags={
            "dagster/asset_partition_range_start": "2026-03-01",
            "dagster/asset_partition_range_end": "2026-03-02",
        },
    )
    assert result.success
    features = pl.read_delta(f"{settings.lake_root}/turbines/features/turbine_features").sort(
        "measured_at"
    )
    # The change across midnight needs the previous day's reading: the lookback delivered it.
    assert features["temperature_change"].to_list() == [None, 1.5, 1.5, 22.0]
    assert features["failed_within_24h"].to_list() == [False, False, False, True]
