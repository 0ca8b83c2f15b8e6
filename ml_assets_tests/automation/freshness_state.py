"""Inject a freshness state the way the FreshnessDaemon records it, without waiting for it.

The only place the tests touch Dagster internals: the daemon reports a `FreshnessStateChange`
through a private instance method, and the automation conditions read the latest one.
"""

import time

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

PASS, WARN, FAIL = FreshnessState.PASS, FreshnessState.WARN, FreshnessState.FAIL


def report_freshness(
    instance: dg.DagsterInstance, key: dg.AssetKey, state: FreshnessState, previous=None
) -> None:
    instance._report_runless_asset_event(
        asset_event=FreshnessStateChange(
            key=key,
            new_state=state,
            previous_state=previous or FreshnessState.UNKNOWN,
            state_change_timestamp=time.time(),
        )
    )
