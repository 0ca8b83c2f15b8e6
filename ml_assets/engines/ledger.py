"""Per-step state shared by an asset body and the IO manager that writes its output.

The real work of a lazy output (Polars LazyFrame, Spark DataFrame) happens when the IO manager
writes it, after the body returned; the compute time and the routing decision therefore travel
from the body to `handle_output` through this process-local ledger, keyed by run and asset.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg


@dataclass
class StepEntry:
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)
    profile: str | None = None
    decision: Any = None


_LOCK = threading.Lock()
_ENTRIES: dict[tuple[str, str], StepEntry] = {}


def _key(run_id: str, asset_key: dg.AssetKey) -> tuple[str, str]:
    return run_id, asset_key.to_user_string()


def start(run_id: str, asset_key: dg.AssetKey, *, profile: str | None = None) -> StepEntry:
    with _LOCK:
        entry = _ENTRIES[_key(run_id, asset_key)] = StepEntry(profile=profile)
        return entry


def get(run_id: str, asset_key: dg.AssetKey) -> StepEntry | None:
    with _LOCK:
        return _ENTRIES.get(_key(run_id, asset_key))


def pop(run_id: str, asset_key: dg.AssetKey) -> StepEntry | None:
    with _LOCK:
        return _ENTRIES.pop(_key(run_id, asset_key), None)
