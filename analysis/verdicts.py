"""The rules a verdict follows: when the report may say "supports" or "contradicts".

A verdict decides only from an interval, and only where every known source of doubt
has been taken in (docs/analysis.md, "Verdicts"):

1. Replicates. A point's interval comes from replicates that can differ: at least two
   data seeds (each its own training, validation and test sets; training seeds averaged
   within one), or at least three training seeds whose errors spread by more than
   ``fit.SPREAD_FLOOR`` (the sd of log error). Seeds that change nothing (a fine-tune whose
   N <= batch size sees the whole set each step, in any order) are not replicates.
   Fewer: no interval, and no verdict that needs one.
2. Errors are positive: their intervals are t intervals on the log scale, and every
   printed interval contains its estimate (``contain``).
3. Learned cells. A cell (family, shift, architecture, pre-training set) counts only if
   one of its models beats the trivial predictors (predicting zero: relative error 1;
   predicting the training set's mean field: ``mean_field_rel_l2``) by LEARNED_MARGIN;
   no target error above LEARNED_MARGIN times the trivial error is ever used.
4. Known under-coverage. Where the sweep has one data seed, or a cell's fits are
   flagged, the intervals are known to be too narrow: a verdict must survive the
   interval widened WIDEN times on the log scale about its estimate (calibrated by
   benchmarks/bench_verdicts.py), or it is "not decided".
5. Diagnostics by direction (``DIRECTIONS``). A flag that can inflate a gain (on the
   scratch side: under-training, a budget probe that still improves, a learning rate at
   the grid's edge, failed trials) keeps a "supports" from standing; one that can
   deflate it (the same on the fine-tune side, fine-tuning worse than zero-shot) keeps
   a "contradicts" from standing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from fno_analysis.fit import CONFIDENCE, has_spread, log_t_interval, t_quantile
from fno_analysis.points import SIZE_KEYS

SUPPORTS, CONTRADICTS = "supports", "contradicts"
UNDECIDED = "not decided by this sweep"
NO_INTERVAL = "not decided: no interval (fewer than 2 data seeds or 3 training seeds with spread)"
NOT_LEARNED = "no verdict: the models do not learn this task at this size"
SCRATCH_DOUBT = "not decided (scratch baseline under-trained)"
FINETUNE_DOUBT = "not decided (fine-tuning under-trained)"

LEARNED_MARGIN = 0.8  # a model learned a task if its error is at most this times the trivial predictors'
WIDEN = 2.0  # log-scale widening of intervals known to under-cover (benchmarks/bench_verdicts.py)

# Diagnostics (fno_analysis.diagnostics.CHECKS) and the direction in which each moves a gain
# (scratch's examples over fine-tuning's) when raised on a curve of the given mode. Fit
# warnings and one data seed do not move it: they widen its interval (rule 4).
INFLATES, DEFLATES = "inflates", "deflates"
DIRECTIONS: dict[tuple[str, str], set[str]] = {
    ("under-training", "scratch"): {INFLATES},
    ("budget probe", "scratch"): {INFLATES},
    ("learning rate at the grid's edge", "scratch"): {INFLATES},
    ("scratch floor above the pre-trained model", "scratch"): {INFLATES},
    ("failed trials", "scratch"): {INFLATES, DEFLATES},
    ("under-training", "finetune"): {DEFLATES},
    ("budget probe", "finetune"): {DEFLATES},
    ("learning rate at the grid's edge", "finetune"): {DEFLATES},
    ("fine-tuning worse than zero-shot", "finetune"): {DEFLATES},
    ("failed trials", "finetune"): {INFLATES, DEFLATES},
}
UNDERCOVERING = ("fit", "no law predicts", "one data seed")


# --- intervals -----------------------------------------------------------------------


def contain(estimate: float, lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) stretched to hold ``estimate`` (a bootstrap interval can miss its own
    estimate; widening it is the honest repair). NaN bounds stay NaN."""
    if math.isnan(lo) or math.isnan(hi) or math.isnan(estimate):
        return lo, hi
    return min(lo, estimate), max(hi, estimate)


def widen(estimate: float, lo: float, hi: float, factor: float) -> tuple[float, float]:
    """A positive quantity's interval widened ``factor`` times on the log scale about its
    estimate: lo -> estimate (lo / estimate)^factor. Bounds at 0 or inf stay there."""
    if factor == 1.0 or not estimate > 0 or math.isnan(lo) or math.isnan(hi):
        return lo, hi
    with np.errstate(divide="ignore"):
        new_lo = estimate * (lo / estimate) ** factor if lo > 0 else lo
        new_hi = estimate * (hi / estimate) ** factor if math.isfinite(hi) else hi
    return min(new_lo, lo), max(new_hi, hi)


def replicate_means(errors: Sequence[float], data_seeds: Sequence[int] | None) -> np.ndarray:
    """The replicate values of one point: per data seed the mean over its training seeds
    where there are >= 2 data seeds; else the training seeds if there are >= 3 whose
    spread exceeds SPREAD_FLOOR (``fit.has_spread``); else none (empty)."""
    values = np.asarray(errors, dtype=float)
    if data_seeds is not None and len(set(data_seeds)) >= 2:
        seeds = np.asarray(data_seeds)
        return np.array([values[seeds == d].mean() for d in sorted(set(data_seeds))])
    if values.size >= 3 and has_spread(values):
        return values
    return np.array([])


def point_interval(errors: Sequence[float], data_seeds: Sequence[int] | None = None) -> tuple[float, float, float]:
    """(mean, lo, hi) of a point's error: the mean of its rows, and the 95% log-t interval
    of its replicates (rule 1), stretched to hold the mean; lo = hi = NaN without replicates."""
    mean = float(np.mean(np.asarray(errors, dtype=float)))
    replicates = replicate_means(errors, data_seeds)
    lo, hi = log_t_interval(replicates)
    return (mean, *contain(mean, lo, hi))


def ratio_interval(
    a: Sequence[float],
    a_seeds: Sequence[int] | None,
    b: Sequence[float],
    b_seeds: Sequence[int] | None,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """(ratio, lo, hi): mean(a) / mean(b) with a ``confidence`` (95%) interval. Paired over the data seeds
    both points have (>= 2): a t interval of the per-seed log ratios; else, where both have
    replicates, the log difference with the two standard errors combined (degrees of
    freedom: the smaller sample's); else no interval."""
    a_values, b_values = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ratio = float(a_values.mean() / b_values.mean())
    if a_seeds is not None and b_seeds is not None:
        common = sorted(set(a_seeds) & set(b_seeds))
        if len(common) >= 2:
            a_s, b_s = np.asarray(a_seeds), np.asarray(b_seeds)
            per_seed = np.array([a_values[a_s == d].mean() / b_values[b_s == d].mean() for d in common])
            return (ratio, *contain(ratio, *log_t_interval(per_seed, confidence)))
    ra, rb = replicate_means(a, a_seeds), replicate_means(b, b_seeds)
    if ra.size < 2 or rb.size < 2:
        return ratio, math.nan, math.nan
    la, lb = np.log(ra), np.log(rb)
    se = math.sqrt(la.var(ddof=1) / la.size + lb.var(ddof=1) / lb.size)
    centre = la.mean() - lb.mean()
    half = t_quantile(min(la.size, lb.size) - 1, confidence) * se
    return (ratio, *contain(ratio, math.exp(centre - half), math.exp(centre + half)))


def above(lo: float, hi: float, threshold: float) -> str:
    """SUPPORTS where the whole interval is at or above ``threshold``, CONTRADICTS where it
    lies wholly below, else UNDECIDED (NO_INTERVAL where there is none)."""
    if math.isnan(lo) or math.isnan(hi):
        return NO_INTERVAL
    return SUPPORTS if lo >= threshold else CONTRADICTS if hi < threshold else UNDECIDED


def below(lo: float, hi: float, threshold: float) -> str:
    """SUPPORTS where the whole interval lies below ``threshold``, CONTRADICTS where it is at
    or above it, else UNDECIDED (NO_INTERVAL where there is none)."""
    if math.isnan(lo) or math.isnan(hi):
        return NO_INTERVAL
    return SUPPORTS if hi < threshold else CONTRADICTS if lo >= threshold else UNDECIDED


def temper(verdict: str, inflating: Iterable[str], deflating: Iterable[str]) -> str:
    """Rule 5: a SUPPORTS that an inflating flag could have made, or a CONTRADICTS that a
    deflating one could have made, becomes "not decided", naming the flags."""
    inflating, deflating = sorted(set(inflating)), sorted(set(deflating))
    if verdict == SUPPORTS and inflating:
        return f"{SCRATCH_DOUBT}: {', '.join(inflating)}"
    if verdict == CONTRADICTS and deflating:
        return f"{FINETUNE_DOUBT}: {', '.join(deflating)}"
    return verdict


# --- what the flags say about a cell -------------------------------------------------------


class CellDoubts:
    """The flags of a sweep, looked up by cell: which could inflate or deflate its gain,
    and whether its intervals are known to under-cover."""

    def __init__(self, flags: pd.DataFrame) -> None:
        self.flags = flags

    def _matching(self, family: str, shift: str, size: Sequence[int], mode: str, pretrain_family: str) -> pd.DataFrame:
        """Flags on the curve (family, shift, size, mode[, pretrain_family]), and the sweep-wide ones."""
        f = self.flags
        if f.empty:
            return f
        sweep_wide = f["family"].astype(str) == ""
        here = (f["family"] == family) & (f["shift"] == shift) & (f["mode"] == mode)
        for key, value in zip(SIZE_KEYS, size, strict=True):
            here &= f[key] == value
        if mode == "finetune":
            here &= f["pretrain_family"] == pretrain_family
        return f[here | sweep_wide]

    def directions(
        self, family: str, shift: str, size: Sequence[int], pretrain_family: str
    ) -> tuple[list[str], list[str]]:
        """(inflating, deflating) descriptions of the flags on a cell's scratch and fine-tune curves."""
        inflating, deflating = [], []
        for mode in ("scratch", "finetune"):
            for check in self._matching(family, shift, size, mode, pretrain_family)["check"]:
                moves = DIRECTIONS.get((check, mode), set())
                if INFLATES in moves:
                    inflating.append(f"{mode} {check}")
                if DEFLATES in moves:
                    deflating.append(f"{mode} {check}")
        return sorted(set(inflating)), sorted(set(deflating))

    def undercovers(self, family: str, shift: str, size: Sequence[int], pretrain_family: str) -> list[str]:
        """The flags that say this cell's intervals are too narrow (rule 4)."""
        found = set()
        for mode in ("scratch", "finetune"):
            found |= set(self._matching(family, shift, size, mode, pretrain_family)["check"]) & set(UNDERCOVERING)
        return sorted(found)


# --- learned cells -----------------------------------------------------------------------

CELL_KEYS = ["family", "shift", *SIZE_KEYS, "pretrain_family"]


def trivial_error(mean_field: float) -> float:
    """The better trivial predictor's error: predicting zero (1.0) or the training mean field."""
    return min(1.0, mean_field) if math.isfinite(mean_field) else 1.0


def learned_cells(points: pd.DataFrame) -> pd.DataFrame:
    """Per cell (CELL_KEYS; the scratch curve of the architecture joins every pre-training
    set's cell): the best point error of its scratch and fine-tune curves, the trivial
    error, the cap on target errors (LEARNED_MARGIN x trivial) and ``learned``.

    ``points`` needs ``mean_field_rel_l2`` (NaN where unknown: then predicting zero, 1.0,
    is the trivial error).
    """
    columns = [*CELL_KEYS, "best_error", "trivial_error", "target_cap", "learned"]
    trained = points[points["mode"].isin(("scratch", "finetune"))]
    finetune = trained[trained["mode"] == "finetune"]
    if finetune.empty:
        return pd.DataFrame(columns=columns)
    mean_field = trained.get("mean_field_rel_l2", pd.Series(np.nan, index=trained.index))
    trained = trained.assign(mean_field=mean_field.astype(float))
    arch = ["family", "shift", *SIZE_KEYS]
    scratch = (
        trained[trained["mode"] == "scratch"]
        .groupby(arch)
        .agg(scratch_best=("test_rel_l2", "min"), scratch_mean_field=("mean_field", "mean"))
    )
    cells = trained[trained["mode"] == "finetune"].groupby(CELL_KEYS)
    cells = cells.agg(finetune_best=("test_rel_l2", "min"), finetune_mean_field=("mean_field", "mean")).reset_index()
    cells = cells.merge(scratch.reset_index(), on=arch, how="left")
    rows = []
    for _, c in cells.iterrows():
        field = np.nanmin([c["finetune_mean_field"], c["scratch_mean_field"], np.inf])
        trivial = trivial_error(float(field))
        best = float(np.nanmin([c["finetune_best"], c["scratch_best"]]))
        rows.append(
            {
                **{k: c[k] for k in CELL_KEYS},
                "best_error": best,
                "trivial_error": trivial,
                "target_cap": LEARNED_MARGIN * trivial,
                "learned": bool(best <= LEARNED_MARGIN * trivial),
            }
        )
    return pd.DataFrame(rows, columns=columns)
