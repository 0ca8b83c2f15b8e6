"""The automation condition sensor's evaluations, one call per tick, cursor carried over."""

import dagster as dg


class Ticks:
    """Evaluates one asset's automation condition the way the sensor does, tick after tick."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, key: dg.AssetKey):
        self.defs, self.instance, self.key, self.cursor = defs, instance, key, None

    def _evaluate(self) -> dg.EvaluateAutomationConditionsResult:
        result = dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            asset_selection=dg.AssetSelection.assets(self.key),
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        return result

    def __call__(self) -> set[dg.AssetKey]:
        """{the asset} when this tick requests it, else an empty set."""
        return {self.key} if self._evaluate().get_num_requested(self.key) else set()

    def partitions(self) -> set[str]:
        """The partitions this tick requests."""
        return set(self._evaluate().get_requested_partitions(self.key))
