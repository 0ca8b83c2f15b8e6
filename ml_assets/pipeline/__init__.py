"""The pipeline factory: a spec in, Dagster assets, sensors and jobs out."""
