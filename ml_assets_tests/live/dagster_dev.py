"""Start the real `ml-assets dev` (dagster dev: webserver + daemon) and talk to it over GraphQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


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
        deadline = time.monotonic() + 30
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
