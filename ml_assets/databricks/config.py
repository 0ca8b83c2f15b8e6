"""The compute configuration (`compute.yaml`): profiles, prices, routing, launcher settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from ml_assets.settings import SettingsError

LAYERS = ("raw", "features", "models")


@dataclass(frozen=True)
class ComputeProfile:
    name: str
    node_type_id: str
    num_workers: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    spot: bool = False
    spark_conf: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def max_nodes(self) -> int:
        """Driver plus the most workers the profile can have (an upper bound for autoscale)."""
        workers = self.max_workers if self.max_workers is not None else (self.num_workers or 0)
        return 1 + workers

    def cluster_spec(self, spark_version: str) -> dict[str, Any]:
        """The launcher's `run_config.cluster.new` for this profile."""
        size: dict[str, Any] = (
            {"autoscale": {"min_workers": self.min_workers, "max_workers": self.max_workers}}
            if self.max_workers is not None
            else {"num_workers": self.num_workers or 0}
        )
        spec: dict[str, Any] = {
            "spark_version": spark_version,
            "nodes": {"node_types": {"node_type_id": self.node_type_id}},
            "size": size,
            "custom_tags": [{"key": "ml_assets_profile", "value": self.name}],
        }
        if self.spark_conf:
            spec["spark_conf"] = dict(self.spark_conf)
        if self.spot:
            spec["aws_attributes"] = {"availability": "SPOT_WITH_FALLBACK", "first_on_demand": 1}
        return spec


@dataclass(frozen=True)
class NodePrice:
    dbu_per_hour: float
    vm_price_per_hour: float


@dataclass(frozen=True)
class PriceTable:
    dbu_price: float
    node_types: dict[str, NodePrice]
    spot_discount: float = 1.0

    def hourly_cost(self, profile: ComputeProfile) -> float:
        """USD per hour of `profile` at its largest size: driver on demand, workers maybe spot."""
        price = self.node_types.get(profile.node_type_id)
        if price is None:
            raise SettingsError(
                f"compute profile {profile.name!r}: node type {profile.node_type_id!r} has no "
                "entry under prices.node_types"
            )
        workers = profile.max_nodes - 1
        vm_workers = workers * price.vm_price_per_hour * (self.spot_discount if profile.spot else 1)
        dbus = profile.max_nodes * price.dbu_per_hour * self.dbu_price
        return dbus + price.vm_price_per_hour + vm_workers


@dataclass(frozen=True)
class RoutingConfig:
    spark_min_bytes: int = 2_000_000_000
    spark_min_rows: int = 50_000_000
    streaming_min_bytes: int = 8_000_000_000


@dataclass(frozen=True)
class LauncherSettings:
    spark_version: str = "15.4.x-scala2.12"
    staging_prefix: str = "/dagster_staging"
    poll_interval_sec: float = 10
    max_completion_wait_time_seconds: int = 7200
    timeout_seconds: int = 7200
    wait_for_logs: bool = False
    libraries: tuple[str, ...] = ()
    # INTERNAL_ERROR runs (the cluster never came up) are submitted again this many times.
    internal_error_retries: int = 2
    # How long each Databricks API call retries a workspace that does not answer (databricks-sdk
    # retries for 300 s by default, and the launcher's calls add up: see launcher.py).
    api_retry_seconds: int = 30


@dataclass(frozen=True)
class ComputeConfig:
    profiles: dict[str, ComputeProfile]
    prices: PriceTable
    routing: RoutingConfig
    launcher: LauncherSettings
    layer_defaults: dict[str, str]
    overrides: dict[str, str]
    engines: dict[str, str] = field(default_factory=dict)

    def engine_for(self, asset_key: dg.AssetKey, default: str) -> str:
        return self.engines.get(asset_key.to_user_string(), default)

    def profile_name_for(self, asset_key: dg.AssetKey, layer: str) -> str:
        name = self.overrides.get(asset_key.to_user_string()) or self.layer_defaults.get(layer)
        if name is None:
            raise SettingsError(f"compute config: no profile for layer {layer!r}")
        return name


# Resource keys of step launchers start with this; runs that use one carry DATABRICKS_RUN_TAG.
LAUNCHER_KEY_PREFIX = "databricks_"
# Run tag of runs whose steps start Databricks job clusters; dagster.yaml limits how many run
# at once (`concurrency.runs.tag_concurrency_limits`).
DATABRICKS_RUN_TAG = "ml_assets/databricks"


def launcher_resource_key(profile: str) -> str:
    """The resource key of the step launcher that runs steps on `profile`'s clusters."""
    return f"{LAUNCHER_KEY_PREFIX}{profile}"


def _profile(name: str, raw: dict[str, Any]) -> ComputeProfile:
    auto = raw.get("autoscale") or {}
    if "node_type_id" not in raw:
        raise SettingsError(f"compute profile {name!r} needs node_type_id")
    if not auto and "num_workers" not in raw:
        raise SettingsError(f"compute profile {name!r} needs num_workers or autoscale")
    return ComputeProfile(
        name=name,
        node_type_id=str(raw["node_type_id"]),
        num_workers=None if auto else int(raw["num_workers"]),
        min_workers=int(auto["min_workers"]) if auto else None,
        max_workers=int(auto["max_workers"]) if auto else None,
        spot=bool(raw.get("spot", False)),
        spark_conf={str(k): str(v) for k, v in (raw.get("spark_conf") or {}).items()},
        description=str(raw.get("description") or ""),
    )


def parse_compute_config(raw: dict[str, Any], *, source: str = "compute config") -> ComputeConfig:
    try:
        profiles = {name: _profile(name, p) for name, p in (raw.get("profiles") or {}).items()}
        prices_raw = raw.get("prices") or {}
        prices = PriceTable(
            dbu_price=float(prices_raw.get("dbu_price", 0)),
            node_types={
                str(k): NodePrice(float(v["dbu_per_hour"]), float(v["vm_price_per_hour"]))
                for k, v in (prices_raw.get("node_types") or {}).items()
            },
            spot_discount=float(prices_raw.get("spot_discount", 1.0)),
        )
        routing = RoutingConfig(**{k: int(v) for k, v in (raw.get("routing") or {}).items()})
        launcher_raw = dict(raw.get("launcher") or {})
        launcher_raw["libraries"] = tuple(launcher_raw.get("libraries") or ())
        launcher = LauncherSettings(**launcher_raw)
    except (TypeError, KeyError, ValueError) as error:
        raise SettingsError(f"{source}: {error}") from None
    assets = raw.get("assets") or {}
    defaults = {str(k): str(v) for k, v in (assets.get("defaults") or {}).items()}
    overrides = {str(k): str(v) for k, v in (assets.get("overrides") or {}).items()}
    engines = {str(k): str(v) for k, v in (assets.get("engines") or {}).items()}
    for where, engine in engines.items():
        if engine not in ("auto", "polars", "spark"):
            raise SettingsError(f"{source}: assets.engines.{where}: unknown engine {engine!r}")
    for where, name in [*defaults.items(), *overrides.items()]:
        if name not in profiles:
            raise SettingsError(f"{source}: assets.{where} names unknown profile {name!r}")
    return ComputeConfig(profiles, prices, routing, launcher, defaults, overrides, engines)


@functools.cache
def load_compute_config(path: Path) -> ComputeConfig:
    return parse_compute_config(yaml.safe_load(Path(path).read_text()) or {}, source=str(path))


@dataclass(frozen=True)
class AssetCompute:
    """Where and how one asset runs: its compute profile (launcher key) and requested engine."""

    profile: str
    launcher_key: str
    engine: str


def asset_compute(asset_key: dg.AssetKey, layer: str) -> AssetCompute:
    """Read at definition time from the deployment's settings and compute config."""
    from ml_assets.settings import load_settings

    settings = load_settings()
    compute = load_compute_config(settings.compute_config)
    profile = compute.profile_name_for(asset_key, layer)
    return AssetCompute(
        profile=profile,
        launcher_key=launcher_resource_key(profile),
        engine=compute.engine_for(asset_key, settings.engine),
    )
