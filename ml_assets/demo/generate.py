"""Deterministic generator of landing files for the card-transaction fraud demo.

Produces two daily feeds, mirroring what an upstream system would drop into a landing zone:

* ``transactions/YYYY-MM-DD.<fmt>`` -- one row per card transaction of that day (a fact feed).
* ``customers/YYYY-MM-DD.<fmt>``    -- customer records created or changed that day (a dimension
  change feed; the first day carries the full initial snapshot).

Everything is driven by ``numpy.random.default_rng([seed, day_index, stream])`` so a given day is
byte-identical across runs and does not depend on how many days are generated after it. The only
state carried between days is the customer population, which by construction depends on earlier
days alone.

The fraud label is drawn from a logistic model over *observable* behaviour (amount relative to the
customer's usual spend, hour, channel, merchant category, account age, bursts of transactions), so
a model trained on history features can learn it, but the label stays noisy (ROC AUC well below 1).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

__all__ = [
    "CHANNELS",
    "CUSTOMER_COLUMNS",
    "MERCHANT_CATEGORIES",
    "REGIONS",
    "SEGMENTS",
    "TRANSACTION_COLUMNS",
    "DemoSummary",
    "generate_demo_frames",
    "write_demo_data",
]

DemoFormat = Literal["csv", "parquet"]

TRANSACTION_COLUMNS: tuple[str, ...] = (
    "event_id",
    "customer_id",
    "event_ts",
    "amount",
    "channel",
    "merchant_category",
    "is_fraud",
)
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "updated_at",
    "segment",
    "region",
    "signup_date",
    "credit_limit",
)

CHANNELS: tuple[str, ...] = ("web", "app", "store")
MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "electronics",
    "travel",
    "fashion",
    "gaming",
    "fuel",
)
SEGMENTS: tuple[str, ...] = ("retail", "premium", "business")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west")

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S"
_SECONDS_PER_DAY = 86_400
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

# Independent random streams per day: adding draws to one feed must not shift the other.
_STREAM_CUSTOMERS = 0
_STREAM_TRANSACTIONS = 1

# Relative activity per hour of day (UTC): quiet nights, lunch and evening peaks.
_HOUR_WEIGHTS = np.array(
    [0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.5, 3.5, 4.0, 4.2, 4.5,
     5.0, 4.8, 4.5, 4.5, 4.8, 5.2, 5.5, 5.2, 4.5, 3.5, 2.2, 1.2]
)  # fmt: skip
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

_CHANNEL_P = np.array([0.35, 0.45, 0.20])
_CHANNEL_P_DRIFT = np.array([0.70, 0.20, 0.10])
_CATEGORY_P = np.array([0.30, 0.10, 0.06, 0.18, 0.08, 0.28])
_CATEGORY_P_DRIFT = np.array([0.18, 0.26, 0.22, 0.12, 0.08, 0.14])
# Ticket size differs by merchant type (a TV costs more than a coffee).
_CATEGORY_AMOUNT_MULT = np.array([1.0, 2.2, 2.8, 1.3, 0.7, 0.9])
_SEGMENT_P = np.array([0.75, 0.18, 0.07])
_SEGMENT_AMOUNT_MULT = np.array([1.0, 2.2, 3.5])
_SEGMENT_CREDIT_BASE = np.array([3_000.0, 12_000.0, 30_000.0])
_REGION_P = np.array([0.30, 0.25, 0.25, 0.20])
_REGION_P_DRIFT = np.array([0.10, 0.15, 0.55, 0.20])

# Drift moves the mix towards riskier channels/categories, so the fraud rate roughly doubles
# (~3% -> ~6-7%) on drifted days even though P(fraud | behaviour) itself is unchanged.
_DRIFT_AMOUNT_SCALE = 1.7
_CHANNEL_NULL_RATE = 0.01
_CATEGORY_NULL_RATE = 0.02
_CREDIT_NULL_RATE = 0.05

# Customer population dynamics, relative to the initial population size.
_NEW_CUSTOMERS_PER_DAY = 0.005
_UPDATED_CUSTOMERS_PER_DAY = 0.003
# Mean account age (days) of the initial snapshot; ~14% are younger than 30 days, which roughly
# matches the steady state implied by _NEW_CUSTOMERS_PER_DAY, so the fraud rate stays stable.
_INITIAL_ACCOUNT_AGE_MEAN_DAYS = 200.0
_YOUNG_ACCOUNT_SECONDS = 30 * _SECONDS_PER_DAY

# Bursts: short runs of transactions on one card (card testing / account takeover).
_BURST_EPISODES_PER_ROW = 0.003
_BURST_WINDOW_SECONDS = 300

# Amount deviation from the customer's typical ticket, in log space. A small share of "spikes"
# gives the heavy right tail that fraud tends to live in.
_AMOUNT_SIGMA = 0.45
_SPIKE_RATE = 0.04

# Logistic fraud model. Intercept tuned so the undrifted base rate is ~3%; coefficients tuned so
# gradient boosting on history features reaches ROC AUC ~0.85 rather than a trivial 1.0.
_FRAUD_INTERCEPT = -5.3
_MAX_AMOUNT = 50_000.0
_FRAUD_W_AMOUNT = 2.4  # per unit of log(amount / typical) above the knee
_FRAUD_AMOUNT_KNEE = 0.7  # ~2x the customer's typical ticket
_FRAUD_W_NIGHT = 1.6
_FRAUD_W_WEB = 0.9
_FRAUD_W_RISKY_CATEGORY = 0.9
_FRAUD_W_YOUNG_ACCOUNT = 1.2
_FRAUD_W_BURST = 3.5
_WEB = CHANNELS.index("web")
_RISKY_CATEGORIES = np.array(
    [c in ("electronics", "gaming", "travel") for c in MERCHANT_CATEGORIES]
)


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`write_demo_data` produced. ``end`` is the last generated day (inclusive)."""

    out_dir: Path
    start: dt.date
    end: dt.date
    days: int
    transaction_rows: int
    customer_rows: int
    files: list[Path]


@dataclass
class _CustomerPool:
    """Hidden per-customer state; row ``i`` is customer ``c{i+1:06d}``, in signup order."""

    initial_size: int
    signup_sec: np.ndarray  # int64 epoch seconds
    segment: np.ndarray  # int64 code into SEGMENTS
    region: np.ndarray  # int64 code into REGIONS
    credit_limit: np.ndarray  # float64, NaN = unknown (null in the feed)
    activity: np.ndarray  # relative transaction rate (heavy-tailed)
    typical_amount: np.ndarray  # the customer's usual ticket size

    def __len__(self) -> int:
        return len(self.signup_sec)


def generate_demo_frames(
    *,
    start: dt.date,
    days: int,
    rows_per_day: int,
    seed: int,
    drift_from: dt.date | None = None,
) -> dict[str, dict[dt.date, pl.DataFrame]]:
    """{"transactions": {day: df}, "customers": {day: df}} -- in memory, used by benchmarks too."""
    frames: dict[str, dict[dt.date, pl.DataFrame]] = {"transactions": {}, "customers": {}}
    for day, transactions, customers in _iter_days(
        start=start, days=days, rows_per_day=rows_per_day, seed=seed, drift_from=drift_from
    ):
        frames["transactions"][day] = transactions
        frames["customers"][day] = customers
    return frames


def write_demo_data(
    out_dir: Path,
    *,
    start: dt.date,
    days: int,
    rows_per_day: int,
    seed: int,
    drift_from: dt.date | None = None,
    fmt: DemoFormat = "csv",
) -> DemoSummary:
    """Writes <out_dir>/transactions/YYYY-MM-DD.csv and <out_dir>/customers/YYYY-MM-DD.csv.

    Each file is written to a hidden ``.<name>.tmp`` in the same folder and then renamed with
    ``os.replace`` so a landing sensor never sees a half-written file. Existing files for the same
    days are overwritten; files for other days are left alone.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    out_dir = Path(out_dir)
    tx_dir = out_dir / "transactions"
    cust_dir = out_dir / "customers"
    tx_dir.mkdir(parents=True, exist_ok=True)
    cust_dir.mkdir(parents=True, exist_ok=True)

    files: list[Path] = []
    tx_rows = cust_rows = 0
    # Stream day by day so memory stays bounded by one day, not the whole run.
    for day, transactions, customers in _iter_days(
        start=start, days=days, rows_per_day=rows_per_day, seed=seed, drift_from=drift_from
    ):
        name = f"{day.isoformat()}.{fmt}"
        # Customers first: a sensor reacting to the transactions file can then rely on the
        # dimension records for that day already being present.
        files.append(_write_atomic(customers, cust_dir / name, fmt))
        files.append(_write_atomic(transactions, tx_dir / name, fmt))
        tx_rows += transactions.height
        cust_rows += customers.height

    start = _as_date(start)
    return DemoSummary(
        out_dir=out_dir,
        start=start,
        end=start + dt.timedelta(days=days - 1),
        days=days,
        transaction_rows=tx_rows,
        customer_rows=cust_rows,
        files=files,
    )


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _as_date(value: dt.date) -> dt.date:
    # datetime is a subclass of date; truncate so day arithmetic stays whole days.
    return value.date() if isinstance(value, dt.datetime) else value


def _iter_days(
    *,
    start: dt.date,
    days: int,
    rows_per_day: int,
    seed: int,
    drift_from: dt.date | None,
) -> Iterator[tuple[dt.date, pl.DataFrame, pl.DataFrame]]:
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if rows_per_day < 1:
        raise ValueError(f"rows_per_day must be >= 1, got {rows_per_day}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy SeedSequence), got {seed}")
    start = _as_date(start)
    drift_from = _as_date(drift_from) if drift_from is not None else None

    initial_size = max(200, rows_per_day // 20)
    pool: _CustomerPool | None = None
    for day_index in range(days):
        day = start + dt.timedelta(days=day_index)
        day_sec = (day.toordinal() - _EPOCH_ORDINAL) * _SECONDS_PER_DAY
        drifted = drift_from is not None and day >= drift_from
        cust_rng = np.random.default_rng([seed, day_index, _STREAM_CUSTOMERS])
        tx_rng = np.random.default_rng([seed, day_index, _STREAM_TRANSACTIONS])

        if pool is None:
            pool, customers = _initial_customers(cust_rng, initial_size, day_sec)
        else:
            customers = _customer_changes(cust_rng, pool, day_sec, drifted)
        transactions = _transactions(tx_rng, pool, day, day_sec, rows_per_day, drifted)
        yield day, transactions, customers


def _sample_seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds since midnight following the daily activity cycle."""
    hours = rng.choice(24, size=n, p=_HOUR_P)
    return hours * 3600 + rng.integers(0, 3600, size=n)


def _draw_credit_limits(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    raw = _SEGMENT_CREDIT_BASE[segment] * rng.lognormal(0.0, 0.4, size=len(segment))
    limits = np.maximum(np.round(raw / 100.0) * 100.0, 500.0)
    limits[rng.random(len(segment)) < _CREDIT_NULL_RATE] = np.nan
    return limits


def _draw_customer_attributes(
    rng: np.random.Generator, n: int, region_p: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    segment = rng.choice(len(SEGMENTS), size=n, p=_SEGMENT_P)
    region = rng.choice(len(REGIONS), size=n, p=region_p)
    credit = _draw_credit_limits(rng, segment)
    # Lognormal activity -> a few customers are far more active than the median (Pareto-ish).
    activity = rng.lognormal(0.0, 1.2, size=n)
    typical = rng.lognormal(np.log(35.0), 0.7, size=n) * _SEGMENT_AMOUNT_MULT[segment]
    return segment, region, credit, activity, typical


def _initial_customers(
    rng: np.random.Generator, n: int, day_sec: int
) -> tuple[_CustomerPool, pl.DataFrame]:
    segment, region, credit, activity, typical = _draw_customer_attributes(rng, n, _REGION_P)
    # Signed up 1..~5 years before start, skewed towards recent (exponential account age).
    age_days = 1 + np.minimum(
        np.floor(rng.exponential(_INITIAL_ACCOUNT_AGE_MEAN_DAYS, size=n)), 5 * 365
    ).astype(np.int64)
    signup_sec = day_sec - age_days * _SECONDS_PER_DAY + rng.integers(0, _SECONDS_PER_DAY, n)
    pool = _CustomerPool(
        initial_size=n,
        signup_sec=signup_sec,
        segment=segment,
        region=region,
        credit_limit=credit,
        activity=activity,
        typical_amount=typical,
    )
    idx = np.arange(n)
    updated_sec = np.full(n, day_sec, dtype=np.int64)
    return pool, _customer_frame(pool, idx, updated_sec)


def _customer_changes(
    rng: np.random.Generator, pool: _CustomerPool, day_sec: int, drifted: bool
) -> pl.DataFrame:
    """Append today's signups to ``pool``, apply a few profile changes, return today's records."""
    n_old = len(pool)

    # New signups: updated_at is the signup moment; they may only transact after it.
    n_new = int(rng.poisson(max(2.0, pool.initial_size * _NEW_CUSTOMERS_PER_DAY)))
    region_p = _REGION_P_DRIFT if drifted else _REGION_P
    segment, region, credit, activity, typical = _draw_customer_attributes(rng, n_new, region_p)
    new_signup_sec = day_sec + _sample_seconds_of_day(rng, n_new)

    # Changes to existing customers (segment upgrade/downgrade or credit-limit review). Drawn
    # without replacement so customer_id stays a primary key within the day's file.
    n_upd = min(n_old, int(rng.poisson(max(1.0, pool.initial_size * _UPDATED_CUSTOMERS_PER_DAY))))
    upd_idx = np.sort(rng.choice(n_old, size=n_upd, replace=False))
    upd_sec = day_sec + _sample_seconds_of_day(rng, n_upd)
    segment_change = rng.random(n_upd) < 0.35
    new_segment = (pool.segment[upd_idx] + rng.integers(1, len(SEGMENTS), size=n_upd)) % len(
        SEGMENTS
    )
    old_credit = pool.credit_limit[upd_idx]
    revised = np.round(old_credit * rng.lognormal(0.05, 0.25, size=n_upd) / 100.0) * 100.0
    fresh = _draw_credit_limits(rng, pool.segment[upd_idx])
    # A review of an unknown limit yields a fresh value (which may itself be unknown).
    new_credit = np.where(np.isnan(old_credit), fresh, np.maximum(revised, 500.0))

    pool.segment[upd_idx] = np.where(segment_change, new_segment, pool.segment[upd_idx])
    pool.credit_limit[upd_idx] = np.where(segment_change, old_credit, new_credit)

    pool.signup_sec = np.concatenate([pool.signup_sec, new_signup_sec])
    pool.segment = np.concatenate([pool.segment, segment])
    pool.region = np.concatenate([pool.region, region])
    pool.credit_limit = np.concatenate([pool.credit_limit, credit])
    pool.activity = np.concatenate([pool.activity, activity])
    pool.typical_amount = np.concatenate([pool.typical_amount, typical])

    idx = np.concatenate([upd_idx, np.arange(n_old, n_old + n_new)])
    updated_sec = np.concatenate([upd_sec, new_signup_sec])
    return _customer_frame(pool, idx, updated_sec)


def _customer_frame(pool: _CustomerPool, idx: np.ndarray, updated_sec: np.ndarray) -> pl.DataFrame:
    signup_day = pool.signup_sec[idx] // _SECONDS_PER_DAY
    df = pl.DataFrame(
        {
            "_idx": idx.astype(np.int64),
            "_updated_sec": updated_sec.astype(np.int64),
            "segment": pl.Series(SEGMENTS).gather(pool.segment[idx]),
            "region": pl.Series(REGIONS).gather(pool.region[idx]),
            "_signup_day": signup_day.astype(np.int32),
            "credit_limit": pl.Series(pool.credit_limit[idx], nan_to_null=True),
        }
    )
    return df.sort("_updated_sec", "_idx").select(
        _customer_id_expr(pl.col("_idx")).alias("customer_id"),
        pl.from_epoch("_updated_sec", time_unit="s").dt.strftime(_TS_FORMAT).alias("updated_at"),
        "segment",
        "region",
        pl.col("_signup_day").cast(pl.Date).dt.strftime("%Y-%m-%d").alias("signup_date"),
        pl.col("credit_limit").cast(pl.Float64),
    )


def _customer_id_expr(idx: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit("c"), (idx + 1).cast(pl.String).str.zfill(6)])


def _transactions(
    rng: np.random.Generator,
    pool: _CustomerPool,
    day: dt.date,
    day_sec: int,
    rows: int,
    drifted: bool,
) -> pl.DataFrame:
    n_pool = len(pool)
    # Customers that existed before midnight can transact at any time of the day. The pool is
    # appended day by day, so they form a prefix of it.
    n_before_day = int(np.count_nonzero(pool.signup_sec < day_sec))

    # --- bursts: several transactions on one card within a few minutes -------------------
    n_episodes = int(rng.poisson(rows * _BURST_EPISODES_PER_ROW))
    sizes = 3 + rng.poisson(2.0, size=n_episodes)
    # Tiny days: keep bursts to at most half the rows so normal traffic still dominates.
    sizes = sizes[np.cumsum(sizes) <= rows // 2]
    n_burst = int(sizes.sum())
    episode_start = rng.integers(0, _SECONDS_PER_DAY - _BURST_WINDOW_SECONDS, size=len(sizes))
    # Fraudsters pick cards regardless of how active the owner is, so bursts stand out most on
    # quiet customers -- which is what makes them detectable from history.
    episode_customer = rng.integers(0, n_before_day, size=len(sizes))
    burst_sod = np.repeat(episode_start, sizes) + rng.integers(
        0, _BURST_WINDOW_SECONDS, size=n_burst
    )
    burst_cust = np.repeat(episode_customer, sizes)

    # --- normal traffic: activity-weighted customers, daily cycle ----------------------
    n_normal = rows - n_burst
    normal_sod = _sample_seconds_of_day(rng, n_normal)
    p_all = pool.activity / pool.activity.sum()
    normal_cust = rng.choice(n_pool, size=n_normal, p=p_all)
    # Customers who sign up today cannot transact before their signup: redraw those rows from
    # customers that already existed at midnight (one vectorised pass, deterministic).
    too_early = pool.signup_sec[normal_cust] >= day_sec + normal_sod
    n_early = int(too_early.sum())
    p_old = pool.activity[:n_before_day] / pool.activity[:n_before_day].sum()
    normal_cust[too_early] = rng.choice(n_before_day, size=n_early, p=p_old)

    sod = np.concatenate([normal_sod, burst_sod])
    cust = np.concatenate([normal_cust, burst_cust])
    burst = np.concatenate([np.zeros(n_normal, dtype=bool), np.ones(n_burst, dtype=bool)])
    order = np.argsort(sod, kind="stable")
    sod, cust, burst = sod[order], cust[order], burst[order]

    # --- attributes ----------------------------------------------------------------------
    channel = rng.choice(len(CHANNELS), size=rows, p=_CHANNEL_P_DRIFT if drifted else _CHANNEL_P)
    category = rng.choice(
        len(MERCHANT_CATEGORIES), size=rows, p=_CATEGORY_P_DRIFT if drifted else _CATEGORY_P
    )
    deviation = rng.normal(0.0, _AMOUNT_SIGMA, size=rows)
    spike = rng.random(rows) < _SPIKE_RATE
    deviation += spike * (0.5 + rng.exponential(0.8, size=rows))
    scale = _DRIFT_AMOUNT_SCALE if drifted else 1.0
    amount = pool.typical_amount[cust] * _CATEGORY_AMOUNT_MULT[category] * np.exp(deviation)
    # Capped like a card's payment limit: the log-normal tail otherwise reaches millions once in
    # a few hundred thousand rows, past the spec's blocking 1M ceiling on `amount`.
    amount = np.clip(np.round(amount * scale, 2), 0.5, _MAX_AMOUNT)

    # --- label: logistic in observable behaviour ------------------------------------------
    # The amount term uses the deviation from the customer's own (pre-drift) level, so under
    # drift the *fraud* process is unchanged while amount-based features inflate.
    age_sec = day_sec + sod - pool.signup_sec[cust]
    log_ratio = np.log(_CATEGORY_AMOUNT_MULT[category]) + deviation
    logit = (
        _FRAUD_INTERCEPT
        + _FRAUD_W_AMOUNT * np.clip(log_ratio - _FRAUD_AMOUNT_KNEE, 0.0, 3.0)
        + _FRAUD_W_NIGHT * (sod < 6 * 3600)
        + _FRAUD_W_WEB * (channel == _WEB)
        + _FRAUD_W_RISKY_CATEGORY * _RISKY_CATEGORIES[category]
        + _FRAUD_W_YOUNG_ACCOUNT * (age_sec < _YOUNG_ACCOUNT_SECONDS)
        + _FRAUD_W_BURST * burst
    )
    is_fraud = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    # Missing values are applied after the label: the true channel still drove the risk.
    channel_null = rng.random(rows) < _CHANNEL_NULL_RATE
    category_null = rng.random(rows) < _CATEGORY_NULL_RATE

    id_width = max(6, len(str(rows)))
    df = pl.DataFrame(
        {
            "_seq": np.arange(1, rows + 1, dtype=np.int64),
            "_cust": cust.astype(np.int64),
            "_ts": (day_sec + sod).astype(np.int64),
            "amount": amount,
            "channel": pl.Series(CHANNELS).gather(channel).set(pl.Series(channel_null), None),
            "merchant_category": pl.Series(MERCHANT_CATEGORIES)
            .gather(category)
            .set(pl.Series(category_null), None),
            "is_fraud": is_fraud,
        }
    )
    return df.select(
        pl.concat_str(
            [pl.lit(f"t{day:%Y%m%d}-"), pl.col("_seq").cast(pl.String).str.zfill(id_width)]
        ).alias("event_id"),
        _customer_id_expr(pl.col("_cust")).alias("customer_id"),
        pl.from_epoch("_ts", time_unit="s").dt.strftime(_TS_FORMAT).alias("event_ts"),
        "amount",
        "channel",
        "merchant_category",
        "is_fraud",
    )


def _write_atomic(df: pl.DataFrame, path: Path, fmt: DemoFormat) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if fmt == "csv":
                df.write_csv(fh, float_precision=2)
            else:
                df.write_parquet(fh)
            fh.flush()
            # Make the bytes durable before the rename publishes them.
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
