"""Verdicts that cannot mislead: each test reproduces one way the old rules said "supports"
or "contradicts" where the evidence did not decide (the old value in a comment)."""

import math

import numpy as np
import pandas as pd
import pytest
from synthetic import result_row, results_table

from fno_analysis.diagnostics import FLAG_COLUMNS, _miss, diagnose
from fno_analysis.findings import (
    Judge,
    gain_claims,
    judge_table,
    size_trend,
    smallest_n_comparison,
    zero_shot_by_shift,
)
from fno_analysis.fit import fit_curve, fit_curves, saturating
from fno_analysis.gains import censored_replicates, data_efficiency_gain, examples_needed
from fno_analysis.points import select_points
from fno_analysis.verdicts import (
    CONTRADICTS,
    NO_INTERVAL,
    NOT_LEARNED,
    SCRATCH_DOUBT,
    SUPPORTS,
    WIDEN,
    point_interval,
    ratio_interval,
    widen,
)

SIZE = {"width": 8, "modes": 4, "layers": 4}


def gain_row(kind: str, value: float, lo: float, hi: float, width: int = 8, n_params: int = 8000, **extra) -> dict:
    row = {"family": "poisson", "shift": "none", "pretrain_family": "poisson", **SIZE, "width": width}
    row.update(n_params=n_params, finetune_strategy="full", target_error=0.1, verdict=kind, note="")
    row.update(gain=value if kind == "measured" else math.nan, bound=math.nan if kind == "measured" else value)
    row.update({"gain_lo": lo, "gain_hi": hi, "boot": None, "boot_lower": None, "boot_upper": None, **extra})
    return row


def flags(*rows: tuple[str, str]) -> pd.DataFrame:
    """Flags (check, mode) on the poisson/none/w8-m4 curves."""
    out = []
    for check, mode in rows:
        pretrain = "poisson" if mode == "finetune" else ""
        out.append({"check": check, "family": "poisson", "shift": "none", "pretrain_family": pretrain, **SIZE,
                    "mode": mode, "finetune_strategy": "full" if mode == "finetune" else "", "n_train": "",
                    "message": ""})  # fmt: skip
    return pd.DataFrame(out, columns=FLAG_COLUMNS)


def judge(flag_rows: pd.DataFrame) -> Judge:
    return Judge(pd.DataFrame(columns=["mode"]), flag_rows)


# 1. Bounds decide only from their interval ------------------------------------------------


def test_a_lower_bound_supports_only_where_its_lower_confidence_limit_is_at_least_10():
    # Old: '>= 16, supports' for Poisson/none/w6-m3 while 20% of its replicates put the bound below 10.
    rows = gain_claims(pd.DataFrame([gain_row("lower bound", 16.0, 8.3, math.inf)]), judge(flags()))
    assert rows.iloc[0]["at_least_10x"] != SUPPORTS
    rows = gain_claims(pd.DataFrame([gain_row("lower bound", 16.0, 12.0, math.inf)]), judge(flags()))
    assert rows.iloc[0]["at_least_10x"] == SUPPORTS and rows.iloc[0]["gain"] == ">= 16 [12, inf]"


def test_censored_replicates_bracket_each_replicates_gain():
    rng = np.random.default_rng(0)
    boot_sc = np.column_stack([rng.uniform(0.5, 2, 300), rng.uniform(0.2, 0.8, 300), rng.uniform(0, 0.02, 300)])
    boot_ft = np.column_stack([rng.uniform(0.05, 0.2, 300), rng.uniform(0.2, 0.8, 300), rng.uniform(0, 0.01, 300)])
    sc = pd.Series({"boot": boot_sc, "n_min": 4, "n_max": 64})
    ft = pd.Series({"boot": boot_ft, "n_min": 4, "n_max": 64})
    lower, upper = censored_replicates(ft, sc, 0.1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = examples_needed(0.1, *boot_sc.T) / examples_needed(0.1, *boot_ft.T)
    finite = np.isfinite(ratio)
    assert np.all(lower[finite] <= ratio[finite] * (1 + 1e-12)) and np.all(ratio[finite] <= upper[finite] * (1 + 1e-12))


# 2. No verdict where nothing was learned --------------------------------------------------


def test_cells_where_no_model_learned_get_no_verdict_and_a_flag():
    # Old: every test error 1.00-1.02 raised no flag and reported a gain '>= 4'.
    df = results_table(
        {("scratch", 8): (0.04, 0.3, 0.99), ("finetune", 8): (0.02, 0.5, 0.995)}, n_values=[4, 8, 16, 32]
    )
    findings = judge_table(df, n_boot=50)
    assert set(findings.cells[1]["verdict"]) == {NOT_LEARNED}
    points = select_points(df)
    found = diagnose(df, points, fit_curves(df, n_boot=20, points=points))
    assert "learned nothing" in set(found["check"])


def test_no_target_error_above_the_trivial_predictors_is_used():
    # Old: Helmholtz/large read '>= 12.2, supports' at a target error of 0.982 (predicting zero scores 1.0).
    df = results_table({("scratch", 8): (2.0, 0.5, 0.1), ("finetune", 8): (1.0, 0.5, 0.05)}, n_values=[4, 8, 16, 32])
    gains = data_efficiency_gain(df, n_boot=50)
    assert (gains["target_error"] <= 0.8 + 1e-12).all()
    forced = data_efficiency_gain(df, target_error=0.95, n_boot=50).iloc[0]
    assert forced["verdict"] == "target above trivial"


# 3. Diagnostics feed verdicts, by direction -----------------------------------------------


@pytest.mark.parametrize(
    "check,mode,stands",
    [
        ("learning rate at the grid's edge", "scratch", False),
        ("budget probe", "scratch", False),
        ("under-training", "scratch", False),
        ("learning rate at the grid's edge", "finetune", True),  # can only deflate the gain
        ("under-training", "finetune", True),
    ],
)
def test_a_flag_that_can_inflate_a_gain_keeps_its_supports_from_standing(check, mode, stands):
    # Old: scratch at the grid's largest rate and a probe improving 40% still gave 30.5 [27.7, 33.7], 'supports'.
    rows = gain_claims(pd.DataFrame([gain_row("measured", 30.5, 27.7, 33.7)]), judge(flags((check, mode))))
    verdict = rows.iloc[0]["at_least_10x"]
    assert (verdict == SUPPORTS) == stands
    if not stands:
        assert verdict.startswith(SCRATCH_DOUBT)


def test_a_deflating_flag_keeps_a_contradicts_from_standing():
    rows = gain_claims(
        pd.DataFrame([gain_row("measured", 2.0, 1.5, 3.0)]), judge(flags(("under-training", "finetune")))
    )
    assert rows.iloc[0]["at_least_10x"] != CONTRADICTS


def test_intervals_known_to_under_cover_are_widened_before_they_decide():
    # One data seed (a sweep-wide flag): 12 [10.5, 14] would decide alone; widened x2 it does not.
    sweep_wide = pd.DataFrame([{"check": "one data seed", **dict.fromkeys(FLAG_COLUMNS[1:], "")}], columns=FLAG_COLUMNS)
    rows = gain_claims(pd.DataFrame([gain_row("measured", 12.0, 10.5, 14.0)]), judge(sweep_wide))
    assert rows.iloc[0]["at_least_10x"] != SUPPORTS and f"widened x{WIDEN:g}" in rows.iloc[0]["decision_interval"]
    lo, hi = widen(12.0, 10.5, 14.0, 2.0)
    assert lo == pytest.approx(12 * (10.5 / 12) ** 2) and hi == pytest.approx(12 * (14 / 12) ** 2)


# 4. Claim 4 from intervals ---------------------------------------------------------------


def zero_shot_points(errors_by_shift: dict[str, list[float]], finetune: list[float]) -> pd.DataFrame:
    rows = []
    for shift, errors in errors_by_shift.items():
        for data_seed, err in enumerate(errors):
            rows.append({**result_row("zeroshot", 8, 1, 1e-3, 0, err, math.nan, data_seed=data_seed), "shift": shift})
    for data_seed, err in enumerate(finetune):
        for n in (4, 8):
            row = result_row("finetune", 8, n, 1e-3, 0, err * 8 / n, err * 8 / n * 1.1, data_seed=data_seed)
            rows.append({**row, "shift": "large"})
    return select_points(pd.DataFrame(rows))


def test_claim_4_needs_intervals_not_point_estimates():
    # Old: 0.1000 / 0.1001 / 0.1002 gave 'supports'; 0.1000 / 0.0999 / 0.5 gave 'contradicts'.
    tied = zero_shot_points({"none": [0.1000], "moderate": [0.1001], "large": [0.1002]}, [0.04])
    assert zero_shot_by_shift(tied).iloc[0]["verdict"] == NO_INTERVAL
    dipped = zero_shot_points({"none": [0.1000], "moderate": [0.0999], "large": [0.5]}, [0.04])
    assert zero_shot_by_shift(dipped).iloc[0]["verdict"] == NO_INTERVAL
    # With data seeds the same ties are measured, and stay undecided; a clear growth decides.
    tied3 = zero_shot_points({"none": [0.1, 0.11, 0.09], "moderate": [0.1001, 0.1102, 0.0899],
                              "large": [0.1002, 0.1098, 0.0903]}, [0.04, 0.045, 0.035])  # fmt: skip
    assert zero_shot_by_shift(tied3).iloc[0]["verdict"] not in (SUPPORTS, CONTRADICTS)
    grows = zero_shot_points({"none": [0.1, 0.11, 0.09], "moderate": [0.2, 0.23, 0.19], "large": [0.4, 0.45, 0.37]},
                             [0.04, 0.045, 0.035])  # fmt: skip
    assert zero_shot_by_shift(grows).iloc[0]["verdict"] == SUPPORTS


# 5. Claim 2 keeps censored sizes as bounds --------------------------------------------------


def test_claim_2_does_not_drop_censored_sizes():
    # Old: true gains 31.6, 20.3, inf, inf; the two largest became lower bounds, were left
    # out, and the trend over the other two read slope -0.31 [-0.38, -0.25], 'contradicts'.
    rng = np.random.default_rng(1)
    rows = []
    for i, (width, truth) in enumerate([(4, 31.6), (8, 20.3), (16, math.inf), (32, math.inf)]):
        n_params = 1000 * 4**i
        if math.isfinite(truth):
            boot = truth * np.exp(rng.normal(0, 0.05, 200))
            rows.append(gain_row("measured", truth, 0.9 * truth, 1.1 * truth, width, n_params,
                                 boot_lower=boot, boot_upper=boot))  # fmt: skip
        else:  # scratch never reaches the target by N = 64: only gain >= 64 / 4 is known
            lower = np.full(200, 16.0)
            rows.append(gain_row("lower bound", 16.0, 16.0, math.inf, width, n_params,
                                 boot_lower=lower, boot_upper=np.full(200, math.inf)))  # fmt: skip
    trend = size_trend(pd.DataFrame(rows), judge(flags())).iloc[0]
    assert trend["verdict"] != CONTRADICTS and trend["sizes_used"] == 4 and math.isinf(trend["slope_hi"])


# 6. Replicates that mean something --------------------------------------------------------


def test_seeds_that_differ_by_round_off_are_not_replicates():
    # Old: fine-tune seeds (0.3, 0.30001) gave claim 3 'supports' with the interval '0.3 [0.3, 0.3]'.
    assert math.isnan(point_interval([0.3, 0.30001])[1])
    assert math.isnan(point_interval([0.3, 0.30001, 0.3])[1])  # three seeds, but no spread above the floor
    assert not math.isnan(point_interval([0.3, 0.33, 0.28])[1])  # three seeds with spread
    assert not math.isnan(point_interval([0.3, 0.31], data_seeds=[0, 1])[1])  # two data seeds
    _, lo, _ = ratio_interval([0.3, 0.30001], [0, 0], [0.5, 0.5], [0, 0])
    assert math.isnan(lo)


def test_the_smallest_n_comparison_has_no_interval_from_identical_seeds():
    rows = []
    for n in (4, 8, 16, 32):
        for seed in range(2):
            rows.append(result_row("scratch", 8, n, 1e-3, seed, n**-0.5 * (1 + 0.01 * seed), n**-0.5))
            rows.append(result_row("finetune", 8, n, 1e-3, seed, 0.3 * n**-0.5 * (1 + 1e-5 * seed), 0.3 * n**-0.5))
    small = smallest_n_comparison(select_points(pd.DataFrame(rows))).iloc[0]
    assert small["decided"] == NO_INTERVAL and "[" not in small["finetune_over_scratch"]


# 7. Intervals that hold their estimate, positive errors, failures that print as failures ----


def test_every_interval_holds_its_estimate_and_errors_stay_positive():
    # Old: 20 of 81 fits of the study had b outside [b_lo, b_hi]; one b 0.0628 [0, -0.0113];
    # error intervals reached below zero: 0.56 [-0.172, 1.29].
    rng = np.random.default_rng(3)
    n = np.array([4, 8, 16, 32, 64])
    for replicate in range(30):
        err = saturating(n, 1.0, 0.3, 0.2) * np.exp(rng.normal(0, 0.3, n.size))
        fit = fit_curve(n, err, n_boot=50, seed=replicate)
        for p in "abc":
            if np.isfinite(fit[p]) and np.isfinite(fit[f"{p}_lo"]):
                assert fit[f"{p}_lo"] <= fit[p] <= fit[f"{p}_hi"], (replicate, p)
    mean, lo, hi = point_interval([0.05, 1.3, 0.33])
    assert 0 < lo <= mean <= hi


def test_a_failed_prediction_prints_as_one():
    # Old: 'saturating 34034384%'.
    assert _miss(340343.84) == "no prediction" and _miss(0.25) == "25%"
