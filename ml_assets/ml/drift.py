"""Feature drift by the Population Stability Index, and live model quality (no Dagster here).

PSI = sum over buckets of (current - reference) * ln(current / reference), bucket shares
floored at `EPSILON` so an empty bucket does not give infinity.

- Numeric features: the buckets are the reference's quantile bins (deciles by default), so each
  holds about the same share of the training rows, plus a bucket for missing values.
- Categorical features: one bucket per category seen in the reference, one "other" bucket for
  categories the reference never saw, one "missing" bucket.

Why PSI rather than the Kolmogorov-Smirnov test: one statistic for numeric and categorical
features alike, with a conventional scale (< 0.1 stable, 0.1-0.25 moderate, > 0.25 significant)
that does not depend on the sample size. KS's p-value does: on a day of thousands of rows it
flags shifts too small to matter, and it says nothing about categories or missing values. The
reference is summarised once (edges and shares), so monitoring a day never rereads training
data beyond the first time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

EPSILON = 1e-4
OTHER = "__other__"
MISSING = "__missing__"


@dataclass(frozen=True)
class FeatureReference:
    feature: str
    kind: str  # "numeric" | "categorical"
    # Numeric: the inner bin edges; categorical: the reference's categories.
    edges: tuple[float, ...]
    categories: tuple[str, ...]
    # Shares of the reference rows per bucket: bins (or categories + other), then missing.
    shares: tuple[float, ...]
    null_rate: float


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    psi: float
    rows: int
    null_rate: float
    reference_null_rate: float


def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> float:
    expected = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    actual = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _numeric_counts(values: pl.Series, edges: Sequence[float]) -> np.ndarray:
    present = values.drop_nulls().drop_nans() if values.dtype.is_float() else values.drop_nulls()
    data = present.cast(pl.Float64).to_numpy()
    bins = np.bincount(np.searchsorted(edges, data, side="right"), minlength=len(edges) + 1)
    return np.append(bins, values.len() - present.len())


def _categorical_counts(values: pl.Series, categories: Sequence[str]) -> np.ndarray:
    text = values.cast(pl.String)
    counts = dict(text.drop_nulls().value_counts().iter_rows())
    known = [counts.get(c, 0) for c in categories]
    other = sum(v for k, v in counts.items() if k not in set(categories))
    return np.array([*known, other, text.null_count()])


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = counts.sum()
    return tuple(float(c) / total for c in counts) if total else tuple(0.0 for _ in counts)


def build_reference(
    frame: pl.DataFrame, numeric: Sequence[str], categorical: Sequence[str], *, bins: int = 10
) -> dict[str, FeatureReference]:
    """Summarise the training rows: quantile edges and bucket shares per feature."""
    references = {}
    for feature in numeric:
        values = frame.get_column(feature)
        present = values.drop_nulls()
        if values.dtype.is_float():
            present = present.drop_nans()
        data = present.cast(pl.Float64).to_numpy()
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        edges = tuple(np.unique(np.quantile(data, quantiles))) if data.size else ()
        counts = _numeric_counts(values, edges)
        references[feature] = FeatureReference(
            feature,
            "numeric",
            tuple(float(e) for e in edges),
            (),
            _shares(counts),
            values.null_count() / max(1, values.len()),
        )
    for feature in categorical:
        values = frame.get_column(feature).cast(pl.String)
        categories = tuple(sorted(values.drop_nulls().unique().to_list()))
        counts = _categorical_counts(values, categories)
        references[feature] = FeatureReference(
            feature,
            "categorical",
            (),
            categories,
            _shares(counts),
            values.null_count() / max(1, values.len()),
        )
    return references


def feature_drift(
    references: dict[str, FeatureReference], frame: pl.DataFrame
) -> list[FeatureDrift]:
    """PSI of each referenced feature in `frame` (one day's rows), largest first."""
    results = []
    for feature, ref in references.items():
        if feature not in frame.columns:
            # A feature that vanished is as drifted as it gets: everything is "missing".
            counts = np.zeros(len(ref.shares))
            counts[-1] = frame.height
            values_null_rate = 1.0
        else:
            values = frame.get_column(feature)
            counts = (
                _numeric_counts(values, ref.edges)
                if ref.kind == "numeric"
                else _categorical_counts(values, ref.categories)
            )
            values_null_rate = values.null_count() / max(1, values.len())
        value = psi(ref.shares, _shares(counts)) if frame.height else math.nan
        results.append(
            FeatureDrift(feature, ref.kind, value, frame.height, values_null_rate, ref.null_rate)
        )
    return sorted(results, key=lambda d: -d.psi if not math.isnan(d.psi) else math.inf)


def drifted(results: Sequence[FeatureDrift], threshold: float) -> dict[str, float]:
    """{feature: psi} of the features at or above the threshold."""
    return {d.feature: round(d.psi, 4) for d in results if d.psi >= threshold}
