"""The root of the code location: every pipeline spec, with the deployment's resources."""

from __future__ import annotations

import warnings

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from dagster_shared.record import copy

from ml_assets.databricks.config import (
    DATABRICKS_RUN_TAG,
    LAUNCHER_KEY_PREFIX,
    launcher_resource_key,
    load_compute_config,
)
from ml_assets.databricks.costs import CostModel
from ml_assets.engines.resource import Engine, EngineDeltaIOManager
from ml_assets.maintenance import build_maintenance_job, build_maintenance_schedule
from ml_assets.notify import build_notification_sensor
from ml_assets.pipeline.costs import cost_report
from ml_assets.pipeline.factory import build_pipeline
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import Settings, SettingsError, load_settings
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking

# BackfillPolicy is marked beta, but single-run backfills are what keep a 90-day backfill one
# run (and one commit per table) instead of 90; we rely on it knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
# Likewise: partitioned checks give each day its own verdict, and the automation sensor needs the
# code server for our own condition (WrittenAfterFirstChampion). Repeated on every definitions
# load, these buried the summary of `ml-assets run`.
warnings.filterwarnings(
    "ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*"
)
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*use_user_code_server.*")
# The step launcher is superseded by Dagster Pipes, but it is what runs the same asset code on a
# Databricks cluster (Pipes would need a separate script per asset; see docs/decisions.md). It
# printed this twice per Databricks step, once here and once on the cluster.
warnings.filterwarnings("ignore", category=dg.SupersessionWarning, message=".*StepLauncher.*")


def build_resources(settings: Settings) -> dict[str, object]:
    """The deployment's resources: this is where local and dev/prod differ, not the assets.

    local: Polars in-process, every step launcher key is a none-resource (no launcher, no JVM;
    Spark only if ML_ASSETS_SPARK_MASTER is set). dev/prod: one Databricks step launcher per
    compute profile, Spark from the cluster's session, costs from the profile's price.
    """
    lake = DeltaLake(root=settings.lake_root)
    compute = load_compute_config(settings.compute_config)
    routing = compute.routing
    if settings.uses_databricks:
        from ml_assets.databricks.launcher import step_launcher_resource

        if not settings.databricks_host:
            raise SettingsError(
                f"ML_ASSETS_DEPLOYMENT={settings.deployment} runs Spark steps on Databricks and "
                "needs DATABRICKS_HOST (the workspace URL) to be set"
            )

        launchers = {
            launcher_resource_key(name): step_launcher_resource(settings, compute, profile)
            for name, profile in compute.profiles.items()
        }
        costs = CostModel(
            kind="databricks",
            profile_price_per_hour={
                name: compute.prices.hourly_cost(p) for name, p in compute.profiles.items()
            },
        )
        spark = "cluster"
    else:
        launchers = {
            launcher_resource_key(name): dg.ResourceDefinition.none_resource()
            for name in compute.profiles
        }
        costs = CostModel(kind="local", cpu_price_per_hour=settings.local_cpu_price_per_hour)
        spark = "local" if settings.spark_master else "none"
    engine = Engine(
        lake=lake,
        spark=spark,
        spark_master=settings.spark_master or "local[2]",
        spark_min_bytes=routing.spark_min_bytes,
        spark_min_rows=routing.spark_min_rows,
        streaming_min_bytes=routing.streaming_min_bytes,
    )
    return {
        **launchers,
        "lake": lake,
        "engine": engine,
        "costs": costs,
        "io_manager": EngineDeltaIOManager(lake=lake, costs=costs),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri,
            registry_uri=settings.mlflow_registry_uri,
            artifact_root=settings.mlflow_artifact_root,
            ui_url=settings.mlflow_ui_url,
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    pipelines = [
        build_pipeline(load_spec(path), landing_root=settings.landing_root)
        for path in settings.pipeline_specs
    ]
    maintenance = build_maintenance_job(require_lake=settings.deployment != "local")
    defs = dg.Definitions.merge(
        *pipelines,
        dg.Definitions(
            assets=[cost_report],
            resources=build_resources(settings),
            sensors=[build_notification_sensor(settings.webhook_url)],
            jobs=[maintenance],
            schedules=[build_maintenance_schedule(maintenance)],
            # ~0.1 s per step instead of ~2 s for a fresh process per step on two cores.
            executor=dg.in_process_executor,
        ),
    )
    if settings.uses_databricks:
        defs = tag_databricks_jobs(defs)
    return defs


def launcher_bound_assets(defs: dg.Definitions) -> set[dg.AssetKey]:
    """Assets whose steps run through a Databricks step launcher (they require one)."""
    return {
        key
        for assets_def in defs.assets or []
        if isinstance(assets_def, dg.AssetsDefinition)
        and any(k.startswith(LAUNCHER_KEY_PREFIX) for k in assets_def.required_resource_keys)
        for key in assets_def.keys
    }


def tag_databricks_jobs(defs: dg.Definitions) -> dg.Definitions:
    """Tag every asset job that materializes a launcher-bound asset with `ml_assets/databricks`.

    The run queue limits *run* tags (dagster.yaml's `tag_concurrency_limits`); asset and op tags
    never reach a run. Job tags do: every run of these jobs (launchpad, schedules, sensors that
    target them, backfills of the job) carries the tag, so at most the configured number of
    them, each starting job clusters, run at once.
    """
    bound = launcher_bound_assets(defs)
    graph = defs.resolve_asset_graph()
    jobs = []
    for job in defs.jobs or []:
        if isinstance(job, UnresolvedAssetJobDefinition) and job.selection.resolve(graph) & bound:
            tag = {DATABRICKS_RUN_TAG: "true"}
            job = copy(
                job,
                tags={**(job.tags or {}), **tag},
                run_tags={**(job.run_tags or {}), **tag} if job.run_tags is not None else None,
            )
        jobs.append(job)
    return copy(defs, jobs=jobs)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())


def job_for(name: str, with_checks: bool = True) -> dg.JobDefinition:
    """A job of this code location by name: `dg.build_reconstructable_job("ml_assets.definitions",
    "job_for", reconstructable_kwargs={"name": ...})` makes it reconstructable (what the step
    launcher needs) outside `dagster dev`. `with_checks=False`: the same assets, no checks."""
    defs = build_definitions(load_settings())
    job = defs.resolve_job_def(name)
    if with_checks:
        return job
    keys = job.asset_layer.executable_asset_keys
    bare = dg.define_asset_job(
        f"{name}_without_checks",
        selection=dg.AssetSelection.assets(*keys).without_checks(),
        tags=dict(job.run_tags),  # the same run tags (pipeline, Databricks concurrency)
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[bare])).resolve_job_def(bare.name)
