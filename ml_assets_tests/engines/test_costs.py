"""Cost tracking: the cost model, cost metadata on real materializations, the cost report.

Databricks: nodes x (DBU/h x DBU price + VM price/h) of the step's compute profile, times its
duration. Local: CPU seconds x a configurable rate (0 by default). `costs/cost_report` sums the
metadata per asset and day from a real instance's event log, with the cluster time and cost the
step launcher observes after each Databricks run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.databricks.config import (
    ComputeProfile,
    NodePrice,
    PriceTable,
    load_compute_config,
)
from ml_assets.databricks.costs import CostModel
from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.pipeline.costs import cost_rows, summarize
from ml_assets.settings import DEFAULT_COMPUTE_CONFIG, SettingsError, load_settings
from ml_assets.storage import delta
from ml_assets_tests.conftest import DEMO_START

PRICES = PriceTable(
    dbu_price=0.15,
    node_types={"i3.xlarge": NodePrice(1.0, 0.312), "i3.2xlarge": NodePrice(2.0, 0.624)},
    spot_discount=0.6,
)
ETL = ComputeProfile("etl", "i3.xlarge", min_workers=1, max_workers=4, spot=True)
SINGLE = ComputeProfile("single_node", "i3.2xlarge", num_workers=0)
TRANSACTIONS = dg.AssetKey(["fraud", "raw", "transactions"])
COST_REPORT = dg.AssetKey(["costs", "cost_report"])


# ----------------------------------------------------------------------------- the cost model
def test_databricks_hourly_price_is_nodes_times_dbus_plus_vm_prices() -> None:
    # 5 nodes (driver + 4 workers at most) x 1 DBU/h x 0.15 USD, driver VM on demand, spot workers
    assert PRICES.hourly_cost(ETL) == pytest.approx(5 * 1.0 * 0.15 + 0.312 + 4 * 0.312 * 0.6)
    assert PRICES.hourly_cost(SINGLE) == pytest.approx(1 * 2.0 * 0.15 + 0.624)


def test_a_profile_without_a_price_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"node type 'm5\.large' has no entry"):
        PRICES.hourly_cost(ComputeProfile("x", "m5.large", num_workers=1))


def test_databricks_cost_is_the_profile_price_times_the_duration() -> None:
    model = CostModel(kind="databricks", profile_price_per_hour={"etl": PRICES.hourly_cost(ETL)})
    estimate = model.estimate(seconds=1800, cpu_seconds=7, profile="etl")
    assert estimate.cost_usd == pytest.approx(PRICES.hourly_cost(ETL) / 2)
    assert estimate.metrics() == {
        "compute_seconds": 1800,
        "cpu_seconds": 7,
        "estimated_cost_usd": round(PRICES.hourly_cost(ETL) / 2, 6),
    }
    assert estimate.metadata()["compute_profile"] == "etl"
    assert estimate.basis.startswith("profile etl: 1.811 USD/h x 1800.0 s")


def test_local_cost_is_cpu_seconds_times_the_rate_and_free_by_default() -> None:
    assert CostModel().estimate(seconds=60, cpu_seconds=120).cost_usd == 0
    priced = CostModel(cpu_price_per_hour=0.36).estimate(seconds=60, cpu_seconds=100)
    assert priced.cost_usd == pytest.approx(0.01)
    # a step not run on a priced profile is costed by its CPU time, even in a Databricks setup
    model = CostModel(kind="databricks", cpu_price_per_hour=0.36, profile_price_per_hour={})
    assert model.estimate(seconds=60, cpu_seconds=100, profile=None).cost_usd == pytest.approx(0.01)


def test_the_dev_deployment_prices_every_profile_from_the_compute_config(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ML_ASSETS_DEPLOYMENT": "dev",
            "ML_ASSETS_HOME": str(tmp_path),
            "ML_ASSETS_LAKE_ROOT": str(tmp_path / "lake"),
            "ML_ASSETS_LANDING_ROOT": str(tmp_path / "landing"),
            "DATABRICKS_HOST": "https://dbc-example.cloud.databricks.com",
        }
    )
    costs = build_resources(settings)["costs"]
    compute = load_compute_config(DEFAULT_COMPUTE_CONFIG)
    assert costs.kind == "databricks"
    assert costs.profile_price_per_hour == {
        name: pytest.approx(compute.prices.hourly_cost(p)) for name, p in compute.profiles.items()
    }


def test_local_rate_comes_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        {"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_LOCAL_CPU_PRICE_PER_HOUR": "0.5"}
    )
    costs = build_resources(settings)["costs"]
    assert (costs.kind, costs.cpu_price_per_hour) == ("local", 0.5)


# ----------------------------------------------------------------------------- materializations
@pytest.fixture
def priced(tmp_path: Path):
    """A local deployment at 3600 USD per CPU hour: the estimate equals the CPU seconds."""
    settings = load_settings(
        {"ML_ASSETS_HOME": str(tmp_path / "home"), "ML_ASSETS_LOCAL_CPU_PRICE_PER_HOUR": "3600"}
    )
    write_demo_data(
        settings.landing_root / "fraud", start=DEMO_START, days=3, rows_per_day=100, seed=2
    )
    return settings, build_definitions(settings)


def _materialize(settings, defs, selection, instance, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=build_resources(settings),
        selection=dg.AssetSelection.assets(*selection).without_checks(),
        instance=instance,
        **kwargs,
    )
    assert result.success
    return result


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == key
    ]  # fmt: skip
    return event.materialization.metadata


def test_a_materialization_records_numeric_compute_seconds_and_cost(priced) -> None:
    settings, defs = priced
    with dg.instance_for_test() as instance:
        result = _materialize(
            settings, defs, [TRANSACTIONS], instance, partition_key=DEMO_START.isoformat()
        )
    metadata = _metadata(result, TRANSACTIONS)
    for key in ("compute_seconds", "cpu_seconds", "estimated_cost_usd"):
        assert isinstance(metadata[key], dg.FloatMetadataValue), key  # plotted over time
    assert metadata["compute_seconds"].value > 0
    assert metadata["estimated_cost_usd"].value == pytest.approx(
        metadata["cpu_seconds"].value, abs=1e-3
    )
    assert metadata["estimated_cost_usd"].value > 0


def test_cost_report_sums_cost_per_asset_and_day_from_the_event_log(priced) -> None:
    settings, defs = priced
    with dg.instance_for_test() as instance:
        costs = []
        for day in (DEMO_START, DEMO_START + dt.timedelta(days=1)):
            result = _materialize(
                settings, defs, [TRANSACTIONS], instance, partition_key=day.isoformat()
            )
            costs.append(_metadata(result, TRANSACTIONS)["estimated_cost_usd"].value)
        # What the step launcher records after each Databricks run (with another observation
        # of the same asset that is not about cost).
        for seconds, cost in ((90.0, 0.05), (30.0, 0.02)):
            instance.report_runless_asset_event(
                dg.AssetObservation(
                    TRANSACTIONS, metadata={"cluster_seconds": seconds, "cluster_cost_usd": cost}
                )
            )
        instance.report_runless_asset_event(
            dg.AssetObservation(TRANSACTIONS, metadata={"dagster/row_count": 10})
        )
        # page size 1: every page of the event log is read, not just the first
        rows = cost_rows(instance, page_size=1)
        clusters = cost_rows(instance, "cluster", page_size=1)
        report_run = _materialize(settings, defs, [COST_REPORT], instance)

    assert rows.height == 2 and rows["estimated_cost_usd"].sum() == pytest.approx(sum(costs))
    assert clusters["cluster_cost_usd"].to_list() == [0.05, 0.02]
    today = dt.datetime.now(dt.UTC).date()
    report = delta.scan(f"{settings.lake_root}/costs/cost_report").collect()
    assert report.select("day", "asset", "materializations", "cluster_seconds").rows() == [
        (today, TRANSACTIONS.to_user_string(), 2, 120.0)
    ]
    assert report["estimated_cost_usd"][0] == pytest.approx(sum(costs))
    assert report["cluster_cost_usd"][0] == pytest.approx(0.07)
    metadata = _metadata(report_run, COST_REPORT)
    assert metadata["total_cost_usd"].value == pytest.approx(sum(costs))
    assert metadata["total_cluster_cost_usd"].value == pytest.approx(0.07)
    assert TRANSACTIONS.to_user_string() in metadata["cost_per_asset"].value
    assert metadata["plot"].value.startswith("![cost per day](data:image/png;base64,")


def test_a_range_run_counts_its_steps_cost_once(priced) -> None:
    """A single-run range writes one materialization per day, each carrying the whole step's
    compute seconds and cost: the report counts them once, not once per day."""
    settings, defs = priced
    last = DEMO_START + dt.timedelta(days=2)
    tags = {
        "dagster/asset_partition_range_start": DEMO_START.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    with dg.instance_for_test() as instance:
        result = _materialize(settings, defs, [TRANSACTIONS], instance, tags=tags)
        events = result.get_asset_materialization_events()
        rows = cost_rows(instance)
    costs = {e.materialization.metadata["estimated_cost_usd"].value for e in events}
    assert len(events) == 3 and len(costs) == 1  # every day carries the step's figure
    assert rows.height == 3
    assert rows["estimated_cost_usd"].sum() == pytest.approx(costs.pop())


def test_summarize_groups_by_day_and_asset() -> None:
    day1, day2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    rows = pl.DataFrame(
        {
            "day": [day1, day1, day2, day1],
            "asset": ["a", "a", "a", "b"],
            "compute_seconds": [1.0, 2.0, 4.0, 8.0],
            "estimated_cost_usd": [0.1, 0.2, 0.4, 0.8],
        }
    )
    clusters = pl.DataFrame(
        {
            "day": [day1, day1, day2],
            "asset": ["a", "a", "c"],
            "cluster_seconds": [60.0, 30.0, 45.0],
            "cluster_cost_usd": [0.6, 0.3, 0.45],
        }
    )
    report = summarize(rows, clusters)
    assert report.select(
        "day", "asset", "materializations", "compute_seconds", "cluster_seconds"
    ).rows() == [
        (day1, "a", 2, 3.0, 90.0),
        (day1, "b", 1, 8.0, 0.0),
        (day2, "a", 1, 4.0, 0.0),
        (day2, "c", 0, 0.0, 45.0),  # cluster time without a costed materialization that day
    ]
