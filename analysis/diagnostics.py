"""Can these numbers be trusted? Flags a sweep's own results raise against its fits and gains.

Each flag names its check, the curve (family, shift, pre-training set, architecture,
mode) and the points (N values) it concerns, with a sentence a reader can act on:

- ``under-training``: a point's best validation error came in the last 10% of its
  budget and was still falling there (the last evaluation at least UNDERTRAINED_DROP
  below the one at 90% of the budget), for the learning rate the point uses;
- ``budget probe``: where the sweep ran a point again with twice the budget (preset
  ``budget_probe``), the doubled budget improved the validation error by more than
  PROBE_TOLERANCE: the point is not converged. With a cosine schedule the validation
  curve flattens at the end of every run, converged or not, so this direct
  measurement is the stronger of the two checks;
- ``learning rate at the grid's edge``: the rate chosen for a point is the smallest or
  the largest the sweep tried there, so a better one may lie outside the grid;
- ``scratch floor above the pre-trained model``: a scratch curve's fitted floor c lies
  above the in-distribution test error of the pre-trained model of the same
  architecture: the architecture does better than the floor, so the floor is likely a
  budget (or data) artefact, and gains computed against it are censored
  ("not measurable with this budget"), never infinite;
- ``fine-tuning worse than zero-shot``: a fine-tuned point's test error is above the
  zero-shot error of the model it started from: training destroyed what pre-training
  gave (the best checkpoint is chosen among the evaluations after training starts), a
  sign that the learning rate is too high for fine-tuning;
- ``failed trials``: the share of a curve's trials that failed, diverged or were stopped;
- ``fit``: the fit's own warnings (too few points, exponent at the search bound);
- ``learned nothing``: no model of a cell (family, shift, architecture, pre-training
  set) beats the trivial predictors (zero, and the training set's mean field) by
  ``fno_analysis.verdicts.LEARNED_MARGIN``; the cell gets no verdict and is left out of
  every claim;
- ``mixed code versions``: the sweep's rows come from more than one version of the code
  (``source_digest``, ``fno.provenance``): one flag naming the versions and their trials;
- ``one data seed``: the sweep drew one data set (one ``data_seed``), so every point of
  a curve trained on nested subsets of one training set and was tested on one test
  set: their noise is shared along N, which one curve's residuals cannot show, and the
  intervals are narrower than they should be. Several data seeds make the bootstrap
  resample whole curves (``fno_analysis.fit``). One flag for the sweep.

``diagnose(df, points, fits)`` returns one row per flag; ``floor_artefacts(flags)`` the
curves whose scratch floor is suspect, for ``fno_analysis.fit.data_efficiency_gain``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from fno.vocabulary import FITTED_MODES
from fno_analysis.fit import has_spread
from fno_analysis.forms import FORMS, PREDICTS, no_form_predicts
from fno_analysis.points import CURVE_KEYS, POINT_KEYS, SIZE_KEYS, with_study_columns

UNDERTRAINED_TAIL = 0.9  # "the last 10% of the budget" starts here
UNDERTRAINED_DROP = 0.01  # "still falling": the final evaluation at least 1% below the one at 90%
PROBE_TOLERANCE = 0.10  # doubling the budget may improve the validation error by at most 10%
FLAG_COLUMNS = ["check", *CURVE_KEYS, "n_train", "message"]
CHECKS = (
    "under-training",
    "budget probe",
    "learning rate at the grid's edge",
    "scratch floor above the pre-trained model",
    "fine-tuning worse than zero-shot",
    "failed trials",
    "fit",
    "no law predicts",
    "seeds without spread",
    "one data seed",
    "learned nothing",
    "mixed code versions",
)


def _n_list(values) -> str:
    return ", ".join(str(int(v)) for v in sorted(set(values)))


def still_falling(eval_steps, eval_values, steps: int, best_step: int) -> tuple[bool, float, float]:
    """(flag, error at 90% of the budget, final error) of one trial's validation curve."""
    unknown = False, math.nan, math.nan  # older tables and failed trials have no curve
    if eval_steps is None or eval_values is None or pd.isna(steps) or pd.isna(best_step) or steps <= 0:
        return unknown
    eval_steps, eval_values = np.asarray(eval_steps, dtype=float), np.asarray(eval_values, dtype=float)
    if eval_steps.ndim != 1 or eval_steps.size < 2 or eval_values.shape != eval_steps.shape:
        return unknown
    mark = math.ceil(UNDERTRAINED_TAIL * steps)
    before = eval_steps <= mark
    if not before.any():
        return unknown
    at_mark = float(eval_values[before][-1])
    final = float(eval_values[-1])
    late_best = best_step >= mark and best_step > eval_steps[before][-1]
    return bool(late_best and final < at_mark * (1 - UNDERTRAINED_DROP)), at_mark, final


def _chosen_rows(df: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """The ok downstream rows (main grid, no probes) of the learning rate each point uses."""
    rows = df[(df["status"] == "ok") & df["mode"].isin(FITTED_MODES) & (df["stage"] != "probe")]
    chosen = points.loc[points["mode"].isin(FITTED_MODES), [*POINT_KEYS, "lr"]]
    return rows.merge(chosen, on=[*POINT_KEYS, "lr"], how="inner")


def _flag(check: str, keys, n_train: str, message: str) -> dict:
    """One row of the flags table; keys: the curve's CURVE_KEYS values, in order."""
    return {"check": check, **dict(zip(CURVE_KEYS, keys, strict=True)), "n_train": n_train, "message": message}


def _per_curve(frame: pd.DataFrame, check: str, describe: Callable[[pd.DataFrame], str]) -> list[dict]:
    """One ``check`` flag per curve of ``frame`` (rows with CURVE_KEYS and n_train): its N
    values, and ``describe(the curve's rows)`` as the message."""
    return [
        _flag(check, keys, _n_list(group["n_train"]), describe(group))
        for keys, group in frame.groupby(CURVE_KEYS, dropna=False, sort=True)
    ]


def _under_training(df: pd.DataFrame, points: pd.DataFrame) -> list[dict]:
    rows = _chosen_rows(df, points)
    if rows.empty or "eval_steps" not in rows:
        return []
    hits = []
    for row in rows.itertuples(index=False):  # one row per trial: a few hundred at most per curve
        flag, at_mark, final = still_falling(row.eval_steps, row.eval_val_rel_l2, row.steps, row.best_step)
        if flag:
            hits.append({**{k: getattr(row, k) for k in POINT_KEYS}, "at_mark": at_mark, "final": final})

    def describe(group: pd.DataFrame) -> str:
        worst = group.loc[(group["final"] / group["at_mark"]).idxmin()]
        return (
            f"best validation error in the last 10% of the budget and still falling at N = "
            f"{_n_list(group['n_train'])} (e.g. N = {int(worst['n_train'])}: {worst['at_mark']:.4g} at 90% of the "
            f"budget, {worst['final']:.4g} at its end): train longer (raise epochs)"
        )

    return _per_curve(pd.DataFrame(hits, columns=[*POINT_KEYS, "at_mark", "final"]), "under-training", describe)


def probe_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every budget probe beside its base trial: validation and test error at 1x and 2x."""
    columns = [*POINT_KEYS, "lr", "seed", "data_seed", "steps", "steps_2x", "val_rel_l2", "val_rel_l2_2x"]
    columns += ["test_rel_l2", "test_rel_l2_2x"]
    df = with_study_columns(df)
    probes = df[(df["stage"] == "probe") & (df["status"] == "ok")]
    base = df[(df["stage"] == "downstream") & (df["status"] == "ok")]
    merged = probes.merge(base, on=[*POINT_KEYS, "lr", "seed", "data_seed"], suffixes=("_2x", ""))
    out = merged.loc[merged["steps_2x"] > merged["steps"], columns].copy()
    out["val_improvement"] = 1.0 - out["val_rel_l2_2x"] / out["val_rel_l2"]
    out["test_improvement"] = 1.0 - out["test_rel_l2_2x"] / out["test_rel_l2"]
    return out.sort_values(POINT_KEYS, kind="stable").reset_index(drop=True)


def _budget_probes(df: pd.DataFrame) -> list[dict]:
    """Probes (stage 'probe': the same trial at twice the budget) that improved too much."""
    flags = []
    for keys, group in probe_table(df).groupby(CURVE_KEYS, dropna=False, sort=True):
        bad = group[group["val_improvement"] > PROBE_TOLERANCE]
        if bad.empty:
            continue
        worst = bad.loc[bad["val_improvement"].idxmax()]
        message = (
            f"doubling the budget ({int(worst['steps'])} -> {int(worst['steps_2x'])} steps) improved the validation "
            f"error by {worst['val_improvement']:.0%} (> {PROBE_TOLERANCE:.0%}) at N = {int(worst['n_train'])}, "
            f"lr {worst['lr']:g}: not converged"
        )
        flags.append(_flag("budget probe", keys, _n_list(bad["n_train"]), message))
    return flags


def _lr_edges(points: pd.DataFrame) -> list[dict]:
    trained = points[points["mode"].isin(FITTED_MODES)]
    if not trained.empty and (trained["n_lrs"] == 1).all():
        rates = ", ".join(f"{v:g}" for v in sorted(trained["lr"].unique()))
        message = f"every point was trained with one learning rate ({rates}): whether a better rate exists is unchecked"
        return [_flag("learning rate at the grid's edge", [""] * len(CURVE_KEYS), "", message)]
    trained = trained[trained["n_lrs"] > 1]
    edge = trained[(trained["lr"] == trained["lr_min"]) | (trained["lr"] == trained["lr_max"])]

    def describe(group: pd.DataFrame) -> str:
        parts = []
        for side, column in (("smallest", "lr_min"), ("largest", "lr_max")):
            at = group[group["lr"] == group[column]]
            if not at.empty:
                parts.append(f"the {side} rate ({at['lr'].iloc[0]:g}) at N = {_n_list(at['n_train'])}")
        return (
            f"validation chose {' and '.join(parts)}; a better rate may lie outside the grid "
            f"[{group['lr_min'].min():g}, {group['lr_max'].max():g}]"
            + (" (with two rates every choice is at an edge)" if (group["n_lrs"] == 2).all() else "")
        )

    return _per_curve(edge, "learning rate at the grid's edge", describe)


def reference_errors(df: pd.DataFrame) -> pd.DataFrame:
    """Per (family, architecture): the pre-trained model's in-distribution test error.

    The pre-training trial of that family (its test set is the pre-training range), else
    the zero-shot error at shift 'none' of any pre-trained model of that architecture.
    Columns: family, width, modes, layers, reference_error, reference.
    """
    ok = df[df["status"] == "ok"]
    pre = ok[ok["mode"] == "pretrain"].groupby(["family", *SIZE_KEYS], sort=True)["test_rel_l2"].min()
    pre = pre.reset_index().assign(reference="pre-training test error")
    zero = ok[(ok["mode"] == "zeroshot") & (ok["shift"] == "none")]
    zero = zero.groupby(["family", *SIZE_KEYS], sort=True)["test_rel_l2"].min().reset_index()
    zero = zero.assign(reference="zero-shot error at shift 'none'")
    both = pd.concat([pre, zero], ignore_index=True).drop_duplicates(["family", *SIZE_KEYS], keep="first")
    return both.rename(columns={"test_rel_l2": "reference_error"})


def _scratch_floors(df: pd.DataFrame, fits: pd.DataFrame) -> list[dict]:
    scratch = fits[(fits["mode"] == "scratch") & np.isfinite(fits["c"].astype(float))]
    if scratch.empty:
        return []
    merged = scratch.merge(reference_errors(df), on=["family", *SIZE_KEYS], how="inner")
    flags = []
    for _, r in merged[merged["c"] > merged["reference_error"]].iterrows():
        message = (
            f"scratch levels off at c = {r['c']:.4g} [{r['c_lo']:.4g}, {r['c_hi']:.4g}], above the {r['reference']} "
            f"of this architecture ({r['reference_error']:.4g}): the floor is likely a training-budget or data "
            "artefact; gains against it are not measurable with this budget"
        )
        flags.append(_flag("scratch floor above the pre-trained model", [r[k] for k in CURVE_KEYS], "", message))
    return flags


def _worse_than_zero_shot(points: pd.DataFrame) -> list[dict]:
    zero = points.loc[points["mode"] == "zeroshot", ["family", "shift", "pretrain_family", *SIZE_KEYS, "test_rel_l2"]]
    tuned = points[points["mode"] == "finetune"].merge(
        zero.rename(columns={"test_rel_l2": "zero_shot"}), on=["family", "shift", "pretrain_family", *SIZE_KEYS]
    )
    worse = tuned[tuned["test_rel_l2"] > tuned["zero_shot"]]

    def describe(group: pd.DataFrame) -> str:
        top = group.loc[(group["test_rel_l2"] / group["zero_shot"]).idxmax()]
        return (
            f"fine-tuned error above the pre-trained model's own zero-shot error ({top['zero_shot']:.4g}) at N = "
            f"{_n_list(group['n_train'])} (e.g. N = {int(top['n_train'])}: {top['test_rel_l2']:.4g} with lr "
            f"{top['lr']:g}): fine-tuning made the model worse; try smaller learning rates"
        )

    return _per_curve(worse, "fine-tuning worse than zero-shot", describe)


def _failures(df: pd.DataFrame) -> list[dict]:
    down = df[df["mode"].isin((*FITTED_MODES, "zeroshot")) & (df["stage"] != "probe")]
    flags = []
    for keys, group in down.groupby(CURVE_KEYS, dropna=False, sort=True):
        bad = group[group["status"] != "ok"]
        if bad.empty:
            continue
        what = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
        message = f"{len(bad)} of {len(group)} trials ({len(bad) / len(group):.0%}) not ok: {what}"
        flags.append(_flag("failed trials", keys, _n_list(bad["n_train"]), message))
    for _, row in df[(df["mode"] == "pretrain") & (df["status"] != "ok")].iterrows():
        message = f"pre-training is {row['status']}: {str(row['error'])[:200]}"
        flags.append(_flag("failed trials", [row[k] for k in CURVE_KEYS], str(row["n_train"]), message))
    return flags


def _fit_warnings(fits: pd.DataFrame) -> list[dict]:
    return [_flag("fit", [r[k] for k in CURVE_KEYS], "", r["warning"]) for _, r in fits.iterrows() if r.get("warning")]


def _unpredictable(fits: pd.DataFrame) -> list[dict]:
    """Curves whose largest N no form (pure, saturating, broken) predicts within 10%."""
    flags = []
    for _, row in fits.iterrows():
        if no_form_predicts(row):
            misses = ", ".join(f"{f} {_miss(row[f'heldout_{f}'])}" for f in FORMS if not np.isnan(row[f"heldout_{f}"]))
            message = f"no form predicts the largest N from the others within {PREDICTS:.0%} (misses: {misses})"
            flags.append(_flag("no law predicts", [row[k] for k in CURVE_KEYS], str(int(row["n_max"])), message))
    return flags


NO_PREDICTION = 10.0  # a held-out miss above 1000% is a failed fit, not a measurement


def _miss(value: float) -> str:
    """A held-out relative miss as a percentage; 'no prediction' where the fit failed."""
    return f"{value:.0%}" if value <= NO_PREDICTION else "no prediction"


def _mixed_versions(df: pd.DataFrame) -> list[dict]:
    if "source_digest" not in df:
        return []
    ran = df[df["source_digest"].fillna("") != ""]
    versions = ran.groupby("source_digest")["code_version"].agg(["first", "size"])
    if len(versions) < 2:
        return []
    listed = "; ".join(f"{row['first']} ({row['size']} trials)" for _, row in versions.iterrows())
    message = (
        f"the rows come from {len(versions)} versions of the code: {listed}; results of different code are "
        "pooled as one study (run the changed code as a new sweep, --sweep NEW, to compare)"
    )
    return [_flag("mixed code versions", [""] * len(CURVE_KEYS), "", message)]


def _not_learned(points: pd.DataFrame) -> list[dict]:
    from fno_analysis.verdicts import LEARNED_MARGIN, learned_cells

    cells = learned_cells(points)
    flags = []
    for _, c in cells[~cells["learned"].astype(bool)].iterrows():
        keys = [c["family"], c["shift"], c["pretrain_family"], *(c[k] for k in SIZE_KEYS), "finetune", ""]
        message = (
            f"no model of this cell does better than {c['best_error']:.3g}, not below {LEARNED_MARGIN:g} x the trivial "
            f"predictors' error ({c['trivial_error']:.3g}: zero or the training mean field): the models do not learn "
            "this task at this size; no verdict, and left out of every claim"
        )
        flags.append(_flag("learned nothing", keys, "", message))
    return flags


def _seeds_without_spread(points: pd.DataFrame) -> list[dict]:
    """Points whose seeds all gave the same test error: the seed changes nothing there."""
    trained = points[points["mode"].isin(FITTED_MODES) & (points["n_seeds"] >= 2)]
    same = trained.loc[np.array([not has_spread(e) for e in trained["seed_errors"]], dtype=bool)]
    return _per_curve(
        same,
        "seeds without spread",
        lambda group: (
            "every seed gave the same test error: with N <= the batch size each step sees the whole set in any "
            "order, so a fine-tune's seed changes nothing; these points have no interval, and data_seeds give them one"
        ),
    )


def _one_data_seed(df: pd.DataFrame, fits: pd.DataFrame) -> list[dict]:
    if df["data_seed"].nunique() > 1 or fits.empty or not np.isfinite(fits["b"].astype(float)).any():
        return []
    message = (
        "one data seed: the points of a curve share their training and test data, so their noise is "
        "correlated along N and the fits' intervals under-cover; run data_seeds = [0, 1, 2, 3, 4] (or more) "
        "to have whole curves resampled"
    )
    return [_flag("one data seed", [""] * len(CURVE_KEYS), "", message)]


def diagnose(df: pd.DataFrame, points: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Every flag of a sweep (FLAG_COLUMNS), in the order of CHECKS."""
    df = with_study_columns(df)
    flags = [
        *_under_training(df, points),
        *_budget_probes(df),
        *_lr_edges(points),
        *_scratch_floors(df, fits),
        *_worse_than_zero_shot(points),
        *_failures(df),
        *_fit_warnings(fits),
        *_unpredictable(fits),
        *_seeds_without_spread(points),
        *_one_data_seed(df, fits),
        *_not_learned(points),
        *_mixed_versions(df),
    ]
    return pd.DataFrame(flags, columns=FLAG_COLUMNS)


def floor_artefacts(flags: pd.DataFrame) -> set[tuple]:
    """(family, shift, width, modes, layers) of the scratch curves whose floor is suspect."""
    suspect = flags[flags["check"] == "scratch floor above the pre-trained model"]
    return {tuple(row) for row in suspect[["family", "shift", *SIZE_KEYS]].itertuples(index=False)}
