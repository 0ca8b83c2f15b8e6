"""Pipeline specs: what a user writes to bring a dataset into the platform.

A spec is a YAML file (see docs/pipelines.md). It is validated here with pydantic so a typo
fails at load time with the file name and the path of the offending field, not at run time.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

ColumnType = Literal["string", "int", "float", "bool", "date", "datetime"]

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}


class SpecError(ValueError):
    """A pipeline spec is invalid; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Model):
    type: ColumnType
    nullable: bool = True
    description: str = ""

    @property
    def dtype(self) -> pl.DataType:
        return POLARS_TYPES[self.type]


Severity = Literal["error", "warn"]


class RuleSpec(_Model):
    """One data quality rule: on or off, how bad a failure is, and when it is enforced.

    `error` makes a blocking check (downstream assets of the same run do not run); `warn` only
    signals. `before_write` also enforces the rule inside a raw asset, before anything is written
    (raw tables only; ERROR failures then fail the partition and the lake is not touched).
    """

    enabled: bool = True
    severity: Severity = "error"
    before_write: bool = False


class NullRateRuleSpec(RuleSpec):
    # Default ceiling for nullable columns; required columns (and primary keys) allow none.
    max_rate: float = Field(default=0.2, ge=0, le=1)


class RowCountRuleSpec(RuleSpec):
    """The day's row count must lie within [min_ratio, max_ratio] x the median of the previous
    `lookback_days` materialized partitions (read from the Delta log, no data files)."""

    severity: Severity = "warn"
    lookback_days: int = Field(default=7, ge=1)
    min_ratio: float = Field(default=0.5, ge=0)
    max_ratio: float = Field(default=2.0, gt=0)
    # Fewer materialized days than this before the day: the rule passes ("not enough history").
    min_history: int = Field(default=3, ge=1)


class FreshnessRuleSpec(RuleSpec):
    """The newest event of a day lies within `max_hours` of the end of the day (UTC)."""

    severity: Severity = "warn"
    max_hours: float = Field(default=6.0, gt=0)


class ColumnQualitySpec(_Model):
    """Per-column expectations; unset means "not checked" (null rate: the rule's default)."""

    max_null_rate: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    # Allowed values (categories); nulls are judged by the null-rate rule, not here.
    allowed: list[Any] | None = None


class QualitySpec(_Model):
    """Data quality gates of one raw or feature table (each rule becomes a partitioned check)."""

    schema_conformance: RuleSpec = RuleSpec()
    not_empty: RuleSpec = RuleSpec()
    primary_key_unique: RuleSpec = RuleSpec()
    null_rate: NullRateRuleSpec = NullRateRuleSpec()
    values: RuleSpec = RuleSpec()
    row_count: RowCountRuleSpec = RowCountRuleSpec()
    freshness: FreshnessRuleSpec = FreshnessRuleSpec()
    # Event time of a feature table (sources use their `event_time`); freshness needs one.
    event_time: str | None = None
    columns: dict[str, ColumnQualitySpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _band(self) -> QualitySpec:
        if self.row_count.min_ratio > self.row_count.max_ratio:
            raise ValueError("row_count.min_ratio must not exceed row_count.max_ratio")
        for name, column in self.columns.items():
            if column.min is not None and column.max is not None and column.min > column.max:
                raise ValueError(f"columns.{name}: min must not exceed max")
        return self


class SourceSpec(_Model):
    """One kind of landing file, ingested into one daily-partitioned raw table."""

    description: str = ""
    format: Literal["csv", "parquet", "json"] = "csv"
    # Folder with the landing files; relative paths are under the deployment's landing root.
    # Defaults to <landing root>/<pipeline>/<source>.
    landing: str | None = None
    # The column whose date (UTC) decides the daily partition of a row.
    event_time: str
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, ColumnSpec] = Field(min_length=1)
    # Files younger than this may still be being written; the sensor waits for them.
    min_file_age_seconds: float = Field(default=5.0, ge=0)
    # Data quality gates (see docs/quality_and_monitoring.md); defaults apply when absent.
    quality: QualitySpec = QualitySpec()

    @field_validator("columns", mode="before")
    @classmethod
    def _short_column_form(cls, value: Any) -> Any:
        # Allow `amount: float` as shorthand for `amount: {type: float}`.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _keys_are_columns(self) -> SourceSpec:
        keys = [("event_time", self.event_time), *(("primary_key", c) for c in self.primary_key)]
        for field, column in keys:
            if column not in self.columns:
                raise ValueError(
                    f"{field} names column {column!r}, which is not declared in columns"
                )
        if self.columns[self.event_time].type not in ("date", "datetime"):
            raise ValueError(f"event_time column {self.event_time!r} must be a date or datetime")
        unknown = sorted(set(self.quality.columns) - set(self.columns))
        if unknown:
            raise ValueError(f"quality.columns names undeclared column(s) {unknown}")
        return self

    @property
    def file_suffixes(self) -> tuple[str, ...]:
        return {"csv": (".csv",), "parquet": (".parquet",), "json": (".json", ".ndjson")}[
            self.format
        ]


class FeatureInputSpec(_Model):
    """How much of an upstream table one partition of a feature table reads."""

    # Extra days before the partition to read (rolling windows need them).
    lookback_days: int = Field(default=0, ge=0)
    # "all": every partition up to the partition's day (e.g. a slowly changing dimension).
    history: Literal["window", "all"] = "window"


class FeatureSpec(_Model):
    description: str = ""
    # "package.module:function", or "file.py:function" relative to the spec file.
    function: str
    inputs: dict[str, FeatureInputSpec] = Field(min_length=1)
    # Keyword arguments passed to the function.
    params: dict[str, Any] = Field(default_factory=dict)
    primary_key: list[str] = Field(default_factory=list)
    column_descriptions: dict[str, str] = Field(default_factory=dict)
    # Data quality gates (see docs/quality_and_monitoring.md); defaults apply when absent.
    quality: QualitySpec = QualitySpec()

    @property
    def lookback_days(self) -> int:
        """The most days before a partition any input reads ("all"-history inputs read every
        earlier day, but need none of them to be complete)."""
        return max(read.lookback_days for read in self.inputs.values())

    @field_validator("function")
    @classmethod
    def _function_reference(cls, value: str) -> str:
        if value.count(":") != 1:
            raise ValueError(
                "function must look like 'package.module:function' or 'file.py:function'"
            )
        return value


class WindowSpec(_Model):
    """Training window: `train_days` of feature partitions, then the newest `holdout_days`
    held out for validation (a time split, never random), with `gap_days` left out between
    them: for a label that looks ahead (`failed_within_48h`), the last training days' labels
    would otherwise see into the holdout."""

    train_days: int = Field(default=21, ge=1)
    holdout_days: int = Field(default=7, ge=1)
    gap_days: int = Field(default=0, ge=0)


class SearchSpec(_Model):
    """Optional hyper-parameter search; each trial is a nested MLflow run."""

    kind: Literal["grid", "random"] = "random"
    trials: int = Field(default=0, ge=0, description="0: no search, fit `params` once")
    space: dict[str, list[Any]] = Field(default_factory=dict)


class GateSpec(_Model):
    """What a challenger must show before it may become the champion."""

    # Absolute floors (ceilings for error metrics such as log_loss, rmse, mae).
    min_metrics: dict[str, float] = Field(default_factory=dict)
    # How much worse than the champion the challenger may be, per metric.
    max_regression: dict[str, float] = Field(default_factory=dict)
    # A single feature that predicts the target this well on its own is a leak.
    leakage_threshold: float = Field(default=0.98, gt=0.5, le=1.0)


class MonitoringSpec(_Model):
    """Daily drift monitoring of a model's inputs against its champion's training window."""

    enabled: bool = True
    # A feature drifts when its PSI reaches this (rule of thumb: below 0.1 stable, above 0.25
    # a significant shift).
    psi_threshold: float = Field(default=0.2, gt=0)
    # The drift check fails when at least this many features drift.
    min_drifted_features: int = Field(default=1, ge=1)
    # Quantile bins of the reference for numeric features.
    bins: int = Field(default=10, ge=2, le=100)
    severity: Severity = "error"


class RetrainSpec(_Model):
    """When the model retrains itself (the automation sensors must be running)."""

    # Freshness policy: the model fails freshness this long after its last training, and warns
    # from `warn_after_hours` (default 80 % of it). Either state starts exactly one retrain.
    max_age_hours: float = Field(default=168.0, ge=1 / 60)
    warn_after_hours: float | None = Field(default=None, ge=1 / 60)
    # Also retrain once this many feature partitions were written since the last training
    # (0: never for this reason).
    after_new_partitions: int = Field(default=7, ge=0)
    # The retrain sensor waits this long after an ingestion run of the pipeline finished: after
    # a late file, the landing sensor requests the rebuild of the later days on its next tick
    # (every 15 s), and a retrain in between would train on features about to be rewritten.
    ingestion_settle_seconds: int = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _warn_before_fail(self) -> RetrainSpec:
        if self.warn_after_hours is not None and self.warn_after_hours >= self.max_age_hours:
            raise ValueError("warn_after_hours must be less than max_age_hours")
        return self


class ModelSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN, description="Registered model name")
    description: str = ""
    features: str = Field(description="The feature table to train on")
    target: str
    task: Literal["classification", "regression"] = "classification"
    # Columns that are not model inputs: ids, timestamps, the partition column is always out.
    exclude: list[str] = Field(default_factory=list)
    slice_column: str | None = None
    estimator: str = "hist_gradient_boosting"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    # Classification: the probability above which a row counts as positive (for F1 etc.).
    threshold: float = Field(default=0.5, gt=0, lt=1)
    window: WindowSpec = WindowSpec()
    search: SearchSpec = SearchSpec()
    gates: GateSpec = GateSpec()
    retrain: RetrainSpec = RetrainSpec()
    monitoring: MonitoringSpec = MonitoringSpec()


class PipelineSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    owners: list[str] = Field(default_factory=list)
    # First day of the daily partitions.
    start_date: dt.date
    sources: dict[str, SourceSpec] = Field(min_length=1)
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    model: ModelSpec | None = None
    # Folder of the spec file, for resolving relative references (set by the loader).
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _names_and_inputs(self) -> PipelineSpec:
        for name in [*self.sources, *self.features]:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"{name!r} must be lower_snake_case ({NAME_PATTERN})")
        clash = set(self.sources) & set(self.features)
        if clash:
            raise ValueError(f"names used for both a source and a feature table: {sorted(clash)}")
        for feature_name, feature in self.features.items():
            for input_name in feature.inputs:
                if input_name not in self.sources and input_name not in self.features:
                    raise ValueError(
                        f"feature table {feature_name!r} reads {input_name!r}, which is neither "
                        "a source nor a feature table of this pipeline"
                    )
        if self.model is not None and self.model.features not in self.features:
            raise ValueError(
                f"model {self.model.name!r} trains on {self.model.features!r}, which is not a "
                "feature table of this pipeline"
            )
        return self

    def landing_folder(self, source: str, landing_root: Path) -> Path:
        spec = self.sources[source]
        if spec.landing is None:
            return landing_root / self.name / source
        folder = Path(spec.landing).expanduser()
        return folder if folder.is_absolute() else landing_root / folder

    def feature_function(self, feature: str) -> Callable[..., Any]:
        return resolve_function(self.features[feature].function, self.base_dir, self.name)


def resolve_function(reference: str, base_dir: Path, namespace: str) -> Callable[..., Any]:
    module_ref, _, attr = reference.partition(":")
    if module_ref.endswith(".py"):
        path = (base_dir / module_ref).resolve()
        if not path.is_file():
            raise SpecError(f"feature module {path} does not exist (from {reference!r})")
        module_name = f"ml_assets_user_pipelines.{namespace}.{path.stem}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            assert loader_spec and loader_spec.loader
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_ref)
    try:
        function = getattr(module, attr)
    except AttributeError:
        raise SpecError(f"{module_ref} has no function {attr!r} (from {reference!r})") from None
    if not callable(function):
        raise SpecError(f"{reference!r} is not callable")
    return function


def parse_spec(data: dict[str, Any], *, base_dir: Path, origin: str = "<spec>") -> PipelineSpec:
    try:
        return PipelineSpec.model_validate({**data, "base_dir": base_dir})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in error.errors()
        )
        raise SpecError(f"{origin}: invalid pipeline spec: {problems}") from None


def load_spec(path: Path) -> PipelineSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpecError(f"{path}: cannot read pipeline spec: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a pipeline spec must be a YAML mapping")
    return parse_spec(data, base_dir=path.resolve().parent, origin=str(path))
