"""A lazily started Spark session as a Dagster resource.

`dagster_pyspark.PySparkResource` builds its SparkSession in `setup_for_execution`, so every run
that merely has the resource (the orchestrator, a step that never touches Spark, a step launched
on Databricks) pays for a JVM. `LazySparkResource` here extends dagster-pyspark's own
`LazyPySparkResource` (present in 0.29): nothing starts until `.spark_session` is read.

On top of it: typed `master` and `app_name`, sensible defaults for a local session (two cores,
two shuffle partitions, no UI, bound to localhost) and the session time zone pinned to UTC
everywhere, so timestamps mean the same on Polars and on Spark. Set `master=None` to take the
session the environment provides (Databricks, spark-submit); a local master (`local[...]`) gets
the local defaults. Anything in `spark_config` wins over the defaults.
"""

from __future__ import annotations

import os
from typing import Any

from dagster_pyspark import LazyPySparkResource
from pydantic import Field

SESSION_TIME_ZONE = "UTC"
_TIME_ZONE_KEY = "spark.sql.session.timeZone"
_DELTA_TABLE_CLASS = "io.delta.tables.DeltaTable"
_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"

# Applied to sessions whose master is local[...] only: sized for a laptop or CI runner.
LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    # The Delta bridge hands Spark one path per data file; listing them in a Spark job (the
    # default above 32 paths) costs seconds locally for nothing.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
}


class LazySparkResource(LazyPySparkResource):
    """A Spark session created on first use of `.spark_session`, never before."""

    master: str | None = Field(
        default="local[2]",
        description="Spark master URL; None to use the session the environment provides "
        "(Databricks, spark-submit).",
    )
    app_name: str = Field(default="ml_assets", description="Spark application name.")
    spark_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Spark properties, applied last (they override the local defaults and the "
        "UTC session time zone).",
    )

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    @property
    def is_local(self) -> bool:
        return self.master is not None and self.master.startswith("local")

    @property
    def is_started(self) -> bool:
        """Whether this resource has created (or attached to) a session yet."""
        return self._spark_session is not None

    def effective_config(self) -> dict[str, str]:
        """The properties the session is built with, in the order they are applied."""
        config: dict[str, str] = {_TIME_ZONE_KEY: SESSION_TIME_ZONE}
        if self.is_local:
            config.update(LOCAL_DEFAULTS)
        config.update({key: str(value) for key, value in self.spark_config.items()})
        return config

    def _init_session(self) -> None:
        if self._spark_session is not None:
            return
        from pyspark.sql import SparkSession as PySparkSession

        config = self.effective_config()
        builder = PySparkSession.builder.appName(self.app_name)
        if self.master is not None:
            builder = builder.master(self.master)
        for key, value in config.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        # getOrCreate on an existing session (Databricks, a test's shared session) may keep its
        # time zone; the zone is a runtime property, so set it explicitly.
        session.conf.set(_TIME_ZONE_KEY, config[_TIME_ZONE_KEY])
        self._spark_session = session

    def __reduce__(self) -> tuple[Any, ...]:
        # Dagster's resource objects do not pickle (their internal state holds config-schema
        # objects); this one pickles as its configuration, never as a started session: a copy
        # sent elsewhere (another process, a remote step) starts its own session on first use.
        return (_rebuild, (type(self), self.model_dump()))


def _rebuild(cls: type[LazySparkResource], config: dict[str, Any]) -> LazySparkResource:
    return cls(**config)


def has_delta_jar(spark: Any) -> bool:
    """Whether `spark` can use Delta natively (`format("delta")`).

    True on Databricks, or when the Delta Spark classes are on the driver's class path (the
    jar was added with spark.jars / spark.jars.packages / configure_spark_with_delta_pip). A
    Spark Connect session has no JVM to ask; there the configured session extension decides.
    """
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    try:
        jvm = spark._jvm
    except Exception:  # Spark Connect: no py4j gateway
        jvm = None
    if jvm is not None:
        try:
            loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
            jvm.java.lang.Class.forName(_DELTA_TABLE_CLASS, False, loader)
            return True
        except Exception:  # py4j wraps ClassNotFoundException
            return False
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return _DELTA_EXTENSION in extensions
