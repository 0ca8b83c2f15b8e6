"""MLflow as a typed Dagster resource.

It follows dagster-mlflow's model: one parent MLflow run per Dagster run, found again across
steps and processes by its `dagster_run_id` tag, and a nested run per asset. It also closes the
gap that model leaves open. dagster-mlflow ends the parent only from the
`end_mlflow_on_run_finished` hook, which `dg.materialize()` cannot attach and which misfires on
subset runs (dagster issue 21872). That can leave MLflow runs RUNNING for good. Here every
asset step reopens the parent, runs its nested run, and closes both before the step returns.
Between steps, nothing is left RUNNING. A failed step marks its nested run and the parent
FAILED, and the parent stays FAILED.
"""

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from pydantic import Field

from ml_assets.settings import QUIET_MLFLOW_ENV

DAGSTER_RUN_TAG = "dagster_run_id"


@functools.cache
def _client(tracking_uri: str, registry_uri: str | None) -> MlflowClient:
    # One per store: each new client opens a fresh SQLAlchemy engine (≈0.2 s on sqlite).
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


class MlflowTracking(dg.ConfigurableResource):
    """Where MLflow runs and registered models live."""

    tracking_uri: str = Field(description="sqlite:///<abs path>, http://host:port or databricks")
    registry_uri: str | None = Field(
        default=None, description="Registry URI if it differs (e.g. databricks-uc)."
    )
    artifact_root: str | None = Field(
        default=None,
        description="Artifact location for new experiments; unset lets the server decide. "
        "Always set it for a local store, or artifacts land in ./mlruns of whatever cwd.",
    )
    experiment_prefix: str = Field(
        default="ml_assets", description="Experiments are named <prefix>/<pipeline>."
    )
    ui_url: str | None = Field(
        default=None, description="Base URL of the MLflow UI, for links in Dagster metadata."
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.activate()

    def activate(self) -> None:
        for name, value in QUIET_MLFLOW_ENV.items():
            os.environ.setdefault(name, value)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        mlflow.set_tracking_uri(self.tracking_uri)
        if self.registry_uri:
            mlflow.set_registry_uri(self.registry_uri)

    @property
    def client(self) -> MlflowClient:
        return _client(self.tracking_uri, self.registry_uri)

    def experiment_id(self, pipeline: str) -> str:
        name = f"{self.experiment_prefix}/{pipeline}"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.artifact_root:
            location = f"{self.artifact_root.rstrip('/')}/{pipeline}"
            if "://" not in location:
                Path(location).mkdir(parents=True, exist_ok=True)
                location = Path(location).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        if not self.ui_url:
            return None
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def _parent_run_id(self, experiment_id: str, dagster_run_id: str) -> str:
        found = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}' "
            "and tags.ml_assets_role = 'dagster_run'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        run = self.client.create_run(
            experiment_id,
            run_name=f"dagster-{dagster_run_id[:8]}",
            tags={DAGSTER_RUN_TAG: dagster_run_id, "ml_assets_role": "dagster_run"},
        )
        return run.info.run_id

    @contextmanager
    def asset_run(
        self,
        context: dg.AssetExecutionContext,
        *,
        pipeline: str,
        run_name: str,
        tags: dict[str, Any] | None = None,
    ) -> Iterator[mlflow.ActiveRun]:
        """A nested MLflow run for one asset step, under the Dagster run's parent run."""
        self.activate()
        experiment_id = self.experiment_id(pipeline)
        parent_id = self._parent_run_id(experiment_id, context.run.run_id)
        parent_failed = self.client.get_run(parent_id).info.status == "FAILED"
        # A run left open by a crashed process must not swallow ours.
        while mlflow.active_run() is not None:
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        child_tags = {
            DAGSTER_RUN_TAG: context.run.run_id,
            "dagster_asset_key": context.asset_key.to_user_string(),
            **{k: str(v) for k, v in (tags or {}).items()},
        }
        if context.has_partition_key_range:
            window = context.partition_key_range
            child_tags["dagster_partition_range"] = f"{window.start}..{window.end}"
        ok = False
        try:
            # experiment_id on both: a nested run started without it lands in the Default
            # experiment, whose artifacts go to ./mlruns of whatever the working directory is.
            with (
                mlflow.start_run(run_id=parent_id, experiment_id=experiment_id),
                mlflow.start_run(
                    run_name=run_name, nested=True, tags=child_tags, experiment_id=experiment_id
                ) as child,
            ):
                yield child
            ok = True
        finally:
            status = "FINISHED" if ok and not parent_failed else "FAILED"
            self.client.set_terminated(parent_id, status)
