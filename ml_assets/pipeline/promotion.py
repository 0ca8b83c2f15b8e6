"""Promotion: the champion alias moves to a challenger that passed every gate, and back on a
rollback. Both write the same audit record to a Delta table and to the model version."""

import datetime as dt
import json

import dagster as dg
import polars as pl
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from pydantic import Field

from ml_assets.pipeline.automation import follow_condition
from ml_assets.pipeline.keys import EXTERNAL_RETRY, model_keys
from ml_assets.pipeline.spec import PipelineSpec
from ml_assets.pipeline.validation import GATES
from ml_assets.storage import delta
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking
from ml_assets.tracking.registry import CHAMPION, GATE_TAG_PREFIX, version_for_alias


def write_audit(
    *,
    lake: DeltaLake,
    client: MlflowClient,
    spec: PipelineSpec,
    action: str,
    from_version: str | None,
    to_version: str,
    run_id: str,
    reason: str,
    evidence: dict,
) -> int:
    """One audit record: a row in `<lake>/<pipeline>/audit/model_promotions` and tags plus a
    description on the new champion version. Returns the audit table's Delta version."""
    assert spec.model is not None
    name = spec.model.name
    at = dt.datetime.now(dt.UTC)
    record = pl.DataFrame(
        {
            "at": [at],
            "action": [action],
            "model_name": [name],
            "from_version": [int(from_version) if from_version else None],
            "to_version": [int(to_version)],
            "dagster_run_id": [run_id],
            "reason": [reason],
            "evidence": [json.dumps(evidence, sort_keys=True, default=str)],
        },
        schema={
            "at": pl.Datetime("us", "UTC"),
            "action": pl.String,
            "model_name": pl.String,
            "from_version": pl.Int64,
            "to_version": pl.Int64,
            "dagster_run_id": pl.String,
            "reason": pl.String,
            "evidence": pl.String,
        },
    )
    audit_version = delta.append_rows(lake.table_uri(model_keys(spec).audit), record)
    for key, value in {
        "champion_since": at.isoformat(),
        "champion_action": action,
        # Absent for the first champion, as in the audit (null) and the asset's metadata.
        **({"champion_previous_version": from_version} if from_version else {}),
        "champion_dagster_run_id": run_id,
        "champion_reason": reason,
    }.items():
        client.set_model_version_tag(name, to_version, key, value)
    client.update_model_version(
        name,
        to_version,
        description=f"{action} to champion at {at:%Y-%m-%d %H:%M} UTC by Dagster run {run_id} "
        f"(previous champion: {from_version or 'none'}). {reason}",
    )
    return audit_version


# Registered-model tag a rollback sets: automatic promotions leave the champion where the
# rollback put it until a promotion lifts the hold (`release_hold`).
HOLD_TAG = "champion_hold"


class ChampionConfig(dg.Config):
    release_hold: bool = Field(
        default=False,
        description="Promote a challenger that passed every gate even though a rollback holds "
        "the champion, and lift the hold.",
    )


def require_champion(client: MlflowClient, spec: PipelineSpec, need: str) -> ModelVersion:
    """The current champion version, or a failure that says what `need`s it and how to get one
    (not retried: it stays missing until someone trains)."""
    assert spec.model is not None
    champion = version_for_alias(client, spec.model.name, CHAMPION)
    if champion is None:
        raise dg.Failure(
            f"no champion for {spec.model.name} yet: {need}; materialize "
            f"{model_keys(spec).champion.to_user_string()} (train, validate, promote) first",
            allow_retries=False,
        )
    return champion


def build_champion_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)

    @dg.asset(
        key=keys.champion,
        deps=[keys.report],
        group_name="models",
        retry_policy=EXTERNAL_RETRY,
        description=f"The `{CHAMPION}` alias of `{model.name}`: moved to the challenger when "
        "every gate on the validation report passed, with an audit record in "
        f"`{keys.audit.to_user_string()}`.",
        kinds={"mlflow"},
        owners=spec.owners,
        tags={"layer": "models", "pipeline": spec.name},
        automation_condition=follow_condition(),
    )
    def champion(
        context: dg.AssetExecutionContext,
        config: ChampionConfig,
        lake: DeltaLake,
        mlflow_tracking: MlflowTracking,
    ) -> dg.MaterializeResult:
        report = delta.scan(lake.table_uri(keys.report)).collect().row(0, named=True)
        challenger = str(report["challenger_version"])
        client = mlflow_tracking.client
        tags = client.get_model_version(model.name, challenger).tags
        # Re-checked here from the version's tags: materializing the champion alone, outside the
        # run that ran the blocking checks, must not skip them.
        verdicts = {gate: tags.get(f"{GATE_TAG_PREFIX}{gate}", "not run") for gate in GATES}
        refused = {gate: verdict for gate, verdict in verdicts.items() if verdict != "passed"}
        if refused:
            raise dg.Failure(
                f"version {challenger} of {model.name} cannot become champion: gates {refused}",
                metadata={"challenger_version": int(challenger)},
                allow_retries=False,
            )
        current = version_for_alias(client, model.name, CHAMPION)
        previous = str(current.version) if current else None
        if previous == challenger:
            return dg.MaterializeResult(
                metadata={"champion_version": int(challenger), "changed": False}
            )
        hold = client.get_registered_model(model.name).tags.get(HOLD_TAG)
        if hold and not config.release_hold:
            context.log.warning(
                f"{model.name}: version {challenger} passed every gate, but the champion is held "
                f"at {hold}; materialize {keys.champion.to_user_string()} with config "
                "release_hold: true to promote it"
            )
            return dg.MaterializeResult(
                metadata={
                    "champion_version": int(previous) if previous else 0,
                    "changed": False,
                    "held_by_rollback": hold,
                    "challenger_version": int(challenger),
                }
            )
        if hold:
            client.delete_registered_model_tag(model.name, HOLD_TAG)
        client.set_registered_model_alias(model.name, CHAMPION, challenger)
        evidence = {
            "gates": verdicts,
            "metrics": {
                k: v for k, v in report.items() if k.startswith(("challenger_", "champion_"))
            },
            "features_uri": tags.get("features_uri"),
            "features_delta_version": tags.get("features_delta_version"),
            "trained_by_dagster_run": tags.get("dagster_run_id"),
        }
        audit_version = write_audit(
            lake=lake,
            client=client,
            spec=spec,
            action="promote",
            from_version=previous,
            to_version=challenger,
            run_id=context.run.run_id,
            reason=("passed all gates" if previous else "first model to pass the absolute gates")
            + (f"; released the hold at {hold}" if hold else ""),
            evidence=evidence,
        )
        context.log.info(f"{model.name}: champion {previous or 'none'} -> {challenger}")
        return dg.MaterializeResult(
            metadata={
                "champion_version": int(challenger),
                **({"previous_champion_version": int(previous)} if previous else {}),
                "changed": True,
                "audit_delta_version": audit_version,
                **({"released_hold": hold} if hold else {}),
            }
        )

    return champion


class RollbackConfig(dg.Config):
    version: int = Field(description="The earlier model version to make champion again.")
    reason: str = Field(description="Why: recorded in the audit trail.")
    hold: bool = Field(
        default=True,
        description="Keep this version as champion until a promotion with release_hold: "
        "retrains still register challengers, but do not replace it.",
    )


def build_rollback_job(spec: PipelineSpec) -> dg.JobDefinition:
    model = spec.model
    assert model is not None
    keys = model_keys(spec)

    @dg.op(name=f"{spec.name}_{model.name}_rollback_op", tags={"kind": "mlflow"})
    def rollback(
        context: dg.OpExecutionContext,
        config: RollbackConfig,
        lake: DeltaLake,
        mlflow_tracking: MlflowTracking,
    ) -> None:
        client = mlflow_tracking.client
        target = str(config.version)
        known = {str(v.version) for v in client.search_model_versions(f"name = '{model.name}'")}
        if target not in known:
            raise dg.Failure(
                f"{model.name} has no version {target}; versions: {sorted(known, key=int)}"
            )
        current = version_for_alias(client, model.name, CHAMPION)
        if current and str(current.version) == target:
            raise dg.Failure(f"version {target} of {model.name} is already the champion")
        client.set_registered_model_alias(model.name, CHAMPION, target)
        if config.hold:
            hold = f"version {target} (rollback by run {context.run.run_id}: {config.reason})"
            client.set_registered_model_tag(model.name, HOLD_TAG, hold)
        elif HOLD_TAG in client.get_registered_model(model.name).tags:
            client.delete_registered_model_tag(model.name, HOLD_TAG)
        previous = str(current.version) if current else None
        audit_version = write_audit(
            lake=lake,
            client=client,
            spec=spec,
            action="rollback",
            from_version=previous,
            to_version=target,
            run_id=context.run.run_id,
            reason=config.reason,
            evidence={"requested_version": target, "hold": config.hold},
        )
        # The champion asset's latest materialization is what the UI shows: without this it
        # would still name the version rolled back from.
        context.log_event(
            dg.AssetMaterialization(
                asset_key=keys.champion,
                metadata={
                    "champion_version": int(target),
                    **({"previous_champion_version": int(previous)} if previous else {}),
                    "changed": True,
                    "action": "rollback",
                    "held": config.hold,
                    "audit_delta_version": audit_version,
                },
            )
        )
        held = ", held until a promotion with release_hold" if config.hold else ""
        context.log.info(
            f"{model.name}: champion rolled back {previous or 'none'} -> {target} "
            f"({config.reason}){held}"
        )

    @dg.job(
        name=f"{spec.name}_{model.name}_rollback",
        description=f"Move the champion alias of {model.name} back to an earlier version "
        "(launchpad: version and reason). Audited like a promotion.",
    )
    def rollback_job() -> None:
        rollback()

    return rollback_job
