"""Deployment settings: local by default, explicit elsewhere."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_assets.cli import _port_in_use, demo_data_if_missing
from ml_assets.settings import DEMO_PIPELINE_SPEC, SettingsError, load_settings

PROJECT = Path(__file__).resolve().parent.parent


def test_local_default_keeps_everything_under_the_project_home(tmp_path):
    settings = load_settings({"ML_ASSETS_HOME": str(tmp_path)})
    assert settings.deployment == "local"
    assert settings.lake_root == str(tmp_path / "lake")
    assert settings.landing_root == tmp_path / "landing"
    assert settings.dagster_home == tmp_path / "dagster_home"
    assert settings.pipeline_specs == (DEMO_PIPELINE_SPEC,)


def test_default_home_is_git_ignored_folder_in_the_checkout():
    settings = load_settings({})
    root = Path(__file__).resolve().parents[1]
    assert settings.home == root / ".ml_assets"
    assert "/.ml_assets/" in (root / ".gitignore").read_text()


def test_unknown_deployment_is_refused():
    with pytest.raises(SettingsError, match="ML_ASSETS_DEPLOYMENT='staging'"):
        load_settings({"ML_ASSETS_DEPLOYMENT": "staging"})


def test_shared_deployments_must_say_where_data_lives():
    with pytest.raises(SettingsError, match="ML_ASSETS_LAKE_ROOT and ML_ASSETS_LANDING_ROOT"):
        load_settings({"ML_ASSETS_DEPLOYMENT": "prod"})
    settings = load_settings(
        {
            "ML_ASSETS_DEPLOYMENT": "prod",
            "ML_ASSETS_LAKE_ROOT": "/Volumes/ml/prod/lake",
            "ML_ASSETS_LANDING_ROOT": "/Volumes/ml/prod/landing",
        }
    )
    assert settings.lake_root == "/Volumes/ml/prod/lake"


def test_pipeline_list_names_a_missing_path(tmp_path):
    with pytest.raises(SettingsError, match="nope"):
        load_settings({"ML_ASSETS_PIPELINES": str(tmp_path / "nope")})


@pytest.mark.parametrize(
    ("pipelines", "message"),
    [
        ("nowhere", "ML_ASSETS_PIPELINES: 'nowhere' is neither a spec file nor a folder"),
        ("shop.yaml", "shop.yaml: invalid pipeline spec: sources.orders.columns.total.type:"),
    ],
)  # fmt: skip
def test_the_cli_reports_a_configuration_mistake_in_one_line(tmp_path, pipelines, message):
    (tmp_path / "shop.yaml").write_text(
        'name: shop\nstart_date: "2026-01-01"\nsources:\n  orders:\n    event_time: ts\n'
        "    primary_key: [id]\n    columns: {id: string, ts: datetime, total: money}\n"
    )
    env = {**os.environ, "ML_ASSETS_HOME": str(tmp_path / "home"), "ML_ASSETS_PIPELINES": pipelines}
    ran = subprocess.run(
        [str(Path(sys.executable).parent / "ml-assets"), "run", "--demo-days", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 2
    assert message in ran.stderr
    assert "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


def test_demo_data_is_written_only_for_the_demo_pipeline_and_only_once(tmp_path):
    """`make run` asks for demo data: a user running only their own pipeline gets none (it
    wrote 150,000 fraud rows into their landing root), and existing files are never rewritten
    (the sensor would ingest them all again)."""
    own = load_settings(
        {
            "ML_ASSETS_HOME": str(tmp_path / "own"),
            "ML_ASSETS_PIPELINES": str(PROJECT / "examples" / "loans" / "pipeline.yaml"),
        }
    )
    assert not demo_data_if_missing(own, days=2, rows_per_day=10)
    assert not (own.landing_root / "fraud").exists()

    demo = load_settings({"ML_ASSETS_HOME": str(tmp_path / "demo")})
    assert demo_data_if_missing(demo, days=2, rows_per_day=10)
    written = sorted((demo.landing_root / "fraud" / "transactions").iterdir())
    assert len(written) == 2
    changed = [path.stat().st_ctime_ns for path in written]
    assert not demo_data_if_missing(demo, days=2, rows_per_day=10)
    assert [path.stat().st_ctime_ns for path in written] == changed


def test_a_port_left_in_time_wait_by_a_stopped_server_counts_as_free():
    """`make run` right after stopping the previous one refused for about a minute: the old
    server's closed connections (TIME_WAIT) still held the port for a bind without
    SO_REUSEADDR, though nothing listened."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _port_in_use("127.0.0.1", port)  # listening: in use
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: its end goes to TIME_WAIT
            client.recv(1)
    time.sleep(0.2)  # the last FIN/ACK: the server's side is now in TIME_WAIT
    assert not _port_in_use("127.0.0.1", port)


def test_every_variable_the_settings_read_is_documented():
    """A setting nobody can find is a setting nobody can use (or audit)."""
    import re

    read = set(
        re.findall(
            r'"(ML_ASSETS_[A-Z_]+|DATABRICKS_[A-Z_]+)"',
            (PROJECT / "ml_assets" / "settings.py").read_text(),
        )
    )
    documented = (PROJECT / "README.md").read_text() + (
        PROJECT / "docs" / "databricks.md"
    ).read_text()
    assert read, "the pattern no longer finds the variables"
    assert {name for name in read if f"`{name}`" not in documented} == set()


def test_credentials_are_not_forwarded_to_the_cluster_nor_printed(tmp_path):
    """The cluster's run config (and with it these variables) is stored in DBFS."""
    from ml_assets.settings import redact_uri

    store = "postgresql://ml:S3cretPw@db.internal/mlflow"
    settings = load_settings(
        {
            "ML_ASSETS_DEPLOYMENT": "dev",
            "ML_ASSETS_LAKE_ROOT": str(tmp_path / "lake"),
            "ML_ASSETS_LANDING_ROOT": str(tmp_path / "landing"),
            "ML_ASSETS_MLFLOW_TRACKING_URI": store,
            "DATABRICKS_HOST": "https://dbc-1.cloud.databricks.com",
            "DATABRICKS_TOKEN": "dapi-FAKE-SECRET-123",
        }
    )
    forwarded = dict(settings.remote_env)
    assert forwarded["ML_ASSETS_LAKE_ROOT"] == str(tmp_path / "lake")
    assert forwarded["DATABRICKS_HOST"] == "https://dbc-1.cloud.databricks.com"
    assert "S3cretPw" not in repr(forwarded) and "FAKE-SECRET" not in repr(forwarded)
    assert redact_uri(f"MLflow: {store}") == "MLflow: postgresql://ml:***@db.internal/mlflow"
    assert redact_uri("sqlite:///home/me/mlflow.db") == "sqlite:///home/me/mlflow.db"


def test_a_local_mlflow_store_off_local_keeps_its_artifacts_next_to_it(tmp_path):
    """dev against the stand-in with a sqlite store: without an artifact root MLflow wrote
    ./mlruns into whatever folder `ml-assets run` started in (the checkout)."""
    base = {
        "ML_ASSETS_DEPLOYMENT": "dev",
        "ML_ASSETS_LAKE_ROOT": str(tmp_path / "lake"),
        "ML_ASSETS_LANDING_ROOT": str(tmp_path / "landing"),
        "ML_ASSETS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    assert load_settings(base).mlflow_artifact_root == str(tmp_path / "artifacts")
    chosen = {**base, "ML_ASSETS_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "elsewhere")}
    assert load_settings(chosen).mlflow_artifact_root == str(tmp_path / "elsewhere")
    # Databricks' own tracking keeps its workspace default.
    hosted = {**base, "ML_ASSETS_MLFLOW_TRACKING_URI": "databricks"}
    assert load_settings(hosted).mlflow_artifact_root is None


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("dev", ["(default: 127.0.0.1)", "(default: 3000)"]),
        ("serve", ["(default: 127.0.0.1)", "(default: 5001)", "(default: champion)"]),
        ("mlflow-ui", ["(default: 5000)"]),
        ("run", ["(default: 30)", "(default: 5000)"]),
    ],
)
def test_cli_help_shows_each_default(command, shown, capsys):
    from ml_assets.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert all(default in text for default in shown), text
    assert "(default: None)" not in text
