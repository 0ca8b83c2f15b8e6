"""Materialize every pipeline's graph once, without the UI (for scripts and CI)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from ml_assets.definitions import build_definitions
from ml_assets.ingest.landing import scan_landing
from ml_assets.pipeline.costs import cost_report
from ml_assets.pipeline.keys import (
    contiguous_ranges,
    feature_key,
    ingest_job_name,
    model_keys,
    partition_bounds,
    raw_key,
)
from ml_assets.pipeline.spec import PipelineSpec, load_spec
from ml_assets.settings import Settings, redact_uri
from ml_assets.storage.delta import table_exists

# Dagster's console logger prints every step event, and a failed step's whole traceback at
# ERROR; the summary below says what matters, failures included.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Which process runs a headless run: nothing else can tell that it died (killed, out of
# memory), since no run launcher or daemon watches a run executed in process. Left STARTED, such
# a run would hold its pipeline's place in the run queue for good.
PROCESS_TAG = "ml_assets/headless_process"


def _check_line(check: dg.AssetCheckEvaluation) -> str:
    """One line per check; a failure says what, where and how much, from its metadata."""
    name = f"{check.asset_key.to_user_string()} {check.check_name}"
    if check.passed:
        return f"  check {name}: passed"
    # A WARN check's failure blocks nothing downstream: it must not read like one that does.
    verdict = "warning" if check.severity == dg.AssetCheckSeverity.WARN else "FAILED"
    details = {key: value.value for key, value in check.metadata.items()}
    where = ""
    if "failed_days" in details:  # a quality rule over a range: which days
        days = sorted(details.get("failing", {}))
        shown = ", ".join(days[:SHOWN_DAYS]) + (", ..." if len(days) > SHOWN_DAYS else "")
        where = f" ({details['failed_days']} of {details['days']} days failed: {shown})"
    summary = details.get("summary") or _gate_summary(details)
    return f"  check {name}: {verdict}{where} {summary}".rstrip()


# Failing days listed by name in a check's line; the check's metadata in the UI has them all.
SHOWN_DAYS = 5


def _gate_summary(details: dict) -> str:
    """A model gate's findings (see ml_assets.pipeline.validation.gate_verdicts): the metrics
    short of their floor, worse than the champion's, or the leaky features."""
    found = [
        f"{name}: {value}"
        for key in ("failing", "worse", "leaky_features")
        if isinstance(details.get(key), dict)
        for name, value in details[key].items()
    ]
    return "; ".join(found)


def _range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def _root_cause(error: SerializableErrorInfo) -> SerializableErrorInfo:
    while error.cause is not None:  # the user's exception, not Dagster's wrapper
        error = error.cause
    return error


def _report(
    result: dg.ExecuteInProcessResult | dg.ExecuteJobResult,
    label: str,
    one_day: bool,
    champion_key: dg.AssetKey | None,
) -> None:
    """The run's verdict, its failed steps (or why the run failed before any step, such as a
    resource that could not be set up), one line per check, the rows a raw table quarantined
    and the champion it left."""
    verdict = "succeeded" if result.success else "FAILED"
    print(f"{label} {verdict} (run {result.run_id})")
    quarantine_reported: set[dg.AssetKey] = set()
    steps_failed = any(event.is_step_failure for event in result.all_events)
    for event in result.all_events:
        if event.is_step_failure:
            error = _root_cause(event.step_failure_data.error)
            if error.cls_name != "DagsterAssetCheckFailedError":  # its check line says it
                print(f"  {event.step_key} failed: {error.message.strip()}")
        elif not steps_failed and event.is_failure and event.step_key is None:
            error = getattr(event.event_specific_data, "error", None)
            print(f"  {_root_cause(error).message.strip() if error else event.message}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            # A range run also records each day's verdict; the range's line sums them up.
            if check.partition is None or one_day:
                print(_check_line(check))
        elif event.is_step_materialization and "quarantined_rows" in (
            metadata := event.materialization.metadata
        ):
            # A range run repeats the step's metadata on every day's materialization: once.
            if metadata["quarantined_rows"].value and event.asset_key not in quarantine_reported:
                quarantine_reported.add(event.asset_key)
                print(
                    f"  {event.asset_key.to_user_string()}: "
                    f"{metadata['quarantined_rows'].value} row(s) quarantined "
                    f"{metadata['quarantine_reasons'].value}, see "
                    f"{metadata['quarantine_uri'].value}"
                )
        elif event.is_step_materialization and event.asset_key == champion_key:
            metadata = event.materialization.metadata
            change = "new" if metadata["changed"].value else "unchanged"
            if "held_by_rollback" in metadata:
                change += (
                    f"; version {metadata['challenger_version'].value} passed its gates, but "
                    f"the champion is held at {metadata['held_by_rollback'].value}"
                )
            print(
                f"  champion of {champion_key.path[-1].removesuffix('_champion')}: "
                f"version {metadata['champion_version'].value} ({change})"
            )


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the unfinished headless runs whose process, on this machine, is gone.

    Returns a line per run marked. A process on another machine is left alone: its state
    cannot be seen from here. So is a run whose pid a new process has taken since.
    """
    host = socket.gethostname()
    unfinished = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    lines = []
    for run in instance.get_runs(unfinished):
        run_host, _, pid = run.tags.get(PROCESS_TAG, "").rpartition(":")
        if run_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        message = (
            f"the `ml-assets run` process that ran it (pid {pid} on {host}) ended without "
            "finishing it (killed?)"
        )
        instance.report_run_failed(run, message)
        lines.append(f"marked run {run.run_id} ({run.job_name}) failed: {message}")
    return lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, alive
        pass
    return True


def _execute(
    job: dg.JobDefinition,
    days: tuple[dt.date, dt.date] | None = None,
    selection: list[dg.AssetKey] | None = None,
    champion_key: dg.AssetKey | None = None,
    *,
    instance: dg.DagsterInstance,
    remote: bool,
) -> bool:
    """Run `job` (over `days`, a range, when given; only `selection` when given) and report.

    With `remote` (dev/prod: steps on Databricks) the job is reconstructed from the code
    location: the step launcher ships a step by rebuilding its job on the cluster, which an
    in-memory job cannot tell it how to do."""
    label = job.name
    if selection:
        label += f" ({', '.join(key.to_user_string() for key in selection)})"
    label += f": {days[0]} .. {days[1]}" if days else ":"
    options = {
        "run_config": QUIET,
        "instance": instance,
        "tags": {PROCESS_TAG: _this_process(), **(_range_tags(*days) if days else {})},
        "asset_selection": selection,
        "raise_on_error": False,
    }
    if not remote:
        result = job.execute_in_process(**options)
        _report(result, label, days is not None and days[0] == days[1], champion_key)
        return result.success
    recon = dg.build_reconstructable_job(
        "ml_assets.definitions", "job_for", reconstructable_kwargs={"name": job.name}
    )
    try:
        # Not entered as a context manager: that would set the resources up again, to load
        # outputs this summary does not read.
        result = dg.execute_job(recon, **options)
    except dg.DagsterInvalidConfigError as error:  # resolved before the run starts
        print(f"{label} FAILED before it started")
        for problem in error.errors:
            # The problem and its cause, without the traceback Dagster appends.
            lines = problem.message.split("Stack Trace:")[0].split("\n")
            print("  " + " ".join(line.strip() for line in lines if line.strip()))
        return False
    _report(result, label, days is not None and days[0] == days[1], champion_key)
    return result.success


def _materialize_pipeline(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    spec: PipelineSpec,
    landed: dict[str, set[dt.date]],
    remote: bool,
) -> bool:
    """Every raw table over the days its source has files for; then each feature table over
    the days any of its inputs has (so every source's table exists when a feature day reads
    it, even when one source starts later than another); then train, validate, promote; then
    score the feature days. Stops at the first stage that failed."""
    run = functools.partial(_execute, instance=instance, remote=remote)
    ingest = defs.resolve_job_def(ingest_job_name(spec))
    ok = True
    for source, days in landed.items():
        for first, last in contiguous_ranges(days):
            ok = run(ingest, (first, last), [raw_key(spec, source)]) and ok
    if not ok:
        return False
    for name, feature in spec.features.items():
        days = set().union(*(landed.get(source, set()) for source in feature.inputs))
        for first, last in contiguous_ranges(days):
            ok = run(ingest, (first, last), [feature_key(spec, name)]) and ok
    if not ok or spec.model is None:
        return ok
    train = defs.resolve_job_def(f"{spec.name}_train")
    if not run(train, champion_key=model_keys(spec).champion):
        return False
    score = defs.resolve_job_def(f"{spec.name}_score")
    scored = set().union(*(landed.get(s, set()) for s in spec.features[spec.model.features].inputs))
    for first, last in contiguous_ranges(scored):
        ok = run(score, (first, last)) and ok
    return ok


def materialize_all(settings: Settings) -> int:
    """Materialize each pipeline's graph over the days its landing folders hold."""
    defs = build_definitions(settings)  # imports MLflow, which sets its loggers up
    # MLflow's INFO lines (database migrations, input example checks) buried the summary.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    instance = dg.DagsterInstance.get()
    for line in fail_orphaned_runs(instance):
        print(line)
    status = 0
    for path in settings.pipeline_specs:
        spec = load_spec(path)
        landed = {}
        first, last = partition_bounds(spec)
        for name, source in spec.sources.items():
            folder = spec.landing_folder(name, settings.landing_root)
            if not folder.is_dir():
                print(f"{spec.name}: no landing folder for source {name}: {folder}")
            files, problems = scan_landing(folder, source.file_suffixes)
            for problem in problems:
                print(f"{spec.name}: left out {folder / problem.name}: {problem.message}")
            for file in files:
                if not first <= file.day <= last:
                    print(
                        f"{spec.name}: left out {file.path}: no daily partition for {file.day} "
                        f"(the partitions run from start_date {first} to yesterday, {last})"
                    )
            landed[name] = {file.day for file in files if first <= file.day <= last}
        if not any(landed.values()):
            print(f"{spec.name}: no landing files under {settings.landing_root / spec.name}")
            status = 1
            continue
        if not _materialize_pipeline(defs, instance, spec, landed, settings.uses_databricks):
            status = 1
        graph = defs.resolve_asset_graph()
        print(f"{spec.name}: the Delta tables, and where they are")
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path):
            uri = "/".join([settings.lake_root, *key.path])
            if key.path[0] == spec.name and table_exists(uri):
                print(f"  {key.to_user_string():45s} {uri}")
        if spec.model is not None:
            tracking = redact_uri(settings.mlflow_tracking_uri)
            print(f"  MLflow: {tracking} (`ml-assets mlflow-ui` to browse)")
    if not _report_costs(defs, instance, settings.lake_root, settings.uses_databricks):
        status = 1
    print(f"Dagster instance (history for `ml-assets dev`): {settings.dagster_home}")
    return status


def _report_costs(
    defs: dg.Definitions, instance: dg.DagsterInstance, lake_root: str, databricks: bool
) -> bool:
    """Materialize `costs/cost_report` last: it sums what every run of the instance recorded,
    these runs' included."""
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config=QUIET,
        instance=instance,
        asset_selection=[cost_report.key],
        tags={PROCESS_TAG: _this_process()},
        raise_on_error=False,
    )
    label = cost_report.key.to_user_string()
    if not result.success:
        _report(result, label + ":", False, None)
        return False
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    clusters = (
        f", job clusters {metadata['total_cluster_cost_usd'].value:.4f} USD" if databricks else ""
    )
    print(
        f"{label} (every run of this Dagster instance so far): "
        f"{metadata['total_compute_seconds'].value:.1f} s of work costing "
        f"{metadata['total_cost_usd'].value:.4f} USD{clusters}, per asset and day in "
        + "/".join([lake_root, *cost_report.key.path])
    )
    return True
