"""The Databricks stand-in, exercised with the real clients (databricks-sdk, dagster-databricks)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    InvalidParameterValue,
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from databricks.sdk.service import jobs
from databricks.sdk.service.files import DbfsAPI

from ml_assets_tests.databricks.standin import DatabricksStandIn

NEW_CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 1}

requires_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="Java is not on PATH: local Spark (the stand-in cluster's Spark) cannot start",
)


@pytest.fixture
def dbx() -> Iterator[DatabricksStandIn]:
    with DatabricksStandIn() as standin:
        yield standin


@pytest.fixture
def client(dbx: DatabricksStandIn) -> WorkspaceClient:
    return WorkspaceClient(host=dbx.url, token=dbx.token)


def upload_script(client: WorkspaceClient, path: str, source: str) -> str:
    client.dbfs.upload(path, io.BytesIO(textwrap.dedent(source).encode()), overwrite=True)
    return f"dbfs:{path}"


def submit(
    client: WorkspaceClient, python_file: str, parameters: list[str] | None = None, **task: Any
) -> int:
    cluster = task.pop("cluster", {"new_cluster": NEW_CLUSTER})
    timeout_seconds = task.pop("run_timeout_seconds", None)
    spec = {
        "task_key": "t",
        **cluster,
        "spark_python_task": {"python_file": python_file, "parameters": parameters or []},
        **task,
    }
    waiter = client.jobs.submit(
        run_name="standin-test",
        tasks=[jobs.SubmitTask.from_dict(spec)],
        timeout_seconds=timeout_seconds,
    )
    return waiter.bind()["run_id"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is not running any more
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ")[-1].split()[0] != "Z"


# ------------------------------------------------------------------------------------- DBFS
def test_dbfs_round_trip_of_a_multi_megabyte_file(dbx: DatabricksStandIn, client) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)  # > 1 MB: several add-block / read calls
    client.dbfs.upload("/rt/big.bin", io.BytesIO(data), overwrite=True)

    assert client.dbfs.download("/rt/big.bin").read() == data
    status = client.dbfs.get_status("/rt/big.bin")
    assert (status.is_dir, status.file_size) == (False, len(data))
    assert [f.path for f in client.dbfs.list("/rt")] == ["/rt/big.bin"]
    assert dbx.dbfs_local_path("dbfs:/rt/big.bin").read_bytes() == data
    assert len(dbx.requests_to("dbfs/add-block")) == 4
    assert len(dbx.requests_to("dbfs/read")) >= 4

    # dagster-databricks' own helpers (used by the step launcher), also in 1 MiB blocks
    from dagster_databricks.databricks import DatabricksClient

    dagster_client = DatabricksClient(host=dbx.url, token=dbx.token)
    dagster_client.put_file(io.BytesIO(data), "dbfs:///rt/dagster.bin", overwrite=True)
    assert dagster_client.read_file("dbfs:///rt/dagster.bin") == data
    # exactly one block: the reader's "bytes_read == block_size" loop ends on an empty read
    dagster_client.put_file(io.BytesIO(data[: 1024**2]), "dbfs:///rt/one.bin", overwrite=True)
    assert dagster_client.read_file("dbfs:///rt/one.bin") == data[: 1024**2]


def test_dbfs_put_forms_and_errors(dbx: DatabricksStandIn, client) -> None:
    client.dbfs.put("/p/json.txt", contents=base64.b64encode(b"json form").decode())
    assert client.dbfs.read("/p/json.txt").data == base64.b64encode(b"json form").decode()

    multipart = requests.post(
        f"{dbx.url}/api/2.0/dbfs/put",
        headers={"Authorization": f"Bearer {dbx.token}"},
        data={"path": "/p/multi.bin", "overwrite": "true"},
        files={"contents": ("multi.bin", b"\x00multipart\xff")},
        timeout=10,
    )
    assert multipart.status_code == 200, multipart.text
    assert dbx.dbfs_local_path("/p/multi.bin").read_bytes() == b"\x00multipart\xff"

    with pytest.raises(ResourceAlreadyExists):
        client.dbfs.put("/p/json.txt", contents=base64.b64encode(b"again").decode())
    with pytest.raises(ResourceAlreadyExists):
        client.dbfs.create("/p/json.txt")
    with pytest.raises(ResourceDoesNotExist) as missing:
        client.dbfs.read("/p/nope.txt")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"  # what the launcher checks
    with pytest.raises(InvalidParameterValue):
        client.dbfs.read("/p")  # a directory
    with pytest.raises(Exception, match="Cannot read more than"):
        client.dbfs.read("/p/json.txt", length=2 * 1024 * 1024)
    # offset past the end: nothing, not an error
    assert client.dbfs.read("/p/json.txt", offset=100).bytes_read == 0

    client.dbfs.mkdirs("/p/deep/er")
    client.dbfs.put("/p/deep/er/f", contents="", overwrite=True)
    with pytest.raises(Exception, match="not empty"):  # the raw API (the SDK's mixin checks first)
        DbfsAPI(client.api_client).delete("/p/deep", recursive=False)
    client.dbfs.delete("/p/deep", recursive=True)
    assert not client.dbfs.exists("/p/deep")
    client.dbfs.move("/p/json.txt", "/p/moved.txt")
    assert client.dbfs.exists("/p/moved.txt") and not client.dbfs.exists("/p/json.txt")


# ------------------------------------------------------------------------------------- auth
def test_wrong_or_missing_token_is_refused(dbx: DatabricksStandIn) -> None:
    wrong = WorkspaceClient(host=dbx.url, token="dapi" + "0" * 32)
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        wrong.dbfs.get_status("/")
    missing = requests.get(f"{dbx.url}/api/2.0/dbfs/get-status", params={"path": "/"}, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error_code"] == "UNAUTHENTICATED"
    bad_scheme = requests.get(
        f"{dbx.url}/api/2.0/dbfs/get-status",
        params={"path": "/"},
        headers={"Authorization": f"Basic {dbx.token}"},
        timeout=10,
    )
    assert bad_scheme.status_code == 401
    # refused requests are recorded as received
    assert [r.status for r in dbx.requests] == [403, 401, 401]
    assert dbx.requests[0].headers["Authorization"] == "Bearer dapi" + "0" * 32


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_by_hand_stand_in_serves_on_the_given_port_until_stopped(stop: signal.Signals) -> None:
    """`python -m ml_assets_tests.databricks.standin --port N`: what docs/databricks.md runs."""
    with socket.socket() as probe:  # a free port, released for the stand-in
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_assets_tests.databricks.standin", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        exports, running = process.stdout.readline(), process.stdout.readline()
        match = re.fullmatch(r"export DATABRICKS_HOST=(\S+) DATABRICKS_TOKEN=(dapi\w+)\n", exports)
        assert match, exports
        assert match[1] == f"http://127.0.0.1:{port}"
        dbfs = Path(re.search(r"DBFS in (\S+);", running)[1])
        client = WorkspaceClient(host=match[1], token=match[2])
        client.dbfs.mkdirs("/by-hand")
        assert (dbfs / "by-hand").is_dir()
        process.send_signal(stop)
        assert process.wait(timeout=30) == 0
        assert not dbfs.exists()  # its temp folder goes with it
    finally:
        process.kill()
        process.stdout.close()


# ------------------------------------------------------------------------------------- jobs
def test_spark_python_task_runs_as_a_cluster_process(dbx: DatabricksStandIn, client) -> None:
    dbx.pending_seconds = 0.5  # observable PENDING
    dbx.secrets = {"scope-a": {"k": "s3cr3t"}}
    client.dbfs.put(
        "/in/settings.json",
        contents=base64.b64encode(json.dumps({"out": "/dbfs/out/nested/result.json"}).encode())
        .decode(),
    )  # fmt: skip
    script = upload_script(
        client,
        "/scripts/task.py",
        """
        import importlib.util, json, os, pathlib, sys
        settings = json.load(open(sys.argv[1]))          # a /dbfs path given as parameter
        out = pathlib.Path(settings["out"])              # a /dbfs path found inside a file
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "argv": sys.argv[1:],
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "env": {k: os.environ.get(k) for k in ("MY_VAR", "DB_CLUSTER_ID", "PYTHONPATH",
                                                   "DATABRICKS_STANDIN", "DATABRICKS_TOKEN")},
            "secret": dbutils.secrets.get(scope="scope-a", key="k"),
            "spark_is_global": repr(spark),
            "ml_assets_importable": importlib.util.find_spec("ml_assets") is not None,
            "dbfs_exists": os.path.exists("/dbfs/in/settings.json"),
        }))
        print("task says hello")
        """,
    )
    cluster = {
        "new_cluster": {
            **NEW_CLUSTER,
            "spark_env_vars": {"MY_VAR": "from-cluster-spec"},
            "cluster_log_conf": {"dbfs": {"destination": "dbfs:/cluster-logs"}},
        }
    }
    run_id = submit(client, script, ["/dbfs/in/settings.json"], cluster=cluster)

    first = client.jobs.get_run(run_id)
    assert first.state.life_cycle_state == jobs.RunLifeCycleState.PENDING
    assert first.tasks[0].cluster_instance is None  # not before the cluster is up
    run = dbx.wait_for_run(run_id, timeout=60)
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS"), run.stderr

    got = client.jobs.get_run(run_id)
    assert got.state.result_state == jobs.RunResultState.SUCCESS
    assert got.run_page_url.startswith(dbx.url)
    task = got.tasks[0]
    cluster_id = task.cluster_instance.cluster_id
    assert task.run_id != run_id and task.task_key == "t"
    assert got.setup_duration >= 500

    result = json.loads(dbx.dbfs_local_path("/out/nested/result.json").read_text())
    assert result["argv"] == [str(dbx.dbfs_local_path("/in/settings.json"))]
    assert result["pid"] == run.pid != os.getpid()
    assert result["env"] == {
        "MY_VAR": "from-cluster-spec",
        "DB_CLUSTER_ID": cluster_id,
        "PYTHONPATH": None,  # a clean cluster: nothing of the orchestrator's environment
        "DATABRICKS_STANDIN": "1",
        "DATABRICKS_TOKEN": None,
    }
    assert result["secret"] == "s3cr3t"
    assert result["spark_is_global"] == "<stand-in lazy spark>"
    assert result["ml_assets_importable"] is False  # the project checkout is not on the cluster
    assert result["dbfs_exists"] is True
    assert not result["cwd"].startswith(os.getcwd())

    # the Databricks API's view of the output, and the delivered driver logs
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        client.jobs.get_run_output(run_id)
    output = client.jobs.get_run_output(task.run_id)
    assert "task says hello" in output.logs and output.error is None
    assert "task says hello" in run.stdout
    delivered = client.dbfs.download(f"/cluster-logs/{cluster_id}/driver/stdout").read()
    assert b"task says hello" in delivered
    assert client.clusters.get(cluster_id).state.value == "TERMINATED"


def test_failed_task_reports_error_and_trace(dbx: DatabricksStandIn, client) -> None:
    script = upload_script(
        client,
        "/scripts/fail.py",
        """
        def deep():
            raise ValueError("boom-8731")
        print("before the failure")
        deep()
        """,
    )
    run_id = submit(client, script)
    run = dbx.wait_for_run(run_id, timeout=60)
    got = client.jobs.get_run(run_id)
    assert got.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert got.state.result_state == jobs.RunResultState.FAILED
    assert "Workload failed" in got.state.state_message

    output = client.jobs.get_run_output(got.tasks[0].run_id)
    assert output.error == "ValueError: boom-8731"
    assert "Traceback" in output.error_trace and 'raise ValueError("boom-8731")' in (
        output.error_trace
    )
    assert "before the failure" in output.logs
    assert "boom-8731" in run.stderr


def test_injected_task_failure(dbx: DatabricksStandIn, client) -> None:
    script = upload_script(client, "/scripts/ok.py", "print('fine')\n")
    dbx.inject_task_failure(times=1, message="driver lost 5150")
    failed = dbx.wait_for_run(submit(client, script), timeout=60)
    ok = dbx.wait_for_run(submit(client, script), timeout=60)
    assert (failed.result_state, failed.error) == ("FAILED", "RuntimeError: driver lost 5150")
    assert "driver lost 5150" in failed.error_trace
    assert ok.result_state == "SUCCESS"


def test_internal_error_for_first_submission_only(dbx: DatabricksStandIn, client) -> None:
    script = upload_script(client, "/scripts/ok.py", "print('fine')\n")
    dbx.inject_internal_error(times=1)
    first, second = submit(client, script), submit(client, script)
    dbx.wait_for_run(first, timeout=60)
    dbx.wait_for_run(second, timeout=60)
    bad, good = client.jobs.get_run(first), client.jobs.get_run(second)
    assert bad.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
    assert bad.state.result_state == jobs.RunResultState.FAILED
    assert "unexpected state Terminated" in bad.state.state_message
    assert dbx.get_run(first).pid is None  # nothing ever ran
    assert good.state.result_state == jobs.RunResultState.SUCCESS


def test_cancel_kills_the_driver_process(dbx: DatabricksStandIn, client) -> None:
    script = upload_script(
        client,
        "/scripts/sleep.py",
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open("/dbfs/child.pid", "w").write(str(child.pid))
        time.sleep(600)
        """,
    )
    run_id = submit(client, script)
    run = dbx.wait_for_run(run_id, states={"RUNNING"}, timeout=30)
    child_pid_file = dbx.dbfs_local_path("/child.pid")
    deadline = time.monotonic() + 30
    while not child_pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(child_pid_file.read_text())
    assert pid_alive(run.pid) and pid_alive(child_pid)

    client.jobs.cancel_run(run_id)
    dbx.wait_for_run(run_id, timeout=30)
    got = client.jobs.get_run(run_id)
    assert got.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert got.state.result_state == jobs.RunResultState.CANCELED
    assert got.state.user_cancelled_or_timedout is True
    assert not pid_alive(run.pid)
    assert not pid_alive(child_pid)  # the whole process group, like a cluster teardown
    client.jobs.cancel_run(run_id)  # cancelling a finished run is a no-op


def test_hang_and_run_timeout(dbx: DatabricksStandIn, client) -> None:
    script = upload_script(client, "/scripts/ok.py", "print('fine')\n")
    dbx.inject_hang(times=1)
    run_id = submit(client, script, run_timeout_seconds=2)
    run = dbx.wait_for_run(run_id, timeout=30)
    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "TIMEDOUT")
    assert "hanging" in run.stdout
    assert not run.process_alive()


def test_libraries(dbx: DatabricksStandIn, client) -> None:
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tinylib_standin/__init__.py", "ANSWER = 42\n")
    client.dbfs.upload("/libs/tinylib_standin-0.1-py3-none-any.whl", io.BytesIO(wheel.getvalue()))
    script = upload_script(
        client, "/scripts/lib.py", "import tinylib_standin; assert tinylib_standin.ANSWER == 42\n"
    )
    import dagster

    installed = [
        {"whl": "dbfs:/libs/tinylib_standin-0.1-py3-none-any.whl"},
        {"pypi": {"package": f"dagster=={dagster.__version__}"}},
        {"maven": {"coordinates": "org.example:ignored:1.0"}},
    ]
    ok = dbx.wait_for_run(submit(client, script, libraries=installed), timeout=60)
    assert ok.result_state == "SUCCESS", ok.stderr
    assert any("maven" in w for w in ok.warnings)

    missing = [{"pypi": {"package": "dagster==0.0.1"}}]
    bad = dbx.wait_for_run(submit(client, script, libraries=missing), timeout=60)
    assert (bad.life_cycle_state, bad.result_state) == ("INTERNAL_ERROR", "FAILED")
    assert "Library installation failed" in bad.state_message
    assert "dagster==0.0.1" in bad.state_message


def test_existing_cluster_and_request_validation(dbx: DatabricksStandIn, client) -> None:
    cluster_id = dbx.add_existing_cluster({"spark_env_vars": {"WHERE": "all-purpose"}})
    script = upload_script(
        client,
        "/scripts/env.py",
        "import os; open('/dbfs/where.txt', 'w').write(os.environ['WHERE'])\n",
    )
    run = dbx.wait_for_run(
        submit(client, script, cluster={"existing_cluster_id": cluster_id}), timeout=60
    )
    assert run.result_state == "SUCCESS", run.stderr
    assert dbx.dbfs_local_path("/where.txt").read_text() == "all-purpose"
    assert client.clusters.get(cluster_id).state.value == "RUNNING"  # not a job cluster

    with pytest.raises(InvalidParameterValue, match="does not exist"):
        submit(client, script, cluster={"existing_cluster_id": "0000-000000-nothere"})
    with pytest.raises(InvalidParameterValue, match="spark_version"):
        submit(client, script, cluster={"new_cluster": {"node_type_id": "x", "num_workers": 1}})
    with pytest.raises(NotFound):
        client.jobs.get_run(12345)
    with pytest.raises(NotFound):
        client.clusters.get("0000-000000-nothere")

    submits = dbx.requests_to("jobs/runs/submit")
    assert submits[0].body["tasks"][0]["existing_cluster_id"] == cluster_id
    assert submits[0].headers["Authorization"] == f"Bearer {dbx.token}"


@pytest.mark.spark
@pytest.mark.slow
@requires_java
def test_runtime_spark_globals_use_local_spark(dbx: DatabricksStandIn, client) -> None:
    script = upload_script(
        client,
        "/scripts/spark.py",
        """
        import json
        rows = spark.range(100).filter("id % 7 == 0").count()
        marker = spark.conf.get("spark.standin.marker")
        same = sc is not None and sc.master == spark.sparkContext.master
        json.dump({"rows": rows, "marker": marker, "same": same, "master": sc.master},
                  open("/dbfs/spark.json", "w"))
        """,
    )
    cluster = {"new_cluster": {**NEW_CLUSTER, "spark_conf": {"spark.standin.marker": "conf-ok"}}}
    run = dbx.wait_for_run(submit(client, script, cluster=cluster), timeout=240)
    assert run.result_state == "SUCCESS", run.stderr[-5000:]
    result = json.loads(dbx.dbfs_local_path("/spark.json").read_text())
    assert result == {"rows": 15, "marker": "conf-ok", "same": True, "master": "local[2]"}
