"""Data-efficiency gain: how many times more examples scratch training needs than
fine-tuning to reach a target error, read from the fitted curves, with its censoring.

N(e) inverts a fitted curve a N^-b + c. A curve's answer is measured only inside its
measured N: a curve already at the target at its smallest N says only N(e) <= N_min,
one that does not reach it by its largest N says N(e) > N_max (or never, below its
floor c). The gain N_scratch(e) / N_finetune(e) is then

| scratch \\ fine-tune | measured          | <= N_min(ft)          | > N_max(ft)        |
|---------------------|-------------------|-----------------------|--------------------|
| measured            | measured          | >= n_sc / N_min(ft)   | <= n_sc / N_max(ft)|
| > N_max(sc)         | >= N_max(sc)/n_ft | >= N_max(sc)/N_min(ft)| undetermined       |
| <= N_min(sc)        | <= N_min(sc)/n_ft | undetermined          | <= N_min(sc)/N_max(ft) |

and a scratch curve past its largest N whose floor is suspect (``fno_analysis.diagnostics``)
makes the gain "not measurable with this budget". Never a bare 0 or inf.

Every gain, a bound too, has a 95% interval from the paired bootstrap replicates of the
two fits, censored inside each replicate as the estimate is: the lower limit is the 2.5%
quantile of min(N_sc, N_max(sc)) / max(N_ft, N_min(ft)), which never exceeds that
replicate's gain, and the upper limit the 97.5% quantile of max(N_sc, N_min(sc)) /
min(N_ft, N_max(ft)), which never falls below it. A lower bound thus supports ">= 10x"
only where its lower limit is >= 10. Cells whose models learned nothing
(``fno_analysis.verdicts.learned_cells``) get no gain, and no target is above what the
trivial predictors score times LEARNED_MARGIN.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fno_analysis.fit import B_LOW, CONFIDENCE, fit_curves, saturating
from fno_analysis.points import CURVE_KEYS, SIZE_KEYS, check_columns, select_points
from fno_analysis.verdicts import CELL_KEYS, contain, learned_cells

RANGE_SLACK = 1e-9  # relative tolerance of "inside the measured range"
GAIN_VERDICTS = {
    "measured": "both curves reach the target inside their measured N",
    "lower bound": "a curve reaches the target outside its measured N: gain >= bound",
    "upper bound": "a curve reaches the target outside its measured N: gain <= bound",
    "not measurable with this budget": "scratch levels off above the target, and its floor is likely a training-budget "
    "artefact (see the diagnostics): no gain can be read from this sweep",
    "undetermined": "both curves reach the target outside their measured N on the same side: no bound",
    "no fit": "a curve is missing or too short to fit",
    "not learned": "no model of this cell beats the trivial predictors (zero, the mean field) by the stated margin",
    "target above trivial": "the target error is above what predicting zero or the mean field scores (x the margin)",
}


def examples_needed(error, a, b, c):
    """N at which a N^(-b) + c equals ``error``: inf where the curve never gets that low,
    0 where it is there for every N (a flat curve, a = 0, at or below ``error``)."""
    error, a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (error, a, b, c)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.power(a / (error - c), 1.0 / b)
    n = np.where(error > c, n, np.inf)
    return np.where(a <= 0, np.where(error >= c, 0.0, np.inf), n)


def default_targets(fits: pd.DataFrame) -> pd.DataFrame:
    """The target error of each (family, shift), one for all its sizes and pre-training sets.

    The lowest fitted error that any fine-tune curve reaches at its smallest N (so the
    best curve's gain is the gain of its fewest-example point), raised if need be to the
    highest error any fine-tune curve reaches at its largest N, so that every fine-tune
    curve reaches the target inside its measured N; where no error lies in every curve's
    range, the geometric mean of the two. Only the paper's ("full") fine-tune curves set
    the targets where a sweep has them, so adding strategies leaves its gains as they
    were. Columns: family, shift, target_error.
    """
    ft = fits[(fits["mode"] == "finetune") & np.isfinite(fits["a"].astype(float))]
    if "finetune_strategy" in ft and (ft["finetune_strategy"] == "full").any():
        ft = ft[ft["finetune_strategy"] == "full"]  # other strategies do not move the paper's targets
    if ft.empty:
        return pd.DataFrame(columns=["family", "shift", "target_error"])
    a, b, c = (ft[k].astype(float).to_numpy() for k in ("a", "b", "c"))
    b = np.where(a > 0, b, 0.0)  # a flat curve: its level everywhere
    ft = ft.assign(
        reach_hi=saturating(ft["n_min"].to_numpy(float), a, b, c),
        reach_lo=saturating(ft["n_max"].to_numpy(float), a, b, c),
    )
    bounds = ft.groupby(["family", "shift"], sort=True).agg(hi=("reach_hi", "min"), lo=("reach_lo", "max"))
    common = bounds["hi"] >= bounds["lo"]
    target = np.where(common, bounds["hi"], np.sqrt(bounds["hi"] * bounds["lo"]))
    return bounds.assign(target_error=target).reset_index()[["family", "shift", "target_error"]]


def data_efficiency_gain(
    df: pd.DataFrame,
    target_error: float | None = None,
    fits: pd.DataFrame | None = None,
    n_boot: int = 200,
    seed: int = 0,
    floor_artefacts: set[tuple] | None = None,
    learned: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The gain of every fine-tune curve (each pre-training set and strategy) over the
    scratch curve of its architecture.

    ``target_error`` None: per (family, shift), ``default_targets``. floor_artefacts:
    (family, shift, width, modes, layers) of scratch curves whose floor is suspect.
    learned: ``fno_analysis.verdicts.learned_cells`` (computed from the points if None):
    cells that learned nothing get verdict "not learned", and default targets are capped
    at the family and shift's smallest ``target_cap``.

    Columns: family, shift, pretrain_family, width, modes, layers, finetune_strategy,
    n_params (of the fine-tuned model), target_error, n_finetune, n_scratch (from the
    fits; 0 or inf where a curve is flat there or never gets there), gain, gain_lo,
    gain_hi (the censored 95% limits, for bounds too), bound, verdict (GAIN_VERDICTS),
    note, boot (the gain's replicates where measured, else None), boot_lower and
    boot_upper (each replicate's censored limits, see the module docstring).
    """
    if target_error is not None and not (isinstance(target_error, int | float) and target_error > 0):
        raise ValueError(f"target_error must be a positive number or None, got {target_error!r}")
    fits = fit_curves(df, n_boot=n_boot, seed=seed) if fits is None else fits
    check_columns(fits, [*CURVE_KEYS, "a", "b", "c", "n_min", "n_max", "boot"])
    learned = learned_cells(select_points(df)) if learned is None else learned
    cells = learned.set_index(CELL_KEYS)
    caps = learned[learned["learned"].astype(bool)].groupby(["family", "shift"])["target_cap"].min()
    targets = default_targets(fits).set_index(["family", "shift"])["target_error"]
    targets = pd.Series([min(t, caps.get(k, t)) for k, t in targets.items()], index=targets.index, dtype=float)
    scratch = fits[fits["mode"] == "scratch"].set_index(["family", "shift", *SIZE_KEYS])
    floor_artefacts = floor_artefacts or set()
    rows = []
    for _, ft in fits[fits["mode"] == "finetune"].iterrows():
        key = (ft["family"], ft["shift"], *(ft[k] for k in SIZE_KEYS))
        row = {k: ft[k] for k in ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params"]}
        row["finetune_strategy"] = ft.get("finetune_strategy", "full") or "full"
        row.update(dict.fromkeys(["target_error", "n_finetune", "n_scratch", "gain", "gain_lo", "gain_hi", "bound"]))
        if target_error is not None:
            row["target_error"] = float(target_error)
        elif (ft["family"], ft["shift"]) in targets.index:
            row["target_error"] = float(targets.loc[(ft["family"], ft["shift"])])
        cell = (ft["family"], ft["shift"], *(ft[k] for k in SIZE_KEYS), ft["pretrain_family"])
        if cell in cells.index and not cells.loc[cell, "learned"]:
            c = cells.loc[cell]
            why = (
                f"best error {c['best_error']:.3g} > {c['target_cap']:.3g} (the margin x the trivial "
                f"predictors' {c['trivial_error']:.3g})"
            )
            rows.append({**row, "verdict": "not learned", "note": why, "boot": None})
            continue
        cap = cells.loc[cell, "target_cap"] if cell in cells.index else math.inf
        if row["target_error"] is not None and row["target_error"] > cap:
            why = f"target {row['target_error']:.4g} > {cap:.4g}"
            rows.append({**row, "verdict": "target above trivial", "note": why, "boot": None})
            continue
        sc = scratch.loc[key] if key in scratch.index else None
        if sc is None or ft["boot"] is None or sc["boot"] is None or row["target_error"] is None:
            why = "no scratch curve of this architecture" if sc is None else "a curve has too few points to fit"
            rows.append({**row, "verdict": "no fit", "note": why, "boot": None})
            continue
        rows.append({**row, **_gain(ft, sc, row["target_error"], key in floor_artefacts)})
    columns = ["family", "shift", "pretrain_family", *SIZE_KEYS, "finetune_strategy", "n_params", "target_error"]
    columns += ["n_finetune"]
    columns += ["n_scratch", "gain", "gain_lo", "gain_hi", "bound", "verdict", "note", "boot", "boot_lower"]
    columns += ["boot_upper"]
    out = pd.DataFrame(rows, columns=columns)
    for column in ["target_error", "n_finetune", "n_scratch", "gain", "gain_lo", "gain_hi", "bound"]:
        out[column] = out[column].astype(float)
    return out


def _side(curve: pd.Series, target: float) -> tuple[float, str]:
    """(N needed, where): where is 'measured', 'below' (<= N_min) or 'above' (> N_max).

    A curve without a resolved decay (a = 0 or b < B_LOW) is flat: at or below the
    target at its smallest N, it is there at every N ('below'), however its tiny slope
    would extrapolate.
    """
    needed = float(examples_needed(target, curve["a"], curve["b"], curve["c"]))
    flat = not curve["a"] > 0 or not curve["b"] >= B_LOW
    if flat and target >= saturating(curve["n_min"], curve["a"], np.nan_to_num(curve["b"]), curve["c"]) * (
        1 - RANGE_SLACK
    ):
        return needed, "below"
    if needed < curve["n_min"] * (1 - RANGE_SLACK):
        return needed, "below"
    if needed > curve["n_max"] * (1 + RANGE_SLACK):
        return needed, "above"
    return needed, "measured"


def _gain(ft: pd.Series, sc: pd.Series, target: float, floor_artefact: bool) -> dict:
    """The gain columns of one (fine-tune, scratch) pair at ``target``; see the module docstring."""
    n_ft, ft_side = _side(ft, target)
    n_sc, sc_side = _side(sc, target)
    out = {"n_finetune": n_ft, "n_scratch": n_sc, "boot": None, "boot_lower": None, "boot_upper": None}
    ft_n = {"measured": n_ft, "below": ft["n_min"], "above": ft["n_max"]}[ft_side]
    sc_n = {"measured": n_sc, "below": sc["n_min"], "above": sc["n_max"]}[sc_side]
    words = {"below": "already at the target at its smallest N", "above": "past its largest N"}
    notes = []
    for name, side, curve in (("fine-tune", ft_side, ft), ("scratch", sc_side, sc)):
        if side != "measured":
            edge = int(curve["n_min" if side == "below" else "n_max"])
            notes.append(f"{name} reaches {target:.4g} {words[side]} ({edge})")
    if sc_side == "above":
        floor = f"scratch floor c = {sc['c']:.4g} [{sc['c_lo']:.4g}, {sc['c_hi']:.4g}]"
        notes.append(floor + (", never reaches the target" if math.isinf(n_sc) else f", N = {n_sc:.3g} extrapolated"))
    note = "; ".join(notes)
    lower, upper = censored_replicates(ft, sc, target)
    if lower.size < 20:  # too few replicates with a fit for a 95% interval
        lo, hi = math.nan, math.nan
    else:  # inverted_cdf: actual replicate values, so inf stays inf (interpolation would give nan)
        lo = float(np.quantile(lower, (1 - CONFIDENCE) / 2, method="inverted_cdf"))
        hi = float(np.quantile(upper, (1 + CONFIDENCE) / 2, method="inverted_cdf"))
    out.update(gain_lo=lo, gain_hi=hi, boot_lower=lower, boot_upper=upper)
    if sc_side == "above" and floor_artefact:
        return {**out, "bound": sc_n / ft_n, "verdict": "not measurable with this budget", "note": note}
    lower_bound = (sc_side == "above" and ft_side != "above") or (ft_side == "below" and sc_side == "measured")
    upper_bound = (sc_side == "below" and ft_side != "below") or (ft_side == "above" and sc_side == "measured")
    if lower_bound or upper_bound:
        bound = sc_n / ft_n
        out["gain_lo"], out["gain_hi"] = contain(bound, lo, hi)
        return {**out, "bound": bound, "verdict": "lower bound" if lower_bound else "upper bound", "note": note}
    if ft_side != "measured":  # both on the same side
        return {**out, "verdict": "undetermined", "note": note}
    k = min(len(ft["boot"]), len(sc["boot"]))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # inf / inf: NaN, dropped; overflow: inf
        ratio = examples_needed(target, *sc["boot"][:k].T) / examples_needed(target, *ft["boot"][:k].T)
    if np.isinf(ratio).mean() > (1 - CONFIDENCE) / 2:
        note = f"{np.isinf(ratio).mean():.0%} of bootstrap replicates: scratch never reaches the target"
    gain = n_sc / n_ft
    out["gain_lo"], out["gain_hi"] = contain(gain, lo, hi)
    return {**out, "gain": gain, "verdict": "measured", "note": note, "boot": ratio}


def censored_replicates(ft: pd.Series, sc: pd.Series, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Per paired bootstrap replicate, the gain's censored lower and upper limits (see the
    module docstring): N read off each replicate curve, clipped to the measured N range
    on the side that keeps the limit conservative. Replicates whose fit failed are dropped."""
    k = min(len(ft["boot"]), len(sc["boot"]))
    n_sc = examples_needed(target, *sc["boot"][:k].T)
    n_ft = examples_needed(target, *ft["boot"][:k].T)
    usable = ~(np.isnan(n_sc) | np.isnan(n_ft))
    n_sc, n_ft = n_sc[usable], n_ft[usable]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # N past float's range: an inf gain
        lower = np.minimum(n_sc, sc["n_max"]) / np.maximum(n_ft, ft["n_min"])
        upper = np.maximum(n_sc, sc["n_min"]) / np.minimum(n_ft, ft["n_max"])
    return lower, np.where(np.isnan(upper), np.inf, upper)
