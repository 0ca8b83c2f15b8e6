"""PSI on numeric and categorical features."""

import numpy as np
import polars as pl

from ml_assets.ml.drift import build_reference, drifted, feature_drift, psi


def _frame(seed: int, shift: float = 0.0, channels=("web", "app")) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 5000
    return pl.DataFrame(
        {
            "amount": rng.lognormal(3 + shift, 0.5, n),
            "channel": rng.choice(list(channels), n),
        }
    )


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert 0 < psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.9, 0.1])


def test_same_distribution_is_stable_and_a_shift_drifts():
    reference = build_reference(_frame(1), ["amount"], ["channel"], bins=10)
    same = {d.feature: d.psi for d in feature_drift(reference, _frame(2))}
    assert max(same.values()) < 0.02
    moved = feature_drift(reference, _frame(3, shift=0.5, channels=("web", "store")))
    assert set(drifted(moved, 0.25)) == {"amount", "channel"}


def test_unseen_categories_and_missing_values_have_their_own_buckets():
    reference = build_reference(_frame(1), [], ["channel"])
    assert reference["channel"].categories == ("app", "web")
    day = pl.DataFrame({"channel": [None] * 10 + ["fax"] * 10})
    (result,) = feature_drift(reference, day)
    assert result.null_rate == 0.5 and result.psi > 1
