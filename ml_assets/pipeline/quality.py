"""Data quality gates: one partitioned asset check per rule on every raw and feature table.

A check evaluates the days of the run (one day, or each day of a range run) and passes only
when every day passes. An `error` rule is a blocking check: when it fails, the assets
downstream of the table do not run in the same run (and automation waits for it across runs
through `all_deps_blocking_checks_passed`). A `warn` rule only signals. The metadata says what
failed, where (day, column) and by how much. See docs/quality_and_monitoring.md.
"""

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.pipeline.automation import DayVerdict, record_day_verdicts
from ml_assets.pipeline.keys import daily_partitions, feature_key, raw_key
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.quality.rules import (
    DESCRIPTIONS,
    RuleResult,
    TableRules,
    before_write_failures,
    evaluate_days,
    rules_for_feature,
    rules_for_source,
)
from ml_assets.storage import delta
from ml_assets.storage.io_manager import DeltaLake

_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}


def _metadata_value(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return dg.MetadataValue.json(value)
    return value


def check_metadata(results: list[RuleResult]) -> dict[str, Any]:
    """One day: that day's details. Several days: counts, failing days and the first failure."""
    failed = [r for r in results if not r.passed]
    if len(results) == 1:
        result = results[0]
        metadata = {"partition": result.day.isoformat(), "summary": result.summary}
        metadata.update(result.metadata)
    else:
        metadata = {
            "days": len(results),
            "failed_days": len(failed),
            "failing": {r.day.isoformat(): r.summary for r in failed},
        }
        if failed:
            # The first failing day's details, so "where and how much" is visible at a glance.
            metadata.update({"partition": failed[0].day.isoformat(), **failed[0].metadata})
            metadata["summary"] = failed[0].summary
    return {k: _metadata_value(v) for k, v in metadata.items()}


def _build_check(
    spec: PipelineSpec, key: dg.AssetKey, table: TableRules, rule: str
) -> dg.AssetChecksDefinition:
    rule_spec = table.rule(rule)
    blocking = rule_spec.severity == "error"

    @dg.asset_check(
        asset=key,
        name=rule,
        blocking=blocking,
        partitions_def=daily_partitions(spec),
        description=f"{DESCRIPTIONS[rule]} ({rule_spec.severity.upper()}"
        + (", blocks downstream assets" if blocking else ", signals only")
        + ")",
        metadata={"severity": rule_spec.severity, "rule": rule},
    )
    def quality_check(context: dg.AssetCheckExecutionContext, lake: DeltaLake):
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        uri = lake.table_uri(key)
        frame = delta.scan(uri, partitions=days).collect() if delta.table_exists(uri) else None
        if frame is None:
            return dg.AssetCheckResult(
                passed=False,
                severity=_SEVERITY[rule_spec.severity],
                metadata={"summary": f"no Delta table at {uri}"},
            )
        history = delta.partition_row_counts(uri) if rule == "row_count" else None
        results = evaluate_days(rule, table, frame, days, history)
        passed = all(r.passed for r in results)
        if not passed:
            context.log.warning(
                f"{key.to_user_string()} {rule} failed: "
                + "; ".join(f"{r.day}: {r.summary}" for r in results if not r.passed)
            )
        # Each day of a range run also gets its own verdict: automation waits for the blocking
        # ones, and without them the UI shows every day of the range as skipped.
        record_day_verdicts(
            context,
            dg.AssetCheckKey(key, rule),
            [
                DayVerdict(r.day.isoformat(), r.passed, r.summary, check_metadata([r]))
                for r in results
            ],
            severity=_SEVERITY[rule_spec.severity],
            blocking=blocking,
        )
        return dg.AssetCheckResult(
            passed=passed,
            severity=_SEVERITY[rule_spec.severity],
            metadata=check_metadata(results),
        )

    return quality_check


def table_rules(spec: PipelineSpec) -> dict[dg.AssetKey, TableRules]:
    """The rules of every raw and feature table of a pipeline, by asset key."""
    tables = {raw_key(spec, n): rules_for_source(n, s) for n, s in spec.sources.items()}
    for name, feature in spec.features.items():
        extra = [spec.model.target] if spec.model and spec.model.features == name else []
        tables[feature_key(spec, name)] = rules_for_feature(name, feature, extra)
    return tables


def blocking_checks(spec: PipelineSpec, key: dg.AssetKey) -> list[dg.AssetCheckKey]:
    """The checks of a table whose failure blocks what depends on it (`error` rules)."""
    table = table_rules(spec)[key]
    return [
        dg.AssetCheckKey(key, rule)
        for rule in table.enabled()
        if table.rule(rule).severity == "error"
    ]


def build_quality_checks(spec: PipelineSpec) -> list[dg.AssetChecksDefinition]:
    return [
        _build_check(spec, key, table, rule)
        for key, table in table_rules(spec).items()
        for rule in table.enabled()
    ]


def enforce_before_write(
    spec: PipelineSpec, source_name: str, rows: pl.DataFrame, days: list[dt.date], uri: str
) -> None:
    """Fail a raw partition, before anything is written, on an ERROR rule flagged
    `before_write` (the raw table keeps its last good load)."""
    table = rules_for_source(source_name, spec.sources[source_name])
    if not any(table.rule(r).before_write for r in table.enabled()):
        return
    history = delta.partition_row_counts(uri) if table.quality.row_count.before_write else None
    failures = before_write_failures(table, rows, days, history)
    if failures:
        raise dg.Failure(
            description="quality gate before write, nothing written: "
            + " | ".join(f"{r.day} {r.rule}: {r.summary}" for r in failures),
            metadata=check_metadata(failures),
            allow_retries=False,
        )
