"""A local stand-in for the Databricks REST API that actually runs the submitted work.

Databricks cannot be reached from the test machines, so this serves the parts of the API that
``dagster_databricks.databricks_pyspark_step_launcher`` (and databricks-sdk's ``WorkspaceClient``)
use, on ``127.0.0.1``:

* DBFS 2.0: ``create`` / ``add-block`` / ``close`` / ``put`` (JSON base64 and multipart) /
  ``read`` / ``get-status`` / ``list`` / ``mkdirs`` / ``delete`` / ``move``, on a temp folder
  (:attr:`DatabricksStandIn.dbfs_root`);
* Jobs 2.0/2.1/2.2: ``runs/submit`` (one ``spark_python_task`` on ``new_cluster`` or
  ``existing_cluster_id``), ``runs/get``, ``runs/get-output``, ``runs/cancel``, ``runs/list``;
* Clusters 2.0/2.1: ``clusters/get``, ``clusters/list``; Permissions 2.0 (accepted, recorded).

A submitted task runs as a local subprocess (see ``_driver.py``) with the cluster's
``spark_env_vars``, a clean ``PYTHONPATH``, a cwd outside the project, ``/dbfs`` mapped to the
DBFS folder and the Databricks runtime globals (``spark``/``sc`` lazily backed by local Spark,
``dbutils`` with the stand-in's :attr:`~DatabricksStandIn.secrets`). Run states follow the real
life cycle: ``PENDING`` → ``RUNNING`` → ``TERMINATING`` → ``TERMINATED`` (``SUCCESS``/``FAILED``/
``TIMEDOUT``/``CANCELED``) or ``INTERNAL_ERROR``.

Every request is recorded as received (:attr:`~DatabricksStandIn.requests`); requests without
``Authorization: Bearer <token>`` get 401, with a wrong token 403.

By hand (the exports to point a deployment at it are printed; Ctrl-C stops it)::

    python -m ml_assets_tests.databricks.standin --port 8765

In code::

    with DatabricksStandIn() as dbx:
        client = WorkspaceClient(host=dbx.url, token=dbx.token)
        ...
        dbx.inject_internal_error(times=1)   # next submission ends INTERNAL_ERROR
        dbx.inject_hang()                    # next submission never finishes
        run = dbx.wait_for_run(run_id)       # -> StandInRun (state, pid, stdout, stderr, ...)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.parser
import email.policy
import itertools
import json
import os
import random
import re
import secrets as _secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BLOCK_BYTES = 1024 * 1024  # DBFS add-block / put (JSON) / read limit
DEFAULT_READ_BYTES = 512 * 1024  # DBFS read default length
DRIVER_SOURCE = Path(__file__).with_name("_driver.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]

TERMINAL_LIFE_CYCLE_STATES = frozenset({"TERMINATED", "INTERNAL_ERROR", "SKIPPED"})
# Environment a fresh cluster node has from its OS; nothing from the orchestrator's session.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "JAVA_HOME", "USER", "LOGNAME")
DEFAULT_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}

_LIBRARY_CHECK = r"""
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
out = []
for spec in json.loads(sys.argv[1]):
    try:
        req = Requirement(spec)
    except Exception as e:
        out.append([spec, f"invalid requirement: {e}"]); continue
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        out.append([spec, f"{req.name} is not installed"]); continue
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        out.append([spec, f"{req.name} {have} is installed"])
print(json.dumps(out))
"""


class ApiError(Exception):
    """An error answered the way Databricks does: HTTP status + ``error_code`` + ``message``."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass
class RecordedRequest:
    """One HTTP request as the stand-in received it (headers and body unredacted)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON / multipart fields, or None
    raw_body: bytes
    time: float
    status: int | None = None
    response: Any = None

    @property
    def endpoint(self) -> str:
        """The path without the API version, e.g. ``jobs/runs/submit``."""
        m = re.match(r"^/api/\d\.\d/(.+)$", self.path)
        return m.group(1) if m else self.path


@dataclass
class StandInCluster:
    cluster_id: str
    spec: dict[str, Any]
    source: str  # "JOB" (created for a run) or "API" (an existing, all-purpose cluster)
    cluster_name: str
    state: str = "PENDING"
    state_message: str = "Starting Spark"
    start_time: int = 0
    terminated_time: int | None = None
    termination_reason: dict[str, Any] | None = None
    spark_context_id: str = field(default_factory=lambda: str(random.randint(10**17, 10**18)))


@dataclass
class StandInRun:
    """State of one submitted run (with its single task) in the stand-in."""

    run_id: int
    task_run_id: int
    job_id: int
    run_name: str
    submission_index: int
    request: dict[str, Any]
    task: dict[str, Any]
    cluster_id: str
    dir: Path
    timeout_seconds: int = 0
    fault: dict[str, Any] | None = None
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    user_cancelled_or_timedout: bool = False
    termination: dict[str, str] | None = None
    submit_time: float = field(default_factory=time.time)
    running_time: float | None = None
    terminating_time: float | None = None
    end_time: float | None = None
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None
    error_trace: str | None = None
    notebook_output: str | None = None
    library_errors: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def stdout_path(self) -> Path:
        """The driver's captured stdout (also returned as ``logs`` by ``runs/get-output``)."""
        return self.dir / "stdout"

    @property
    def stderr_path(self) -> Path:
        return self.dir / "stderr"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def terminal(self) -> bool:
        return self.life_cycle_state in TERMINAL_LIFE_CYCLE_STATES

    def process_alive(self) -> bool:
        """Whether the driver process (or anything in its process group) still runs."""
        if self.pid is None:
            return False
        if self.process is not None and self.process.poll() is None:
            return True
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _ms(t: float | None) -> int:
    return int(t * 1000) if t else 0


def _new_cluster_id() -> str:
    now = time.gmtime()
    suffix = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=8))
    return time.strftime("%m%d-%H%M%S", now) + "-" + suffix


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: DatabricksStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        self.server.standin._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class DatabricksStandIn:
    """A threaded local Databricks REST API that runs submitted ``spark_python_task`` tasks.

    Args:
        token: the personal access token to accept (default: a fresh ``dapi...`` token).
        root: folder for DBFS, clusters and runs (default: a new temp folder, removed on stop).
        python_executable: the cluster's Python (default: this interpreter, i.e. the venv, whose
            site-packages stand for the libraries installed on the cluster).
        pending_seconds: how long a run stays ``PENDING`` (cluster start) before ``RUNNING``.
        terminating_seconds: how long a finished run stays ``TERMINATING``.
        result_state_while_terminating: report ``result_state`` already in ``TERMINATING``.
        spark_master: the Spark master of the local "cluster".
        host_only_paths: paths that exist only on the orchestrator and are hidden from the
            driver's imports (default: this process's cwd and the project checkout).
        library_check: ``"strict"`` (a ``pypi``/``requirements`` library the cluster's Python
            does not satisfy fails the run like a failed install), ``"warn"`` or ``"off"``.
        secrets: ``{scope: {key: value}}`` served by ``dbutils.secrets`` on the cluster.
        extra_env: environment variables every cluster node gets (before ``spark_env_vars``).
        emulate_runtime_version: also set ``DATABRICKS_RUNTIME_VERSION`` (libraries such as
            MLflow then believe they run on Databricks; off by default).
        kill_grace_seconds: SIGTERM → SIGKILL delay when a run is cancelled or times out.
        port: the port to serve on, on 127.0.0.1 (default: a free one the system picks).
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        root: str | os.PathLike[str] | None = None,
        python_executable: str | None = None,
        pending_seconds: float = 0.0,
        terminating_seconds: float = 0.0,
        result_state_while_terminating: bool = True,
        spark_master: str = "local[2]",
        spark_conf: Mapping[str, str] | None = None,
        host_only_paths: Iterable[str] | None = None,
        library_check: str = "strict",
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        extra_env: Mapping[str, str] | None = None,
        emulate_runtime_version: bool = False,
        kill_grace_seconds: float = 3.0,
        user_name: str = "standin@example.com",
        workspace_id: int = 1234567890123456,
        port: int = 0,
    ):
        if library_check not in ("strict", "warn", "off"):
            raise ValueError("library_check must be 'strict', 'warn' or 'off'")
        self.token = token or "dapi" + _secrets.token_hex(16)
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="databricks-standin-")).resolve()
        self.dbfs_root = self.root / "dbfs"
        self.python_executable = python_executable or sys.executable
        self.pending_seconds = pending_seconds
        self.terminating_seconds = terminating_seconds
        self.result_state_while_terminating = result_state_while_terminating
        self.spark_master = spark_master
        self.spark_conf = {**DEFAULT_SPARK_CONF, **(spark_conf or {})}
        self.host_only_paths = (
            list(host_only_paths)
            if host_only_paths is not None
            else [os.getcwd(), str(PROJECT_ROOT)]
        )
        self.library_check = library_check
        self.secrets: dict[str, dict[str, str]] = {k: dict(v) for k, v in (secrets or {}).items()}
        self.extra_env = dict(extra_env or {})
        self.emulate_runtime_version = emulate_runtime_version
        self.kill_grace_seconds = kill_grace_seconds
        self.user_name = user_name
        self.workspace_id = workspace_id

        self.requests: list[RecordedRequest] = []
        self.runs: dict[int, StandInRun] = {}
        self.clusters: dict[str, StandInCluster] = {}
        self.submissions = 0
        self._faults: dict[str, list[Any]] = {}
        self._lock = threading.RLock()
        self._handles: dict[int, tuple[Path, str, Any, Path]] = {}
        self._handle_ids = itertools.count(random.randint(1000, 9000))
        self._run_ids = itertools.count(random.randint(10**14, 9 * 10**14), 1000)
        self._job_ids = itertools.count(random.randint(10**14, 9 * 10**14), 7)
        self._idempotency: dict[str, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._run_threads: list[threading.Thread] = []
        self.url = ""
        self.host = "127.0.0.1"
        self.port = port

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DatabricksStandIn:
        if self._server is not None:
            return self
        for sub in ("dbfs", "runs", "clusters", "runtime", "handles"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DRIVER_SOURCE, self.root / "runtime" / "standin_driver.py")
        server = _Server((self.host, self.port), _Handler)
        server.standin = self
        self._server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name=f"databricks-standin-{self.port}",
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Cancel every unfinished run (killing its processes), stop serving, remove the root."""
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            if not run.terminal:
                run.cancel_event.set()
        for t in list(self._run_threads):
            t.join(timeout=self.kill_grace_seconds + 10)
        for run in runs:  # belt and braces: nothing of ours may outlive the stand-in
            self._kill(run, grace=0)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DatabricksStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ fault injection
    def inject_internal_error(self, times: int | None = 1, message: str | None = None) -> None:
        """The next ``times`` submissions (``None``: all) end in ``INTERNAL_ERROR`` before the
        task starts (the job cluster fails to come up)."""
        self._faults["internal_error"] = [times, message]

    def inject_task_failure(self, times: int | None = 1, message: str | None = None) -> None:
        """The next ``times`` submissions fail on the driver (``RuntimeError(message)`` raised
        before the task's Python file runs): ``TERMINATED``/``FAILED`` with an error trace."""
        self._faults["task_failure"] = [times, message]

    def inject_hang(
        self,
        times: int | None = 1,
        *,
        at_call: str | list[str] | None = None,
        after_calls: int = 0,
        matching: str | None = None,
    ) -> None:
        """The next ``times`` submissions start a driver that never finishes (until cancelled
        or the run's ``timeout_seconds`` expires).

        ``at_call="module:function"`` (or ``"module:Class.method"``, or a list of them): the
        task runs normally until its ``after_calls + 1``-th call of one, and hangs inside it (a
        step stuck half-way, e.g. in ``deltalake:DeltaTable.create_write_transaction``: data
        files written, commit pending). ``matching``: only calls with an argument (or a Delta
        table whose ``table_uri``) containing this text count. The driver prints
        ``injected fault: hanging in <at_call>`` to its stdout when it gets there."""
        options = {"at_call": at_call, "after_calls": after_calls, "matching": matching}
        self._faults["hang"] = [times, options]

    def inject_unreachable(self) -> None:
        """The workspace stops answering right after the next ``runs/submit`` (which is answered:
        the run starts): from then on every request's connection is closed without a response,
        what a client sees of an outage or a cut network, until ``clear_faults``. Dropped
        requests are recorded with status 0."""
        self._faults["unreachable"] = ["armed"]

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self) -> dict[str, Any] | None:
        for kind in ("internal_error", "task_failure", "hang"):
            entry = self._faults.get(kind)
            if entry is None:
                continue
            remaining, message = entry
            if remaining is not None:
                if remaining <= 0:
                    continue
                entry[0] = remaining - 1
            if isinstance(message, dict):  # structured fault options (hang)
                return {"kind": kind, "message": None, **message}
            return {"kind": kind, "message": message}
        return None

    # ------------------------------------------------------------------ helpers for tests
    def add_existing_cluster(
        self, spec: Mapping[str, Any] | None = None, cluster_id: str | None = None
    ) -> str:
        """Register a running all-purpose cluster usable as ``existing_cluster_id``."""
        cid = cluster_id or _new_cluster_id()
        spec = {"spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge",
                "num_workers": 1, **(spec or {})}  # fmt: skip
        cluster = StandInCluster(
            cluster_id=cid, spec=spec, source="API", cluster_name=spec.get("cluster_name", cid),
            state="RUNNING", state_message="", start_time=_ms(time.time()),
        )  # fmt: skip
        with self._lock:
            self.clusters[cid] = cluster
        return cid

    def dbfs_local_path(self, dbfs_path: str) -> Path:
        """Where a DBFS path (``/x``, ``dbfs:/x`` or ``/dbfs/x``) lives on this machine."""
        if dbfs_path.startswith("/dbfs/"):
            dbfs_path = dbfs_path[len("/dbfs") :]
        return self._dbfs_resolve(dbfs_path)[0]

    def get_run(self, run_id: int) -> StandInRun:
        with self._lock:
            for run in self.runs.values():
                if run_id in (run.run_id, run.task_run_id):
                    return run
        raise KeyError(run_id)

    def wait_for_run(
        self, run_id: int, states: Iterable[str] = TERMINAL_LIFE_CYCLE_STATES, timeout: float = 120
    ) -> StandInRun:
        """Block until the run's life cycle state is one of ``states``."""
        states = set(states)
        run = self.get_run(run_id)
        deadline = time.monotonic() + timeout
        while run.life_cycle_state not in states:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.life_cycle_state} after {timeout}s")
            time.sleep(0.05)
        return run

    def requests_to(self, endpoint: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose versionless endpoint is ``endpoint`` (``jobs/runs/submit``)."""
        return [
            r for r in list(self.requests)
            if r.endpoint == endpoint and (method is None or r.method == method)
        ]  # fmt: skip

    # ------------------------------------------------------------------ HTTP plumbing
    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k: v for k, v in h.headers.items()}
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        rec = RecordedRequest(
            method=h.command, path=split.path, query=query, headers=headers, body=None,
            raw_body=raw, time=time.time(),
        )  # fmt: skip
        with self._lock:
            self.requests.append(rec)
        unreachable = self._faults.get("unreachable")
        if unreachable == ["down"]:
            rec.status = 0
            h.close_connection = True  # no response at all: the client's connection drops
            return
        try:
            rec.body = self._parse_body(headers.get("Content-Type", ""), raw)
            self._authenticate(headers)
            params: dict[str, Any] = dict(query)
            if isinstance(rec.body, dict):
                params.update(rec.body)
            status, payload = 200, self._dispatch(h.command, split.path, params)
        except ApiError as e:
            status, payload = e.status, {"error_code": e.error_code, "message": e.message}
        except Exception as e:  # a bug in the stand-in: say so loudly
            status = 500
            payload = {"error_code": "INTERNAL_ERROR", "message": f"stand-in bug: {e!r}"}
        rec.status, rec.response = status, payload
        if unreachable == ["armed"] and status == 200 and rec.endpoint == "jobs/runs/submit":
            unreachable[0] = "down"
        body = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    @staticmethod
    def _parse_body(content_type: str, raw: bytes) -> Any:
        if not raw:
            return None
        if content_type.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            fields: dict[str, Any] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                fields[name] = payload if part.get_filename() else payload.decode()
            return fields
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body: {e}") from e

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        auth = headers.get("Authorization")
        if not auth or not auth.startswith("Bearer "):
            raise ApiError(
                401, "UNAUTHENTICATED",
                "Credential was not sent or was of an unsupported type for this API.",
            )  # fmt: skip
        if not _secrets.compare_digest(auth[len("Bearer ") :], self.token):
            raise ApiError(403, "PERMISSION_DENIED", "Invalid access token.")

    def _dispatch(self, method: str, path: str, p: dict[str, Any]) -> Any:
        m = re.match(r"^/api/(\d\.\d)/(.+?)/?$", path)
        if m:
            version, endpoint = m.groups()
            routes = {
                ("POST", "dbfs/create"): ("2.0", self._dbfs_create),
                ("POST", "dbfs/add-block"): ("2.0", self._dbfs_add_block),
                ("POST", "dbfs/close"): ("2.0", self._dbfs_close),
                ("POST", "dbfs/put"): ("2.0", self._dbfs_put),
                ("GET", "dbfs/read"): ("2.0", self._dbfs_read),
                ("GET", "dbfs/get-status"): ("2.0", self._dbfs_get_status),
                ("GET", "dbfs/list"): ("2.0", self._dbfs_list),
                ("POST", "dbfs/mkdirs"): ("2.0", self._dbfs_mkdirs),
                ("POST", "dbfs/delete"): ("2.0", self._dbfs_delete),
                ("POST", "dbfs/move"): ("2.0", self._dbfs_move),
                ("POST", "jobs/runs/submit"): ("2.0 2.1 2.2", self._runs_submit),
                ("GET", "jobs/runs/get"): ("2.0 2.1 2.2", self._runs_get),
                ("GET", "jobs/runs/get-output"): ("2.0 2.1 2.2", self._runs_get_output),
                ("POST", "jobs/runs/cancel"): ("2.0 2.1 2.2", self._runs_cancel),
                ("GET", "jobs/runs/list"): ("2.0 2.1 2.2", self._runs_list),
                ("GET", "clusters/get"): ("2.0 2.1", self._clusters_get),
                ("GET", "clusters/list"): ("2.0 2.1", self._clusters_list),
            }
            route = routes.get((method, endpoint))
            if route and version in route[0].split():
                return route[1](p)
            pm = re.match(r"^permissions/(jobs|clusters)/([^/]+)$", endpoint)
            if pm and version == "2.0" and method in ("PATCH", "PUT", "GET"):
                return {
                    "object_id": f"/{pm.group(1)}/{pm.group(2)}",
                    "object_type": pm.group(1)[:-1],
                    "access_control_list": p.get("access_control_list", []),
                }
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    # ------------------------------------------------------------------ DBFS
    def _dbfs_resolve(self, path: Any) -> tuple[Path, str]:
        if not isinstance(path, str) or not path:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Path must be a non-empty string")
        raw = path[len("dbfs:") :] if path.startswith("dbfs:") else path
        if not raw.startswith("/"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path must be absolute: {path}")
        parts = [s for s in raw.split("/") if s not in ("", ".")]
        if ".." in parts:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path must not contain '..': {path}")
        return self.dbfs_root.joinpath(*parts), "/" + "/".join(parts)

    def _file_info(self, local: Path, dbfs_path: str) -> dict[str, Any]:
        st = local.stat()
        is_dir = local.is_dir()
        return {
            "path": dbfs_path,
            "is_dir": is_dir,
            "file_size": 0 if is_dir else st.st_size,
            "modification_time": int(st.st_mtime * 1000),
        }

    def _not_found(self, dbfs_path: str) -> ApiError:
        return ApiError(
            404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {dbfs_path}."
        )

    def _check_parents_are_dirs(self, local: Path, dbfs_path: str) -> None:
        for parent in local.parents:
            if parent == self.dbfs_root.parent:
                break
            if parent.exists() and not parent.is_dir():
                raise ApiError(
                    400, "RESOURCE_ALREADY_EXISTS",
                    f"A file or directory already exists at the input path {dbfs_path}.",
                )  # fmt: skip

    def _write_target(self, local: Path, dbfs_path: str, overwrite: bool) -> None:
        self._check_parents_are_dirs(local, dbfs_path)
        if local.exists() and (local.is_dir() or not overwrite):
            raise ApiError(
                400, "RESOURCE_ALREADY_EXISTS",
                f"A file or directory already exists at the input path {dbfs_path}.",
            )  # fmt: skip

    def _dbfs_create(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        overwrite = bool(p.get("overwrite", False))
        self._write_target(local, dbfs_path, overwrite)
        handle = next(self._handle_ids)
        tmp = self.root / "handles" / str(handle)
        fh = open(tmp, "wb")  # noqa: SIM115 (closed by dbfs/close)
        with self._lock:
            self._handles[handle] = (local, dbfs_path, fh, tmp)
        return {"handle": handle}

    def _get_handle(self, p: dict[str, Any]) -> tuple[int, tuple[Path, str, Any, Path]]:
        try:
            handle = int(p.get("handle"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "handle must be an integer") from None
        with self._lock:
            entry = self._handles.get(handle)
        if entry is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Handle {handle} does not exist.")
        return handle, entry

    @staticmethod
    def _b64(data: Any, what: str) -> bytes:
        if data is None:
            return b""
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError, TypeError) as e:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{what} is not valid base64") from e

    def _dbfs_add_block(self, p: dict[str, Any]) -> dict[str, Any]:
        _, (_, _, fh, _) = self._get_handle(p)
        data = self._b64(p.get("data"), "data")
        if len(data) > MAX_BLOCK_BYTES:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", "The block of data exceeds 1 MB.")
        fh.write(data)
        return {}

    def _dbfs_close(self, p: dict[str, Any]) -> dict[str, Any]:
        handle, (local, _, fh, tmp) = self._get_handle(p)
        with self._lock:
            self._handles.pop(handle, None)
        fh.close()
        local.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, local)
        return {}

    def _dbfs_put(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        overwrite = str(p.get("overwrite", False)).lower() in ("true", "1")
        contents = p.get("contents")
        if isinstance(contents, bytes):  # multipart upload: raw file part, no size limit
            data = contents
        else:
            data = self._b64(contents, "contents")
            if len(data) > MAX_BLOCK_BYTES:
                raise ApiError(
                    400, "MAX_BLOCK_SIZE_EXCEEDED",
                    "File uploaded directly is larger than 1048576 bytes.",
                )  # fmt: skip
        self._write_target(local, dbfs_path, overwrite)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "handles" / f"put-{next(self._handle_ids)}"
        tmp.write_bytes(data)
        os.replace(tmp, local)
        return {}

    def _dbfs_read(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        try:
            offset = int(p.get("offset", 0))
            length = int(p.get("length", DEFAULT_READ_BYTES))
        except (TypeError, ValueError):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "offset/length must be ints") from None
        if not local.exists():
            raise self._not_found(dbfs_path)
        if local.is_dir():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{dbfs_path} is a directory.")
        if offset < 0 or length < 0:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "offset and length must be >= 0.")
        if length > MAX_BLOCK_BYTES:
            raise ApiError(
                400, "MAX_READ_SIZE_EXCEEDED", f"Cannot read more than {MAX_BLOCK_BYTES} bytes."
            )
        with open(local, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def _dbfs_get_status(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        if not local.exists():
            raise self._not_found(dbfs_path)
        return self._file_info(local, dbfs_path)

    def _dbfs_list(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        if not local.exists():
            raise self._not_found(dbfs_path)
        if not local.is_dir():
            return {"files": [self._file_info(local, dbfs_path)]}
        base = dbfs_path.rstrip("/")
        files = [self._file_info(c, f"{base}/{c.name}") for c in sorted(local.iterdir())]
        return {"files": files} if files else {}

    def _dbfs_mkdirs(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        self._check_parents_are_dirs(local, dbfs_path)
        if local.exists() and not local.is_dir():
            raise ApiError(
                400, "RESOURCE_ALREADY_EXISTS",
                f"A file or directory already exists at the input path {dbfs_path}.",
            )  # fmt: skip
        local.mkdir(parents=True, exist_ok=True)
        return {}

    def _dbfs_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        local, dbfs_path = self._dbfs_resolve(p.get("path"))
        recursive = str(p.get("recursive", False)).lower() in ("true", "1")
        if local == self.dbfs_root:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Cannot delete the DBFS root.")
        if not local.exists():
            return {}
        if local.is_dir():
            if any(local.iterdir()) and not recursive:
                raise ApiError(
                    400, "IO_ERROR", f"Directory {dbfs_path} is not empty; use recursive=true."
                )
            shutil.rmtree(local)
        else:
            local.unlink()
        return {}

    def _dbfs_move(self, p: dict[str, Any]) -> dict[str, Any]:
        src, src_path = self._dbfs_resolve(p.get("source_path"))
        dst, dst_path = self._dbfs_resolve(p.get("destination_path"))
        if not src.exists():
            raise self._not_found(src_path)
        if dst.exists():
            raise ApiError(
                400, "RESOURCE_ALREADY_EXISTS",
                f"A file or directory already exists at the input path {dst_path}.",
            )  # fmt: skip
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return {}

    # ------------------------------------------------------------------ Jobs
    @staticmethod
    def _run_id_param(p: dict[str, Any]) -> int:
        try:
            return int(p["run_id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", "Missing or invalid required parameter: run_id"
            ) from None

    def _find_run(self, run_id: int) -> StandInRun:
        try:
            return self.get_run(run_id)
        except KeyError:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist."
            ) from None

    def _runs_submit(self, p: dict[str, Any]) -> dict[str, Any]:
        tasks = p.get("tasks")
        if tasks is None and any(k.endswith("_task") for k in p):  # Jobs API 2.0 single task
            tasks = [{
                "task_key": p.get("run_name") or "task",
                **{k: p[k] for k in ("new_cluster", "existing_cluster_id", "libraries",
                                     "spark_python_task", "notebook_task", "spark_jar_task",
                                     "spark_submit_task", "python_wheel_task") if k in p},
            }]  # fmt: skip
        if not isinstance(tasks, list) or len(tasks) != 1:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE",
                "The Databricks stand-in runs exactly one task per submitted run.",
            )  # fmt: skip
        task = tasks[0]
        if not task.get("task_key"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: task_key")
        spt = task.get("spark_python_task")
        if not isinstance(spt, dict) or not spt.get("python_file"):
            kinds = [k for k in task if k.endswith("_task")]
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE",
                f"The Databricks stand-in runs spark_python_task tasks only (got {kinds}).",
            )  # fmt: skip
        python_file = spt["python_file"]
        if not (python_file.startswith("dbfs:/") or python_file.startswith("/dbfs/")):
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE",
                f"The Databricks stand-in runs Python files from DBFS only (got {python_file}).",
            )  # fmt: skip
        new_cluster, existing = task.get("new_cluster"), task.get("existing_cluster_id")
        if bool(new_cluster) == bool(existing):
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE",
                "Exactly one of new_cluster or existing_cluster_id must be specified.",
            )  # fmt: skip
        if new_cluster:
            if not new_cluster.get("spark_version"):
                raise ApiError(
                    400, "INVALID_PARAMETER_VALUE", "Missing required field: spark_version"
                )
            node_keys = ("node_type_id", "instance_pool_id", "policy_id")
            if not any(new_cluster.get(k) for k in node_keys):
                raise ApiError(
                    400, "INVALID_PARAMETER_VALUE",
                    "Missing required field: node_type_id (or instance_pool_id)",
                )  # fmt: skip
        elif existing not in self.clusters:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Cluster {existing} does not exist")

        token = p.get("idempotency_token")
        with self._lock:
            if token and token in self._idempotency:
                return {"run_id": self._idempotency[token]}
            run_id = next(self._run_ids)
            job_id = next(self._job_ids)
            if new_cluster:
                cid = _new_cluster_id()
                self.clusters[cid] = StandInCluster(
                    cluster_id=cid, spec=dict(new_cluster), source="JOB",
                    cluster_name=f"job-{job_id}-run-{run_id + 1}", start_time=_ms(time.time()),
                )  # fmt: skip
            else:
                cid = existing
            timeouts = [
                int(t) for t in (p.get("timeout_seconds"), task.get("timeout_seconds")) if t
            ]
            run_dir = self.root / "runs" / str(run_id)
            run_dir.mkdir(parents=True)
            run = StandInRun(
                run_id=run_id, task_run_id=run_id + 1, job_id=job_id,
                run_name=p.get("run_name") or "Untitled", submission_index=self.submissions,
                request=p, task=task, cluster_id=cid, dir=run_dir,
                timeout_seconds=min(timeouts) if timeouts else 0, fault=self._take_fault(),
            )  # fmt: skip
            self.submissions += 1
            self.runs[run_id] = run
            if token:
                self._idempotency[token] = run_id
            thread = threading.Thread(
                target=self._lifecycle, args=(run,), daemon=True, name=f"standin-run-{run_id}"
            )
            self._run_threads.append(thread)
        thread.start()
        return {"run_id": run_id}

    def _state_json(self, run: StandInRun) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": run.life_cycle_state,
            "state_message": run.state_message,
            "user_cancelled_or_timedout": run.user_cancelled_or_timedout,
        }
        if run.result_state:
            state["result_state"] = run.result_state
        return state

    def _status_json(self, run: StandInRun) -> dict[str, Any]:
        v2 = {"INTERNAL_ERROR": "TERMINATED", "SKIPPED": "TERMINATED"}
        status: dict[str, Any] = {"state": v2.get(run.life_cycle_state, run.life_cycle_state)}
        if run.termination:
            status["termination_details"] = dict(run.termination)
        return status

    def _timings(self, run: StandInRun) -> dict[str, int]:
        now = time.time()
        setup_end = run.running_time or run.end_time or now
        exec_end = run.terminating_time or run.end_time or now
        return {
            "start_time": _ms(run.submit_time),
            "setup_duration": _ms(setup_end - run.submit_time),
            "execution_duration": _ms(exec_end - run.running_time) if run.running_time else 0,
            "cleanup_duration": (
                _ms((run.end_time or now) - run.terminating_time) if run.terminating_time else 0
            ),
            "end_time": _ms(run.end_time),
            "run_duration": _ms((run.end_time or now) - run.submit_time),
        }

    def _run_page_url(self, run: StandInRun, run_id: int) -> str:
        return f"{self.url}/?o={self.workspace_id}#job/{run.job_id}/run/{run_id}"

    def _task_json(self, run: StandInRun) -> dict[str, Any]:
        task = run.task
        out: dict[str, Any] = {
            "run_id": run.task_run_id,
            "task_key": task["task_key"],
            "state": self._state_json(run),
            "status": self._status_json(run),
            "run_page_url": self._run_page_url(run, run.task_run_id),
            "attempt_number": 0,
            **{k: v for k, v in self._timings(run).items() if k != "run_duration"},
        }
        for key in ("spark_python_task", "new_cluster", "existing_cluster_id", "libraries",
                    "timeout_seconds", "depends_on", "description"):  # fmt: skip
            if task.get(key) is not None:
                out[key] = task[key]
        if run.running_time or run.life_cycle_state not in ("PENDING", "QUEUED"):
            cluster = self.clusters[run.cluster_id]
            out["cluster_instance"] = {
                "cluster_id": run.cluster_id,
                "spark_context_id": cluster.spark_context_id,
            }
        return out

    def _run_json(self, run: StandInRun) -> dict[str, Any]:
        return {
            "job_id": run.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id,
            "creator_user_name": self.user_name,
            "run_name": run.run_name,
            "run_type": "SUBMIT_RUN",
            "format": "MULTI_TASK",
            "trigger": "ONE_TIME",
            "attempt_number": 0,
            "state": self._state_json(run),
            "status": self._status_json(run),
            "run_page_url": self._run_page_url(run, run.run_id),
            "tasks": [self._task_json(run)],
            **self._timings(run),
        }

    def _runs_get(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = self._run_id_param(p)
        run = self._find_run(run_id)
        with self._lock:
            if run_id == run.run_id:
                return self._run_json(run)
            task = self._task_json(run)  # a task run looks like a one-task-less run
        return {
            **task,
            "job_id": run.job_id,
            "run_name": run.run_name,
            "run_type": "SUBMIT_RUN",
            "creator_user_name": self.user_name,
            "number_in_job": run.task_run_id,
            "original_attempt_run_id": run.task_run_id,
            "parent_run_id": run.run_id,
            "cluster_instance": task.get("cluster_instance"),
        }

    def _runs_get_output(self, p: dict[str, Any]) -> dict[str, Any]:
        run_id = self._run_id_param(p)
        run = self._find_run(run_id)
        if run_id == run.run_id:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE",
                "Retrieving the output of runs with multiple tasks is not supported. Please"
                " retrieve the output of each individual task run instead.",
            )  # fmt: skip
        out: dict[str, Any] = {"metadata": self._runs_get({"run_id": run_id})}
        if run.terminal:
            logs = (run.stdout + run.stderr).encode()
            limit = 5 * 1024 * 1024
            out["logs"] = logs[-limit:].decode(errors="replace")
            out["logs_truncated"] = len(logs) > limit
        if run.error:
            out["error"] = run.error
        if run.error_trace:
            out["error_trace"] = run.error_trace
        if run.notebook_output is not None:
            out["notebook_output"] = {"result": run.notebook_output, "truncated": False}
        return out

    def _runs_cancel(self, p: dict[str, Any]) -> dict[str, Any]:
        run = self._find_run(self._run_id_param(p))
        with self._lock:
            if not run.terminal:
                run.cancel_event.set()
                if run.life_cycle_state == "RUNNING":
                    run.life_cycle_state = "TERMINATING"
                    run.state_message = "Run cancellation requested"
                    run.terminating_time = time.time()
        return {}

    def _runs_list(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            runs = sorted(self.runs.values(), key=lambda r: -r.run_id)
            active_only = str(p.get("active_only", "")).lower() == "true"
            out = [self._run_json(r) for r in runs if not (active_only and r.terminal)]
        return {"runs": out, "has_more": False} if out else {"has_more": False}

    # ------------------------------------------------------------------ Clusters
    def _cluster_json(self, c: StandInCluster) -> dict[str, Any]:
        out: dict[str, Any] = {
            **c.spec,
            "cluster_id": c.cluster_id,
            "cluster_name": c.cluster_name,
            "cluster_source": c.source,
            "creator_user_name": self.user_name,
            "state": c.state,
            "state_message": c.state_message,
            "start_time": c.start_time,
            "spark_context_id": int(c.spark_context_id),
            "driver_healthy": c.state == "RUNNING",
            "default_tags": {
                "Vendor": "Databricks", "Creator": self.user_name,
                "ClusterName": c.cluster_name, "ClusterId": c.cluster_id,
            },
        }  # fmt: skip
        if c.terminated_time:
            out["terminated_time"] = c.terminated_time
        if c.termination_reason:
            out["termination_reason"] = c.termination_reason
        return out

    def _clusters_get(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = p.get("cluster_id")
        with self._lock:
            cluster = self.clusters.get(cid)  # type: ignore[arg-type]
            if cluster is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Cluster {cid} does not exist")
            return self._cluster_json(cluster)

    def _clusters_list(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {"clusters": [self._cluster_json(c) for c in self.clusters.values()]}

    # ------------------------------------------------------------------ running a task
    def _set(self, run: StandInRun, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(run, k, v)

    def _finish(
        self, run: StandInRun, life_cycle_state: str, result_state: str | None, message: str,
        code: str, kind: str, *, user_cancelled_or_timedout: bool = False,
    ) -> None:  # fmt: skip
        cluster = self.clusters[run.cluster_id]
        now = time.time()
        if self.terminating_seconds and life_cycle_state == "TERMINATED" and run.running_time:
            self._set(
                run, life_cycle_state="TERMINATING", terminating_time=run.terminating_time or now,
                result_state=result_state if self.result_state_while_terminating else None,
                state_message=message,
            )  # fmt: skip
            time.sleep(self.terminating_seconds)
        self._deliver_cluster_logs(run, cluster)
        with self._lock:
            run.life_cycle_state = life_cycle_state
            run.result_state = result_state
            run.state_message = message
            run.user_cancelled_or_timedout = user_cancelled_or_timedout
            run.termination = {"code": code, "type": kind, "message": message}
            if run.running_time and not run.terminating_time:
                run.terminating_time = now
            run.end_time = time.time()
            if cluster.source == "JOB":
                cluster.state = "TERMINATED"
                cluster.state_message = "Job cluster terminated"
                cluster.terminated_time = _ms(run.end_time)
                cluster.termination_reason = (
                    {"code": "JOB_FINISHED", "type": "SUCCESS"}
                    if life_cycle_state == "TERMINATED"
                    else {"code": "CLOUD_PROVIDER_LAUNCH_FAILURE", "type": "CLOUD_FAILURE",
                          "parameters": {"databricks_error_message": message}}
                )  # fmt: skip
        run.done_event.set()

    def _deliver_cluster_logs(self, run: StandInRun, cluster: StandInCluster) -> None:
        """Databricks delivers driver logs to ``<destination>/<cluster-id>/driver/``."""
        dest = ((cluster.spec.get("cluster_log_conf") or {}).get("dbfs") or {}).get("destination")
        if not dest:
            return
        with contextlib.suppress(ApiError, OSError):
            local, _ = self._dbfs_resolve(f"{dest.rstrip('/')}/{cluster.cluster_id}/driver")
            local.mkdir(parents=True, exist_ok=True)
            for name in ("stdout", "stderr"):
                src = run.dir / name
                if src.exists():
                    with open(local / name, "ab") as out:
                        out.write(src.read_bytes())

    def _lifecycle(self, run: StandInRun) -> None:
        try:
            self._lifecycle_inner(run)
        except Exception as e:  # never leave a run hanging because of a stand-in bug
            self._kill(run, grace=0)
            if not run.terminal:
                self._finish(run, "INTERNAL_ERROR", "FAILED", f"stand-in bug: {e!r}",
                             "INTERNAL_ERROR", "INTERNAL_ERROR")  # fmt: skip

    def _lifecycle_inner(self, run: StandInRun) -> None:
        cluster = self.clusters[run.cluster_id]
        # PENDING: the job cluster starts (or the run waits for the existing one).
        if run.cancel_event.wait(self.pending_seconds):
            self._finish(run, "TERMINATED", "CANCELED", "Run cancelled.", "CANCELED",
                         "SUCCESS", user_cancelled_or_timedout=True)  # fmt: skip
            return
        fault = run.fault or {}
        if fault.get("kind") == "internal_error":
            message = fault.get("message") or (
                f"Unexpected failure while waiting for the cluster ({cluster.cluster_id}) to be"
                f" ready: Cluster {cluster.cluster_id} is in unexpected state Terminated:"
                " CLOUD_PROVIDER_LAUNCH_FAILURE(CLOUD_FAILURE): stand-in injected internal error"
            )
            self._finish(run, "INTERNAL_ERROR", "FAILED", message, "CLOUD_FAILURE", "CLOUD_FAILURE")
            return
        with self._lock:
            cluster.state, cluster.state_message = "RUNNING", ""

        spec = self._prepare(run, cluster)
        if run.library_errors and self.library_check == "strict":
            lines = "; ".join(f'pypi {{package: "{s}"}}: {why}' for s, why in run.library_errors)
            message = (
                "Library installation failed for library due to user error for "
                f"{lines}. (The stand-in cannot install packages: the cluster's libraries are"
                f" those installed for {self.python_executable}.)"
            )
            self._finish(run, "INTERNAL_ERROR", "FAILED", message, "LIBRARY_INSTALLATION_ERROR",
                         "CLIENT_ERROR")  # fmt: skip
            return
        if run.cancel_event.is_set():
            self._finish(run, "TERMINATED", "CANCELED", "Run cancelled.", "CANCELED",
                         "SUCCESS", user_cancelled_or_timedout=True)  # fmt: skip
            return

        spec_path = run.dir / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        driver_dir = self.root / "clusters" / cluster.cluster_id / "driver"
        with open(run.stdout_path, "wb") as out, open(run.stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [self.python_executable, str(self.root / "runtime" / "standin_driver.py"),
                 str(spec_path)],
                cwd=driver_dir, env=run.env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        with self._lock:
            run.process, run.pid = proc, proc.pid
            if not run.cancel_event.is_set():
                run.life_cycle_state, run.state_message = "RUNNING", "In run"
            run.running_time = time.time()

        deadline = run.submit_time + run.timeout_seconds
        while True:
            if proc.poll() is not None:
                break
            if run.cancel_event.is_set():
                self._kill(run)
                self._finish(run, "TERMINATED", "CANCELED", "Run cancelled.", "USER_CANCELED",
                             "SUCCESS", user_cancelled_or_timedout=True)  # fmt: skip
                return
            if run.timeout_seconds and time.time() > deadline:
                self._kill(run)
                self._finish(
                    run, "TERMINATED", "TIMEDOUT",
                    f"Run timed out after {run.timeout_seconds} seconds.", "RUN_EXECUTION_ERROR",
                    "CLIENT_ERROR", user_cancelled_or_timedout=True,
                )  # fmt: skip
                return
            time.sleep(0.05)

        run.exit_code = proc.returncode
        result: dict[str, Any] = {}
        result_path = Path(spec["result_file"])
        if result_path.exists():
            with contextlib.suppress(ValueError):
                result = json.loads(result_path.read_text())
        if proc.returncode == 0 and result.get("ok", True):
            self._set(run, notebook_output=result.get("notebook_output"))
            self._finish(run, "TERMINATED", "SUCCESS", "", "SUCCESS", "SUCCESS")
            return
        error = result.get("error") or f"Driver exited with code {proc.returncode}"
        trace = result.get("error_trace") or run.stderr[-20000:]
        self._set(run, error=error, error_trace=trace)
        message = (
            f"Task {run.task['task_key']} failed with message: Workload failed, see run output"
            " for details. This caused all downstream tasks to get skipped."
        )
        self._finish(run, "TERMINATED", "FAILED", message, "RUN_EXECUTION_ERROR", "CLIENT_ERROR")

    def _map_fuse(self, value: str) -> str:
        """``/dbfs/x`` → the local DBFS folder (the FUSE mount); anything else unchanged."""
        if value == "/dbfs" or value.startswith("/dbfs/"):
            return str(self.dbfs_local_path("/" + value[len("/dbfs") :].lstrip("/")))
        return value

    def _prepare(self, run: StandInRun, cluster: StandInCluster) -> dict[str, Any]:
        """Work out the driver's spec and environment; check the libraries."""
        node = self.root / "clusters" / cluster.cluster_id
        for sub in ("driver", "tmp", "local_disk0"):
            (node / sub).mkdir(parents=True, exist_ok=True)
        spt = run.task["spark_python_task"]
        python_file = spt["python_file"]
        python_file = (
            str(self.dbfs_local_path(python_file))
            if python_file.startswith("dbfs:")
            else self._map_fuse(python_file)
        )
        params = [self._map_fuse(str(x)) for x in spt.get("parameters") or []]

        extra_sys_path, jars, requirements = [], [], []
        for lib in run.task.get("libraries") or []:
            if "pypi" in lib:
                requirements.append(lib["pypi"]["package"])
            elif "requirements" in lib or "whl" in lib or "egg" in lib or "jar" in lib:
                kind = next(k for k in ("requirements", "whl", "egg", "jar") if k in lib)
                uri = lib[kind]
                if not (uri.startswith("dbfs:/") or uri.startswith("/dbfs/")):
                    run.library_errors.append([uri, "the stand-in only serves DBFS libraries"])
                    continue
                if uri.startswith("dbfs:"):
                    local = self.dbfs_local_path(uri)
                else:
                    local = Path(self._map_fuse(uri))
                if not local.exists():
                    run.library_errors.append([uri, "file does not exist in DBFS"])
                elif kind == "requirements":
                    requirements += [
                        ln.split("#")[0].strip() for ln in local.read_text().splitlines()
                        if ln.split("#")[0].strip() and not ln.strip().startswith("-")
                    ]  # fmt: skip
                elif kind == "jar":
                    jars.append(str(local))
                else:
                    extra_sys_path.append(str(local))
            else:
                run.warnings.append(f"library ignored by the stand-in: {lib}")
        if requirements and self.library_check != "off":
            check = subprocess.run(
                [self.python_executable, "-c", _LIBRARY_CHECK, json.dumps(requirements)],
                capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")},
                cwd=node / "tmp", timeout=120,
            )  # fmt: skip
            if check.returncode != 0:
                run.library_errors.append(["<library check>", check.stderr.strip()[-2000:]])
            else:
                run.library_errors += json.loads(check.stdout)
        if run.library_errors and self.library_check == "warn":
            run.warnings += [f"library not satisfied: {s}: {why}" for s, why in run.library_errors]

        spec_conf = cluster.spec.get("spark_conf") or {}
        conf = {**self.spark_conf, "spark.local.dir": str(node / "local_disk0"),
                "spark.sql.warehouse.dir": str(node / "local_disk0" / "spark-warehouse"),
                **{k: str(v) for k, v in spec_conf.items()}}  # fmt: skip
        submit = ["--master", self.spark_master]
        for k, v in conf.items():
            submit += ["--conf", f"{k}={v}"]
        if jars:
            submit += ["--jars", ",".join(jars)]
        submit.append("pyspark-shell")

        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(self.extra_env)
        env.update({
            "TMPDIR": str(node / "tmp"),
            "PYTHONUNBUFFERED": "1",
            "PYSPARK_PYTHON": self.python_executable,
            "PYSPARK_DRIVER_PYTHON": self.python_executable,
            "PYSPARK_SUBMIT_ARGS": " ".join(shlex.quote(a) for a in submit),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(node / "local_disk0"),
            "DB_CLUSTER_ID": cluster.cluster_id,
            "DB_CLUSTER_NAME": cluster.cluster_name,
            "DB_IS_DRIVER": "TRUE",
            "DB_DRIVER_IP": "127.0.0.1",
            "DATABRICKS_STANDIN": "1",
            "DATABRICKS_STANDIN_RUN_ID": str(run.run_id),
            "DATABRICKS_STANDIN_CLUSTER_ID": cluster.cluster_id,
        })  # fmt: skip
        if self.emulate_runtime_version:
            m = re.match(r"^(\d+\.\d+)", str(cluster.spec.get("spark_version", "")))
            env["DATABRICKS_RUNTIME_VERSION"] = m.group(1) if m else "15.4"
        env.update({str(k): str(v) for k, v in (cluster.spec.get("spark_env_vars") or {}).items()})
        run.env = env

        driver_fault = (
            run.fault if (run.fault or {}).get("kind") in ("hang", "task_failure") else None
        )
        secrets_file = node / "secrets.json"
        secrets_file.write_text(json.dumps(self.secrets))
        secrets_file.chmod(0o600)
        return {
            "run_id": run.run_id,
            "python_file": python_file,
            "parameters": params,
            "dbfs_root": str(self.dbfs_root),
            "fuse_prefix": "/dbfs",
            "map_fuse": True,
            "isolate": True,
            "hidden_paths": [str(Path(p).resolve()) for p in self.host_only_paths],
            "allowed_paths": [str(self.root)],
            "extra_sys_path": extra_sys_path,
            "secrets_file": str(secrets_file),
            "result_file": str(run.dir / "result.json"),
            "fault": driver_fault,
        }

    def _kill(self, run: StandInRun, grace: float | None = None) -> None:
        """SIGTERM the driver's process group (Spark's JVM included), SIGKILL after a grace."""
        if run.pid is None:
            return
        grace = self.kill_grace_seconds if grace is None else grace
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and run.process_alive():
            if run.process is not None:
                run.process.poll()
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signal.SIGKILL)
        if run.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.process.wait(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """Serve a stand-in until interrupted, with the secret scope the worked configuration reads
    (`ml_assets/databricks-token`, the stand-in's own token)."""
    import argparse

    parser = argparse.ArgumentParser(description="A local stand-in for the Databricks REST API.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    args = parser.parse_args(argv)
    # SIGTERM stops it as cleanly as Ctrl-C: the runs' processes are killed, the root removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with DatabricksStandIn(port=args.port) as dbx:
        dbx.secrets = {"ml_assets": {"databricks-token": dbx.token}}
        print(f"export DATABRICKS_HOST={dbx.url} DATABRICKS_TOKEN={dbx.token}", flush=True)
        print(f"stand-in running, DBFS in {dbx.dbfs_root}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
