"""The code location loads and every asset carries what the UI needs."""

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


def test_every_asset_has_group_kinds_description_owners_and_partitions():
    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        label = key.to_user_string()
        assert node.group_name in {"raw", "features"}, label
        assert node.kinds, label
        assert node.description, label
        assert node.owners, label
        assert node.partitions_def is not None, label


def test_raw_assets_declare_their_column_schema():
    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey(["fraud", "raw", "transactions"]))
    columns = [c.name for c in node.metadata["dagster/column_schema"].columns]
    assert columns[:3] == ["event_id", "customer_id", "event_ts"]
    assert {"_source_file", "_ingested_at", "event_date"} <= set(columns)


def test_sensors_are_on_by_default():
    for sensor in defs().sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
