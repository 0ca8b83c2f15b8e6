"""Landing-file ingestion: naming rules, schema enforcement and quarantine (no Dagster here)."""
