"""Materialize every pipeline's graph once, without the UI (for scripts and CI)."""

from __future__ import annotations

import dagster as dg

from ml_assets.definitions import build_definitions
from ml_assets.ingest.landing import scan_landing
from ml_assets.pipeline.keys import model_keys
from ml_assets.pipeline.spec import load_spec
from ml_assets.settings import Settings
from ml_assets.storage.delta import table_exists

# Dagster's console logger prints every step event at DEBUG; the summary below says what matters.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _check_line(check: dg.AssetCheckEvaluation) -> str:
    """One line per check; a failure says what, where and how much, from its metadata."""
    name = f"{check.asset_key.to_user_string()} {check.check_name}"
    if check.passed:
        return f"  check {name}: passed"
    # A WARN check's failure blocks nothing downstream: it must not read like one that does.
    verdict = "warning" if check.severity == dg.AssetCheckSeverity.WARN else "FAILED"
    details = {key: value.value for key, value in check.metadata.items()}
    where = (
        f" ({details['failed_days']} of {details['days']} days failed)"
        if "failed_days" in details
        else ""
    )
    summary = details.get("summary", "")
    return f"  check {name}: {verdict}{where} {summary}".rstrip()


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
        days_range = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        }
        # Ingest and features over every landed day; then train, validate, promote; then score
        # the same days with whatever champion that left.
        steps = [(f"{spec.name}_ingest", days_range)]
        champion_key = model_keys(spec).champion if spec.model is not None else None
        if spec.model is not None:
            steps += [(f"{spec.name}_train", {}), (f"{spec.name}_score", days_range)]
        for job_name, tags in steps:
            job = defs.resolve_job_def(job_name)
            result = job.execute_in_process(
                run_config=QUIET, instance=instance, tags=tags, raise_on_error=False
            )
            verdict = "succeeded" if result.success else "FAILED"
            print(f"{job_name}: {first} .. {last} {verdict} (run {result.run_id})")
            for event in result.all_events:
                if event.is_step_failure:
                    error = event.step_failure_data.error
                    while error.cause is not None:  # the user's exception, not the wrapper
                        error = error.cause
                    if error.cls_name != "DagsterAssetCheckFailedError":  # its check line says it
                        print(f"  {event.step_key} failed: {error.message.strip()}")
                elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                    check = event.event_specific_data
                    # A range run also records each day's verdict; the range's line sums them up.
                    if check.partition is None or first == last:
                        print(_check_line(check))
                elif event.is_step_materialization and event.asset_key == champion_key:
                    metadata = event.materialization.metadata
                    change = "new" if metadata["changed"].value else "unchanged"
                    print(
                        f"  champion of {champion_key.path[-1].removesuffix('_champion')}: "
                        f"version {metadata['champion_version'].value} ({change})"
                    )
            if not result.success:
                status = 1
                break
        graph = defs.resolve_asset_graph()
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path):
            uri = "/".join([settings.lake_root, *key.path])
            if key.path[0] == spec.name and table_exists(uri):
                print(f"  {key.to_user_string():45s} {uri}")
        if spec.model is not None:
            print(f"  MLflow: {settings.mlflow_tracking_uri} (`ml-assets mlflow-ui` to browse)")
    print(f"Dagster instance (history for `ml-assets dev`): {settings.dagster_home}")
    return status
