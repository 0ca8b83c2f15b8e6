"""Our dev deployment pointed at the Databricks stand-in: the setup the deployment tests share.

One stand-in and one shared folder (landing files, lake, code staging) per test module: starting
them is cheap, but every test adds Databricks runs, so tests look at the runs *they* submitted
(`DevDeployment.new_runs`), not at every run the stand-in has seen.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.events import DagsterEventType
from dagster._serdes import serialize_value

from ml_assets.definitions import build_definitions
from ml_assets.demo.generate import write_demo_data
from ml_assets.settings import load_settings
from ml_assets.storage import delta
from ml_assets_tests.databricks.standin import PROJECT_ROOT, DatabricksStandIn, StandInRun

requires_java = pytest.mark.skipif(
    shutil.which("java") is None, reason="the stand-in cluster needs Java (local Spark)"
)
# What every test of our deployment against the stand-in carries.
DEPLOYMENT_MARKS = [
    pytest.mark.spark,
    pytest.mark.slow,
    requires_java,
    pytest.mark.filterwarnings("ignore::dagster.SupersessionWarning"),
]

DEMO_START = dt.date(2026, 1, 1)
DEMO_DAYS = 8
INGEST_JOB = "fraud_ingest"
TRANSACTIONS = dg.AssetKey(["fraud", "raw", "transactions"])
CUSTOMERS = dg.AssetKey(["fraud", "raw", "customers"])
FEATURES = dg.AssetKey(["fraud", "features", "transaction_features"])

COMPUTE_YAML = """
launcher:
  spark_version: "15.4.x-scala2.12"
  staging_prefix: /dagster_staging
  poll_interval_sec: 0.5
  max_completion_wait_time_seconds: {wait}
  timeout_seconds: 0
  internal_error_retries: {retries}
  api_retry_seconds: {api_retry}
profiles:
  etl: {{node_type_id: i3.xlarge, autoscale: {{min_workers: 1, max_workers: 2}}, spot: true}}
  single_node: {{node_type_id: i3.xlarge, num_workers: 0}}
assets:
  defaults: {{raw: etl, features: etl, models: single_node}}
prices:
  dbu_price: 0.5
  node_types: {{i3.xlarge: {{dbu_per_hour: 1.0, vm_price_per_hour: 0.3}}}}
"""


def partition_range(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """Landing, lake and code staging: outside pytest's tmp (the launcher's zip drops paths
    matching .*pytest.*), visible to the orchestrator and the stand-in cluster alike."""
    root = Path(tempfile.mkdtemp(prefix="ml-assets-dbx-"))
    write_demo_data(
        root / "landing" / "fraud", start=DEMO_START, days=DEMO_DAYS, rows_per_day=200, seed=5
    )
    (root / "orchestrator").mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def dbx(shared: Path) -> Iterator[DatabricksStandIn]:
    """The stand-in workspace. The orchestrator works from a folder without the package (the
    cluster must import the uploaded zip, not the working tree), hidden from the cluster."""
    orchestrator_cwd = shared / "orchestrator"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(orchestrator_cwd)
        with DatabricksStandIn(
            host_only_paths=[str(orchestrator_cwd), str(PROJECT_ROOT)]
        ) as standin:
            standin.secrets = {"ml_assets": {"databricks-token": standin.token}}
            yield standin


@dataclass
class Outcome:
    """One Dagster run of the dev deployment and the Databricks runs it submitted."""

    result: dg.ExecuteJobResult
    events: list[Any]
    run: dg.DagsterRun
    databricks_runs: list[StandInRun] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.result.success

    def failure_text(self) -> str:
        return failure_text(self.events)

    def materializations(self) -> dict[str, dict[str, Any]]:
        return materializations(self.events)

    def observations(self) -> dict[str, list[dict[str, Any]]]:
        return observations(self.events)

    def event_types(self) -> list[DagsterEventType]:
        return [e.dagster_event.event_type for e in self.events if e.dagster_event is not None]

    def assert_token_absent(self, token: str) -> None:
        """Not in any event (messages, errors, metadata), not in the run's tags or config."""
        for entry in self.events:
            assert token not in serialize_value(entry), entry
        assert token not in serialize_value(self.run.tags)
        assert token not in serialize_value(self.run.run_config)


@dataclass
class DevDeployment:
    """`ML_ASSETS_DEPLOYMENT=dev` pointed at the stand-in; jobs come from ml_assets.definitions
    reconstructed by name (what `dagster dev` does; the step launcher needs it)."""

    shared: Path
    dbx: DatabricksStandIn
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def configure(self, *, wait: int = 600, retries: int = 2, api_retry: int = 30) -> None:
        """The launcher's max completion wait (seconds; then it cancels the Databricks run),
        INTERNAL_ERROR retries and API retry deadline. One file per setting: compute configs are
        cached by path."""
        config = self.shared / f"compute-wait{wait}-retries{retries}-api{api_retry}.yaml"
        config.write_text(COMPUTE_YAML.format(wait=wait, retries=retries, api_retry=api_retry))
        self.monkeypatch.setenv("ML_ASSETS_COMPUTE_CONFIG", str(config))

    @property
    def lake(self) -> Path:
        return self.shared / "lake"

    def table_uri(self, key: dg.AssetKey) -> str:
        return str(self.lake / key.to_user_string())

    def run(
        self,
        tags: dict[str, str],
        asset_selection: Sequence[dg.AssetKey] | None = None,
        job: str = INGEST_JOB,
    ) -> Outcome:
        before = set(self.dbx.runs)
        reconstructable = dg.build_reconstructable_job(
            "ml_assets.definitions",
            "job_for",
            reconstructable_kwargs={"name": job, "with_checks": False},
        )
        result = dg.execute_job(
            reconstructable,
            instance=self.instance,
            tags=tags,
            raise_on_error=False,
            asset_selection=list(asset_selection) if asset_selection else None,
        )
        new = sorted(
            (r for i, r in self.dbx.runs.items() if i not in before),
            key=lambda r: r.submission_index,
        )
        run = self.instance.get_run_by_id(result.run_id)
        assert run is not None
        return Outcome(result, list(self.instance.all_logs(result.run_id)), run, new)


@pytest.fixture
def dev(
    shared: Path, dbx: DatabricksStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DevDeployment]:
    """The dev deployment's environment (launcher defaults: see `DevDeployment.configure`)."""
    for name, value in {
        "ML_ASSETS_DEPLOYMENT": "dev",
        "ML_ASSETS_HOME": str(shared / "home"),
        "ML_ASSETS_LAKE_ROOT": str(shared / "lake"),
        "ML_ASSETS_LANDING_ROOT": str(shared / "landing"),
        "ML_ASSETS_DATABRICKS_CODE_DIR": str(shared / "code"),
        "ML_ASSETS_ENGINE": "spark",
        "DATABRICKS_HOST": dbx.url,
        "DATABRICKS_TOKEN": dbx.token,
    }.items():
        monkeypatch.setenv(name, value)
    dbx.clear_faults()
    with dg.DagsterInstance.ephemeral() as instance:
        deployment = DevDeployment(shared, dbx, instance, monkeypatch)
        deployment.configure()
        yield deployment
    dbx.clear_faults()


def materialize_locally(
    shared: Path,
    tags: dict[str, str],
    keys: Sequence[dg.AssetKey] | None = None,
    lake_root: Path | None = None,
) -> str:
    """Materialize `keys` (default: the ingest job's assets) in the *local* deployment (Polars,
    in-process) from the shared landing files; returns the lake root it wrote to. The dev
    deployment's environment is back afterwards."""
    env = {
        "ML_ASSETS_HOME": str(shared / "local_home"),
        "ML_ASSETS_LANDING_ROOT": str(shared / "landing"),
    }
    if lake_root is not None:
        env["ML_ASSETS_LAKE_ROOT"] = str(lake_root)
    with pytest.MonkeyPatch.context() as mp:
        # asset definitions read the deployment's settings from the environment
        for name in ("ML_ASSETS_DEPLOYMENT", "ML_ASSETS_ENGINE", "ML_ASSETS_COMPUTE_CONFIG"):
            mp.delenv(name, raising=False)
        settings = load_settings(env)
        defs = build_definitions(settings)
        if keys is None:
            keys = list(defs.resolve_job_def(INGEST_JOB).asset_layer.executable_asset_keys)
        result = dg.materialize(
            [defs.resolve_assets_def(k) for k in keys],
            selection=dg.AssetSelection.assets(*keys).without_checks(),
            tags=tags,
        )
    assert result.success
    return settings.lake_root


def read_table(uri: str) -> pl.DataFrame:
    return delta.scan(uri).collect()


def failure_text(events: list[Any]) -> str:
    return "\n".join(
        e.dagster_event.step_failure_data.error.to_string()
        for e in events
        if e.dagster_event is not None
        and e.dagster_event.event_type == DagsterEventType.STEP_FAILURE
    )


def materializations(events: list[Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for e in events:
        if e.dagster_event is not None and e.dagster_event.is_step_materialization:
            m = e.dagster_event.step_materialization_data.materialization
            out[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()}
    return out


def observations(events: list[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.dagster_event is not None and e.dagster_event.is_asset_observation:
            o = e.dagster_event.asset_observation_data.asset_observation
            out.setdefault(o.asset_key.to_user_string(), []).append(
                {k: v.value for k, v in o.metadata.items()}
            )
    return out
