"""ml_assets: data and models as one Dagster asset graph."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ml_assets")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
