"""Pipeline specs fail early, naming the file and the field."""

import pytest

from ml_assets.pipeline.spec import SpecError, load_spec
from ml_assets.settings import DEMO_PIPELINE_SPEC

VALID = """
name: shop
start_date: "2026-01-01"
sources:
  orders:
    event_time: ordered_at
    primary_key: [order_id]
    columns: {order_id: string, ordered_at: datetime, total: float}
"""


def _write(tmp_path, text):
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    return path


def test_demo_spec_loads_with_its_features():
    spec = load_spec(DEMO_PIPELINE_SPEC)
    assert set(spec.sources) == {"transactions", "customers"}
    assert callable(spec.feature_function("transaction_features"))


def test_short_column_form_is_accepted(tmp_path):
    spec = load_spec(_write(tmp_path, VALID))
    assert spec.sources["orders"].columns["total"].type == "float"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("primary_key: [order_id]", "primary_key: [missing]"), "sources.orders"),
        (("total: float", "total: decimal"), "sources.orders.columns.total.type"),
        (("name: shop", "name: Shop Data"), "name"),
        (("event_time: ordered_at", "event_time: total"), "must be a date or datetime"),
        (
            ("event_time: ordered_at", "event_time: ordered_ad"),
            "event_time names column 'ordered_ad', which is not declared in columns",
        ),
        (("    columns:", "    colums:"), "colums"),
    ],
)
def test_invalid_specs_name_the_file_and_field(tmp_path, change, message):
    path = _write(tmp_path, VALID.replace(*change))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_feature_reading_an_unknown_table_is_refused(tmp_path):
    text = VALID + "features:\n  f:\n    function: x.py:f\n    inputs: {payments: {}}\n"
    with pytest.raises(SpecError, match="reads 'payments'"):
        load_spec(_write(tmp_path, text))


def test_unknown_feature_function_is_reported(tmp_path):
    (tmp_path / "feats.py").write_text("def other(orders):\n    return orders\n")
    text = VALID + "features:\n  f:\n    function: feats.py:build\n    inputs: {orders: {}}\n"
    spec = load_spec(_write(tmp_path, text))
    with pytest.raises(SpecError, match="has no function 'build'"):
        spec.feature_function("f")


def test_unreadable_yaml_names_the_file(tmp_path):
    path = _write(tmp_path, "name: [unclosed")
    with pytest.raises(SpecError, match="cannot read pipeline spec"):
        load_spec(path)
