"""Tests against a local stand-in of the Databricks REST API (see ``standin.py``)."""
