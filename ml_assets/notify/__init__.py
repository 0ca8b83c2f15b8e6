"""Webhook notifications: run failures, failed ERROR checks and champion changes."""

from ml_assets.notify.sensor import NOTIFICATION_SENSOR, build_notification_sensor

__all__ = ["NOTIFICATION_SENSOR", "build_notification_sensor"]
