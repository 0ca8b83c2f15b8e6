"""Model registry conventions: aliases `challenger` and `champion`, audit tags on versions."""

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
# Tags written on a model version by the gates; promotion requires all of them "passed".
GATE_TAG_PREFIX = "gate."


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        # No such model or alias yet: both mean "none".
        return None


def model_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"
