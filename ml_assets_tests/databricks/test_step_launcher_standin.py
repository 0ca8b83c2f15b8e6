"""End to end: the real ``databricks_pyspark_step_launcher`` against the Databricks stand-in.

The orchestrator (this pytest process, in-process executor) materializes a small asset graph
from a throw-away package; the asset that requires the step launcher resource is uploaded to
(stand-in) DBFS, submitted with ``jobs/runs/submit`` and executed by the stand-in's cluster
subprocess from the uploaded ``code.zip``; its downstream asset runs back in the orchestrator
and reads the remote output through a filesystem IO manager both sides can reach.
"""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, execute_job, reconstructable
from dagster._core.events import DagsterEventType
from dagster._serdes import serialize_value

from ml_assets_tests.databricks.standin import PROJECT_ROOT, DatabricksStandIn

pytestmark = pytest.mark.filterwarnings("ignore::dagster.SupersessionWarning")

PACKAGE = "standin_launcher_demo"
TOKEN_ENV = "STANDIN_DEMO_DATABRICKS_TOKEN"

requires_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="Java is not on PATH: local Spark (the stand-in cluster's Spark) cannot start",
)

# The user code the launcher zips and ships. Cluster-side behaviour is switched with
# STANDIN_DEMO_MODE, which only the cluster has (new_cluster.spark_env_vars).
JOBS_SOURCE = '''
import importlib.util
import os
import sys

from dagster import (
    ConfigurableResource, Definitions, EnvVar, FilesystemIOManager, RetryPolicy, RetryRequested,
    asset, define_asset_job, in_process_executor, resource,
)
from dagster_databricks import databricks_pyspark_step_launcher
from dagster_databricks.databricks import DatabricksError
from dagster_databricks.databricks_pyspark_step_launcher import DatabricksPySparkStepLauncher
from dagster_databricks.types import DatabricksRunLifeCycleState

MODE = os.environ.get("STANDIN_DEMO_MODE", "")
if MODE == "import_error":
    raise RuntimeError("import-time failure on the cluster 4711")


class RetryOnInternalErrorLauncher(DatabricksPySparkStepLauncher):
    """INTERNAL_ERROR (infrastructure) -> RetryRequested, which Dagster honours from a launcher.

    An asset's RetryPolicy does not cover errors raised by the launcher itself."""

    def step_events_iterator(self, step_context, step_key, databricks_run_id):
        try:
            yield from super().step_events_iterator(step_context, step_key, databricks_run_id)
        except DatabricksError as e:
            state = self.databricks_runner.client.get_run_state(databricks_run_id)
            if state.life_cycle_state == DatabricksRunLifeCycleState.INTERNAL_ERROR:
                raise RetryRequested(max_retries=2, seconds_to_wait=0) from e
            raise


@resource(config_schema=databricks_pyspark_step_launcher.config_schema)
def retrying_step_launcher(context):
    return RetryOnInternalErrorLauncher(**context.resource_config)


class Labels(ConfigurableResource):
    """Used only by the orchestrator-side asset; still resolved on the cluster (see tests)."""

    label: str


def _remote_body(context):
    context.log.info("hello from the cluster")
    if MODE == "raise":
        raise ValueError("remote kaboom 12345")
    out = {
        "pid": os.getpid(),
        "standin_run_id": os.environ.get("DATABRICKS_STANDIN_RUN_ID"),
        "cluster_marker": os.environ.get("CLUSTER_MARKER"),
        "module_file": __file__,
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
        "ml_assets_importable": importlib.util.find_spec("ml_assets") is not None,
    }
    if MODE == "spark":
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
        out["spark_rows"] = spark.range(1000).filter("id % 7 == 0").count()
        out["spark_marker"] = spark.conf.get("spark.standin.marker")
    return out


def _assets(retry_policy=None):
    @asset(required_resource_keys={"databricks"}, retry_policy=retry_policy)
    def remote_value(context):
        return _remote_body(context)

    @asset
    def local_value(remote_value, labels: Labels):
        return {"remote": remote_value, "orchestrator_pid": os.getpid(), "label": labels.label}

    return [remote_value, local_value]


def _job(assets, launcher):
    defs = Definitions(
        assets=assets,
        resources={
            "databricks": launcher,
            "io_manager": FilesystemIOManager(),
            "labels": Labels(label=EnvVar("STANDIN_DEMO_LABEL")),
        },
        jobs=[define_asset_job("demo", executor_def=in_process_executor)],
    )
    return defs.resolve_job_def("demo")


def define_job():
    return _job(_assets(), databricks_pyspark_step_launcher)


def define_job_with_retry_policy():
    return _job(_assets(RetryPolicy(max_retries=1)), databricks_pyspark_step_launcher)


def define_job_with_retrying_launcher():
    return _job(_assets(), retrying_step_launcher)
'''


@pytest.fixture(scope="module")
def demo_package() -> Iterator[Path]:
    """The package root handed to the launcher as ``local_pipeline_package_path``.

    Deliberately *not* under pytest's tmp_path: dagster_pyspark's build_pyspark_zip drops every
    file whose absolute path matches ``.*pytest.*`` (see test_build_pyspark_zip_excludes)."""
    root = Path(tempfile.mkdtemp(prefix="standin-pkgroot-"))
    pkg = root / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "jobs.py").write_text(textwrap.dedent(JOBS_SOURCE))
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def io_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="standin-io-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dbx(demo_package: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabricksStandIn]:
    # The orchestrator's cwd is the package root: Dagster records it as the code pointer's
    # working_directory and the remote process puts it on sys.path. On a real cluster that path
    # does not exist; the stand-in hides it, so the step must import the uploaded zip.
    monkeypatch.chdir(demo_package)
    with DatabricksStandIn(host_only_paths=[str(demo_package), str(PROJECT_ROOT)]) as standin:
        standin.secrets = {"dagster": {"databricks-token": standin.token}}
        monkeypatch.setenv(TOKEN_ENV, standin.token)
        monkeypatch.setenv("STANDIN_DEMO_LABEL", "orchestrator-label")
        yield standin


def run_config(
    dbx: DatabricksStandIn,
    io_dir: Path,
    package_root: Path,
    *,
    token_style: str = "env_secret",
    mode: str = "",
    cluster: dict[str, Any] | None = None,
    run_settings: dict[str, Any] | None = None,
    **launcher: Any,
) -> dict[str, Any]:
    new_cluster = {
        "spark_version": "15.4.x-scala2.12",
        "nodes": {"node_types": {"node_type_id": "i3.xlarge"}},
        "size": {"num_workers": 1},
        "spark_env_vars": {
            "CLUSTER_MARKER": "set-by-cluster-spec",
            "STANDIN_DEMO_MODE": mode,
            # every {"env": ...}/EnvVar of the job's run config must resolve on the cluster
            "STANDIN_DEMO_LABEL": "cluster-label",
        },
        **(cluster or {}),
    }
    if token_style == "literal":
        token: Any = dbx.token
        secrets: list[dict[str, str]] = []
    else:  # the token reaches the cluster as a Databricks secret, never in run config
        token = {"env": TOKEN_ENV}
        secrets = [{"name": TOKEN_ENV, "scope": "dagster", "key": "databricks-token"}]
    return {
        "resources": {
            "databricks": {
                "config": {
                    "databricks_host": dbx.url,
                    "databricks_token": token,
                    "secrets_to_env_variables": secrets,  # required in practice (see report)
                    "run_config": {
                        "run_name": "standin-demo",
                        "cluster": {"new": new_cluster},
                        "libraries": [{"pypi": {"package": "pyyaml"}}],
                        **(run_settings or {}),
                    },
                    "local_pipeline_package_path": str(package_root),
                    "staging_prefix": "/dagster_staging",
                    "wait_for_logs": False,
                    "poll_interval_sec": 0.5,
                    "verbose_logs": False,
                    **launcher,
                }
            },
            "io_manager": {"config": {"base_dir": str(io_dir)}},
        }
    }


def materialize(fn_name: str, config: dict[str, Any]) -> tuple[Any, list[Any]]:
    job_fn = getattr(importlib.import_module(f"{PACKAGE}.jobs"), fn_name)
    with DagsterInstance.ephemeral() as instance:
        result = execute_job(
            reconstructable(job_fn), instance=instance, run_config=config, raise_on_error=False
        )
        return result, list(instance.all_logs(result.run_id))


def step_failure(events: list[Any], step_key: str = "remote_value") -> str:
    failures = [
        e.dagster_event
        for e in events
        if e.dagster_event is not None
        and e.dagster_event.event_type == DagsterEventType.STEP_FAILURE
        and e.dagster_event.step_key == step_key
    ]
    assert failures, "no step failure"
    return failures[-1].step_failure_data.error.to_string()


def log_text(events: list[Any]) -> str:
    return "\n".join(e.user_message or "" for e in events)


# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("token_style", ["env_secret", "literal"])
def test_step_runs_on_the_standin_cluster(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path, token_style: str
) -> None:
    config = run_config(dbx, io_dir, demo_package, token_style=token_style)
    result, events = materialize("define_job", config)
    assert result.success, step_failure(events)

    (run,) = dbx.runs.values()
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS")
    remote = pickle.loads((io_dir / "remote_value").read_bytes())
    local = pickle.loads((io_dir / "local_value").read_bytes())

    # it ran in the stand-in's cluster process, with the cluster's environment ...
    assert remote["pid"] == run.pid != os.getpid()
    assert remote["standin_run_id"] == str(run.run_id)
    assert remote["cluster_marker"] == "set-by-cluster-spec"
    # ... from the uploaded zip, not from the orchestrator's copy or the project checkout
    assert remote["module_file"].startswith(str(dbx.root / "clusters"))
    assert str(demo_package) not in remote["sys_path"]
    assert remote["ml_assets_importable"] is False
    assert not remote["cwd"].startswith(str(demo_package))
    # and the orchestrator saw its result
    assert local == {
        "remote": remote, "orchestrator_pid": os.getpid(), "label": "orchestrator-label"
    }  # fmt: skip
    assert "hello from the cluster" in log_text(events)
    # upstream: databricks_step_main re-writes the captured output *inside* its redirect, so the
    # driver's own stdout/stderr (Databricks driver logs) never show the step's output
    assert "hello from the cluster" not in run.stdout + run.stderr

    # what the launcher asked Databricks for
    (submit,) = dbx.requests_to("jobs/runs/submit")
    task = submit.body["tasks"][0]
    assert task["task_key"] == "dagster-task"
    assert task["spark_python_task"]["python_file"].startswith("dbfs:///dagster_staging/")
    assert [p.rsplit("/", 1)[-1] for p in task["spark_python_task"]["parameters"]] == [
        "step_run_ref.pkl", "config.pkl", "code.zip",
    ]  # fmt: skip
    assert task["new_cluster"]["custom_tags"]["__dagster_version"]
    packages = [lib["pypi"]["package"].split("==")[0] for lib in task["libraries"]]
    assert packages == ["pyyaml", "dagster", "dagster-databricks", "dagster-pyspark",
                        "databricks-sdk"]  # fmt: skip
    assert all(r.headers["Authorization"] == f"Bearer {dbx.token}" for r in dbx.requests)

    # the token never reaches Dagster's event log
    for entry in events:
        assert dbx.token not in serialize_value(entry)
    staged = b"".join(p.read_bytes() for p in dbx.dbfs_root.rglob("*") if p.is_file())
    if token_style == "env_secret":
        assert dbx.token.encode() not in staged
    else:  # upstream: the whole run config, literal token included, is pickled to DBFS
        assert dbx.token.encode() in staged


@pytest.mark.slow
def test_env_var_config_of_any_resource_must_resolve_on_the_cluster(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    """The remote step re-validates the *whole* job's run config: an EnvVar of a resource the
    remote step does not even use (``labels``) must be set on the cluster as well."""
    config = run_config(dbx, io_dir, demo_package)
    del config["resources"]["databricks"]["config"]["run_config"]["cluster"]["new"][
        "spark_env_vars"
    ]["STANDIN_DEMO_LABEL"]
    result, events = materialize("define_job", config)
    assert not result.success
    (run,) = dbx.runs.values()
    assert run.result_state == "FAILED"
    assert 'environment variable "STANDIN_DEMO_LABEL" which is not set' in run.error_trace
    assert "root:resources:labels:config:label" in log_text(events)


@pytest.mark.slow
def test_remote_exception_fails_the_step_with_the_remote_traceback(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    result, events = materialize("define_job", run_config(dbx, io_dir, demo_package, mode="raise"))
    assert not result.success
    error = step_failure(events)
    assert "ValueError: remote kaboom 12345" in error
    assert f"{PACKAGE}/jobs.py" in error and str(dbx.root) in error  # the cluster's traceback
    # the Databricks run itself succeeded: the failure travelled back as a Dagster event
    (run,) = dbx.runs.values()
    assert run.result_state == "SUCCESS"
    assert not (io_dir / "local_value").exists()


@pytest.mark.slow
def test_failed_databricks_task_fails_the_step_and_logs_the_remote_traceback(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    config = run_config(dbx, io_dir, demo_package, mode="import_error")
    result, events = materialize("define_job", config)
    assert not result.success
    error = step_failure(events)
    assert "DatabricksError" in error and "FAILED" in error
    (run,) = dbx.runs.values()
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "FAILED")
    assert "import-time failure on the cluster 4711" in run.error_trace
    # the step's stderr (written to DBFS by databricks_step_main) lands in the event log
    logs = log_text(events)
    assert "Captured stderr for step remote_value" in logs
    assert "RuntimeError: import-time failure on the cluster 4711" in logs


@pytest.mark.slow
def test_internal_error_fails_the_step_even_with_a_retry_policy(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    dbx.inject_internal_error(times=1)
    config = run_config(dbx, io_dir, demo_package)
    result, events = materialize("define_job_with_retry_policy", config)
    assert not result.success
    error = step_failure(events)
    assert "DatabricksError" in error and "unexpected state Terminated" in error
    # upstream: the asset's RetryPolicy only covers the asset body, not the launcher
    assert dbx.submissions == 1
    assert [r.life_cycle_state for r in dbx.runs.values()] == ["INTERNAL_ERROR"]


@pytest.mark.slow
def test_internal_error_on_first_submission_is_retried_by_a_retry_requesting_launcher(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    dbx.inject_internal_error(times=1)
    config = run_config(dbx, io_dir, demo_package)
    result, events = materialize("define_job_with_retrying_launcher", config)
    assert result.success, step_failure(events)
    assert dbx.submissions == 2
    first, second = sorted(dbx.runs.values(), key=lambda r: r.submission_index)
    assert first.life_cycle_state == "INTERNAL_ERROR"
    assert (second.life_cycle_state, second.result_state) == ("TERMINATED", "SUCCESS")
    assert pickle.loads((io_dir / "remote_value").read_bytes())["pid"] == second.pid
    types = [e.dagster_event.event_type for e in events if e.dagster_event is not None]
    assert DagsterEventType.STEP_UP_FOR_RETRY in types


@pytest.mark.slow
def test_hang_past_max_completion_wait_cancels_the_run(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    dbx.inject_hang()
    config = run_config(dbx, io_dir, demo_package, max_completion_wait_time_seconds=3)
    result, events = materialize("define_job", config)
    assert not result.success
    assert "took more than 3s to complete" in step_failure(events)
    (run,) = dbx.runs.values()
    dbx.wait_for_run(run.run_id, timeout=30)
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "CANCELED")
    assert len(dbx.requests_to("jobs/runs/cancel")) == 1
    assert run.pid is not None and not run.process_alive()


@pytest.mark.slow
def test_hang_past_the_run_timeout_seconds_times_out(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    dbx.inject_hang()
    config = run_config(dbx, io_dir, demo_package, run_settings={"timeout_seconds": 3})
    result, events = materialize("define_job", config)
    assert not result.success
    assert "TIMEDOUT" in step_failure(events)
    (run,) = dbx.runs.values()
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "TIMEDOUT")
    assert not run.process_alive()


@pytest.mark.slow
def test_slow_cluster_start(dbx: DatabricksStandIn, io_dir: Path, demo_package: Path) -> None:
    dbx.pending_seconds = 3
    result, events = materialize("define_job", run_config(dbx, io_dir, demo_package))
    assert result.success, step_failure(events)
    (run,) = dbx.runs.values()
    assert run.running_time - run.submit_time >= 3
    seen = {r.response["state"]["life_cycle_state"] for r in dbx.requests_to("jobs/runs/get")}
    assert {"PENDING", "TERMINATED"} <= seen


@pytest.mark.spark
@pytest.mark.slow
@requires_java
def test_step_uses_the_clusters_local_spark(
    dbx: DatabricksStandIn, io_dir: Path, demo_package: Path
) -> None:
    config = run_config(
        dbx, io_dir, demo_package, mode="spark",
        cluster={"spark_conf": {"spark.standin.marker": "cluster-conf"}},
    )  # fmt: skip
    result, events = materialize("define_job", config)
    assert result.success, step_failure(events)
    remote = pickle.loads((io_dir / "remote_value").read_bytes())
    assert (remote["spark_rows"], remote["spark_marker"]) == (143, "cluster-conf")


def test_build_pyspark_zip_excludes(tmp_path: Path) -> None:
    """The launcher's zip silently drops paths matching ``.*pytest.*``, ``/logs/``, ``/venv/``
    (matched against the *absolute* path) but keeps ``.venv``: choose the package path with
    care."""
    from dagster_pyspark.utils import build_pyspark_zip

    def zipped(root: Path) -> list[str]:
        for rel in ["pkg/__init__.py", "pkg/logs/__init__.py", "pkg/venv/x.py", ".venv/y.py"]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("")
        out = root.parent / f"{root.name}.zip"
        build_pyspark_zip(str(out), str(root))
        return sorted(zipfile.ZipFile(out).namelist())

    assert "pytest" in str(tmp_path)
    assert zipped(tmp_path / "under_pytest") == []  # everything gone
    elsewhere = Path(tempfile.mkdtemp(prefix="standin-zip-"))
    try:
        assert zipped(elsewhere / "root") == [".venv/y.py", "pkg/__init__.py"]
    finally:
        shutil.rmtree(elsewhere)


def test_step_tags_are_safe_cloud_tags_and_leave_the_shared_config_alone() -> None:
    """Cluster tags become cloud resource tags: characters outside their common set (here a
    dynamic step key's brackets) are replaced, and the launcher's own config is not changed, so
    the next step of the run gets its own tags, not these on top."""
    from ml_assets.databricks.launcher import tagged_for_step

    base = {
        "run_name": "ml_assets etl",
        "cluster": {"new": {"custom_tags": [{"key": "ml_assets_profile", "value": "etl"}]}},
    }
    tagged = tagged_for_step(base, "7f3c-run", "fraud__score[2026_01_01]")
    assert tagged["run_name"] == "ml_assets etl: fraud__score[2026_01_01]"
    assert tagged["cluster"]["new"]["custom_tags"] == [
        {"key": "ml_assets_profile", "value": "etl"},
        {"key": "dagster_run_id", "value": "7f3c-run"},
        {"key": "dagster_step", "value": "fraud__score_2026_01_01_"},
    ]
    assert base["run_name"] == "ml_assets etl"
    assert len(base["cluster"]["new"]["custom_tags"]) == 1
