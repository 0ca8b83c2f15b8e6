"""The lazy Spark resource: no JVM until `.spark_session` is read; a local session fit for tests."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from ml_assets.engines.spark_session import LazySparkResource, has_delta_jar

pytestmark = pytest.mark.spark

# Run in a fresh interpreter: in this one the shared test session may already have a JVM.
_NO_JVM_SCRIPT = textwrap.dedent(
    """
    import pickle

    import dagster as dg
    from pyspark import SparkContext

    from ml_assets.engines.spark_session import LazySparkResource

    def no_jvm():
        return SparkContext._active_spark_context is None and SparkContext._gateway is None

    resource = LazySparkResource(app_name="lazy", spark_config={"spark.executor.memory": "1g"})
    assert no_jvm()
    copy = pickle.loads(pickle.dumps(resource))
    assert copy == resource and not copy.is_started
    assert resource.effective_config()["spark.sql.session.timeZone"] == "UTC"
    assert resource.effective_config()["spark.executor.memory"] == "1g"

    @dg.asset
    def does_not_use_spark(spark: LazySparkResource) -> int:
        assert not spark.is_started
        return 1

    defs = dg.Definitions(assets=[does_not_use_spark], resources={"spark": resource})
    assert defs.resolve_asset_graph().get_all_asset_keys()
    assert dg.materialize([does_not_use_spark], resources={"spark": resource}).success
    assert no_jvm(), "initialising the resource in a run started a JVM"
    print("NO JVM")
    """
)


def test_resource_starts_no_jvm_until_spark_session_is_read():
    result = subprocess.run(
        [sys.executable, "-c", _NO_JVM_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NO JVM" in result.stdout


def test_local_session_is_utc_small_and_created_once(spark, spark_resource):
    assert spark_resource.is_started
    assert spark_resource.spark_session is spark
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.sparkContext.master == "local[2]"
    assert spark.sparkContext.appName == "ml_assets_tests"
    # This session was built without the Delta jar, so the bridge is what Spark uses here.
    assert has_delta_jar(spark) is False
    # A started resource still pickles, as its configuration: the copy starts its own session.
    copy = pickle.loads(pickle.dumps(spark_resource))
    assert copy.model_dump() == spark_resource.model_dump() and not copy.is_started


def test_resource_in_an_asset_attaches_to_the_running_session(spark):
    @dg.asset
    def counts(spark: LazySparkResource) -> int:
        return spark.spark_session.range(5).count()

    resource = LazySparkResource(spark_config={"spark.sql.shuffle.partitions": "3"})
    result = dg.materialize([counts], resources={"spark": resource})
    assert result.success
    assert result.output_for_node("counts") == 5
    # getOrCreate reused the JVM; runtime properties from the config were applied to it.
    assert resource.spark_session.sparkContext is spark.sparkContext
    assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    spark.conf.set("spark.sql.shuffle.partitions", "2")
