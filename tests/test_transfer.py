"""The transfer law D_T = k D_F^alpha P^beta, fitted jointly to scratch and fine-tune points."""

import math

import numpy as np
import pytest

from fno_analysis.points import select_points
from fno_analysis.synthetic import Truth, law_table
from fno_analysis.transfer import _jacobian, _log_model, _Points, fit_transfer, transfer_law

SIZES = [1e4, 4e4, 1.6e5, 6.4e5]
N_VALUES = 2 ** np.arange(3, 14)


@pytest.mark.parametrize("truth", [Truth(), Truth(k=8.0, a=0.6, b=-0.2)], ids=["grows", "shrinks-with-size"])
def test_a_noise_free_law_is_recovered_with_its_sign(truth):
    df = law_table(truth, SIZES, N_VALUES, seeds=1, noise=0.0)
    law, samples = fit_transfer(select_points(df), n_boot=30)
    row = law.iloc[0]
    assert row["k"] == pytest.approx(truth.k, rel=1e-3)
    assert row["alpha"] == pytest.approx(truth.a, abs=1e-3) and row["beta"] == pytest.approx(truth.b, abs=1e-3)
    assert row["beta_lo"] <= row["beta"] <= row["beta_hi"] and row["n_sizes"] == 4
    # The samples are D_E - D_F read from the true scratch curves: on the law.
    expected = truth.k * samples["d_f"] ** truth.a * samples["n_params"].astype(float) ** truth.b
    np.testing.assert_allclose(samples["d_t"], expected, rtol=1e-3)


def test_fine_tune_points_beyond_scratchs_measured_error_are_left_out():
    truth = Truth()
    df = law_table(truth, SIZES, N_VALUES, seeds=1, noise=0.0)
    row = transfer_law(df, n_boot=20).iloc[0]
    # Kept: fine-tune points whose matched scratch N, D_F + D_T, is at most scratch's largest N.
    d_f = np.asarray(N_VALUES, float)[None, :]
    matched = d_f + truth.k * d_f**truth.a * np.asarray(SIZES)[:, None] ** truth.b
    assert row["n_samples"] == int((matched <= N_VALUES[-1] * (1 + 1e-9)).sum())
    assert row["d_f_min"] == N_VALUES[0] and row["d_f_max"] < N_VALUES[-1]


def test_two_sizes_give_an_estimate_without_an_interval_and_one_gives_a_note():
    df = law_table(Truth(), SIZES[:2], N_VALUES, seeds=1, noise=0.0)
    row = transfer_law(df, n_boot=20).iloc[0]
    assert np.isfinite(row["beta"]) and math.isnan(row["beta_lo"]) and "needs 3" in row["note"]
    one = transfer_law(law_table(Truth(), SIZES[:1], N_VALUES, seeds=1, noise=0.0), n_boot=20).iloc[0]
    assert math.isnan(one["beta"]) and "too few for k, alpha and beta" in one["note"]


def test_the_jacobian_matches_finite_differences():
    rng = np.random.default_rng(0)
    m = 12
    pts = _Points(np.repeat([0, 1], m // 2), np.log(rng.uniform(8, 500, m)), np.repeat(np.log([1e4, 4e4]), m // 2),
                  np.tile([False, True], m // 2), np.zeros(m))  # fmt: skip
    x = np.array([[0.5, 0.8, 0.1, 1.0, 0.6, -3.0, 0.7, 0.4, -2.5]])
    jac = _jacobian(x, pts)[0]
    step = 1e-6
    numeric = np.stack(
        [(_log_model(x + step * e, pts)[0] - _log_model(x - step * e, pts)[0])[0] / (2 * step) for e in np.eye(9)],
        axis=-1,
    )
    np.testing.assert_allclose(jac, numeric, atol=1e-6)
