"""`costs/cost_report`: estimated compute cost per asset and per day, from the event log."""

import base64
import datetime as dt
import io

import dagster as dg
import polars as pl

from ml_assets.databricks.costs import COST_KEY, SECONDS_KEY

REPORT_SCHEMA = pl.Schema(
    {
        "day": pl.Date,
        "asset": pl.String,
        "materializations": pl.Int64,
        "compute_seconds": pl.Float64,
        "estimated_cost_usd": pl.Float64,
    }
)
# Materialization records fetched per event-log query; cost_rows pages through all of them.
PAGE_SIZE = 1000


def _number(value: object) -> float | None:
    raw = getattr(value, "value", value)
    return float(raw) if isinstance(raw, int | float) else None


def cost_rows(
    instance: dg.DagsterInstance,
    since: dt.datetime | None = None,
    *,
    page_size: int = PAGE_SIZE,
) -> pl.DataFrame:
    """One row per materialization that recorded a cost, for every asset in the event log."""
    rows = []
    for asset_key in instance.get_asset_keys():
        records_filter = dg.AssetRecordsFilter(
            asset_key=asset_key, after_timestamp=since.timestamp() if since else None
        )
        cursor = None
        while True:
            page = instance.fetch_materializations(
                records_filter, limit=page_size, cursor=cursor, ascending=True
            )
            for record in page.records:
                materialization = record.asset_materialization
                if materialization is None:
                    continue
                metadata = materialization.metadata
                cost = _number(metadata.get(COST_KEY))
                if cost is None:
                    continue
                rows.append(
                    {
                        "day": dt.datetime.fromtimestamp(record.timestamp, dt.UTC).date(),
                        "asset": asset_key.to_user_string(),
                        "compute_seconds": _number(metadata.get(SECONDS_KEY)) or 0.0,
                        "estimated_cost_usd": cost,
                    }
                )
            if not page.has_more:
                break
            cursor = page.cursor
    return pl.DataFrame(
        rows, schema={k: v for k, v in REPORT_SCHEMA.items() if k != "materializations"}
    )


def summarize(rows: pl.DataFrame) -> pl.DataFrame:
    return (
        rows.group_by("day", "asset")
        .agg(
            pl.len().cast(pl.Int64).alias("materializations"),
            pl.col("compute_seconds").sum(),
            pl.col("estimated_cost_usd").sum(),
        )
        .select(list(REPORT_SCHEMA))
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
    "the `estimated_cost_usd` / `compute_seconds` metadata of every materialization.",
)
def cost_report(context: dg.AssetExecutionContext) -> pl.DataFrame:
    report = summarize(cost_rows(context.instance))
    per_asset = (
        report.group_by("asset")
        .agg(pl.col("materializations").sum(), pl.col("compute_seconds").sum(),
             pl.col("estimated_cost_usd").sum())
        .sort("estimated_cost_usd", descending=True)
    )  # fmt: skip
    lines = ["| asset | materializations | compute s | est. cost (USD) |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {n} | {s:.1f} | {c:.4f} |" for a, n, s, c in per_asset.iter_rows()]
    image = base64.b64encode(plot_png(report)).decode()
    context.add_output_metadata(
        {
            "total_cost_usd": dg.MetadataValue.float(float(report["estimated_cost_usd"].sum())),
            "total_compute_seconds": dg.MetadataValue.float(float(report["compute_seconds"].sum())),
            "days": report.get_column("day").n_unique(),
            "cost_per_asset": dg.MetadataValue.md("\n".join(lines)),
            "plot": dg.MetadataValue.md(f"![cost per day](data:image/png;base64,{image})"),
        }
    )
    return report
