"""Feature assets: daily-partitioned tables computed by a spec's narwhals functions.

The same body runs everywhere. Locally it runs in-process; in dev/prod the step launcher
resource it requires (its compute profile's) runs it on a Databricks job cluster. The `engine`
resource routes each materialization to Polars or Spark and reads the inputs on that engine;
the IO manager writes the result with that engine's Delta writer.
"""

from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl

from ml_assets.databricks.config import asset_compute
from ml_assets.databricks.costs import CostModel
from ml_assets.engines.resource import Engine
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
    # The inputs are read by the engine resource (on the engine routing picks), not by the IO
    # manager: Nothing-typed ins keep the lineage and the partition mappings.
    ins = {
        name: dg.AssetIn(
            key=keys[name], partition_mapping=partition_mapping(read), dagster_type=dg.Nothing
        )
        for name, read in feature.inputs.items()
    }
    key = feature_key(spec, feature_name)
    compute = asset_compute(key, "features")

    @dg.asset(
        key=key,
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
            "lookback_days": feature.lookback_days,
            "primary_key": ", ".join(feature.primary_key),
            "compute_profile": compute.profile,
            "engine_requested": compute.engine,
        },
        # Attaches the Databricks step launcher in dev/prod; a none-resource locally.
        required_resource_keys={compute.launcher_key, "engine", "costs"},
    )
    def feature_asset(context: dg.AssetExecutionContext) -> Any:
        engine: Engine = context.resources.engine
        costs: CostModel = context.resources.costs
        costs.start(context, compute.profile)
        days = partition_days(context)
        decision = engine.decide(context, keys, compute.engine)
        inputs = {name: engine.load(context, name, keys[name], decision) for name in keys}
        # Nothing from after the last day being computed reaches the function (point in time),
        # whatever the partition mapping loaded; only rows of the days being computed leave it.
        output = run_feature_function(
            function, inputs, feature.params, days[0], days[-1], name=feature.function
        )
        schema = _schema(output)
        context.add_output_metadata(
            {
                "dagster/column_schema": column_schema(schema, feature.column_descriptions),
                "dagster/column_lineage": _column_lineage(
                    schema, {n: _schema(f) for n, f in inputs.items()}, keys
                ),
                "days": len(days),
                **decision.metadata(),
            }
        )
        return output

    return feature_asset


def _schema(frame: Any) -> pl.Schema:
    """A native frame's schema in Polars terms, whatever the engine."""
    if isinstance(frame, pl.LazyFrame | pl.DataFrame):
        return frame.collect_schema()
    from ml_assets.engines.spark_delta import polars_schema

    try:
        return polars_schema(frame.schema)
    except Exception:  # a Spark type without a Polars twin: names are enough for lineage
        return pl.Schema({n: pl.String for n in nw.from_native(frame).columns})
