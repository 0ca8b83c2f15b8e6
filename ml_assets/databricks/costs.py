"""Estimated compute cost per materialization.

Databricks: the step's compute profile at its largest size, nodes x (DBU/h x DBU price + VM
price/h), from the price table in compute.yaml, times the step's duration (the remote process's
wall time; cluster start-up is not counted). Local: CPU seconds x a configurable price per CPU
hour (0 by default). Recorded as numeric metadata, so the UI plots it over time.
"""

from __future__ import annotations

import time

import dagster as dg
from pydantic import Field

from ml_assets.engines import ledger

COST_KEY = "estimated_cost_usd"
SECONDS_KEY = "compute_seconds"


class CostModel(dg.ConfigurableResource):
    kind: str = Field(default="local", description="local | databricks")
    cpu_price_per_hour: float = Field(default=0.0, description="Local: USD per CPU hour.")
    profile_price_per_hour: dict[str, float] = Field(
        default_factory=dict, description="Databricks: USD per hour of each compute profile."
    )

    def start(self, context: dg.AssetExecutionContext, profile: str | None = None) -> None:
        """Start the clock for this step's asset (the IO manager stops it after writing)."""
        ledger.start(context.run.run_id, context.asset_key, profile=profile)

    def finish(self, run_id: str, asset_key: dg.AssetKey) -> dict[str, object]:
        entry = ledger.pop(run_id, asset_key)
        if entry is None:
            return {}
        seconds = time.perf_counter() - entry.started
        cpu_seconds = time.process_time() - entry.cpu_started
        if self.kind == "databricks" and entry.profile in self.profile_price_per_hour:
            hourly = self.profile_price_per_hour[entry.profile]
            cost = hourly * seconds / 3600
            basis = f"profile {entry.profile}: {hourly:.3f} USD/h x {seconds:.1f} s"
        else:
            cost = self.cpu_price_per_hour * cpu_seconds / 3600
            basis = f"local: {self.cpu_price_per_hour:.3f} USD/CPU-h x {cpu_seconds:.1f} CPU s"
        return {
            SECONDS_KEY: dg.MetadataValue.float(round(seconds, 3)),
            "cpu_seconds": dg.MetadataValue.float(round(cpu_seconds, 3)),
            COST_KEY: dg.MetadataValue.float(round(cost, 6)),
            "cost_basis": basis,
            **({"compute_profile": entry.profile} if entry.profile else {}),
        }
