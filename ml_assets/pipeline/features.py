"""Feature assets: daily-partitioned tables computed by a spec's narwhals functions."""

import dagster as dg
import polars as pl

from ml_assets.engines.run import run_feature_function
from ml_assets.pipeline.keys import daily_partitions, feature_key, partition_days, raw_key
from ml_assets.pipeline.spec import FeatureInputSpec, PipelineSpec
from ml_assets.storage.io_manager import column_schema


def input_key(spec: PipelineSpec, name: str) -> dg.AssetKey:
    return raw_key(spec, name) if name in spec.sources else feature_key(spec, name)


def partition_mapping(read: FeatureInputSpec) -> dg.PartitionMapping:
    if read.history == "all":
        # Every partition; the asset drops days after the partition being computed.
        return dg.AllPartitionMapping()
    return dg.TimeWindowPartitionMapping(start_offset=-read.lookback_days, end_offset=0)


def _column_lineage(
    output: pl.Schema, inputs: dict[str, pl.Schema], keys: dict[str, dg.AssetKey]
) -> dg.TableColumnLineage:
    """Columns carried through under the same name come from the input that has them."""
    deps = {}
    for column in output:
        sources = [
            dg.TableColumnDep(asset_key=keys[name], column_name=column)
            for name, schema in inputs.items()
            if column in schema
        ]
        if sources:
            deps[column] = sources
    return dg.TableColumnLineage(deps_by_column=deps)


def build_feature_asset(spec: PipelineSpec, feature_name: str) -> dg.AssetsDefinition:
    feature = spec.features[feature_name]
    function = spec.feature_function(feature_name)
    keys = {name: input_key(spec, name) for name in feature.inputs}
    ins = {
        name: dg.AssetIn(key=keys[name], partition_mapping=partition_mapping(read))
        for name, read in feature.inputs.items()
    }
    lookback = max(read.lookback_days for read in feature.inputs.values())

    @dg.asset(
        key=feature_key(spec, feature_name),
        ins=ins,
        group_name="features",
        description=feature.description or f"Features computed by `{feature.function}`",
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"polars", "narwhals", "delta"},
        owners=spec.owners,
        tags={"layer": "features", "pipeline": spec.name},
        metadata={
            "function": feature.function,
            "lookback_days": lookback,
            "primary_key": ", ".join(feature.primary_key),
        },
    )
    def feature_asset(context: dg.AssetExecutionContext, **inputs: pl.LazyFrame) -> pl.LazyFrame:
        days = partition_days(context)
        # Nothing from after the last day being computed reaches the function (point in time),
        # whatever the partition mapping loaded; only rows of the days being computed leave it.
        output = run_feature_function(
            function, inputs, feature.params, days[0], days[-1], name=feature.function
        )
        schema = output.collect_schema()
        context.add_output_metadata(
            {
                "dagster/column_schema": column_schema(schema, feature.column_descriptions),
                "dagster/column_lineage": _column_lineage(
                    schema, {n: f.collect_schema() for n, f in inputs.items()}, keys
                ),
                "days": len(days),
            }
        )
        return output

    return feature_asset
