"""The Delta maintenance job: compact and vacuum every table of the lake, keeping model lineage."""

import dagster as dg
from pydantic import Field

from ml_assets.maintenance.tables import local_path, maintain_lake, markdown
from ml_assets.storage.io_manager import DeltaLake
from ml_assets.tracking.mlflow_resource import MlflowTracking

MAINTENANCE_JOB = "ml_assets_delta_maintenance"


class MaintenanceConfig(dg.Config):
    retention_hours: float = Field(
        default=168,
        ge=0,
        description="Vacuum deletes files removed from a table more than this many hours ago "
        "(0: every unreferenced file). Versions that a registered model was trained on are "
        "kept whatever this says.",
    )
    target_file_size_mb: int = Field(
        default=128,
        gt=0,
        description="Compaction rewrites small files into files of about this size.",
    )
    dry_run: bool = Field(
        default=False,
        description="Only list what vacuum would delete; no compaction, nothing deleted.",
    )


def build_maintenance_job(
    *, name: str = MAINTENANCE_JOB, tags: dict[str, str] | None = None, require_lake: bool = False
) -> dg.JobDefinition:
    """An op job over the resources `lake` (DeltaLake) and `mlflow_tracking` (MlflowTracking):
    for every Delta table under the lake root, compact small files, then vacuum past
    `retention_hours`, never deleting a file that a registered model version's
    `features_uri`@`features_delta_version` still needs. Reports per table: active files,
    files and bytes on disk before → after, what was compacted and vacuumed, what was kept and
    for which model version. Fails at the end (after every other table) if a table failed.
    With `require_lake` (dev/prod), a lake root that does not exist here fails the run: a local
    lake may not have been written yet, a shared one is then not mounted on this machine."""

    @dg.op(
        name="maintain_delta_tables",
        out=dg.Out(dg.Nothing),
        tags={"kind": "deltalake"},
        description="Compact + vacuum every Delta table of the lake, keeping model lineage.",
    )
    def maintain(
        context: dg.OpExecutionContext,
        config: MaintenanceConfig,
        lake: DeltaLake,
        mlflow_tracking: MlflowTracking,
    ) -> None:
        root = local_path(lake.root)
        if require_lake and root is not None and not root.exists():
            raise dg.Failure(
                f"lake root {lake.root} does not exist on this machine: nothing to maintain. "
                "Run the maintenance where the lake is mounted (or use Databricks' "
                "OPTIMIZE/VACUUM on its tables, keeping the versions models were trained on)",
                allow_retries=False,
            )
        reports = maintain_lake(
            lake.root,
            client=mlflow_tracking.client,
            retention_hours=config.retention_hours,
            target_size=config.target_file_size_mb * 1024 * 1024,
            dry_run=config.dry_run,
            log=context.log,
        )
        done = [r for r in reports if r.after is not None]
        summary = markdown(reports, lake.root, dry_run=config.dry_run)
        metadata = {
            "report": dg.MetadataValue.md(summary),
            "tables": len(reports),
            "failed_tables": len(reports) - len(done),
            "disk_files_before": sum(r.before.disk_files for r in done),
            "disk_files_after": sum(r.after.disk_files for r in done if r.after),
            "disk_bytes_before": sum(r.before.disk_bytes for r in done),
            "disk_bytes_after": sum(r.after.disk_bytes for r in done if r.after),
            "protected": dg.MetadataValue.json(
                {
                    r.table: [
                        {
                            "table_version": p.table_version,
                            "model": p.model,
                            "model_version": p.version,
                        }
                        for p in r.protected
                    ]
                    for r in reports
                    if r.protected
                }
            ),
            "retention_hours": config.retention_hours,
            "dry_run": config.dry_run,
        }
        context.log.info(summary)
        failed = [r for r in reports if r.after is None]
        if failed:
            raise dg.Failure(
                f"maintenance failed for {len(failed)} table(s): "
                + "; ".join(f"{r.table}: {r.skipped}" for r in failed),
                metadata=metadata,
            )
        context.add_output_metadata(metadata)

    @dg.job(
        name=name,
        description="Nightly Delta maintenance: compact the small files that daily partition "
        "overwrites leave behind and vacuum old versions past the retention, never removing a "
        "version a registered model was trained on.",
        tags=tags or {"ml_assets/maintenance": "delta"},
    )
    def maintenance_job() -> None:
        maintain()

    return maintenance_job
