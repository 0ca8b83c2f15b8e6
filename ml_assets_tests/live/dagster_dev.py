"""Start the real `ml-assets dev` (dagster dev: webserver + daemon) and talk to it over GraphQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIN = Path(sys.executable).parent
# `@dg.definitions` in ml_assets.definitions: the code location's one repository.
LOCATION, REPOSITORY = "ml_assets", "__repository__"

RUNS = """
query ($limit: Int) {
  runsOrError(limit: $limit) {
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}
"""
LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDev:
    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port = port
        self.process = process
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def runs(self, limit: int = 100) -> list[dict]:
        """Newest first, each with its tags as a dict."""
        results = self.graphql(RUNS, {"limit": limit})["runsOrError"]["results"]
        return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in results]

    def run(self, run_id: str) -> dict:
        return next(r for r in self.runs() if r["runId"] == run_id)

    def launch_job(
        self, job: str, run_config: dict | None = None, tags: dict[str, str] | None = None
    ) -> str:
        """What Launchpad → Launch run does: returns the new run's id."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": job,
            },
            "runConfigData": run_config or {},
            "executionMetadata": {
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]
            },
        }
        result = self.graphql(LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"could not launch {job}: {result}")
        return result["run"]["runId"]

    def wait_for_run(self, run_id: str, *, timeout: float) -> dict:
        """The run once it has finished (SUCCESS, FAILURE or CANCELED)."""

        def finished():
            run = self.run(run_id)
            return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        return self.wait_until(finished, timeout=timeout, interval=1, what=f"run {run_id}")

    def wait_until(self, predicate, *, timeout: float, interval: float = 2.0, what: str = ""):
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited early; log:\n{self.log.read_text()[-3000:]}"
                )
            try:
                value = predicate()
                if value:
                    return value
            except (OSError, RuntimeError) as error:  # server still starting
                last_error = error
            time.sleep(interval)
        raise TimeoutError(
            f"timed out waiting for {what} ({last_error}); log:\n{self.log.read_text()[-3000:]}"
        )


class WebhookReceiver:
    """A Slack-style incoming webhook on 127.0.0.1 that records every JSON body it is sent."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Slack-shaped: the path is the secret, and must never show up in a message.
        self.url = (
            f"http://127.0.0.1:{self.server.server_port}/services/T0001/B0001/s3cr3tW3bh00kP4th"
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def of_kind(self, kind: str) -> list[dict]:
        return [p for p in list(self.payloads) if p.get("ml_assets", {}).get("kind") == kind]

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def dagster_dev(env: dict[str, str], log: Path) -> Iterator[DagsterDev]:
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "ml-assets"), "dev", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so nothing outlives the test
        )
    server = DagsterDev(port, process, log)
    try:
        server.wait_until(lambda: server.graphql("{ version }"), timeout=120, what="webserver")
        yield server
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Nothing of the group may survive (webserver, daemon, code servers, run workers).
        survivors = _group_members(process.pid)
        # A code server without its webserver exits at its heartbeat timeout; on a loaded
        # machine that can take most of a minute.
        deadline = time.monotonic() + 75
        while survivors and time.monotonic() < deadline:
            time.sleep(0.5)
            survivors = _group_members(process.pid)
        if survivors:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"dagster dev left processes behind after SIGINT: {survivors}")


def _group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes in a process group, as command lines."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(f"{stat.parent.name}: {cmdline[:120]}")
    return members
