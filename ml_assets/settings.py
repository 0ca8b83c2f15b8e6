"""Deployment settings: the only module that reads the environment.

Everything else receives a `Settings` object. Asset bodies never look at the deployment; the
resources built from these settings differ instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Deployment = Literal["local", "dev", "prod"]
DEPLOYMENTS: tuple[Deployment, ...] = ("local", "dev", "prod")

# The bundled demo pipeline, declared through the same public mechanism as a user's pipeline.
DEMO_PIPELINE_SPEC = Path(__file__).parent / "pipelines" / "fraud" / "pipeline.yaml"
# Compute profiles, prices, engine-routing thresholds and launcher settings (see
# docs/databricks.md); ML_ASSETS_COMPUTE_CONFIG points at a replacement.
DEFAULT_COMPUTE_CONFIG = Path(__file__).parent / "databricks" / "compute.yaml"
ENGINES = ("auto", "polars", "spark")
# Defaults for MLflow's own variables wherever we use MLflow (unless the environment sets them):
# MLflow draws a progress bar for every artifact download, so every model load, which fills the
# Dagster UI's compute logs and `ml-assets run`/`serve` output with carriage returns.
QUIET_MLFLOW_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


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
    # --- Spark, Databricks, engine routing, costs (all optional; local needs none of them) ---
    # The workspace URL (DATABRICKS_HOST); dev/prod need it.
    databricks_host: str | None = None
    # The *name* of the variable that holds the token: its value is never read here, never
    # logged and never put into run config (the launcher resolves {"env": name} itself).
    databricks_token_env: str = "DATABRICKS_TOKEN"
    # Whether that variable is set (checked before a run; the value itself is not kept).
    databricks_token_set: bool = False
    # Databricks secret (scope, key) that gives the cluster the same token variable.
    databricks_token_secret: tuple[str, str] = ("ml_assets", "databricks-token")
    compute_config: Path = DEFAULT_COMPUTE_CONFIG
    # Default engine of raw/feature assets: auto | polars | spark.
    engine: str = "auto"
    # Spark master for local Spark (e.g. "local[2]"); None: no Spark locally, so "auto" never
    # picks it. dev/prod run on the cluster's own session.
    spark_master: str | None = None
    # Local cost: price per CPU hour (0 by default: a laptop is free).
    local_cpu_price_per_hour: float = 0.0
    # Where the code shipped to Databricks is staged (a clean copy of ml_assets/).
    code_staging_dir: Path | None = None
    # ML_ASSETS_* settings (plus DATABRICKS_HOST) forwarded to the cluster, whose resources are
    # rebuilt from its own environment.
    remote_env: tuple[tuple[str, str], ...] = ()
    # Webhook for notifications (Slack-compatible); None: nothing is sent. A secret: never
    # logged, never forwarded to the cluster.
    webhook_url: str | None = None

    @property
    def uses_databricks(self) -> bool:
        return self.deployment != "local"

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


# The user info of a URL that carries a password: `postgresql://ml:<password>@db/mlflow`.
# Shared with the notifications' scrubbing (ml_assets/notify/scrub.py).
URI_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):[^/\s@]+(?=@)")


def redact_uri(text: str) -> str:
    """`text` with the password of any URL in it replaced by `***`, the user kept."""
    return URI_PASSWORD.sub(r"\1:***", text)


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
        if artifact_root is None and tracking_uri.startswith("sqlite:///"):
            # A local store (e.g. trying dev against the Databricks stand-in): MLflow would put
            # its artifacts in ./mlruns of whatever folder the process started in.
            store = Path(tracking_uri.removeprefix("sqlite:///"))
            artifact_root = str(store.parent / "artifacts")
        ui_url = env.get("ML_ASSETS_MLFLOW_UI_URL")

    databricks_host = (env.get("DATABRICKS_HOST") or "").strip() or None
    engine = (env.get("ML_ASSETS_ENGINE") or "auto").strip()
    if engine not in ENGINES:
        raise SettingsError(f"ML_ASSETS_ENGINE={engine!r} is not one of {', '.join(ENGINES)}")
    secret = (env.get("ML_ASSETS_DATABRICKS_TOKEN_SECRET") or "ml_assets/databricks-token").strip()
    scope, _, key = secret.partition("/")
    if not scope or not key:
        raise SettingsError(
            f"ML_ASSETS_DATABRICKS_TOKEN_SECRET={secret!r} must look like <scope>/<key>"
        )
    compute_config = Path(env.get("ML_ASSETS_COMPUTE_CONFIG") or DEFAULT_COMPUTE_CONFIG)
    if not compute_config.is_file():
        raise SettingsError(f"ML_ASSETS_COMPUTE_CONFIG: {str(compute_config)!r} is not a file")
    try:
        cpu_price = float(env.get("ML_ASSETS_LOCAL_CPU_PRICE_PER_HOUR") or 0)
    except ValueError:
        raise SettingsError(
            "ML_ASSETS_LOCAL_CPU_PRICE_PER_HOUR must be a number, got "
            f"{env.get('ML_ASSETS_LOCAL_CPU_PRICE_PER_HOUR')!r}"
        ) from None
    staging = env.get("ML_ASSETS_DATABRICKS_CODE_DIR")
    token_env = (env.get("ML_ASSETS_DATABRICKS_TOKEN_ENV") or "DATABRICKS_TOKEN").strip()
    # Never forward a credential-looking variable, whatever its prefix, nor a URI with a
    # password in it (a database-backed MLflow store): the cluster's run config is stored.
    remote_env = tuple(
        sorted(
            (k, v)
            for k, v in env.items()
            if (
                (k.startswith("ML_ASSETS_") or k == "DATABRICKS_HOST")
                and not any(word in k for word in ("TOKEN", "SECRET", "PASSWORD", "WEBHOOK"))
                and not URI_PASSWORD.search(v)
            )
            or k == "ML_ASSETS_DATABRICKS_TOKEN_SECRET"
        )
    )

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
        databricks_host=databricks_host,
        databricks_token_env=token_env,
        databricks_token_set=bool(env.get(token_env)),
        databricks_token_secret=(scope, key),
        compute_config=compute_config,
        engine=engine,
        spark_master=(env.get("ML_ASSETS_SPARK_MASTER") or "").strip() or None,
        local_cpu_price_per_hour=cpu_price,
        code_staging_dir=Path(staging).expanduser() if staging else None,
        remote_env=remote_env,
        webhook_url=(env.get("ML_ASSETS_WEBHOOK_URL") or "").strip() or None,
    )
