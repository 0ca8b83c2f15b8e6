"""One local Spark session for the whole test session (a cold start costs ~10 s)."""

from __future__ import annotations

import shutil

import pytest

from ml_assets.engines.spark_session import LazySparkResource

JAVA = shutil.which("java")
NO_JAVA = "needs Java (`java` on PATH) to start a local Spark session"


@pytest.fixture(scope="session")
def spark_resource() -> LazySparkResource:
    return LazySparkResource(app_name="ml_assets_tests")


@pytest.fixture(scope="session")
def spark(spark_resource):
    if JAVA is None:
        pytest.skip(NO_JAVA)
    session = spark_resource.spark_session
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
