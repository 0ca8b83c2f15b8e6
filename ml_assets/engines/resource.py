"""The engine resource (reads inputs on Polars or Spark) and the IO manager that writes either.

Asset bodies never look at the deployment. They ask `Engine` for a decision (routing) and for
their inputs, which come back as Polars LazyFrames or Spark DataFrames; the narwhals feature
function runs on either; `EngineDeltaIOManager` writes what comes back with the engine's own
Delta writer (delta-rs for Polars, `spark_delta.write_partitions` for Spark: native Delta with
the jar, the delta-rs bridge without). Locally Spark is absent unless ML_ASSETS_SPARK_MASTER is
set; on Databricks the step runs on the cluster's session.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.databricks.costs import CostModel
from ml_assets.engines import ledger
from ml_assets.engines.routing import Decision, Thresholds, decide, input_size
from ml_assets.storage import delta
from ml_assets.storage.io_manager import (
    DeltaIOManager,
    DeltaLake,
    output_partitions,
    report_write,
)

_SESSIONS: dict[str | None, Any] = {}


def _session(master: str | None) -> Any:
    """One Spark session per process and master, started on first use only."""
    if master not in _SESSIONS:
        from ml_assets.engines.spark_session import LazySparkResource

        _SESSIONS[master] = LazySparkResource(master=master).spark_session
    return _SESSIONS[master]


def _days(keys: list[str]) -> list[dt.date]:
    return [dt.date.fromisoformat(key[:10]) for key in keys]


class Engine(dg.ConfigurableResource):
    lake: DeltaLake
    spark: str = Field(
        default="none",
        description="none (no Spark here), local (a local session on spark_master) or cluster "
        "(the session the environment provides: Databricks).",
    )
    spark_master: str = Field(default="local[2]")
    spark_min_bytes: int = 2_000_000_000
    spark_min_rows: int = 50_000_000
    streaming_min_bytes: int = 8_000_000_000

    @property
    def spark_available(self) -> bool:
        return self.spark != "none"

    def spark_session(self) -> Any:
        return _session(None if self.spark == "cluster" else self.spark_master)

    def decide(
        self, context: dg.AssetExecutionContext, inputs: dict[str, dg.AssetKey], requested: str
    ) -> Decision:
        """Route this step from the Delta-log size of the partitions each input will read."""
        sizes = {
            name: input_size(self.lake.table_uri(key), self._partitions(context, name))
            for name, key in inputs.items()
        }
        thresholds = Thresholds(self.spark_min_bytes, self.spark_min_rows, self.streaming_min_bytes)
        decision = decide(requested, sizes, thresholds, spark_available=self.spark_available)
        entry = ledger.get(context.run.run_id, context.asset_key)
        if entry is not None:
            entry.decision = decision
        return decision

    @staticmethod
    def _partitions(context: dg.AssetExecutionContext, name: str) -> list[dt.date] | None:
        if not context.has_partition_key_range and not context.has_partition_key:
            return None
        return _days(list(context.asset_partition_keys_for_input(name)))

    def load(
        self, context: dg.AssetExecutionContext, name: str, key: dg.AssetKey, decision: Decision
    ) -> Any:
        uri = self.lake.table_uri(key)
        partitions = self._partitions(context, name)
        try:
            if decision.engine == "spark":
                from ml_assets.engines import spark_delta

                return spark_delta.read_delta(self.spark_session(), uri, partitions=partitions)
            return delta.scan(uri, partitions=partitions)
        except delta.TableNotMaterializedError:
            raise dg.Failure(
                f"input {key.to_user_string()} has no Delta table at {uri}: materialize it first"
            ) from None


def _is_spark(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyspark.")


class EngineDeltaIOManager(DeltaIOManager):
    """`DeltaIOManager` that also writes Spark DataFrames, and records compute cost."""

    costs: CostModel

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        run_id = context.run_id
        entry = ledger.get(run_id, context.asset_key) if context.has_asset_key else None
        decision = entry.decision if entry is not None else None
        if _is_spark(obj):
            self._write_spark(context, obj)
        else:
            if (
                isinstance(obj, pl.LazyFrame)
                and isinstance(decision, Decision)
                and decision.streaming
            ):
                obj = obj.collect(engine="streaming")
            super().handle_output(context, obj)
        if context.has_asset_key:
            context.add_output_metadata(self.costs.finish(run_id, context.asset_key))

    def _write_spark(self, context: dg.OutputContext, obj: Any) -> None:
        from ml_assets.engines import spark_delta

        partitions = output_partitions(context)
        result = spark_delta.write_partitions(
            obj, self.lake.table_uri(context.asset_key), partitions=partitions
        )
        report_write(context, result, partitions)
