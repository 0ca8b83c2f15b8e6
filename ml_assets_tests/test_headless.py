"""How `ml-assets run` reports a check: the end-to-end output is checked by the worked-example
doc test (ml_assets_tests/docs/test_bring_your_own_data_doc.py)."""

import dagster as dg

from ml_assets.headless import _check_line

KEY = dg.AssetKey(["fraud", "raw", "customers"])
RANGE_METADATA = {"failed_days": 2, "days": 30, "summary": "credit_limit null rate 33.3% > 20.0%"}


def _evaluation(severity: dg.AssetCheckSeverity) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=KEY,
        check_name="null_rate",
        passed=False,
        severity=severity,
        metadata=RANGE_METADATA,
    )


def test_a_failed_error_check_says_failed_with_its_days_and_summary() -> None:
    assert _check_line(_evaluation(dg.AssetCheckSeverity.ERROR)) == (
        "  check fraud/raw/customers null_rate: FAILED (2 of 30 days failed) "
        "credit_limit null rate 33.3% > 20.0%"
    )


def test_a_failed_warn_check_reads_as_a_warning_not_a_failure() -> None:
    line = _check_line(_evaluation(dg.AssetCheckSeverity.WARN))
    assert line.startswith("  check fraud/raw/customers null_rate: warning (2 of 30 days failed)")
    assert "FAILED" not in line
