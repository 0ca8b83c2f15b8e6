"""Data quality rules, evaluated on one day of a table (no Dagster here).

Each rule returns a `RuleResult`: passed or not, a one-line summary, and metadata that says
what failed, where (day, column) and by how much. `ml_assets.pipeline.quality` turns the rules
into partitioned asset checks; `before_write_failures` enforces the `before_write` rules inside
a raw asset, before the IO manager writes.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ml_assets.pipeline.spec import POLARS_TYPES, FeatureSpec, QualitySpec, RuleSpec, SourceSpec
from ml_assets.storage.delta import PARTITION_COLUMN

RULES = (
    "schema_conformance",
    "not_empty",
    "primary_key_unique",
    "null_rate",
    "values",
    "row_count",
    "freshness",
)
DESCRIPTIONS = {
    "schema_conformance": "Every expected column is present with its declared type",
    "not_empty": "The partition has at least one row",
    "primary_key_unique": "No two rows share a primary key",
    "null_rate": "Each column's null rate is within its ceiling",
    "values": "Values lie within their declared ranges and allowed categories",
    "row_count": "The row count lies within a band around the median of the previous days",
    "freshness": "The newest event lies close enough to the end of the day",
}
_EXAMPLES = 5


@dataclass(frozen=True)
class TableRules:
    """What one table is checked against."""

    name: str
    quality: QualitySpec
    primary_key: list[str]
    event_time: str | None
    # Declared column types (sources); feature tables have none beyond their keys.
    declared: dict[str, pl.DataType] = field(default_factory=dict)
    # Columns that must never be null.
    required: frozenset[str] = frozenset()
    # Columns that must exist (beyond `declared`).
    expected: tuple[str, ...] = ()

    def rule(self, name: str) -> RuleSpec:
        return getattr(self.quality, name)

    def enabled(self) -> list[str]:
        rules = [r for r in RULES if self.rule(r).enabled]
        # Freshness needs an event time; a feature table without `quality.event_time` skips it.
        return [r for r in rules if r != "freshness" or self.event_time]


def rules_for_source(name: str, source: SourceSpec) -> TableRules:
    keys = {source.event_time, *source.primary_key}
    return TableRules(
        name=name,
        quality=source.quality,
        primary_key=list(source.primary_key),
        event_time=source.event_time,
        declared={c: POLARS_TYPES[col.type] for c, col in source.columns.items()},
        required=frozenset(c for c, col in source.columns.items() if not col.nullable or c in keys),
        expected=(PARTITION_COLUMN,),
    )


def rules_for_feature(name: str, feature: FeatureSpec, extra: Sequence[str] = ()) -> TableRules:
    """`extra`: columns someone relies on (a model's target) that must exist."""
    quality = feature.quality
    expected = [PARTITION_COLUMN, *feature.primary_key, *quality.columns, *extra]
    if quality.event_time:
        expected.append(quality.event_time)
    return TableRules(
        name=name,
        quality=quality,
        primary_key=list(feature.primary_key),
        event_time=quality.event_time,
        required=frozenset(feature.primary_key),
        expected=tuple(dict.fromkeys(expected)),
    )


@dataclass
class RuleResult:
    rule: str
    day: dt.date
    passed: bool
    summary: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _schema(table: TableRules, frame: pl.DataFrame, day: dt.date) -> RuleResult:
    missing = [c for c in [*table.declared, *table.expected] if c not in frame.columns]
    wrong = {
        c: f"{frame.schema[c]}, declared {dtype}"
        for c, dtype in table.declared.items()
        if c in frame.columns and frame.schema[c] != dtype
    }
    passed = not missing and not wrong
    problems = ([f"missing {missing}"] if missing else []) + (
        [f"wrong types {wrong}"] if wrong else []
    )
    return RuleResult(
        "schema_conformance",
        day,
        passed,
        "schema conforms" if passed else "; ".join(problems),
        {"missing_columns": missing, "wrong_types": wrong, "columns": len(frame.columns)},
    )


def _not_empty(table: TableRules, frame: pl.DataFrame, day: dt.date) -> RuleResult:
    rows = frame.height
    return RuleResult(
        "not_empty", day, rows > 0, f"{rows} rows" if rows else "no rows", {"rows": rows}
    )


def _pk_unique(table: TableRules, frame: pl.DataFrame, day: dt.date) -> RuleResult:
    keys = [c for c in table.primary_key if c in frame.columns]
    if not keys:
        return RuleResult("primary_key_unique", day, True, "no primary key declared", {})
    dupes = frame.group_by(keys).len().filter(pl.col("len") > 1)
    extra_rows = int(dupes["len"].sum() - dupes.height) if dupes.height else 0
    examples = [str(r) for r in dupes.head(_EXAMPLES).select(keys).rows()]
    return RuleResult(
        "primary_key_unique",
        day,
        dupes.height == 0,
        f"{dupes.height} duplicated key(s) on {keys}" if dupes.height else "keys unique",
        {
            "primary_key": keys,
            "duplicated_keys": dupes.height,
            "duplicate_rows": extra_rows,
            "examples": examples,
        },
    )


def null_ceilings(table: TableRules, columns: Sequence[str]) -> dict[str, float]:
    """The null-rate ceiling of each column: 0 when required, the column's own, the default."""
    ceilings = {}
    for column in columns:
        if column == PARTITION_COLUMN or column.startswith("_"):
            continue
        if table.declared and column not in table.declared:
            continue
        own = table.quality.columns.get(column)
        if column in table.required:
            ceilings[column] = 0.0
        elif own is not None and own.max_null_rate is not None:
            ceilings[column] = own.max_null_rate
        else:
            ceilings[column] = table.quality.null_rate.max_rate
    return ceilings


def _null_rate(table: TableRules, frame: pl.DataFrame, day: dt.date) -> RuleResult:
    ceilings = null_ceilings(table, frame.columns)
    if frame.height == 0 or not ceilings:
        return RuleResult("null_rate", day, True, "no rows", {})
    rates = frame.select([(pl.col(c).null_count() / pl.len()).alias(c) for c in ceilings]).row(
        0, named=True
    )
    failing = {
        c: {"null_rate": round(rate, 4), "max": ceilings[c], "nulls": round(rate * frame.height)}
        for c, rate in rates.items()
        if rate > ceilings[c]
    }
    metadata: dict[str, Any] = {"null_rates": {c: round(r, 4) for c, r in rates.items() if r}}
    if failing:
        worst = max(failing, key=lambda c: failing[c]["null_rate"] - failing[c]["max"])
        metadata.update(
            {
                "failing_columns": failing,
                "column": worst,
                "null_rate": failing[worst]["null_rate"],
                "max_null_rate": failing[worst]["max"],
            }
        )
        summary = ", ".join(
            f"{c} null rate {v['null_rate']:.1%} > {v['max']:.1%}" for c, v in failing.items()
        )
    else:
        summary = "null rates within limits"
    return RuleResult("null_rate", day, not failing, summary, metadata)


def _values(table: TableRules, frame: pl.DataFrame, day: dt.date) -> RuleResult:
    failing: dict[str, dict[str, Any]] = {}
    for column, rules in table.quality.columns.items():
        if column not in frame.columns:
            continue
        values = frame.get_column(column).drop_nulls()
        problems: dict[str, Any] = {}
        if rules.min is not None:
            below = values.filter(values < rules.min)
            if below.len():
                problems.update({"below_min": below.len(), "min": rules.min})
                problems["observed_min"] = below.min()
        if rules.max is not None:
            above = values.filter(values > rules.max)
            if above.len():
                problems.update({"above_max": above.len(), "max": rules.max})
                problems["observed_max"] = above.max()
        if rules.allowed is not None:
            unknown = values.filter(~values.is_in(rules.allowed))
            if unknown.len():
                problems["not_allowed"] = unknown.len()
                problems["examples"] = [str(v) for v in unknown.unique().head(_EXAMPLES)]
        if problems:
            problems["rate"] = round(
                max(problems.get(k, 0) for k in ("below_min", "above_max", "not_allowed"))
                / max(1, frame.height),
                4,
            )
            failing[column] = problems
    summary = (
        "; ".join(
            f"{c}: "
            + ", ".join(f"{k} {v}" for k, v in p.items() if k in ("below_min", "above_max"))
            + (f"not allowed {p['not_allowed']} (e.g. {p['examples']})" if "examples" in p else "")
            for c, p in failing.items()
        )
        if failing
        else "values within declared ranges"
    )
    metadata = {"failing_columns": failing} if failing else {}
    if failing:
        metadata["column"] = next(iter(failing))
    return RuleResult("values", day, not failing, summary, metadata)


def _row_count(
    table: TableRules, frame: pl.DataFrame, day: dt.date, history: Mapping[dt.date, int]
) -> RuleResult:
    rule = table.quality.row_count
    previous = sorted((d for d in history if d < day and history[d] > 0), reverse=True)
    previous = previous[: rule.lookback_days]
    rows = frame.height
    metadata: dict[str, Any] = {"rows": rows, "previous_days": len(previous)}
    if len(previous) < rule.min_history:
        return RuleResult(
            "row_count",
            day,
            True,
            f"not enough history ({len(previous)} of {rule.min_history} days)",
            metadata,
        )
    median = statistics.median(history[d] for d in previous)
    low, high = rule.min_ratio * median, rule.max_ratio * median
    ratio = rows / median if median else math.inf
    passed = low <= rows <= high
    metadata.update(
        {
            "median_previous": float(median),
            "ratio": round(ratio, 4),
            "band": [round(low, 1), round(high, 1)],
            "window": f"{previous[-1]} .. {previous[0]}",
        }
    )
    summary = (
        f"{rows} rows, {ratio:.2f}x the median {median:g} of the previous {len(previous)} days"
    )
    if not passed:
        summary += f" (band {rule.min_ratio}x..{rule.max_ratio}x)"
    return RuleResult("row_count", day, passed, summary, metadata)


def _freshness(table: TableRules, frame: pl.DataFrame, day: dt.date) -> RuleResult:
    rule = table.quality.freshness
    column = table.event_time
    if frame.height == 0 or column is None or column not in frame.columns:
        return RuleResult("freshness", day, True, "no events", {})
    newest = frame.get_column(column).max()
    if newest is None:
        return RuleResult("freshness", day, False, f"{column} is null in every row", {})
    if not isinstance(newest, dt.datetime):
        newest = dt.datetime.combine(newest, dt.time())
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    lag = (end - newest.replace(tzinfo=None)).total_seconds() / 3600
    passed = lag <= rule.max_hours
    return RuleResult(
        "freshness",
        day,
        passed,
        f"newest {column} {newest.isoformat()} is {lag:.1f} h before the end of the day"
        + ("" if passed else f" (max {rule.max_hours} h)"),
        {
            "newest_event": newest.isoformat(),
            "partition_end": end.isoformat(),
            "hours_before_end": round(lag, 2),
            "max_hours": rule.max_hours,
        },
    )


def evaluate_rule(
    rule: str,
    table: TableRules,
    frame: pl.DataFrame,
    day: dt.date,
    history: Mapping[dt.date, int] | None = None,
) -> RuleResult:
    """One rule on one day's rows (`frame` holds only that day)."""
    if rule == "row_count":
        return _row_count(table, frame, day, history or {})
    function = {
        "schema_conformance": _schema,
        "not_empty": _not_empty,
        "primary_key_unique": _pk_unique,
        "null_rate": _null_rate,
        "values": _values,
        "freshness": _freshness,
    }[rule]
    return function(table, frame, day)


def evaluate_days(
    rule: str,
    table: TableRules,
    frame: pl.DataFrame,
    days: Sequence[dt.date],
    history: Mapping[dt.date, int] | None = None,
) -> list[RuleResult]:
    """One rule on each of `days` (`frame` holds their rows, with the partition column)."""
    if PARTITION_COLUMN in frame.columns:
        by_day = {
            key[0]: part for key, part in frame.partition_by(PARTITION_COLUMN, as_dict=True).items()
        }
    else:
        by_day = {days[0]: frame} if len(days) == 1 else {}
    empty = frame.clear()
    history = dict(history or {})
    # Days of the frame count as history for the days after them (range runs, before writes).
    history.update({d: part.height for d, part in by_day.items()})
    return [evaluate_rule(rule, table, by_day.get(d, empty), d, history) for d in days]


def before_write_failures(
    table: TableRules,
    frame: pl.DataFrame,
    days: Sequence[dt.date],
    history: Mapping[dt.date, int] | None = None,
) -> list[RuleResult]:
    """Failures of the ERROR rules flagged `before_write`: data that must never reach the lake."""
    failures = []
    for rule in table.enabled():
        spec = table.rule(rule)
        if spec.before_write and spec.severity == "error":
            failures += [
                r for r in evaluate_days(rule, table, frame, days, history) if not r.passed
            ]
    return failures
