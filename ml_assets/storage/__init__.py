"""Delta Lake storage: table IO for Polars and the Dagster IO manager built on it."""
