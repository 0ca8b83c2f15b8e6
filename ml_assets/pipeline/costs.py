"""`costs/cost_report`: estimated compute cost per asset and per day, from the event log."""

import base64
import datetime as dt
import io

import dagster as dg
import polars as pl

from ml_assets.databricks.costs import (
    CLUSTER_COST_KEY,
    CLUSTER_SECONDS_KEY,
    COST_KEY,
    SECONDS_KEY,
)

REPORT_SCHEMA = pl.Schema(
    {
        "day": pl.Date,
        "asset": pl.String,
        "materializations": pl.Int64,
        "compute_seconds": pl.Float64,
        "estimated_cost_usd": pl.Float64,
        # Databricks: the step's whole cluster run, start-up included (see the step launcher).
        "cluster_seconds": pl.Float64,
        "cluster_cost_usd": pl.Float64,
    }
)
# Which events carry which numbers (metadata key -> column): materializations the work's,
# observations the cluster's. A row needs the first key. Once per step: a range run's step
# writes one materialization per day, each with the whole step's figures, so they count once;
# a step's cluster observations are one per Databricks run (a retried step has several).
SOURCES: dict[str, tuple[str, dict[str, str], bool]] = {
    "work": (
        "fetch_materializations",
        {COST_KEY: "estimated_cost_usd", SECONDS_KEY: "compute_seconds"},
        True,
    ),
    "cluster": (
        "fetch_observations",
        {CLUSTER_COST_KEY: "cluster_cost_usd", CLUSTER_SECONDS_KEY: "cluster_seconds"},
        False,
    ),
}
# Event records fetched per event-log query; cost_rows pages through all of them.
PAGE_SIZE = 1000


def _number(value: object) -> float | None:
    raw = getattr(value, "value", value)
    return float(raw) if isinstance(raw, int | float) else None


def _row_schema(source: str) -> dict[str, pl.DataType]:
    return {"day": pl.Date(), "asset": pl.String()} | {
        column: pl.Float64() for column in SOURCES[source][1].values()
    }


def cost_rows(
    instance: dg.DagsterInstance, source: str = "work", *, page_size: int = PAGE_SIZE
) -> pl.DataFrame:
    """One row per event of `source` (see SOURCES) that recorded a cost, for every asset in the
    event log: each costed materialization ("work"), or each observed Databricks run
    ("cluster")."""
    method, columns, once_per_step = SOURCES[source]
    fetch = getattr(instance, method)
    required = next(iter(columns))
    rows = []
    for asset_key in instance.get_asset_keys():
        records_filter = dg.AssetRecordsFilter(asset_key=asset_key)
        cursor = None
        steps_seen: set[tuple[str, str]] = set()
        while True:
            page = fetch(records_filter, limit=page_size, cursor=cursor, ascending=True)
            for record in page.records:
                metadata = record.asset_event.metadata if record.asset_event else {}
                if _number(metadata.get(required)) is None:
                    continue
                entry = record.event_log_entry
                step = (entry.run_id, entry.step_key or "")
                costed = not (once_per_step and entry.step_key and step in steps_seen)
                steps_seen.add(step)
                rows.append(
                    {
                        "day": dt.datetime.fromtimestamp(record.timestamp, dt.UTC).date(),
                        "asset": asset_key.to_user_string(),
                        # A step counted once has its figures on its first day's row.
                        **{
                            col: (_number(metadata.get(key)) or 0.0) if costed else 0.0
                            for key, col in columns.items()
                        },
                    }
                )
            if not page.has_more:
                break
            cursor = page.cursor
    return pl.DataFrame(rows, schema=_row_schema(source))


def summarize(work: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    """Per UTC day and asset: materializations, their compute time and cost, and the time and
    cost of the Databricks runs behind them (0 where nothing ran on Databricks)."""
    per_day = work.group_by("day", "asset").agg(
        pl.len().cast(pl.Int64).alias("materializations"),
        pl.col("compute_seconds").sum(),
        pl.col("estimated_cost_usd").sum(),
    )
    cluster_per_day = clusters.group_by("day", "asset").agg(
        pl.col("cluster_seconds").sum(), pl.col("cluster_cost_usd").sum()
    )
    return (
        per_day.join(cluster_per_day, on=["day", "asset"], how="full", coalesce=True)
        .with_columns(pl.exclude("day", "asset").fill_null(0))
        .select(list(REPORT_SCHEMA))
        .cast(dict(REPORT_SCHEMA))
        .sort("day", "asset")
    )


def plot_png(report: pl.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=90)
    days = report.get_column("day").unique().sort().to_list()
    bottom = [0.0] * len(days)
    for asset in report.get_column("asset").unique().sort().to_list():
        per_day = dict(
            report.filter(pl.col("asset") == asset).select("day", "estimated_cost_usd").iter_rows()
        )
        values = [per_day.get(d, 0.0) for d in days]
        ax.bar([str(d) for d in days], values, bottom=bottom, label=asset)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("estimated cost (USD)")
    ax.set_title("Compute cost per day and asset")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    if days:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@dg.asset(
    key=["costs", "cost_report"],
    group_name="costs",
    kinds={"polars", "delta"},
    owners=["team:ml-platform"],
    description="Estimated compute cost and compute seconds per asset and per day, summed from "
    "the `estimated_cost_usd` / `compute_seconds` metadata of every materialization, and on "
    "Databricks the time and cost of the cluster runs behind them (`cluster_cost_usd`).",
)
def cost_report(context: dg.AssetExecutionContext) -> pl.DataFrame:
    report = summarize(cost_rows(context.instance), cost_rows(context.instance, "cluster"))
    per_asset = (
        report.group_by("asset")
        .agg(pl.exclude("day").sum())
        .select(list(REPORT_SCHEMA)[1:])
        .sort("estimated_cost_usd", descending=True)
    )
    lines = [
        "| asset | materializations | compute s | est. cost (USD) | cluster s | cluster cost "
        "(USD) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {a} | {n} | {s:.1f} | {c:.4f} | {cs:.1f} | {cc:.4f} |"
        for a, n, s, c, cs, cc in per_asset.iter_rows()
    ]
    image = base64.b64encode(plot_png(report)).decode()
    context.add_output_metadata(
        {
            "total_cost_usd": dg.MetadataValue.float(float(report["estimated_cost_usd"].sum())),
            "total_compute_seconds": dg.MetadataValue.float(float(report["compute_seconds"].sum())),
            "total_cluster_cost_usd": dg.MetadataValue.float(
                float(report["cluster_cost_usd"].sum())
            ),
            "days": report.get_column("day").n_unique(),
            "cost_per_asset": dg.MetadataValue.md("\n".join(lines)),
            "plot": dg.MetadataValue.md(f"![cost per day](data:image/png;base64,{image})"),
        }
    )
    return report
