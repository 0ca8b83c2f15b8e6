"""Deployment settings: the only module that reads the environment.

Everything else receives a `Settings` object. Asset bodies never look at the deployment; the
resources built from these settings differ instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Deployment = Literal["local", "dev", "prod"]
DEPLOYMENTS: tuple[Deployment, ...] = ("local", "dev", "prod")

# The bundled demo pipeline, declared through the same public mechanism as a user's pipeline.
DEMO_PIPELINE_SPEC = Path(__file__).parent / "pipelines" / "fraud" / "pipeline.yaml"


class SettingsError(ValueError):
    """A deployment setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    deployment: Deployment
    # Root folder for local state (Delta lake, landing, MLflow, Dagster home).
    home: Path
    # Where Delta tables live: a local folder, or a URI (dbfs:/, /Volumes/..., s3://) elsewhere.
    lake_root: str
    # Where landing files arrive, one sub-folder per pipeline and source.
    landing_root: Path
    # Pipeline spec files to load.
    pipeline_specs: tuple[Path, ...]
    # MLflow: tracking store and model registry (local: sqlite + an artifact folder).
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None
    mlflow_artifact_root: str | None
    mlflow_ui_url: str | None

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"


def project_root() -> Path:
    """The checkout this package lives in, or the working directory for an installed package."""
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / "pyproject.toml").exists() else Path.cwd()


def _pipeline_specs(env: Mapping[str, str]) -> tuple[Path, ...]:
    raw = env.get("ML_ASSETS_PIPELINES", "").strip()
    if not raw:
        return (DEMO_PIPELINE_SPEC,)
    specs: list[Path] = []
    for entry in raw.split(os.pathsep):
        path = Path(entry).expanduser()
        if path.is_dir():
            specs.extend(sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")))
        elif path.is_file():
            specs.append(path)
        else:
            raise SettingsError(
                f"ML_ASSETS_PIPELINES: {entry!r} is neither a spec file nor a folder"
            )
    if not specs:
        raise SettingsError(f"ML_ASSETS_PIPELINES={raw!r} names no *.yaml pipeline spec")
    return tuple(specs)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    deployment = env.get("ML_ASSETS_DEPLOYMENT", "local").strip() or "local"
    if deployment not in DEPLOYMENTS:
        raise SettingsError(
            f"ML_ASSETS_DEPLOYMENT={deployment!r} is not one of {', '.join(DEPLOYMENTS)}"
        )
    home = Path(env.get("ML_ASSETS_HOME") or project_root() / ".ml_assets").expanduser().resolve()

    if deployment == "local":
        lake_root = env.get("ML_ASSETS_LAKE_ROOT") or str(home / "lake")
        landing_root = Path(env.get("ML_ASSETS_LANDING_ROOT") or home / "landing")
    else:
        # Shared deployments must say where their data lives: a guess would write elsewhere.
        missing = [v for v in ("ML_ASSETS_LAKE_ROOT", "ML_ASSETS_LANDING_ROOT") if not env.get(v)]
        if missing:
            raise SettingsError(
                f"ML_ASSETS_DEPLOYMENT={deployment} needs {' and '.join(missing)} to be set"
            )
        lake_root = env["ML_ASSETS_LAKE_ROOT"]
        landing_root = Path(env["ML_ASSETS_LANDING_ROOT"])

    if deployment == "local":
        tracking_uri = env.get("ML_ASSETS_MLFLOW_TRACKING_URI") or (
            f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
        )
        artifact_root = env.get("ML_ASSETS_MLFLOW_ARTIFACT_ROOT") or str(
            home / "mlflow" / "artifacts"
        )
        ui_url = env.get("ML_ASSETS_MLFLOW_UI_URL", "http://127.0.0.1:5000")
    else:
        # On Databricks: "databricks" tracking and, with Unity Catalog, "databricks-uc" registry.
        tracking_uri = env.get("ML_ASSETS_MLFLOW_TRACKING_URI", "databricks")
        artifact_root = env.get("ML_ASSETS_MLFLOW_ARTIFACT_ROOT")
        ui_url = env.get("ML_ASSETS_MLFLOW_UI_URL")

    return Settings(
        deployment=deployment,  # type: ignore[arg-type]
        home=home,
        lake_root=lake_root,
        landing_root=landing_root.expanduser(),
        pipeline_specs=_pipeline_specs(env),
        mlflow_tracking_uri=tracking_uri,
        mlflow_registry_uri=env.get("ML_ASSETS_MLFLOW_REGISTRY_URI") or None,
        mlflow_artifact_root=artifact_root,
        mlflow_ui_url=ui_url or None,
    )
