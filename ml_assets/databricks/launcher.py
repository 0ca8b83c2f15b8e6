"""The Databricks step launcher, one resource per compute profile.

`databricks_pyspark_step_launcher` (dagster-databricks 0.29) with what it misses for us:

- it zips `local_pipeline_package_path` and silently drops every file whose absolute path
  matches `.*pytest.*`, `/logs/` or `/venv/`, and it zips *everything* under that folder: we
  stage a clean copy of the `ml_assets/` package (no caches) in a folder of its own at launch;
- a run that ends INTERNAL_ERROR (the cluster never came up: cloud capacity, spot loss) fails
  the step, and an asset's RetryPolicy does not cover errors raised by the launcher: we raise
  `RetryRequested` instead, so the step is submitted again;
- its job clusters carry no trace of the Dagster run: we tag each step's cluster with the run
  id and step key and put the step key in the Databricks run name, so billing (system tables,
  cluster tags) and the Jobs UI can be joined back to Dagster;
- what a step costs on Databricks is the cluster's whole life, start-up included, which the step
  cannot see from inside: once the run has ended (succeeded, failed, or given up on) we record
  its duration and cost as an observation of each asset of the step (`CLUSTER_COST_KEY`);
- a workspace that stops answering held a step for about half an hour before an opaque
  "Timed out after 0:05:00": databricks-sdk retries each call for 300 s, and the launcher's
  event reading retries that again four times. Each call now gives up after
  `api_retry_seconds`, and the step fails saying which workspace and Databricks run;
- the token is only ever `{"env": <name>}` in run config, resolved by Dagster's config system in
  the orchestrator and by a Databricks secret on the cluster (never a literal in config: the
  launcher pickles the run config to DBFS).
"""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEvent
from dagster_databricks import databricks_pyspark_step_launcher
from dagster_databricks.databricks import DatabricksError
from dagster_databricks.databricks_pyspark_step_launcher import DatabricksPySparkStepLauncher
from dagster_databricks.types import DatabricksRunLifeCycleState
from dagster_pyspark.utils import DEFAULT_EXCLUDE
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import Run

import ml_assets
from ml_assets.databricks.config import ComputeConfig, ComputeProfile, LauncherSettings
from ml_assets.databricks.costs import CLUSTER_COST_KEY, CLUSTER_SECONDS_KEY
from ml_assets.settings import Settings, SettingsError

# Runtime dependencies of ml_assets the cluster must have, pinned to the orchestrator's versions
# (the launcher itself adds dagster, dagster-databricks, dagster-pyspark and databricks-sdk).
REMOTE_DISTRIBUTIONS = (
    "polars",
    "deltalake",
    "narwhals",
    "pyarrow",
    "pyyaml",
    "mlflow",
    "dagster-mlflow",
    "scikit-learn",
)


def remote_libraries(extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    pins = []
    for name in REMOTE_DISTRIBUTIONS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return [{"pypi": {"package": spec}} for spec in [*pins, *extra]]


# Cluster tag values end up as cloud resource tags (AWS, Azure, GCP labels): keep to the
# characters and length all three accept.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:/=+@-]")
TAG_VALUE_MAX = 256


def tagged_for_step(run_config: Mapping[str, Any], run_id: str, step_key: str) -> dict[str, Any]:
    """`run_config` for one step: the Databricks run named after the step, and its job cluster
    tagged `dagster_run_id` and `dagster_step`."""
    tagged = copy.deepcopy(dict(run_config))
    tagged["run_name"] = f"{run_config['run_name']}: {step_key}"
    cluster = tagged["cluster"]["new"]
    cluster["custom_tags"] = [
        *cluster.get("custom_tags", []),
        *[
            {"key": key, "value": _TAG_UNSAFE.sub("_", value)[:TAG_VALUE_MAX]}
            for key, value in {"dagster_run_id": run_id, "dagster_step": step_key}.items()
        ],
    ]
    return tagged


def check_zip_safe(path: Path) -> None:
    """Refuse a staging folder the launcher's zip would silently empty."""
    hits = [p for p in DEFAULT_EXCLUDE if re.search(p, str(path.resolve()) + "/")]
    if hits:
        raise SettingsError(
            f"code staging folder {path} matches the step launcher's zip excludes {hits}: "
            "nothing would be uploaded; set ML_ASSETS_DATABRICKS_CODE_DIR elsewhere"
        )


def stage_package(root: Path) -> Path:
    """A clean copy of the `ml_assets` package in a new folder under `root`; returns the folder."""
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="code-", dir=root))
    check_zip_safe(folder)
    source = Path(ml_assets.__file__).resolve().parent
    shutil.copytree(
        source,
        folder / "ml_assets",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"),
    )
    return folder


def cluster_observations(
    asset_keys: Sequence[dg.AssetKey], run: Run, hourly_cost: float, now: float
) -> list[dg.AssetObservation]:
    """What the Databricks run `run` took, from submission to termination (cluster start-up,
    library installation and the step; until `now` for a run still being cancelled), and what
    its cluster cost at `hourly_cost` USD/h: one observation per asset of the step."""
    end_ms = run.end_time or int(now * 1000)
    seconds = max(0, end_ms - (run.start_time or end_ms)) / 1000
    metadata: dict[str, Any] = {
        CLUSTER_SECONDS_KEY: dg.MetadataValue.float(round(seconds, 3)),
        CLUSTER_COST_KEY: dg.MetadataValue.float(round(hourly_cost * seconds / 3600, 6)),
        "cluster_cost_basis": f"{hourly_cost:.3f} USD/h x {seconds:.1f} s of Databricks run",
        "databricks_run_id": dg.MetadataValue.int(run.run_id or 0),
    }
    if run.run_page_url:
        metadata["databricks_run_url"] = dg.MetadataValue.url(run.run_page_url)
    return [dg.AssetObservation(key, metadata=metadata) for key in asset_keys]


class MlAssetsStepLauncher(DatabricksPySparkStepLauncher):
    """Stages the package and tags the cluster at launch; retries INTERNAL_ERROR runs through
    RetryRequested; records the cluster's time and cost once the run has ended."""

    def __init__(
        self,
        *,
        internal_error_retries: int = 2,
        hourly_cost: float = 0.0,
        api_retry_seconds: int = 30,
        **config: Any,
    ):
        super().__init__(**config)
        self.staging_root = Path(self.local_dagster_job_package_path)
        self.internal_error_retries = internal_error_retries
        self.hourly_cost = hourly_cost
        self.api_retry_seconds = api_retry_seconds
        # dagster-databricks has no setting for the SDK's retry deadline: rebuild its client
        # from the same config (host, credentials) with ours.
        client = self.databricks_runner.client
        config_with_deadline = client.workspace_client.config.copy()
        config_with_deadline.retry_timeout_seconds = api_retry_seconds
        client._workspace_client = WorkspaceClient(config=config_with_deadline)
        self._unreachable_failure: dg.Failure | None = None

    def launch_step(self, step_context):  # type: ignore[override]
        # The parent submits `self.run_config`. One launcher serves every step of a run, so the
        # step's tags are put in for this launch only.
        base_run_config = self.run_config
        folder = stage_package(self.staging_root)
        self.local_dagster_job_package_path = str(folder)
        self.run_config = tagged_for_step(
            base_run_config, step_context.run_id, step_context.step.key
        )
        self._unreachable_failure = None
        try:
            yield from super().launch_step(step_context)
        except TimeoutError as error:  # the SDK's, once a call's retries ran out
            # Raised while staging or submitting, or by the parent's cancel of a run we had
            # already given up on (it replaces our failure): say which.
            raise (self._unreachable_failure or self._unreachable(error, None)) from error
        finally:
            self.run_config = base_run_config
            shutil.rmtree(folder, ignore_errors=True)

    def _unreachable(self, error: TimeoutError, databricks_run_id: int | None) -> dg.Failure:
        cause = error.__cause__ or error
        if databricks_run_id is None:
            doing = "staging or submitting the step; nothing was submitted, or the submission "
            doing += "is in the workspace's Job runs"
        else:
            doing = (
                f"waiting for Databricks run {databricks_run_id}; that run may still be going "
                "on its cluster: check it in the workspace's Job runs and cancel it if needed"
            )
        return dg.Failure(
            f"the Databricks workspace {self.databricks_host} did not answer for "
            f"{self.api_retry_seconds} s (last error: {type(cause).__name__}: {cause}) while "
            f"{doing}. Materialize again once the workspace answers.",
            allow_retries=False,
        )

    def step_events_iterator(self, step_context, step_key, databricks_run_id):
        try:
            yield from super().step_events_iterator(step_context, step_key, databricks_run_id)
        except TimeoutError as error:
            # No cluster time: asking for it would wait for the workspace once more.
            self._unreachable_failure = self._unreachable(error, databricks_run_id)
            raise self._unreachable_failure from error
        except DatabricksError as error:
            yield from self._cluster_time(step_context, databricks_run_id)
            state = self.databricks_runner.client.get_run_state(databricks_run_id)
            if state.life_cycle_state == DatabricksRunLifeCycleState.INTERNAL_ERROR:
                step_context.log.warning(
                    f"Databricks run {databricks_run_id} ended INTERNAL_ERROR "
                    f"({state.state_message}); submitting the step again"
                )
                raise dg.RetryRequested(
                    max_retries=self.internal_error_retries, seconds_to_wait=0
                ) from error
            raise
        yield from self._cluster_time(step_context, databricks_run_id)

    def _cluster_time(self, step_context, databricks_run_id: int) -> Iterator[DagsterEvent]:
        """Observations of the run's cluster time and cost on the step's assets, whether the
        step succeeded or not: a failed, retried or timed-out run's cluster is paid for too."""
        try:
            run = self.databricks_runner.client.workspace_client.jobs.get_run(databricks_run_id)
        except Exception as error:  # the step's own outcome matters more than its cost figure
            step_context.log.warning(
                f"cluster time of Databricks run {databricks_run_id} not recorded: {error}"
            )
            return
        keys = sorted(step_context.get_output_asset_keys(), key=lambda k: k.to_user_string())
        for observation in cluster_observations(keys, run, self.hourly_cost, time.time()):
            # Created from the step, so Dagster writes it to the event log as it is built.
            yield DagsterEvent.asset_observation(step_context, observation)


def _launcher_fn(launcher: LauncherSettings, hourly_cost: float):
    @dg.resource(config_schema=databricks_pyspark_step_launcher.config_schema)
    def ml_assets_step_launcher(context: dg.InitResourceContext) -> MlAssetsStepLauncher:
        return MlAssetsStepLauncher(
            internal_error_retries=launcher.internal_error_retries,
            api_retry_seconds=launcher.api_retry_seconds,
            hourly_cost=hourly_cost,
            **context.resource_config,
        )

    return ml_assets_step_launcher


def launcher_config(
    settings: Settings, compute: ComputeConfig, profile: ComputeProfile
) -> dict[str, Any]:
    """The step launcher's config for `profile` (a plain dict; the token only as {"env": ...})."""
    launcher = compute.launcher
    token_env = settings.databricks_token_env
    scope, key = settings.databricks_token_secret
    staging = settings.code_staging_dir or Path(tempfile.gettempdir()) / "ml_assets_code"
    run_config: dict[str, Any] = {
        "run_name": f"ml_assets {profile.name}",
        "cluster": {"new": profile.cluster_spec(launcher.spark_version)},
        "libraries": remote_libraries(launcher.libraries),
    }
    if launcher.timeout_seconds:
        run_config["timeout_seconds"] = launcher.timeout_seconds
    return {
        "run_config": run_config,
        "databricks_host": settings.databricks_host,
        "databricks_token": {"env": token_env},
        # the cluster re-validates the whole run config: it needs the token variable as well
        "secrets_to_env_variables": [{"name": token_env, "scope": scope, "key": key}],
        "env_variables": dict(settings.remote_env),
        "local_pipeline_package_path": str(staging),
        "staging_prefix": launcher.staging_prefix,
        "wait_for_logs": launcher.wait_for_logs,
        "max_completion_wait_time_seconds": launcher.max_completion_wait_time_seconds,
        "poll_interval_sec": launcher.poll_interval_sec,
        "verbose_logs": False,
    }


def step_launcher_resource(
    settings: Settings, compute: ComputeConfig, profile: ComputeProfile
) -> dg.ResourceDefinition:
    launcher = _launcher_fn(compute.launcher, compute.prices.hourly_cost(profile))
    return launcher.configured(launcher_config(settings, compute, profile))
