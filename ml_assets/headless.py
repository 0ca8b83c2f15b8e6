"""Materialize every pipeline's graph once, without the UI (for scripts and CI)."""

from __future__ import annotations

import dagster as dg

from ml_assets.definitions import build_definitions
from ml_assets.ingest.landing import scan_landing
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import Settings
from ml_assets.storage.delta import table_exists


def materialize_all(settings: Settings) -> int:
    """One single-run range per pipeline over the days its landing folders hold."""
    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    status = 0
    for path in settings.pipeline_specs:
        spec = load_spec(path)
        days = {
            file.day
            for name, source in spec.sources.items()
            for file in scan_landing(
                spec.landing_folder(name, settings.landing_root), source.file_suffixes
            )[0]
        }
        if not days:
            print(f"{spec.name}: no landing files under {settings.landing_root / spec.name}")
            status = 1
            continue
        first, last = min(days).isoformat(), max(days).isoformat()
        job = defs.resolve_job_def(f"{spec.name}_ingest")
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            raise_on_error=False,
        )
        verdict = "succeeded" if result.success else "FAILED"
        print(f"{spec.name}: {first} .. {last} {verdict} (run {result.run_id})")
        if not result.success:
            status = 1
            for event in result.all_events:
                if event.is_step_failure:
                    print(f"  {event.step_key}: {event.step_failure_data.error.message.strip()}")
        for key in sorted(job.asset_layer.executable_asset_keys, key=lambda k: k.path):
            uri = "/".join([settings.lake_root, *key.path])
            if table_exists(uri):
                print(f"  {key.to_user_string():45s} {uri}")
    print(f"Dagster instance (history for `ml-assets dev`): {settings.dagster_home}")
    return status
