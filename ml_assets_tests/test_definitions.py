"""The code location loads and every asset carries what the UI needs."""

import itertools

import dagster as dg

from ml_assets.definitions import defs


def test_definitions_load_and_validate():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    keys = {k.to_user_string() for k in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert {
        "fraud/raw/transactions",
        "fraud/raw/customers",
        "fraud/features/transaction_features",
    } <= keys


DAILY_GROUPS = {"raw", "features", "predictions", "monitoring"}


def test_every_asset_has_group_kinds_description_owners_and_the_right_partitions():
    graph = defs().resolve_asset_graph()
    groups = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        label = key.to_user_string()
        groups.add(node.group_name)
        assert node.kinds, label
        assert node.description, label
        assert node.owners, label
        # Data is daily-partitioned by event date; a model is one thing at a time.
        assert (node.partitions_def is not None) == (node.group_name in DAILY_GROUPS), label
    assert {"raw", "features", "models", "reports", "predictions"} <= groups


def test_the_graph_runs_from_landing_to_predictions():
    graph = defs().resolve_asset_graph()
    chain = [
        ["fraud", "raw", "transactions"],
        ["fraud", "features", "transaction_features"],
        ["fraud", "models", "fraud_detector_candidate"],
        ["fraud", "reports", "fraud_detector_validation"],
        ["fraud", "models", "fraud_detector_champion"],
        ["fraud", "predictions", "fraud_detector"],
    ]
    for upstream, downstream in itertools.pairwise(chain):
        parents = graph.get(dg.AssetKey(downstream)).parent_keys
        assert dg.AssetKey(upstream) in parents, (upstream, downstream)


def test_raw_assets_declare_their_column_schema():
    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey(["fraud", "raw", "transactions"]))
    columns = [c.name for c in node.metadata["dagster/column_schema"].columns]
    assert columns[:3] == ["event_id", "customer_id", "event_ts"]
    assert {"_source_file", "_ingested_at", "event_date"} <= set(columns)


def test_sensors_are_on_by_default():
    for sensor in defs().sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
