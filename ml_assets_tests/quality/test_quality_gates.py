"""Quality gates in a real run: a broken partition fails its ERROR check and blocks downstream."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from ml_assets.definitions import build_definitions, build_resources
from ml_assets.demo.generate import write_demo_data
from ml_assets.settings import DEMO_PIPELINE_SPEC, load_settings
from ml_assets.storage import delta
from ml_assets_tests.conftest import DEMO_START

DAYS = 3
BROKEN = DEMO_START + dt.timedelta(days=DAYS - 1)


def _spec(folder: Path, **transactions_quality) -> Path:
    """The demo spec without its model, with `amount` nullable (so nulls pass ingestion and it
    is the null-rate gate's job to stop them)."""
    data = yaml.safe_load(DEMO_PIPELINE_SPEC.read_text())
    data.pop("model")
    source = data["sources"]["transactions"]
    source["columns"]["amount"]["nullable"] = True
    source["quality"] = {**source.get("quality", {}), **transactions_quality}
    path = folder / "fraud.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _break_amounts(landing: Path, day: dt.date, share: float = 0.8) -> None:
    """Blank `share` of the day's amounts."""
    path = landing / "fraud" / "transactions" / f"{day.isoformat()}.csv"
    frame = pl.read_csv(path, infer_schema=False)
    blank = pl.int_range(pl.len()) < int(frame.height * share)
    frame.with_columns(
        pl.when(blank).then(None).otherwise(pl.col("amount")).alias("amount")
    ).write_csv(path)


@pytest.fixture
def deployment(tmp_path: Path, request):
    specs = tmp_path / "specs"
    specs.mkdir()
    settings = load_settings(
        {
            "ML_ASSETS_HOME": str(tmp_path / "home"),
            "ML_ASSETS_PIPELINES": str(_spec(specs, **getattr(request, "param", {}))),
        }
    )
    write_demo_data(
        settings.landing_root / "fraud", start=DEMO_START, days=DAYS, rows_per_day=200, seed=3
    )
    _break_amounts(settings.landing_root, BROKEN)
    defs = build_definitions(settings)

    def run(**kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            resources=build_resources(settings),
            selection=dg.AssetSelection.groups("raw", "features"),
            raise_on_error=False,
            **kwargs,
        )

    return settings, run


def _evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name): (
            e.event_specific_data
        )
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def _materialized(result) -> set[str]:
    return {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def test_a_broken_null_rate_fails_its_error_check_and_blocks_downstream(deployment):
    settings, run = deployment
    good = run(
        tags={
            "dagster/asset_partition_range_start": DEMO_START.isoformat(),
            "dagster/asset_partition_range_end": (BROKEN - dt.timedelta(days=1)).isoformat(),
        }
    )
    assert good.success
    assert "fraud/features/transaction_features" in _materialized(good)
    assert all(e.passed for e in _evaluations(good).values() if e.severity.value == "ERROR")

    broken = run(partition_key=BROKEN.isoformat())

    assert not broken.success
    check = _evaluations(broken)[("fraud/raw/transactions", "null_rate")]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    metadata = {k: v.value for k, v in check.metadata.items()}
    assert metadata["partition"] == BROKEN.isoformat()
    assert metadata["column"] == "amount"
    assert metadata["null_rate"] == pytest.approx(0.8, abs=0.01)
    assert metadata["max_null_rate"] == 0.2
    assert "amount null rate 80.0% > 20.0%" in metadata["summary"]
    # The raw table was written (checks run after the write) but nothing downstream ran.
    assert "fraud/raw/transactions" in _materialized(broken)
    assert "fraud/features/transaction_features" not in _materialized(broken)
    features = delta.scan(f"{settings.lake_root}/fraud/features/transaction_features")
    assert BROKEN not in features.select("event_date").unique().collect()["event_date"].to_list()
    # The other checks of the day are unaffected.
    assert _evaluations(broken)[("fraud/raw/transactions", "not_empty")].passed


@pytest.mark.parametrize("deployment", [{"null_rate": {"before_write": True}}], indirect=True)
def test_a_before_write_rule_keeps_bad_data_out_of_the_lake(deployment):
    settings, run = deployment
    assert run(partition_key=DEMO_START.isoformat()).success

    broken = run(partition_key=BROKEN.isoformat())

    assert not broken.success
    failure = next(e for e in broken.all_events if e.is_step_failure)
    assert failure.step_key == "fraud__raw__transactions"
    message = str(failure.step_failure_data.error)
    assert "quality gate before write" in message and "amount null rate 80.0%" in message
    raw = delta.scan(f"{settings.lake_root}/fraud/raw/transactions").collect()
    assert raw["event_date"].unique().to_list() == [DEMO_START]
    assert "fraud/features/transaction_features" not in _materialized(broken)


def test_checks_are_partitioned_and_blocking_follows_severity(tmp_path):
    settings = load_settings({"ML_ASSETS_HOME": str(tmp_path / "home")})
    defs = build_definitions(settings)
    specs = {
        (spec.asset_key, spec.name): spec
        for checks in defs.asset_checks
        for spec in checks.check_specs
    }
    transactions = raw_key_of("transactions")
    assert specs[(transactions, "null_rate")].blocking
    assert not specs[(transactions, "row_count")].blocking  # warn by default
    assert not specs[(transactions, "freshness")].blocking
    features = feature_key_of("transaction_features")
    assert specs[(features, "values")].blocking
    # The sparse customer dimension opts out of the row-count band and freshness.
    assert (raw_key_of("customers"), "row_count") not in specs


def raw_key_of(name: str) -> dg.AssetKey:
    return dg.AssetKey(["fraud", "raw", name])


def feature_key_of(name: str) -> dg.AssetKey:
    return dg.AssetKey(["fraud", "features", name])


def test_a_range_run_gives_every_check_a_verdict_per_day(deployment):
    """Warn rules too: without per-day verdicts the UI lists every day of a range run as
    skipped, even the day the rule failed on."""
    _, run = deployment
    days = [(DEMO_START + dt.timedelta(days=d)).isoformat() for d in range(DAYS)]
    result = run(
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        }
    )

    per_day: dict[tuple[str, str], dict[str, bool]] = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            if check.partition is not None:
                key = (check.asset_key.to_user_string(), check.check_name)
                per_day.setdefault(key, {})[check.partition] = check.passed
    warn_rules = {
        key
        for key, check in _evaluations(result).items()
        if check.severity == dg.AssetCheckSeverity.WARN
    }
    assert warn_rules, "the demo spec has warn rules"
    for key in warn_rules:
        assert sorted(per_day.get(key, {})) == days, key
    assert per_day[("fraud/raw/transactions", "null_rate")] == {
        days[0]: True,
        days[1]: True,
        BROKEN.isoformat(): False,
    }
