"""Data quality rules (no Dagster)."""
