"""docs/bring_your_own_data.md, run as a newcomer would: its shell blocks, in order, as written.

The blocks run from a folder laid out like the repository root (`.venv` and `examples/` linked
in), whose `.ml_assets` is the project home, so nothing in the real checkout is touched.
"""

import os
import subprocess

import polars as pl
import pytest
from mlflow import MlflowClient

from ml_assets.settings import load_settings, project_root
from ml_assets_tests.docs.markdown import DOCS, code_blocks

DOC = project_root() / "docs" / "bring_your_own_data.md"

pytestmark = pytest.mark.slow


def test_the_worked_example_goes_from_csv_files_to_a_champion(tmp_path):
    assert DOC in DOCS
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(project_root() / name)
    home = tmp_path / ".ml_assets"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ML_ASSETS_", "DAGSTER_", "MLFLOW_"))
    }
    env["ML_ASSETS_HOME"] = str(home)  # what the default would be in a checkout at tmp_path
    run_block, look_block = code_blocks(DOC, "bash")

    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", run_block],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    out = ran.stdout
    for run in (
        "loans_ingest (loans/raw/applications)",
        "loans_ingest (loans/features/application_features)",
        "loans_score",
    ):
        assert f"{run}: 2026-09-01 .. 2026-10-12 succeeded" in out, out
    assert "loans_train: succeeded" in out, out
    assert "champion of loan_default: version 1 (new)" in out, out
    quarantined = "loans/raw/applications: 1 row(s) quarantined {'unparseable value': 1}, see "
    assert out.count(quarantined) == 1, out  # once for the range, not once per day
    # One line per check for the 42-day range (not one per day too), and no step-by-step log.
    assert out.count("check loans/raw/applications values: passed") == 1, out
    assert " - DEBUG - " not in ran.stderr, ran.stderr[-3000:]

    settings = load_settings({**env, "ML_ASSETS_PIPELINES": "examples/loans/pipeline.yaml"})
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.get_model_version_by_alias("loan_default", "champion").version in (1, "1")
    lake = settings.lake_root
    features = pl.read_delta(f"{lake}/loans/features/application_features").height
    assert features == 9_998  # 9,999 applications, one with amount "n/a" quarantined
    assert pl.read_delta(f"{lake}/loans/predictions/loan_default").height == features

    looked = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", look_block],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert looked.returncode == 0, looked.stderr[-3000:]
    assert "('2026-09-10.csv', 'unparseable value: column amount is not a float: n/a')" in (
        looked.stdout
    )
