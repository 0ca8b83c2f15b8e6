"""Running the heavy assets on Databricks: compute profiles, the step launcher, costs."""
