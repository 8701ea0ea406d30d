"""Scaling-law fits of a sweep's results: err(N) = a N^(-b) + c, with bootstrap intervals.

Conventions
- A *point* is one (family, shift, pretrain_family, size, mode, N): its learning rate
  is the one with the lowest mean validation error over seeds (never the test error);
  its test error is that learning rate's mean over seeds, with the seeds' spread.
- A *curve* is one (family, shift, pretrain_family, size, mode) over N, for scratch
  and fine-tune (zero-shot error does not depend on N and is not fitted).
- Fits minimise the squared *relative* residuals, sum ((f(N_i) - y_i) / y_i)^2, close
  to least squares in log space, so small errors weigh as much as large ones.
  Saturating law by variable projection: for a given b the best a >= 0, c >= 0 are a
  2 x 2 non-negative least-squares problem solved in closed form; b is found on a
  grid over (0, B_MAX] and polished by golden-section search, all bootstrap replicates
  at once (vectorised; no per-replicate optimiser calls). Pure power law a N^(-b):
  linear least squares on log y.
- Intervals: 95% bootstrap-t (studentized) intervals from a residual bootstrap (log
  residuals of the fit, centred, inflated by sqrt(n / (n - p)), resampled onto the
  fitted curve; keeps the design points fixed and works with one seed per point), each
  replicate studentized by its delta-method standard error. Measured on synthetic
  curves with 13 N values and 5-15% noise: plain percentile intervals covered the true
  b in 85-92% of 300 replicates, bootstrap-t in 91-97%.
- Data-efficiency gain at a target error e: N_scratch(e) / N_finetune(e), each from
  inverting its fitted curve, N(e) = (a / (e - c))^(1 / b), with an interval from the
  paired bootstrap replicates of both fits.

Python API: ``select_points(df)``, ``fit_curves(df)``, ``data_efficiency_gain(df, target)``.
CLI: ``python analysis/fit.py <out>/<sweep> [--target-error E]``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = (
    "family",
    "shift",
    "pretrain_family",
    "mode",
    "width",
    "modes",
    "layers",
    "n_params",
    "n_train",
    "lr",
    "seed",
    "status",
    "val_rel_l2",
    "test_rel_l2",
)
DOWNSTREAM_MODES = ("scratch", "finetune", "zeroshot")
FITTED_MODES = ("scratch", "finetune")
# A model size is its architecture. The parameter count is not a key: it depends on the
# input channels (a mixture-pretrained model reads the union layout, so its lifting layer
# is larger), and keying on it split one size into several and lost the mixture's gains.
SIZE_KEYS = ["width", "modes", "layers"]
CURVE_KEYS = ["family", "shift", "pretrain_family", *SIZE_KEYS, "mode"]
POINT_KEYS = [*CURVE_KEYS, "n_train"]
B_MAX = 3.0  # largest exponent searched; a fit that ends there has not converged
MIN_POINTS = 4  # fewer points than this: the curve is flagged untrustworthy
RANGE_SLACK = 1e-9  # relative tolerance of "inside the measured range"
CONFIDENCE = 0.95


def check_columns(df: pd.DataFrame, required: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Raise ValueError naming the missing columns of a results table."""
    required = list(dict.fromkeys(required))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"results table lacks required columns {missing}; this needs {', '.join(required)} "
            "(a sweep's table, fno.results.SCHEMA, has them all)"
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """A results table from a sweep folder (``<out>/<sweep>``), its ``results`` folder or a Parquet file."""
    from fno.results import read_results

    path = Path(path)
    if (path / "results").is_dir():
        path = path / "results"
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}: pass a sweep folder <out>/<sweep> or its results folder")
    if path.is_dir():
        return read_results(path).to_pandas()
    return pd.read_parquet(path)


def select_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point: the learning rate chosen by mean validation error over seeds.

    Columns: POINT_KEYS, n_params (of the model as trained), lr, val_rel_l2 (mean),
    test_rel_l2 (mean), test_std (over seeds, 0 with one seed), n_seeds, seed_errors (the
    chosen rate's per-seed test errors, a tuple, for the seed-level bootstrap), lr_min,
    lr_max, n_lrs (the learning rates the sweep tried at this point, whatever their
    status). Only rows with status ``ok`` count. Zero-shot rows have no validation error
    (nothing is trained) and one learning rate; they are kept as they are.
    """
    check_columns(df)
    rows = df[df["mode"].isin(DOWNSTREAM_MODES)]
    if "stage" in rows:  # budget probes (twice the budget) are checks, not points of the curve
        rows = rows[rows["stage"] != "probe"]
    grid = (
        rows.groupby(POINT_KEYS, dropna=False, sort=False)
        .agg(lr_min=("lr", "min"), lr_max=("lr", "max"), n_lrs=("lr", "nunique"))
        .reset_index()
    )
    ok = rows[rows["status"] == "ok"]
    per_lr = (
        ok.groupby([*POINT_KEYS, "lr"], dropna=False, sort=False)
        .agg(
            n_params=("n_params", "max"),
            val_rel_l2=("val_rel_l2", "mean"),
            test_rel_l2=("test_rel_l2", "mean"),
            test_std=("test_rel_l2", "std"),
            n_seeds=("seed", "nunique"),
            seed_errors=("test_rel_l2", tuple),
        )
        .reset_index()
    )
    per_lr["test_std"] = per_lr["test_std"].fillna(0.0)
    # Lowest validation error first (NaN, i.e. zero-shot, last), ties by learning rate.
    ranked = per_lr.sort_values(["val_rel_l2", "lr"], na_position="last", kind="stable")
    points = ranked.groupby(POINT_KEYS, dropna=False, sort=False).head(1)
    points = points.merge(grid, on=POINT_KEYS, how="left")
    return points.sort_values(POINT_KEYS, kind="stable").reset_index(drop=True)


# --- the fits -------------------------------------------------------------------------


def _project(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best a, c >= 0 for y ~ a x + c in relative residuals, and the residual sum.

    x, y: (..., n) with y > 0. Returns a, c, sse of shape (...). Two-variable NNLS in
    closed form: the unconstrained solution if it is feasible, else the better of the
    two one-variable solutions (a only, c only).
    """
    u, v = x / y, 1.0 / y  # minimise || a u + c v - 1 ||^2
    uu, vv, uv = (u * u).sum(-1), (v * v).sum(-1), (u * v).sum(-1)
    u1, v1 = u.sum(-1), v.sum(-1)
    det = uu * vv - uv * uv
    safe = np.where(np.abs(det) > 1e-300, det, 1.0)
    a = np.where(det != 0, (vv * u1 - uv * v1) / safe, -1.0)
    c = np.where(det != 0, (uu * v1 - uv * u1) / safe, -1.0)
    feasible = (a >= 0) & (c >= 0)
    a_only, c_only = np.maximum(u1 / uu, 0.0), np.maximum(v1 / vv, 0.0)
    sse_a = (((a_only[..., None] * u) - 1.0) ** 2).sum(-1)
    sse_c = (((c_only[..., None] * v) - 1.0) ** 2).sum(-1)
    use_a = sse_a <= sse_c
    a = np.where(feasible, a, np.where(use_a, a_only, 0.0))
    c = np.where(feasible, c, np.where(use_a, 0.0, c_only))
    sse = (((a[..., None] * u + c[..., None] * v) - 1.0) ** 2).sum(-1)  # direct: no cancellation
    return a, c, sse


def _fit_saturating(n: np.ndarray, y: np.ndarray, grid: int = 30, iterations: int = 45):
    """Variable-projection fit of y ~ a n^-b + c for R replicates at once.

    n: (m,) examples; y: (R, m) errors > 0. Returns a, b, c, sse, each (R,).
    """
    log_n = np.log(n)
    b_grid = np.linspace(B_MAX / grid, B_MAX, grid)  # (G,)
    x = np.exp(-b_grid[:, None] * log_n[None, :])  # (G, m)
    _, _, sse = _project(x[None, :, :], y[:, None, :])  # (R, G)
    best = sse.argmin(axis=1)
    step = b_grid[1] - b_grid[0]
    lo = np.clip(b_grid[best] - step, 1e-9, B_MAX)
    hi = np.clip(b_grid[best] + step, 1e-9, B_MAX)

    def objective(b: np.ndarray) -> np.ndarray:
        return _project(np.exp(-b[:, None] * log_n[None, :]), y)[2]

    ratio = (math.sqrt(5.0) - 1.0) / 2.0  # golden section: the bracket shrinks to 0.618^45 ~ 4e-10 of 2 steps
    p, q = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fp, fq = objective(p), objective(q)
    for _ in range(iterations):
        left = fp <= fq  # the minimum lies in [lo, q]
        hi = np.where(left, q, hi)
        lo = np.where(left, lo, p)
        p_new = hi - ratio * (hi - lo)
        q_new = lo + ratio * (hi - lo)
        p, q = p_new, q_new
        fp, fq = objective(p), objective(q)
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


def _seed_stage(seed_errors: Sequence[Sequence[float]] | None, y: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(n_boot, m) log deviations of each point's mean when its seeds are resampled.

    Point i's seeds are drawn with replacement and averaged; the log ratio to the
    observed mean is inflated by sqrt(k / (k - 1)) (k seeds), since resampling k values
    under-states the variance of their mean by (k - 1) / k. Points with one seed get 0.
    The loop runs over the curve's N values (a dozen), not over samples.
    """
    deviations = np.zeros((n_boot, len(y)))
    for i, errors in enumerate(seed_errors or ()):
        errors = np.asarray(errors, dtype=float)
        k = errors.size
        if k < 2 or not np.all(errors > 0):
            continue
        means = errors[rng.integers(0, k, size=(n_boot, k))].mean(axis=1)
        deviations[:, i] = np.log(means / errors.mean()) * math.sqrt(k / (k - 1))
    return deviations


def _two_stage_bootstrap(fitted, y, seed_errors, n_params: int, n_boot: int, rng) -> tuple[np.ndarray, str]:
    """Replicates that resample seeds within each point as well as residuals across points.

    Without several seeds this is the residual bootstrap. With them, each replicate is
    fitted * exp(s r* + d*), where d* is the point's seed-resampled deviation
    (``_seed_stage``) and r* a resampled residual shrunk by s = sqrt(1 - v_seed / v_total)
    so that the total variance stays that of the residuals: the between-point part
    (the data set, the learning-rate choice, lack of fit) comes from the residuals, the
    seed part from the seeds, point by point (so points with noisier seeds vary more).
    Returns the (n_boot, m) replicates and a note (empty unless seeds were used).
    """
    m = len(y)
    residuals = np.log(y / fitted)
    residuals = (residuals - residuals.mean()) * math.sqrt(m / max(m - n_params, 1))
    deviations = _seed_stage(seed_errors, y, n_boot, rng)
    v_total = float((residuals**2).mean())
    v_seed = float(deviations.var(axis=0).mean())
    note = ""
    shrink = 1.0
    if v_seed > 0:
        shrink = math.sqrt(max(1.0 - v_seed / v_total, 0.0)) if v_total > 0 else 0.0
        note = f"seeds resampled within points (seed share of the residual variance {min(v_seed / v_total, 1):.0%})"
    draws = rng.integers(0, m, size=(n_boot, m))
    return fitted[None, :] * np.exp(shrink * residuals[draws] + deviations), note


def _standard_errors(n: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, sse: np.ndarray) -> np.ndarray:
    """Delta-method standard errors of (a, b, c) for R fits: (R, 3).

    From the Jacobian of the relative residuals, J = d f / d(a, b, c) / f, and the
    residual variance sse / (m - 3).
    """
    x = np.power(n[None, :], -b[:, None])  # (R, m)
    f = a[:, None] * x + c[:, None]
    jac = np.stack([x / f, -a[:, None] * np.log(n)[None, :] * x / f, 1.0 / f], axis=-1)  # (R, m, 3)
    cov = np.linalg.pinv(np.einsum("rmi,rmj->rij", jac, jac))  # (R, 3, 3)
    variance = sse / max(len(n) - 3, 1)
    return np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2) * variance[:, None], 0.0))


def _studentized_interval(estimate: float, se: float, boot: np.ndarray, boot_se: np.ndarray) -> tuple[float, float]:
    """Bootstrap-t interval: estimate - t_(1-q) se .. estimate - t_q se, t = (boot - estimate) / boot_se."""
    if not se > 0:  # an exact fit: no spread to scale
        return float(estimate), float(estimate)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (boot - estimate) / boot_se
    t = t[np.isfinite(t)]
    if t.size < 10:
        return _interval(boot)
    tail = (1.0 - CONFIDENCE) / 2.0
    t_lo, t_hi = np.quantile(t, [tail, 1.0 - tail])
    return float(estimate - t_hi * se), float(estimate - t_lo * se)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    """The central CONFIDENCE interval of bootstrap samples (actual sample values, inf allowed)."""
    tail = (1.0 - CONFIDENCE) / 2.0
    finite_or_inf = samples[~np.isnan(samples)]
    if finite_or_inf.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(finite_or_inf, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def saturating(n: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray | float:
    """err(N) = a N^(-b) + c."""
    return a * np.power(n, -b) + c


def examples_needed(error: float | np.ndarray, a, b, c):
    """N at which a N^(-b) + c equals ``error``; inf where the curve never gets that low."""
    error, a, b, c = (np.asarray(v, dtype=float) for v in (error, a, b, c))
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.power(a / (error - c), 1.0 / b)
    return np.where(error > c, n, np.inf)


def fit_curve(
    n: Sequence[float],
    err: Sequence[float],
    n_boot: int = 200,
    seed: int = 0,
    seed_errors: Sequence[Sequence[float]] | None = None,
) -> dict:
    """Fit one learning curve; see the module docstring. Returns a dict of the fit's columns.

    n, err: the points (err: the mean over seeds). seed_errors: per point, the seeds'
    own errors (err[i] is their mean); with several seeds the bootstrap resamples them
    too (``_two_stage_bootstrap``).
    """
    n, y = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    if seed_errors is not None and len(seed_errors) != len(n):
        raise ValueError(f"seed_errors needs one entry per point ({len(n)}), got {len(seed_errors)}")
    if n.ndim != 1 or n.shape != y.shape:
        raise ValueError(f"n and err must be 1-d of equal length, got shapes {n.shape} and {y.shape}")
    if np.any(n <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("n must be positive and err finite and positive")
    order = np.argsort(n)
    n, y = n[order], y[order]
    if seed_errors is not None:
        seed_errors = [seed_errors[i] for i in order]
    m = len(n)
    row: dict = {"n_points": m, "n_min": int(n[0]) if m else 0, "n_max": int(n[-1]) if m else 0}
    saturating_fields = ["a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "c", "c_lo", "c_hi", "rms_log_residual", "r2_log"]
    power_fields = ["extrapolation_error", "a_pow", "b_pow", "b_pow_lo", "b_pow_hi", "rms_log_residual_pow"]
    nan_fit = dict.fromkeys([*saturating_fields, *power_fields], math.nan)
    if m < 3 or len(np.unique(n)) < 3:
        return {**row, **nan_fit, "warning": f"only {len(np.unique(n))} distinct N: no fit", "boot": None}
    rng = np.random.default_rng(seed)
    a, b, c, sse = _fit_saturating(n, y[None, :])
    se = _standard_errors(n, a, b, c, sse)[0]  # (3,)
    a, b, c = float(a[0]), float(b[0]), float(c[0])
    fitted = saturating(n, a, b, c)
    replicates, seed_note = _two_stage_bootstrap(fitted, y, seed_errors, 3, n_boot, rng)
    boot_a, boot_b, boot_c, boot_sse = _fit_saturating(n, replicates)
    boot_se = _standard_errors(n, boot_a, boot_b, boot_c, boot_sse)  # (n_boot, 3)
    (a_lo, a_hi), (b_lo, b_hi), (c_lo, c_hi) = (
        _studentized_interval(est, se[i], boot, boot_se[:, i]) if m > 3 else (math.nan, math.nan)
        for i, (est, boot) in enumerate(((a, boot_a), (b, boot_b), (c, boot_c)))
    )  # three points fit three parameters exactly: no residuals, no interval
    log_res = np.log(y / fitted)
    log_y = np.log(y)
    total = ((log_y - log_y.mean()) ** 2).sum()
    warnings = [seed_note] if seed_note else []
    if m < MIN_POINTS:
        warnings.append(f"only {m} points (< {MIN_POINTS}): a, b, c are barely determined")
    if b >= B_MAX * (1 - 1e-6):
        warnings.append(f"b reached the search bound {B_MAX}: the fit did not converge")
    extrapolation = math.nan
    if m >= 4:  # hold out the largest N: how well does the rest predict it?
        ha, hb, hc, _ = (v[0] for v in _fit_saturating(n[:-1], y[None, :-1]))
        extrapolation = float(abs(saturating(n[-1], ha, hb, hc) / y[-1] - 1.0))
    pa_, pb_ = (v[0] for v in _fit_power(n, y[None, :]))
    fitted_pow = pa_ * n**-pb_
    _, boot_pb = _fit_power(n, _two_stage_bootstrap(fitted_pow, y, seed_errors, 2, n_boot, rng)[0])
    return {
        **row,
        "a": a,
        "a_lo": max(a_lo, 0.0),  # a, b, c >= 0 by construction
        "a_hi": a_hi,
        "b": b,
        "b_lo": max(b_lo, 0.0),
        "b_hi": b_hi,
        "c": c,
        "c_lo": max(c_lo, 0.0),
        "c_hi": c_hi,
        "rms_log_residual": float(np.sqrt((log_res**2).mean())),
        "r2_log": float(1.0 - (log_res**2).sum() / total) if total > 0 else math.nan,
        "extrapolation_error": extrapolation,
        "a_pow": float(pa_),
        "b_pow": float(pb_),
        **dict(zip(("b_pow_lo", "b_pow_hi"), _interval(boot_pb), strict=True)),
        "rms_log_residual_pow": float(np.sqrt((np.log(y / fitted_pow) ** 2).mean())),
        "warning": "; ".join(warnings),
        "boot": np.stack([boot_a, boot_b, boot_c], axis=1),  # (n_boot, 3): a, b, c replicates
    }


def fit_curves(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fit every scratch and fine-tune curve of a results table.

    One row per curve: CURVE_KEYS, n_points, n_min, n_max, the saturating fit (a, b, c and
    their 95% intervals a_lo .. c_hi, rms_log_residual, r2_log, extrapolation_error: the
    relative miss at the largest N of a fit without it), the pure power law (a_pow, b_pow,
    b_pow_lo, b_pow_hi, rms_log_residual_pow), ``warning`` (empty if none) and ``boot``
    (the (n_boot, 3) bootstrap replicates of a, b, c, for ``data_efficiency_gain``).
    ``points``: the output of ``select_points(df)`` if already computed.
    """
    if n_boot < 20:
        raise ValueError(f"n_boot must be at least 20 for a 95% interval, got {n_boot}")
    points = select_points(df) if points is None else points
    rows = []
    fitted = points[points["mode"].isin(FITTED_MODES)]
    for index, (keys, curve) in enumerate(fitted.groupby(CURVE_KEYS, dropna=False, sort=True)):
        seeds = list(curve["seed_errors"]) if "seed_errors" in curve else None
        fit = fit_curve(curve["n_train"].to_numpy(), curve["test_rel_l2"].to_numpy(), n_boot, seed + index, seeds)
        size = {"n_params": int(curve["n_params"].max())}
        rows.append({**dict(zip(CURVE_KEYS, keys, strict=True)), **size, **fit})
    columns = [*CURVE_KEYS, "n_params", "n_points", "n_min", "n_max"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*columns, "a", "b", "c", "warning", "boot"])


GAIN_VERDICTS = {
    "measured": "both curves reach the target inside their measured N",
    "lower bound": "scratch does not reach the target inside its measured N: gain >= bound",
    "upper bound": "scratch is already at the target at its smallest N: gain <= bound",
    "not measurable with this budget": "scratch levels off above the target, and its floor is likely a training-budget "
    "artefact (see the diagnostics): no gain can be read from this sweep",
    "target out of range": "the target lies outside the fine-tune curve's measured range",
}


def default_targets(fits: pd.DataFrame) -> pd.DataFrame:
    """The target error of each (family, shift), one for all its sizes and pre-training sets.

    The lowest fitted error that any fine-tune curve reaches at its smallest N (so the
    best curve's gain is the gain of its fewest-example point), raised if need be to the
    highest error any fine-tune curve reaches at its largest N, so that every fine-tune
    curve reaches the target inside its measured N; where no error lies in every curve's
    range, the geometric mean of the two. Columns: family, shift, target_error.
    """
    ft = fits[(fits["mode"] == "finetune") & np.isfinite(fits["b"].astype(float))]
    if ft.empty:
        return pd.DataFrame(columns=["family", "shift", "target_error"])
    a, b, c = (ft[k].astype(float) for k in ("a", "b", "c"))
    ft = ft.assign(reach_hi=saturating(ft["n_min"].astype(float), a, b, c))
    ft = ft.assign(reach_lo=saturating(ft["n_max"].astype(float), a, b, c))
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
) -> pd.DataFrame:
    """Scratch examples needed over fine-tune examples needed to reach a target error.

    One row per fine-tune curve; its scratch partner is the curve of the same family,
    shift and architecture (SIZE_KEYS). ``target_error`` None: per (family, shift), the
    ``default_targets`` error. N(e) inverts a fitted curve. The result is a claim only
    where both curves reach the target inside their measured N; otherwise it is censored
    and said so in ``verdict`` (GAIN_VERDICTS), with ``bound`` the bound it implies:
    - scratch past its largest N (or never): gain >= N_max(scratch) / N_finetune;
    - scratch at the target already at its smallest N: gain <= N_min(scratch) / N_finetune;
    - scratch levelling off above the target with a floor in ``floor_artefacts`` (keys
      family, shift, width, modes, layers; from ``analysis.diagnostics``): "not
      measurable with this budget".
    A fine-tune curve without a scratch partner gets a row saying so. Columns: family,
    shift, pretrain_family, width, modes, layers, n_params (of the fine-tuned model),
    target_error, n_finetune, n_scratch, gain, gain_lo, gain_hi (95%, measured gains
    only), bound, verdict, note, boot (the gain's bootstrap replicates, or None).
    """
    if target_error is not None and not (isinstance(target_error, int | float) and target_error > 0):
        raise ValueError(f"target_error must be a positive number or None, got {target_error!r}")
    fits = fit_curves(df, n_boot=n_boot, seed=seed) if fits is None else fits
    check_columns(fits, [*CURVE_KEYS, "a", "b", "c", "n_min", "n_max", "boot"])
    targets = default_targets(fits).set_index(["family", "shift"])["target_error"]
    scratch = fits[fits["mode"] == "scratch"].set_index(["family", "shift", *SIZE_KEYS])
    floor_artefacts = floor_artefacts or set()
    rows = []
    for _, ft in fits[fits["mode"] == "finetune"].iterrows():
        key = (ft["family"], ft["shift"], *(ft[k] for k in SIZE_KEYS))
        row = {k: ft[k] for k in ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params"]}
        row.update(dict.fromkeys(["target_error", "n_finetune", "n_scratch", "gain", "gain_lo", "gain_hi", "bound"]))
        if target_error is not None:
            row["target_error"] = float(target_error)
        elif (ft["family"], ft["shift"]) in targets.index:
            row["target_error"] = float(targets.loc[(ft["family"], ft["shift"])])
        sc = scratch.loc[key] if key in scratch.index else None
        if sc is None or ft["boot"] is None or sc["boot"] is None or row["target_error"] is None:
            why = "no scratch curve of this architecture" if sc is None else "a curve has too few points to fit"
            rows.append({**row, "verdict": "no fit", "note": why, "boot": None})
            continue
        rows.append({**row, **_gain(ft, sc, row["target_error"], key in floor_artefacts)})
    columns = ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params", "target_error", "n_finetune"]
    columns += ["n_scratch", "gain", "gain_lo", "gain_hi", "bound", "verdict", "note", "boot"]
    out = pd.DataFrame(rows, columns=columns)
    for column in ["target_error", "n_finetune", "n_scratch", "gain", "gain_lo", "gain_hi", "bound"]:
        out[column] = out[column].astype(float)
    return out


def _gain(ft: pd.Series, sc: pd.Series, target: float, floor_artefact: bool) -> dict:
    """The gain columns of one (fine-tune, scratch) pair at ``target``; see data_efficiency_gain."""
    n_ft = float(examples_needed(target, ft["a"], ft["b"], ft["c"]))
    n_sc = float(examples_needed(target, sc["a"], sc["b"], sc["c"]))
    out = {"n_finetune": n_ft, "n_scratch": n_sc, "boot": None}
    reach_lo = saturating(ft["n_max"], ft["a"], ft["b"], ft["c"])
    reach_hi = saturating(ft["n_min"], ft["a"], ft["b"], ft["c"])
    if not reach_lo * (1 - RANGE_SLACK) <= target <= reach_hi * (1 + RANGE_SLACK):
        note = f"target {target:.4g} outside the fine-tune curve's range [{reach_lo:.4g}, {reach_hi:.4g}]"
        return {**out, "verdict": "target out of range", "note": note}
    k = min(len(ft["boot"]), len(sc["boot"]))
    with np.errstate(invalid="ignore", divide="ignore"):  # inf / inf: neither replicate gets there; dropped
        ratio = examples_needed(target, *sc["boot"][:k].T) / examples_needed(target, *ft["boot"][:k].T)
    if n_sc > sc["n_max"] * (1 + RANGE_SLACK):
        bound = sc["n_max"] / n_ft
        beyond = f"never (floor c = {sc['c']:.4g})" if math.isinf(n_sc) else f"at N = {n_sc:.3g} by extrapolation"
        note = f"scratch reaches {target:.4g} {beyond}; largest measured N {int(sc['n_max'])}"
        verdict = "not measurable with this budget" if floor_artefact else "lower bound"
        return {**out, "bound": bound, "verdict": verdict, "note": note, "boot": ratio}
    if n_sc < sc["n_min"] * (1 - RANGE_SLACK):
        note = f"scratch is at {target:.4g} already at its smallest N ({int(sc['n_min'])})"
        return {**out, "bound": sc["n_min"] / n_ft, "verdict": "upper bound", "note": note, "boot": ratio}
    lo, hi = _interval(ratio)
    note = ""
    if np.isinf(ratio).mean() > (1 - CONFIDENCE) / 2:
        note = f"{np.isinf(ratio).mean():.0%} of bootstrap replicates: scratch never reaches the target"
    return {
        **out,
        "gain": n_sc / n_ft,
        "gain_lo": lo,
        "gain_hi": hi,
        "verdict": "measured",
        "note": note,
        "boot": ratio,
    }


FIT_COLUMNS = [*CURVE_KEYS, "n_points", "a", "b", "b_lo", "b_hi", "c", "rms_log_residual", "b_pow", "warning"]


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The fitting flags both command lines (fit.py, report.py) take."""
    parser.add_argument("--target-error", type=float, default=None, help="error for the gain (default: per curve)")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates (default 200)")


def main(argv: Sequence[str] | None = None) -> int:
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
        print(gains.drop(columns="boot").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
