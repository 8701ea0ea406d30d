"""The statistics under the report: bounds, censored gains, paired replicates, selection inside
the bootstrap. Each case failed before these were built (the old numbers in comments)."""

import math

import numpy as np
import pandas as pd
import pytest
from synthetic import N_VALUES, result_row, results_table

from fno_analysis.fit import _selection_stage, fit_curve, fit_curves, saturating
from fno_analysis.gains import data_efficiency_gain, examples_needed
from fno_analysis.points import select_points


def test_a_floor_fitted_at_zero_gets_a_one_sided_interval_not_zero_width():
    rng = np.random.default_rng(3)
    noisy = saturating(N_VALUES, 1.0, 0.5, 0.0) * np.exp(rng.normal(0.0, 0.1, N_VALUES.size))
    fit = fit_curve(N_VALUES, noisy, seed=1)
    if fit["c"] == 0.0:  # the usual outcome with no floor: was [0, 0]
        assert fit["c_lo"] == 0.0 and fit["c_hi"] > 0.0
        assert "c = 0 at its bound: one-sided" in fit["notes"]
    assert fit["c_hi"] > 0.0


def test_a_flat_curve_has_no_exponent():
    rng = np.random.default_rng(4)
    flat = 0.05 * np.exp(rng.normal(0.0, 0.02, N_VALUES.size))
    fit = fit_curve(N_VALUES, flat)  # was b = 0.114 [0.114, 0.114]
    assert fit["a"] == 0.0 and math.isnan(fit["b"]) and math.isnan(fit["b_lo"]) and math.isnan(fit["b_hi"])
    assert "flat" in fit["warning"]


def test_a_rising_curve_is_flagged():
    fit = fit_curve(N_VALUES, 0.05 * N_VALUES**0.1)  # was b = 1e-9 [1e-9, 1e-9], no warning
    assert "rises with N" in fit["warning"] and fit["b_pow"] < 0


def test_five_points_warn_and_b_never_runs_past_the_searched_range():
    rng = np.random.default_rng(5)
    n = np.array([8, 16, 32, 64, 128])
    fit = fit_curve(n, saturating(n, 1.0, 0.5, 0.01) * np.exp(rng.normal(0.0, 0.1, n.size)))
    assert "only 5 points" in fit["warning"]
    assert fit["b_hi"] <= 3.0


def test_a_flat_fine_tune_curve_gives_a_lower_bound_not_zero():
    # Fine-tuning flat at 0.05, scratch N^-0.5 + 0.01: was gain 0 with interval [0, inf].
    rng = np.random.default_rng(6)
    df = results_table({("scratch", 8): (1.0, 0.5, 0.01), ("finetune", 8): (0.0, 0.5, 0.05)}, noise=0.02, rng=rng)
    gain = data_efficiency_gain(df, n_boot=50).iloc[0]
    assert gain["verdict"] == "lower bound" and math.isnan(gain["gain"])
    n_scratch = (1.0 / (gain["target_error"] - 0.01)) ** 2
    assert gain["bound"] == pytest.approx(n_scratch / 8, rel=0.3)  # scratch's N over fine-tune's smallest N
    assert examples_needed(0.05, 0.0, math.nan, 0.04) == 0.0 and math.isinf(examples_needed(0.03, 0.0, 1.0, 0.04))


def test_scratch_and_fine_tune_replicates_are_paired():
    # Both curves carry the same noise at each N (nested training sets, one test set).
    rng = np.random.default_rng(7)
    shared = np.exp(rng.normal(0.0, 0.1, N_VALUES.size))
    rows = []
    for mode, (a, b, c) in (("scratch", (1.0, 0.5, 0.01)), ("finetune", (0.2, 0.5, 0.002))):
        for n, noise in zip(N_VALUES, shared, strict=True):
            err = saturating(n, a, b, c) * noise
            rows.append(result_row(mode, 8, int(n), 1e-3, 0, err, err))
    fits = fit_curves(pd.DataFrame(rows), n_boot=400).set_index("mode")
    b_scratch, b_finetune = fits.loc["scratch", "boot"][:, 1], fits.loc["finetune", "boot"][:, 1]
    assert np.corrcoef(b_scratch, b_finetune)[0, 1] > 0.5  # was -0.095


def test_the_learning_rate_is_chosen_again_inside_every_replicate():
    # Two rates tied on validation at this point; their test errors differ by 2x.
    table = {"lrs": (1e-3, 3e-3), "val": [[0.10, 0.11, 0.09], [0.10, 0.09, 0.11]], "test": [[0.1] * 3, [0.2] * 3]}
    deviations = _selection_stage([table], np.array([0.1]), 400, np.random.default_rng(0))[:, 0]
    switched = np.isclose(deviations, math.log(2.0) * math.sqrt(1.5))
    assert 0.2 < switched.mean() < 0.8  # a fixed choice would give 0 everywhere
    assert np.allclose(deviations[~switched], 0.0)


def test_a_rate_that_lost_seeds_is_not_judged_on_its_survivors():
    rows = []
    for seed in (0, 1, 2):
        rows.append(result_row("scratch", 8, 64, 1e-3, seed, 0.10, 0.10))
        if seed == 0:  # the only survivor of 1e-2 looks best
            rows.append(result_row("scratch", 8, 64, 1e-2, seed, 0.05, 0.05))
        else:
            rows.append(result_row("scratch", 8, 64, 1e-2, seed, math.nan, math.nan, status="diverged"))
    point = select_points(pd.DataFrame(rows)).iloc[0]
    assert point["lr"] == 1e-3 and point["n_lrs_excluded"] == 1  # was 1e-2, on one seed
    assert point["selection"]["lrs"] == (1e-3,)


def test_residuals_correlated_along_n_and_tied_rates_are_warned():
    # A smooth bump on a power law: neighbouring residuals share their sign.
    bump = np.exp(0.15 * np.sin(np.linspace(0.0, math.pi, N_VALUES.size)))
    fit = fit_curve(N_VALUES, saturating(N_VALUES, 1.0, 0.5, 0.01) * bump)
    assert "correlated along N" in fit["warning"]
    alternating = np.exp(0.05 * (-1.0) ** np.arange(N_VALUES.size))
    assert "correlated" not in fit_curve(N_VALUES, saturating(N_VALUES, 1.0, 0.5, 0.01) * alternating)["warning"]
    n = np.array([8, 16, 32, 64, 128, 256])
    err = saturating(n, 1.0, 0.5, 0.01)
    tied = [{"lrs": (1e-3, 3e-3), "val": [[e, e * 1.1, e * 0.9], [e * 1.01, e * 0.9, e * 1.1]], "test": [[e] * 3] * 2}
            for e in err]  # fmt: skip
    assert "within seed noise" in fit_curve(n, err, selection=tied)["warning"]
    apart = [{"lrs": (1e-3, 3e-3), "val": [[e] * 3, [2 * e, 2.1 * e, 1.9 * e]], "test": [[e] * 3] * 2} for e in err]
    assert "within seed noise" not in fit_curve(n, err, selection=apart)["warning"]


def _offset_tables(unit: str, rng) -> list[dict]:
    """Selection tables of 8 points, 5 replicates, one rate; each replicate shifts its
    whole curve by its own factor (noise shared along N, as a data seed's data gives)."""
    offsets = np.exp(rng.normal(0.0, 0.1, 5))
    return [{"lrs": (1e-3,), "val": [list(offsets)], "test": [list(offsets)], "unit": unit, "labels": tuple(range(5))}
            for _ in range(8)]  # fmt: skip


def test_several_data_seeds_resample_whole_curves():
    rng = np.random.default_rng(8)
    y = np.ones(8)
    whole = _selection_stage(_offset_tables("data seed", rng), y, 400, np.random.default_rng(1))
    assert np.corrcoef(whole[:, 0], whole[:, -1])[0, 1] > 0.99  # one draw of data seeds for the whole curve
    per_point = _selection_stage(_offset_tables("seed", rng), y, 400, np.random.default_rng(1))
    assert abs(np.corrcoef(per_point[:, 0], per_point[:, -1])[0, 1]) < 0.2  # training seeds: drawn per point


def test_whole_curve_intervals_see_noise_shared_along_n():
    # Five data seeds, each tilting its whole curve: the mean curve is a clean power law
    # with a shifted exponent, so its residuals are ~0, but the exponent is uncertain.
    rng = np.random.default_rng(9)
    tilt = np.linspace(-1.0, 1.0, N_VALUES.size)
    rows = []
    for data_seed, z in enumerate(rng.normal(0.0, 0.1, 5)):
        for n, t in zip(N_VALUES, tilt, strict=True):
            err = saturating(n, 1.0, 0.5, 0.01) * math.exp(z * t)
            rows.append(result_row("scratch", 8, int(n), 1e-3, 0, err, err, data_seed=data_seed))
    df = pd.DataFrame(rows)
    fit = fit_curves(df, n_boot=400).iloc[0]
    assert "whole curves (5 data seeds" in fit["notes"] and "correlated" not in fit["warning"]
    mean_curve = df.groupby("n_train")["test_rel_l2"].mean()
    alone = fit_curve(mean_curve.index, mean_curve.to_numpy(), n_boot=400)  # one curve: independent residuals
    assert fit["b_hi"] - fit["b_lo"] > 3 * (alone["b_hi"] - alone["b_lo"])
    assert fit["b_lo"] <= 0.5 <= fit["b_hi"]
