"""Learning-curve fits of a sweep's results: err(N) = a N^(-b) + c, with bootstrap intervals.

Conventions
- Points and curves are those of ``fno_analysis.points`` (the learning rate of a point is
  chosen by validation error; a model size is its architecture).
- Fits are least squares on the log scale, sum (log f(N_i) - log y_i)^2, the scale the
  bootstrap resamples, so small errors weigh as much as large ones and log-normal noise
  leaves c unbiased. Saturating law by variable projection: for a given b the best
  a >= 0, c >= 0 come from a few Gauss-Newton steps, each a two-variable non-negative
  least-squares problem solved in closed form (started from the relative-residual
  solution); b is found on a grid over (0, B_MAX] and polished by golden-section
  search, all bootstrap replicates at once (vectorised: no per-replicate optimiser
  calls). Pure power law a N^(-b): linear least squares on log y.
- Replicates (``_replicates``) are a wild bootstrap of the log residuals (Rademacher
  signs, so points with larger noise keep it; residuals divided by 1 - leverage)
  and, where a point has several seeds, a second stage that resamples its seeds and
  chooses the learning rate again from the resampled validation errors (the selection
  happens inside every replicate), the residual stage shrunk so that the total variance
  stays the residuals'. With several data seeds the second stage resamples whole
  curves: one set of Dirichlet weights over the data seeds for every N of a curve, so
  noise that a data seed shares along N (nested training sets, one test set) is in the
  replicates; its spread is widened by t(k - 1) / z for the k curves it comes from.
  Replicates of the scratch and fine-tune curves of one cell (family, shift,
  architecture) use the same random draws: their gain's replicates are paired.
- Intervals: 95% bootstrap-t, each replicate studentized by its delta-method standard
  error (percentile intervals where whole curves are resampled: the residuals of one
  curve cannot see noise shared along N), except at a bound: a parameter fitted at 0
  gets the one-sided [0, q95] of its replicates; where a = 0 the curve is flat and b is
  undefined (NaN, with a warning).
  b's upper end is capped at the searched range B_MAX (flagged). Replicates dropped
  (non-finite studentized values) and any fall-back to percentile intervals are
  counted in ``warning``.

Python API: ``fit_curve(n, err)``, ``fit_curves(df)``; points in ``fno_analysis.points``,
gains in ``fno_analysis.gains``. CLI: ``python analysis/fit.py <out>/<sweep> [--target-error E]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fno.vocabulary import FITTED_MODES
from fno_analysis.forms import heldout_errors
from fno_analysis.points import CURVE_KEYS, SIZE_KEYS, read_table, select_points

B_MAX = 3.0  # largest exponent searched; a fit that ends there has not converged
B_LOW = 0.02  # an exponent below this: no decay resolved
FEW_POINTS = 5  # at this many points or fewer, a, b, c are weakly determined (warned)
NOISY = 0.1  # RMS log residual above which the intervals under-cover (benchmarks/bench_fit.py: ~85% at 0.15)
CORRELATED = 0.3  # lag-1 autocorrelation of the residuals along N above which they are not independent
TIED = 0.5  # share of points whose best two rates are within seed noise: the rate choice is a coin toss
GAUSS_NEWTON_STEPS = 4  # from the relative-residual start to the log-scale fit, per b
CONFIDENCE = 0.95
SEED_NOTE = "seeds resampled"  # the start of the note that the two-stage bootstrap was used


# --- the fits -------------------------------------------------------------------------


def _nnls2(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min ||a u + c v - t||^2 over a, c >= 0, in closed form; (..., m) -> a, c of shape (...).

    The unconstrained solution where feasible, else the better of the two one-variable
    solutions (a only, c only).
    """
    u, v, t = np.broadcast_arrays(u, v, t)
    uu, vv, uv, ut, vt, tt = np.stack([u * u, v * v, u * v, u * t, v * t, t * t]).sum(-1)  # one reduction
    det = uu * vv - uv * uv
    safe = np.where(np.abs(det) > 1e-300, det, 1.0)
    a = np.where(det != 0, (vv * ut - uv * vt) / safe, -1.0)
    c = np.where(det != 0, (uu * vt - uv * ut) / safe, -1.0)
    feasible = (a >= 0) & (c >= 0)
    a_only = np.maximum(ut / np.where(uu > 0, uu, 1.0), 0.0)
    c_only = np.maximum(vt / np.where(vv > 0, vv, 1.0), 0.0)
    sse_a = tt - a_only * (2 * ut - a_only * uu)  # ||a u - t||^2, expanded
    sse_c = tt - c_only * (2 * vt - c_only * vv)
    use_a = sse_a <= sse_c
    a = np.where(feasible, a, np.where(use_a, a_only, 0.0))
    c = np.where(feasible, c, np.where(use_a, 0.0, c_only))
    return a, c


def _log_sse(a: np.ndarray, c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    f = np.maximum(a[..., None] * x + c[..., None], 1e-300)
    return (np.log(f / y) ** 2).sum(-1)


def _project(x: np.ndarray, y: np.ndarray, steps: int = GAUSS_NEWTON_STEPS) -> tuple[np.ndarray, ...]:
    """Best a, c >= 0 for log y ~ log(a x + c), and the log-scale residual sum.

    x, y: broadcastable (..., m), y > 0. Starts from the relative-residual solution
    (minimise sum ((a x + c) / y - 1)^2, the first-order expansion of the log loss at f = y)
    and takes ``steps`` Gauss-Newton steps on the log loss, each linearised at
    the current f: minimise sum ((a x + c) / f - (1 + log(y / f)))^2, a, c >= 0. A step
    is kept only where it lowers the loss.
    """
    x, y = np.broadcast_arrays(x, y)
    a, c = _nnls2(x / y, 1.0 / y, np.ones_like(y))
    sse = _log_sse(a, c, x, y)
    for _ in range(steps):
        f = np.maximum(a[..., None] * x + c[..., None], 1e-300)
        a_new, c_new = _nnls2(x / f, 1.0 / f, 1.0 + np.log(y / f))
        sse_new = _log_sse(a_new, c_new, x, y)
        better = sse_new < sse
        a, c, sse = np.where(better, a_new, a), np.where(better, c_new, c), np.where(better, sse_new, sse)
    return a, c, sse


def _fit_saturating(n: np.ndarray, y: np.ndarray, grid: int = 30, iterations: int = 32):
    """Variable-projection fit of log y ~ log(a n^-b + c) for R replicates at once.

    n: (m,) examples; y: (R, m) errors > 0. Returns a, b, c, sse (log scale), each (R,).
    The grid uses the relative-residual loss (the log loss to first order: it only
    brackets b); the golden-section search (bracket shrunk to 0.618^32 ~ 2e-7 of two
    grid steps) takes two Gauss-Newton steps per b, the final fit GAUSS_NEWTON_STEPS.
    """
    log_n = np.log(n)
    b_grid = np.linspace(B_MAX / grid, B_MAX, grid)  # (G,)
    x = np.exp(-b_grid[:, None] * log_n[None, :])  # (G, m)
    _, _, sse = _project(x[None, :, :], y[:, None, :], steps=0)  # (R, G)
    best = sse.argmin(axis=1)
    step = b_grid[1] - b_grid[0]
    lo = np.clip(b_grid[best] - step, 1e-9, B_MAX)
    hi = np.clip(b_grid[best] + step, 1e-9, B_MAX)

    def objective(b: np.ndarray) -> np.ndarray:
        return _project(np.exp(-b[:, None] * log_n[None, :]), y, steps=2)[2]

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    p, q = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fp, fq = objective(p), objective(q)
    for _ in range(iterations):  # one new point per step: the kept one is the other's golden cut
        left = fp <= fq  # the minimum lies in [lo, q]: q's place goes to p, p's to a new point
        lo, hi = np.where(left, lo, p), np.where(left, q, hi)
        fresh = np.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
        f_fresh = objective(fresh)
        p, q, fp, fq = (
            np.where(left, fresh, q),
            np.where(left, p, fresh),
            np.where(left, f_fresh, fq),
            np.where(left, fp, f_fresh),
        )
    b = np.where(fp <= fq, p, q)
    a, c, sse = _project(np.exp(-b[:, None] * log_n[None, :]), y)
    return a, b, c, sse


def _fit_power(n: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of log y = log a - b log n for R replicates: a, b, each (R,)."""
    log_n, log_y = np.log(n), np.log(y)
    centred = log_n - log_n.mean()
    b = -(centred * (log_y - log_y.mean(-1, keepdims=True))).sum(-1) / (centred**2).sum()
    a = np.exp(log_y.mean(-1) + b * log_n.mean())
    return a, b


def saturating(n: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray | float:
    """err(N) = a N^(-b) + c."""
    return a * np.power(n, -b) + c


# --- the bootstrap ----------------------------------------------------------------------


def _selection_stage(selection: Sequence[dict | None] | None, y: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(n_boot, m) log deviations of each point's value when its replicates (seeds, or
    data seeds) are resampled and its learning rate is chosen again (by the resampled
    mean validation error).

    selection[i]: {"lrs", "val", "test", "labels"}, "val" and "test" (rates, units)
    arrays with units aligned, or None (one unit: deviation 0). Points that hold the
    same units draw the same ones in a replicate: whole curves are resampled, so noise
    that a data seed shares along N (nested training sets, one test set) stays in the
    replicates. The deviation is inflated by sqrt(k / (k - 1)) (k units): resampling k
    values under-states the variance of their mean by (k - 1) / k. The loop runs over
    the curve's N values (a dozen), not over samples.
    """
    deviations = np.zeros((n_boot, len(y)))
    shared_draws: dict[tuple, np.ndarray] = {}  # units -> (n_boot, k) indices, one draw per unit set
    for i, table in enumerate(selection or ()):
        if table is None:
            continue
        val, test = np.asarray(table["val"], dtype=float), np.asarray(table["test"], dtype=float)
        k = val.shape[1]
        if k < 2 or not np.all(test > 0):
            continue
        if table.get("unit") == "data seed":  # whole curves: the same Dirichlet weights at every N
            labels = tuple(table["labels"])
            weights = shared_draws.setdefault(labels, rng.dirichlet(np.ones(k), size=n_boot))  # (n_boot, k)
            inflation = math.sqrt((k + 1) / (k - 1)) * _few_units_factor(k)
        else:  # training seeds, independent along N: a plain resample per point
            draws = rng.integers(0, k, size=(n_boot, k))
            weights = (draws[:, :, None] == np.arange(k)).mean(axis=1)  # (n_boot, k) resampling counts / k
            inflation = math.sqrt(k / (k - 1))
        val_means = val @ weights.T  # (rates, n_boot)
        test_means = test @ weights.T
        chosen = val_means.argmin(axis=0)  # ties: the first (smallest) rate, as select_points
        value = np.take_along_axis(test_means, chosen[None, :], axis=0)[0]
        deviations[:, i] = np.log(value / y[i]) * inflation
    return deviations


# The 97.5% quantiles of Student's t with 1 .. 30 degrees of freedom; beyond, the normal's.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
T975 += (2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.96


def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` >= 1 degrees of freedom (the normal's beyond 30)."""
    return T975[dof - 1] if dof <= len(T975) else Z975


# Training seeds whose errors spread less than this (sd of log error) are one result: fine-tunes
# whose steps see the whole set in another order agree to about 1e-6 (float round-off).
SPREAD_FLOOR = 1e-3


def has_spread(errors) -> bool:
    """Whether seed errors spread by more than SPREAD_FLOOR (sd of log error): a seed that
    changes nothing, as in fine-tuning with N <= batch size, is no replicate."""
    values = np.asarray(errors, dtype=float)
    if values.size < 2 or not np.all(values > 0):
        return False
    return bool(np.log(values).std(ddof=1) > SPREAD_FLOOR)


def t_quantile(dof: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``dof`` degrees of freedom."""
    if confidence == CONFIDENCE:
        return t975(dof)
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def log_t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``confidence`` (95%) t interval of the geometric mean of positive replicates (NaN
    with fewer than 2)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2 or not np.all(values > 0):
        return math.nan, math.nan
    logs = np.log(values)
    half = t_quantile(values.size - 1, confidence) * logs.std(ddof=1) / math.sqrt(values.size)
    return float(math.exp(logs.mean() - half)), float(math.exp(logs.mean() + half))


def mean_interval(errors) -> tuple[float, float, float]:
    """(mean, lo, hi) of positive replicate values (training seeds): the 95% t interval of
    their log, stretched to hold the mean; lo = hi = nan with fewer than 3 values or no
    spread beyond SPREAD_FLOOR (two seeds, or seeds that change nothing, are no interval).
    Data seeds: ``fno_analysis.verdicts.point_interval``."""
    values = np.asarray(errors, dtype=float)
    mean = float(values.mean())
    if values.size < 3 or not has_spread(values):
        return mean, math.nan, math.nan
    lo, hi = log_t_interval(values)
    return mean, min(lo, mean), max(hi, mean)


def _few_units_factor(k: int) -> float:
    """t(k - 1) / z at 97.5%: widens a spread estimated from k whole curves for the
    uncertainty of that estimate (k - 1 degrees of freedom), as a t interval does."""
    return t975(k - 1) / Z975


def _leverage(jac: np.ndarray) -> np.ndarray:
    """Diagonal of the hat matrix J (J^T J)^+ J^T of one fit: (m, p) -> (m,), clipped below 1."""
    hat = np.einsum("mi,ij,mj->m", jac, np.linalg.pinv(jac.T @ jac), jac)
    return np.clip(hat, 0.0, 0.99)


def _replicates(fitted, y, selection, leverage: np.ndarray, n_boot: int, rng) -> tuple[np.ndarray, str]:
    """(n_boot, m) bootstrap curves and a note; see the module docstring.

    fitted * exp(s * r * sign + d): r the log residuals divided by 1 - h (h the point's
    leverage: residuals at influential points, the ends of the N range, are shrunk by
    the fit, and this undoes it, as HC3 does), sign Rademacher (wild bootstrap: a point
    keeps its own noise level), d the selection stage, s = sqrt(1 - v_d / v_r) so that
    the between-point part (data set, lack of fit) comes from the residuals and the seed
    part from the seeds, point by point.
    """
    m = len(y)
    residuals = np.log(y / fitted) / (1.0 - leverage)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_boot, m))
    deviations = _selection_stage(selection, y, n_boot, rng)
    v_total = float((residuals**2).mean())
    v_seed = float(deviations.var(axis=0).mean())
    note, shrink = "", 1.0
    if v_seed > 0:
        shrink = math.sqrt(max(1.0 - v_seed / v_total, 0.0)) if v_total > 0 else 0.0
        unit = next((t.get("unit", "seed") for t in selection if t is not None), "seed")
        share = min(v_seed / v_total, 1) if v_total > 0 else 1.0
        note = f"{SEED_NOTE} ({unit}s, whole curves), rate chosen in each replicate (seed share {share:.0%})"
    return fitted[None, :] * np.exp(shrink * residuals[None, :] * signs + deviations), note


def _jacobian(n: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """d log f / d(a, b, c) of R saturating fits at the m points: (R, m, 3)."""
    x = np.power(n[None, :], -b[:, None])  # (R, m)
    f = a[:, None] * x + c[:, None]
    return np.stack([x / f, -a[:, None] * np.log(n)[None, :] * x / f, 1.0 / f], axis=-1)


def _standard_errors(n: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, sse: np.ndarray) -> np.ndarray:
    """Delta-method standard errors of (a, b, c) for R fits: (R, 3).

    From the Jacobian of the log residuals, J = d f / d(a, b, c) / f, and the residual
    variance sse / (m - 3). Where a = 0 the column of b vanishes and its error is NaN.
    """
    jac = _jacobian(n, a, b, c)  # (R, m, 3)
    cov = np.linalg.pinv(np.einsum("rmi,rmj->rij", jac, jac))  # (R, 3, 3)
    variance = sse / max(len(n) - 3, 1)
    se = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2) * variance[:, None], 0.0))
    se[:, 1] = np.where(a > 0, se[:, 1], np.nan)
    return se


def _interval(samples: np.ndarray) -> tuple[float, float]:
    """The central CONFIDENCE interval of bootstrap samples (actual sample values, inf allowed)."""
    tail = (1.0 - CONFIDENCE) / 2.0
    finite_or_inf = samples[~np.isnan(samples)]
    if finite_or_inf.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(finite_or_inf, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def _parameter_interval(
    name: str, estimate: float, se: float, boot, boot_se, notes: list[str], studentize: bool = True
) -> tuple[float, float]:
    """The 95% interval of one parameter (>= 0); see the module docstring. Appends to notes.

    studentize=False: the percentile interval of the replicates, for whole-curve
    replicates, whose spread carries the noise shared along N that the delta-method
    standard error (from the residuals of one curve) cannot see.
    """
    if estimate <= 0.0:  # at the bound: one-sided, from the replicates
        finite = boot[np.isfinite(boot)]
        upper = float(np.quantile(finite, CONFIDENCE)) if finite.size else math.nan
        notes.append(f"{name} = 0 at its bound: one-sided interval [0, {upper:.3g}]")
        return 0.0, upper
    if not studentize:
        lo, hi = _interval(boot)
        return max(lo, 0.0), hi
    if not se > 0:  # an exact fit: no spread to scale
        return float(estimate), float(estimate)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (boot - estimate) / boot_se
    usable = np.isfinite(t)
    if usable.sum() < 10:
        notes.append(f"{name}: {usable.sum()} usable replicates, percentile interval instead of bootstrap-t")
        lo, hi = _interval(boot)
        return max(lo, 0.0), hi
    if (~usable).any():
        notes.append(f"{name}: {(~usable).sum()} of {t.size} replicates dropped (no standard error)")
    tail = (1.0 - CONFIDENCE) / 2.0
    t_lo, t_hi = np.quantile(t[usable], [tail, 1.0 - tail])
    return max(float(estimate - t_hi * se), 0.0), float(estimate - t_lo * se)


# --- one curve ----------------------------------------------------------------------------

SATURATING_FIELDS = ["a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "c", "c_lo", "c_hi", "rms_log_residual", "r2_log"]
POWER_FIELDS = ["extrapolation_error", "a_pow", "b_pow", "b_pow_lo", "b_pow_hi", "rms_log_residual_pow"]


def fit_curve(
    n: Sequence[float],
    err: Sequence[float],
    n_boot: int = 200,
    seed: int = 0,
    selection: Sequence[dict | None] | None = None,
    seed_errors: Sequence[Sequence[float]] | None = None,
) -> dict:
    """Fit one learning curve; see the module docstring. Returns a dict of the fit's columns.

    n, err: the points (err: the chosen rate's mean over seeds). selection: per point, the
    selection table of ``fno_analysis.points`` (or None); seed_errors: the simpler form, per
    point the seeds' errors of its one rate. With several seeds either makes the
    bootstrap resample them.
    """
    n, y = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    if n.ndim != 1 or n.shape != y.shape:
        raise ValueError(f"n and err must be 1-d of equal length, got shapes {n.shape} and {y.shape}")
    if seed_errors is not None:
        if len(seed_errors) != len(n):
            raise ValueError(f"seed_errors needs one entry per point ({len(n)}), got {len(seed_errors)}")
        selection = [{"lrs": (0.0,), "val": [list(e)], "test": [list(e)]} for e in seed_errors]
    if selection is not None and len(selection) != len(n):
        raise ValueError(f"selection needs one entry per point ({len(n)}), got {len(selection)}")
    if np.any(n <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("n must be positive and err finite and positive")
    order = np.argsort(n)
    n, y = n[order], y[order]
    selection = [selection[i] for i in order] if selection is not None else None
    m = len(n)
    row: dict = {"n_points": m, "n_min": int(n[0]) if m else 0, "n_max": int(n[-1]) if m else 0}
    if m < 3 or len(np.unique(n)) < 3:
        nan_fit = dict.fromkeys([*SATURATING_FIELDS, *POWER_FIELDS], math.nan)
        return {**row, **nan_fit, "warning": f"only {len(np.unique(n))} distinct N: no fit", "boot": None}
    rng = np.random.default_rng(seed)
    a, b, c, sse = _fit_saturating(n, y[None, :])
    se = _standard_errors(n, a, b, c, sse)[0]  # (3,)
    a, b, c = float(a[0]), float(b[0]), float(c[0])
    fitted = saturating(n, a, b, c)
    leverage = _leverage(_jacobian(n, np.array([a]), np.array([b]), np.array([c]))[0])
    replicates, seed_note = _replicates(fitted, y, selection, leverage, n_boot, rng)
    boot_a, boot_b, boot_c, boot_sse = _fit_saturating(n, replicates)
    boot_se = _standard_errors(n, boot_a, boot_b, boot_c, boot_sse)  # (n_boot, 3)
    notes: list[str] = [seed_note] if seed_note else []
    warnings: list[str] = []
    whole_curves = any(t is not None and t.get("unit") == "data seed" for t in selection or ())
    if whole_curves:
        k = max(len(t["labels"]) for t in selection if t is not None)
        notes.append(f"percentile intervals from whole curves ({k} data seeds, widened by t({k - 1}) / z)")
    if m <= 3:  # three points fit three parameters exactly: no residuals, no interval
        (a_lo, a_hi), (b_lo, b_hi), (c_lo, c_hi) = ((math.nan, math.nan),) * 3
    else:
        a_lo, a_hi = _parameter_interval("a", a, se[0], boot_a, boot_se[:, 0], notes, not whole_curves)
        b_lo, b_hi = _parameter_interval("b", b, se[1], boot_b, boot_se[:, 1], notes, not whole_curves)
        c_lo, c_hi = _parameter_interval("c", c, se[2], boot_c, boot_se[:, 2], notes, not whole_curves)
        # A bootstrap-t or percentile interval can miss its own estimate (skewed replicates):
        # stretched to hold it, so that no printed interval excludes the number beside it.
        (a_lo, a_hi), (b_lo, b_hi), (c_lo, c_hi) = (
            (min(lo, v), max(hi, v)) if np.isfinite(lo) and np.isfinite(hi) else (lo, hi)
            for v, lo, hi in ((a, a_lo, a_hi), (b, b_lo, b_hi), (c, c_lo, c_hi))
        )
    if a <= 0.0:
        warnings.append("a = 0: the fitted curve is flat, b is undefined")
        b, b_lo, b_hi = math.nan, math.nan, math.nan
        notes = [note for note in notes if not note.startswith("b")]
    else:
        if b >= B_MAX * (1 - 1e-6):
            warnings.append(f"b reached the search bound {B_MAX}: the fit did not converge")
        elif b < B_LOW:
            warnings.append(f"b = {b:.2g} at the low end of the search: no decay resolved")
        if b_hi > B_MAX:
            warnings.append(f"b's interval reaches past the searched range (upper end {b_hi:.3g} capped at {B_MAX})")
            b_hi = B_MAX
    if m <= FEW_POINTS:
        warnings.append(f"only {m} points (<= {FEW_POINTS}): a, b, c are weakly determined")
    log_res = np.log(y / fitted)
    rms = float(np.sqrt((log_res**2).mean()))
    if m > 3 and c_lo <= 0.0 and a > 0.0:
        warnings.append("c's interval reaches 0: the floor is not resolved, and b's interval under-covers here")
    if rms > NOISY:
        warnings.append(f"noisy curve (RMS log residual {rms:.2f} > {NOISY}): the intervals under-cover")
    lag1 = _lag1_autocorrelation(log_res)
    # Below an RMS of 1e-4 the residuals are the solver's round-off; whole curves carry the correlation.
    if m >= 6 and rms > 1e-4 and lag1 > CORRELATED and not whole_curves:
        warnings.append(
            f"residuals correlated along N (lag-1 autocorrelation {lag1:.2f} > {CORRELATED}): the bootstrap treats "
            "points as independent, so the intervals under-cover"
        )
    tied = _tied_share(selection)
    if tied > TIED:
        warnings.append(
            f"at {tied:.0%} of the points the two best learning rates are within seed noise: the intervals "
            "under-cover (the choice is re-made in every replicate, but not enough)"
        )
    log_y = np.log(y)
    total = ((log_y - log_y.mean()) ** 2).sum()
    extrapolation = math.nan
    if m >= 4:  # hold out the largest N: how well does the rest predict it?
        ha, hb, hc, _ = (v[0] for v in _fit_saturating(n[:-1], y[None, :-1]))
        extrapolation = float(abs(saturating(n[-1], ha, hb, hc) / y[-1] - 1.0))
    pa_, pb_ = (float(v[0]) for v in _fit_power(n, y[None, :]))
    if pb_ < 0:
        warnings.append(f"the error rises with N (pure power-law exponent {pb_:.3g} < 0)")
    fitted_pow = pa_ * n**-pb_
    leverage_pow = _leverage(np.stack([np.ones_like(n), -np.log(n)], axis=1))
    _, boot_pb = _fit_power(n, _replicates(fitted_pow, y, selection, leverage_pow, n_boot, rng)[0])
    return {
        **row,
        "a": a,
        "a_lo": a_lo,
        "a_hi": a_hi,
        "b": b,
        "b_lo": b_lo,
        "b_hi": b_hi,
        "c": c,
        "c_lo": c_lo,
        "c_hi": c_hi,
        "rms_log_residual": rms,
        "r2_log": float(1.0 - (log_res**2).sum() / total) if total > 0 else math.nan,
        "extrapolation_error": extrapolation,
        "a_pow": pa_,
        "b_pow": pb_,
        **dict(zip(("b_pow_lo", "b_pow_hi"), _interval(boot_pb), strict=True)),
        "rms_log_residual_pow": float(np.sqrt((np.log(y / fitted_pow) ** 2).mean())),
        "warning": "; ".join(warnings),
        "notes": "; ".join(notes),
        "boot": np.stack([boot_a, boot_b, boot_c], axis=1),  # (n_boot, 3): a, b, c replicates
    }


def _lag1_autocorrelation(residuals: np.ndarray) -> float:
    """Lag-1 autocorrelation of residuals ordered by N (0 for fewer than 3 or no spread)."""
    r = residuals - residuals.mean()
    denominator = float((r * r).sum())
    return float((r[1:] * r[:-1]).sum() / denominator) if r.size >= 3 and denominator > 0 else 0.0


def _tied_share(selection: Sequence[dict | None] | None) -> float:
    """Share of points (with several rates and seeds) whose best two rates' mean validation
    errors differ by less than the standard error of that difference over seeds."""
    tied = counted = 0
    for table in selection or ():
        if table is None or len(table["lrs"]) < 2:
            continue
        val = np.asarray(table["val"], dtype=float)
        means = val.mean(axis=1)
        best, second = np.argsort(means)[:2]
        difference = val[second] - val[best]  # seeds aligned: paired
        se = difference.std(ddof=1) / math.sqrt(difference.size)
        counted += 1
        tied += bool(difference.mean() < se)
    return tied / counted if counted else 0.0


def cell_seed(keys: dict, seed: int = 0) -> int:
    """The bootstrap seed of a curve: the same for every curve of one (family, shift,
    architecture), so scratch and fine-tune replicates are paired; stable across runs."""
    text = "|".join(str(keys[k]) for k in ("family", "shift", *SIZE_KEYS))
    return zlib.crc32(text.encode()) + seed


def fit_curves(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fit every scratch and fine-tune curve of a results table.

    One row per curve: CURVE_KEYS, n_params (of the model as trained), n_points, n_min,
    n_max, the saturating fit (a, b, c and their 95% intervals a_lo .. c_hi,
    rms_log_residual, r2_log, extrapolation_error: the relative miss at the largest N of
    a fit without it), the pure power law (a_pow, b_pow, b_pow_lo, b_pow_hi,
    rms_log_residual_pow), heldout_pure, heldout_saturating, heldout_broken and
    best_form (``fno_analysis.forms``: each form's miss predicting the largest N from the
    others, Huber fits), ``warning`` (what makes the fit doubtful; empty if nothing),
    ``notes`` (how the intervals were made) and ``boot`` (the (n_boot, 3) replicates of
    a, b, c, for ``fno_analysis.gains``). ``points``: ``select_points(df)`` if already computed.
    """
    if n_boot < 20:
        raise ValueError(f"n_boot must be at least 20 for a 95% interval, got {n_boot}")
    points = select_points(df) if points is None else points
    rows = []
    fitted = points[points["mode"].isin(FITTED_MODES)]
    for keys, curve in fitted.groupby(CURVE_KEYS, dropna=False, sort=True):
        named = dict(zip(CURVE_KEYS, keys, strict=True))
        selection = list(curve["selection"]) if "selection" in curve else None
        n, err = curve["n_train"].to_numpy(), curve["test_rel_l2"].to_numpy()
        fit = fit_curve(n, err, n_boot, cell_seed(named, seed), selection=selection)
        rows.append({**named, "n_params": int(curve["n_params"].max()), **fit, **heldout_errors(n, err)})
    columns = [*CURVE_KEYS, "n_params", "n_points", "n_min", "n_max"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*columns, "a", "b", "c", "warning", "notes", "boot"])


FIT_COLUMNS = [*CURVE_KEYS, "n_points", "a", "b", "b_lo", "b_hi", "c", "c_lo", "c_hi", "b_pow", "warning"]


def __getattr__(name: str):
    """fit_surface and transfer_law, which live in fno_analysis.laws and fno_analysis.transfer
    (imported on first use: both build on this module)."""
    if name == "fit_surface":
        from fno_analysis.laws import fit_surface

        return fit_surface
    if name == "transfer_law":
        from fno_analysis.transfer import transfer_law

        return transfer_law
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The fitting flags both command lines (fit.py, report.py) take."""
    parser.add_argument("--target-error", type=float, default=None, help="error for the gain (default: per curve)")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates (default 200)")


def main(argv: Sequence[str] | None = None) -> int:
    from fno_analysis.gains import data_efficiency_gain

    parser = argparse.ArgumentParser(description="Power-law fits and data-efficiency gains of a sweep's results.")
    parser.add_argument("results", help="a sweep folder <out>/<sweep>, its results folder, or a Parquet file")
    add_fit_arguments(parser)
    args = parser.parse_args(argv)
    try:
        df = read_table(args.results)
        fits = fit_curves(df, n_boot=args.n_boot)
        gains = data_efficiency_gain(df, args.target_error, fits=fits)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500):
        print(fits[FIT_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print()
        print(
            gains.drop(columns=["boot", "boot_lower", "boot_upper"]).to_string(
                index=False, float_format=lambda v: f"{v:.4g}"
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
