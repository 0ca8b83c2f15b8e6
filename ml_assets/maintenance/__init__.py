"""Operations: Delta table maintenance and the schedules that run it and the scoring sweep."""

from ml_assets.maintenance.job import MAINTENANCE_JOB, MaintenanceConfig, build_maintenance_job
from ml_assets.maintenance.schedules import (
    build_maintenance_schedule,
    build_pipeline_schedules,
    build_score_sweep_schedule,
    build_weekly_train_schedule,
)

__all__ = [
    "MAINTENANCE_JOB",
    "MaintenanceConfig",
    "build_maintenance_job",
    "build_maintenance_schedule",
    "build_pipeline_schedules",
    "build_score_sweep_schedule",
    "build_weekly_train_schedule",
]
