"""Estimated compute cost per materialization.

Databricks: the step's compute profile at its largest size, nodes x (DBU/h x DBU price + VM
price/h), from the price table in compute.yaml, times the step's duration (the remote process's
wall time). The cluster's whole run, start-up included, is priced the same way by the step
launcher once the run has ended (`CLUSTER_COST_KEY`). Local: CPU seconds x a configurable price
per CPU hour (0 by default). Recorded as numeric metadata, so the UI plots it over time, and as
MLflow metrics on training runs (`CostEstimate.mlflow_metrics`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from ml_assets.engines import ledger

COST_KEY = "estimated_cost_usd"
SECONDS_KEY = "compute_seconds"
CPU_SECONDS_KEY = "cpu_seconds"
# Observation metadata of the Databricks run behind a step, recorded by the step launcher once the
# run ended: its whole duration (cluster start-up included) and that time's cost.
CLUSTER_SECONDS_KEY = "cluster_seconds"
CLUSTER_COST_KEY = "cluster_cost_usd"


@dataclass(frozen=True)
class CostEstimate:
    """What one step cost: wall and CPU seconds, the estimate in USD and how it was computed."""

    seconds: float
    cpu_seconds: float
    cost_usd: float
    basis: str
    profile: str | None = None

    def metrics(self) -> dict[str, float]:
        """The numbers, under the metadata keys (also the MLflow metric names)."""
        return {
            SECONDS_KEY: round(float(self.seconds), 3),
            CPU_SECONDS_KEY: round(float(self.cpu_seconds), 3),
            COST_KEY: round(float(self.cost_usd), 6),
        }

    def metadata(self) -> dict[str, object]:
        return {
            **{key: dg.MetadataValue.float(value) for key, value in self.metrics().items()},
            "cost_basis": self.basis,
            **({"compute_profile": self.profile} if self.profile else {}),
        }


class CostModel(dg.ConfigurableResource):
    kind: str = Field(default="local", description="local | databricks")
    cpu_price_per_hour: float = Field(default=0.0, description="Local: USD per CPU hour.")
    profile_price_per_hour: dict[str, float] = Field(
        default_factory=dict, description="Databricks: USD per hour of each compute profile."
    )

    def estimate(
        self, seconds: float, cpu_seconds: float, profile: str | None = None
    ) -> CostEstimate:
        """The cost model itself: profile price x duration on Databricks, CPU time x rate here."""
        if self.kind == "databricks" and profile in self.profile_price_per_hour:
            hourly = self.profile_price_per_hour[profile]
            return CostEstimate(
                seconds,
                cpu_seconds,
                hourly * seconds / 3600,
                f"profile {profile}: {hourly:.3f} USD/h x {seconds:.1f} s",
                profile,
            )
        return CostEstimate(
            seconds,
            cpu_seconds,
            self.cpu_price_per_hour * cpu_seconds / 3600,
            f"local: {self.cpu_price_per_hour:.3f} USD/CPU-h x {cpu_seconds:.1f} CPU s",
            profile,
        )

    def start(self, context: dg.AssetExecutionContext, profile: str | None = None) -> None:
        """Start the clock for this step's asset (the IO manager stops it after writing)."""
        ledger.start(context.run.run_id, context.asset_key, profile=profile)

    def stop(self, run_id: str, asset_key: dg.AssetKey) -> CostEstimate | None:
        """Stop the clock started by `start`; None if it was not started in this process."""
        entry = ledger.pop(run_id, asset_key)
        if entry is None:
            return None
        return self.estimate(
            time.perf_counter() - entry.started,
            time.process_time() - entry.cpu_started,
            entry.profile,
        )

    def finish(self, run_id: str, asset_key: dg.AssetKey) -> dict[str, object]:
        """`stop`, as materialization metadata ({} if the clock was not started)."""
        estimate = self.stop(run_id, asset_key)
        return {} if estimate is None else estimate.metadata()
