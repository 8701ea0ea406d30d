"""Scaling laws across model sizes: the error surface err(N, P) and the compute at which
pre-training pays for itself.

Conventions
- Points are ``fno_analysis.points``'s (the learning rate chosen by validation, seeds
  averaged); P is a model's parameter count as trained.
- **Surface** (Hoffmann et al. 2022's form): err(N, P) = E + A P^-alpha + B N^-beta,
  fitted per (family, shift, pretrain_family, mode, finetune_strategy) over every size
  and N, by a Huber loss on log error (HUBER_DELTA: residuals beyond 10% count
  linearly, so one bad point cannot move the fit) from a grid of starting points
  (every pair of exponents in START_EXPONENTS; the fit runs from the SCREENED starts of
  lowest loss, and the best end wins). Its 95% intervals are percentiles of a wild
  bootstrap (Rademacher signs on the log residuals, each divided by
  sqrt(1 - leverage)); all replicates are refitted at once by Huber-reweighted
  Levenberg-Marquardt steps, each from the estimate and from the best start (from
  the estimate alone they stay in its basin, and alpha's interval covered 75%).
  ``heldout_error`` is the median relative miss on the largest size's points of a fit
  to the smaller sizes. At least MIN_SIZES sizes. A parameter the data do not
  determine (its term under 1% of the error at every point, or an exponent at its
  bound) gets no interval, and the note says which and why: with few sizes, E and the
  P term trade off.
- **Transfer law**: its own module, ``fno_analysis.transfer``.
- **Compute**: a trial's training FLOPs are 3 x (forward FLOPs per sample) x steps x
  batch (forward and backward; evaluation left out). Pre-training is paid once; each
  downstream task then costs its fine-tuning. The break-even number of tasks at a
  target error is C_pretrain / (C_scratch(N_scratch) - C_finetune(N_finetune)), each
  C(N) interpolated log-log between the curve's measured trials; never where
  fine-tuning costs as much as scratch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from fno.vocabulary import FITTED_MODES
from fno_analysis.fit import CONFIDENCE
from fno_analysis.forms import HUBER_DELTA, huber_lm, huber_loss
from fno_analysis.points import SIZE_KEYS, with_study_columns

START_EXPONENTS = (0.1, 0.4, 1.0)  # starting alpha and beta of the surface fit (all pairs) ...
SCREENED = 2  # ... of which the fit starts from those with the lowest loss
MIN_SIZES = 3  # a surface needs this many model sizes
SURFACE_KEYS = ["family", "shift", "pretrain_family", "mode", "finetune_strategy"]
SURFACE_PARAMS = ("E", "A", "alpha", "B", "beta")


def surface(n, p, params) -> np.ndarray:
    """err(N, P) = E + A P^-alpha + B N^-beta for params (E, A, alpha, B, beta)."""
    e, a, alpha, b, beta = params
    return e + a * np.power(p, -alpha) + b * np.power(n, -beta)


def _log_params(params: np.ndarray) -> np.ndarray:
    e, a, alpha, b, beta = params
    return np.array([math.log(max(e, 1e-12)), math.log(a), alpha, math.log(b), beta])


def _from_log(x: np.ndarray) -> np.ndarray:
    return np.array([math.exp(x[0]), math.exp(x[1]), x[2], math.exp(x[3]), x[4]])


def _terms(x: np.ndarray, log_n: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """The surface's three terms as logs, (..., 3, m), for log parameters x (..., 5)."""
    x = x[..., :, None]
    return np.stack(
        [np.broadcast_to(x[..., 0, :], x.shape[:-2] + log_n.shape), x[..., 1, :] - x[..., 2, :] * log_p,
         x[..., 3, :] - x[..., 4, :] * log_n], axis=-2,
    )  # fmt: skip


def _log_sum(terms: np.ndarray) -> np.ndarray:
    """log of the sum of exp(terms) over axis -2 (of length 3), stably."""
    top = terms.max(axis=-2)
    return top + np.log(np.exp(terms - top[..., None, :]).sum(axis=-2))


def _residuals(x: np.ndarray, log_n: np.ndarray, log_p: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """log surface - log y, (..., m); the surface's scales taken as logs (so they stay positive)."""
    return _log_sum(_terms(x, log_n, log_p)) - log_y


def _jacobian(x: np.ndarray, log_n: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """d residuals / d x, (..., m, 5): each term's share of the surface times its derivative."""
    terms = _terms(x, log_n, log_p)
    share = np.exp(terms - _log_sum(terms)[..., None, :])  # (..., 3, m)
    return np.stack(
        [share[..., 0, :], share[..., 1, :], -share[..., 1, :] * log_p, share[..., 2, :], -share[..., 2, :] * log_n],
        axis=-1,
    )


BOUNDS = (np.array([-30.0, -30.0, 0.0, -30.0, 0.0]), np.array([5.0, 30.0, 4.0, 30.0, 4.0]))


def _screened(starts, log_n, log_p, log_y) -> np.ndarray:
    """The SCREENED starts (clipped to BOUNDS) of lowest Huber loss."""
    starts = np.clip(np.array(starts), *BOUNDS)
    return starts[np.argsort(huber_loss(_residuals(starts, log_n, log_p, log_y)))[:SCREENED]]


def _fit_one(log_n, log_p, log_y, starts: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The best Huber fit from the SCREENED starts of ``starts`` (log-parameter vectors)
    with the lowest loss: (log params, cost)."""
    best, best_cost = None, math.inf
    for x0 in _screened(starts, log_n, log_p, log_y):
        fit = least_squares(
            _residuals, x0, jac=lambda x, *args: _jacobian(x, *args[:2]),
            args=(log_n, log_p, log_y), loss="huber", f_scale=HUBER_DELTA, bounds=BOUNDS, max_nfev=200,
        )  # fmt: skip
        if fit.cost < best_cost:
            best, best_cost = fit.x, fit.cost
    return best, best_cost


def _refit_batch(starts: np.ndarray, log_n, log_p, log_y: np.ndarray) -> np.ndarray:
    """Huber fits of many replicates at once (log_y (k, m)), each from every start of
    ``starts`` (s, 5), the best end kept (``fno_analysis.forms.huber_lm``, within
    BOUNDS). Returns (k, 5)."""
    k, s = len(log_y), len(starts)
    y = np.repeat(log_y, s, axis=0)  # (k s, m): replicate-major
    ends, loss = huber_lm(
        np.tile(starts, (k, 1)),
        lambda x, rows: _residuals(x, log_n, log_p, y[rows]),
        lambda x, rows: _jacobian(x, log_n, log_p),
        bounds=BOUNDS,
        iterations=30,
    )
    best = loss.reshape(k, s).argmin(axis=1)
    return ends.reshape(k, s, 5)[np.arange(k), best]


def _starts(n: np.ndarray, p: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Starting points: E below the smallest error, the two power terms each carrying
    about half the largest error at the smallest N and P, every exponent pair."""
    floor, top = 0.5 * y.min(), y.max()
    out = []
    for alpha, beta in itertools.product(START_EXPONENTS, START_EXPONENTS):
        a = 0.5 * top * p.min() ** alpha
        b = 0.5 * top * n.min() ** beta
        out.append(_log_params(np.array([floor, a, alpha, b, beta])))
    return out


NEGLIGIBLE = 0.01  # a term below this share of the surface at every point is not identified


def _unidentified(x: np.ndarray, log_n: np.ndarray, log_p: np.ndarray) -> dict[str, str]:
    """Parameters the data do not determine, with why: a term that is a negligible share
    of the surface at every point (its scale and exponent), an exponent at its bound."""
    terms = _terms(x, log_n, log_p)
    share = np.exp(terms - _log_sum(terms)).max(axis=1)  # (3,): each term's largest share
    out = {}
    for names, largest in ((("E",), share[0]), (("A", "alpha"), share[1]), (("B", "beta"), share[2])):
        if largest < NEGLIGIBLE:
            out.update(dict.fromkeys(names, f"(its term is under {NEGLIGIBLE:.0%} of the error everywhere)"))
    for name, i in (("alpha", 2), ("beta", 4)):
        if name not in out and (x[i] <= BOUNDS[0][i] + 1e-6 or x[i] >= BOUNDS[1][i] - 1e-6):
            out[name] = f"(at its bound {x[i]:g})"
    return out


def fit_surface_points(n, p, err, n_boot: int = 200, seed: int = 0) -> dict[str, float | int | str]:
    """Fit err(N, P) to points (n, p, err); see the module docstring.

    Returns E, A, alpha, B, beta, each with _lo and _hi, n_points, n_sizes,
    heldout_error and note.
    """
    n, p, y = (np.asarray(v, dtype=float) for v in (n, p, err))
    if not (n.shape == p.shape == y.shape and n.ndim == 1):
        raise ValueError("n, p and err must be 1-d of equal length")
    if np.any(n <= 0) or np.any(p <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("n and p must be positive, err finite and positive")
    sizes = np.unique(p)
    out: dict = {"n_points": len(n), "n_sizes": len(sizes), "heldout_error": math.nan, "note": ""}
    out.update({k: math.nan for name in SURFACE_PARAMS for k in (name, f"{name}_lo", f"{name}_hi")})
    if len(sizes) < MIN_SIZES:
        out["note"] = f"{len(sizes)} model sizes: a surface needs at least {MIN_SIZES}"
        return out
    log_n, log_p, log_y = np.log(n), np.log(p), np.log(y)
    x, _ = _fit_one(log_n, log_p, log_y, _starts(n, p, y))
    estimate = _from_log(x)
    out.update(dict(zip(SURFACE_PARAMS, estimate.tolist(), strict=True)))
    # Wild bootstrap: each replicate flips the signs of the log residuals at random.
    residuals = _residuals(x, log_n, log_p, log_y)
    fitted = log_y + residuals
    jac = _jacobian(x, log_n, log_p)
    leverage = np.einsum("mi,ij,mj->m", jac, np.linalg.pinv(jac.T @ jac), jac)
    residuals = residuals / np.sqrt(np.clip(1 - leverage, 0.05, 1))  # fitted residuals are too small
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_boot, len(y)))
    # Each replicate from the estimate and from the grid's best start: from the
    # estimate alone, replicates stay in its basin and alpha's interval under-covers.
    starts = np.array([x, _screened(_starts(n, p, y), log_n, log_p, log_y)[0]])
    xb = _refit_batch(starts, log_n, log_p, fitted - signs * residuals)  # (n_boot, 5), log scales
    draws = np.concatenate([np.exp(xb[:, [0, 1]]), xb[:, [2]], np.exp(xb[:, [3]]), xb[:, [4]]], axis=1)
    q = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(draws, [q, 1 - q], axis=0)
    unidentified = _unidentified(x, log_n, log_p)
    for i, name in enumerate(SURFACE_PARAMS):
        if name not in unidentified:
            out[f"{name}_lo"], out[f"{name}_hi"] = float(lo[i]), float(hi[i])
    if unidentified:
        out["note"] = "not identified (no interval): " + "; ".join(f"{k} {v}" for k, v in unidentified.items())
    # Held out: the largest size predicted from the smaller ones.
    small = p < sizes[-1]
    if len(np.unique(p[small])) >= MIN_SIZES - 1:
        xs, _ = _fit_one(log_n[small], log_p[small], log_y[small], [x, *_starts(n[small], p[small], y[small])])
        predicted = surface(n[~small], p[~small], _from_log(xs))
        out["heldout_error"] = float(np.median(np.abs(predicted / y[~small] - 1)))
    return out


def fit_surface(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """One surface per (family, shift, pretrain_family, mode, finetune_strategy) of a results
    table: columns SURFACE_KEYS, E, A, alpha, B, beta with _lo / _hi, n_points, n_sizes,
    heldout_error, note (why there is no fit, where there is none)."""
    from fno_analysis.points import select_points

    points = select_points(df) if points is None else points
    trained = with_study_columns(points[points["mode"].isin(FITTED_MODES)])
    rows = []
    for i, (keys, group) in enumerate(trained.groupby(SURFACE_KEYS, dropna=False, sort=True)):
        fit = fit_surface_points(group["n_train"], group["n_params"], group["test_rel_l2"], n_boot, seed + i)
        rows.append({**dict(zip(SURFACE_KEYS, keys, strict=True)), **fit})
    columns = [*SURFACE_KEYS, *(k for s in SURFACE_PARAMS for k in (s, f"{s}_lo", f"{s}_hi"))]
    return pd.DataFrame(rows, columns=[*columns, "n_points", "n_sizes", "heldout_error", "note"])


def train_flops(df: pd.DataFrame) -> pd.Series:
    """Each trial's training FLOPs: 3 x forward FLOPs per sample x steps x batch size."""
    return 3.0 * df["flops_per_sample"].astype(float) * df["steps"].astype(float) * df["batch_size"].astype(float)


def pretrain_flops(df: pd.DataFrame) -> dict[tuple, float]:
    """(pre-training family, width, modes, layers) -> the mean training FLOPs of its ok
    pre-training trials."""
    pre = df[(df["mode"] == "pretrain") & (df["status"] == "ok")]
    flops = pre.assign(flops=train_flops(pre)).groupby(["family", *SIZE_KEYS])["flops"].mean()
    return {tuple(k): float(v) for k, v in flops.items()}


def _cost_at(n_points: np.ndarray, flops: np.ndarray, n: float) -> float:
    """FLOPs of a trial with n examples, log-log interpolated between measured ones (and
    extrapolated with the end segments' slope)."""
    order = np.argsort(n_points)
    x, y = np.log(n_points[order]), np.log(flops[order])
    if len(x) == 1:
        return float(flops[0])
    i = int(np.clip(np.searchsorted(x, math.log(n)) - 1, 0, len(x) - 2))
    slope = (y[i + 1] - y[i]) / (x[i + 1] - x[i]) if x[i + 1] > x[i] else 0.0
    return float(math.exp(y[i] + slope * (math.log(n) - x[i])))


def break_even(df: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    """Per measured gain of full fine-tuning: the FLOPs of pre-training, of fine-tuning
    with N_finetune and of scratch training with N_scratch examples (the target error's),
    and the number of downstream tasks from which pre-training plus fine-tuning costs
    less than scratch training on each (inf where fine-tuning saves nothing).
    """
    df = with_study_columns(df[df["status"] == "ok"])
    if df.empty or gains.empty:
        return pd.DataFrame()
    df = df.assign(train_flops=train_flops(df))
    pretraining = pretrain_flops(df)
    full = gains["finetune_strategy"].isin(["", "full"]) if "finetune_strategy" in gains else True
    measured = gains[(gains["verdict"] == "measured") & full]
    rows = []
    for _, g in measured.iterrows():
        size = (df["width"] == g["width"]) & (df["modes"] == g["modes"]) & (df["layers"] == g["layers"])
        task = size & (df["family"] == g["family"]) & (df["shift"] == g["shift"])
        c_pre = pretraining.get((g["pretrain_family"], *(g[k] for k in SIZE_KEYS)))
        ft = df[task & (df["mode"] == "finetune") & (df["pretrain_family"] == g["pretrain_family"])]
        ft = ft[ft["finetune_strategy"].isin(["", "full"])]
        sc = df[task & (df["mode"] == "scratch")]
        if c_pre is None or ft.empty or sc.empty:
            continue
        per_n = {name: rows_.groupby("n_train")["train_flops"].mean() for name, rows_ in (("ft", ft), ("sc", sc))}
        c_ft = _cost_at(per_n["ft"].index.to_numpy(float), per_n["ft"].to_numpy(float), g["n_finetune"])
        c_sc = _cost_at(per_n["sc"].index.to_numpy(float), per_n["sc"].to_numpy(float), g["n_scratch"])
        saving = c_sc - c_ft
        rows.append(
            {
                **{k: g[k] for k in ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params", "target_error"]},
                "n_finetune": g["n_finetune"],
                "n_scratch": g["n_scratch"],
                "pretrain_flops": c_pre,
                "finetune_flops": c_ft,
                "scratch_flops": c_sc,
                "break_even_tasks": c_pre / saving if saving > 0 else math.inf,
            }
        )
    return pd.DataFrame(rows)


def point_flops(df: pd.DataFrame, points: pd.DataFrame) -> pd.Series:
    """Each point's mean training FLOPs over the trials behind it (the chosen learning
    rate's ok trials), aligned with ``points``; NaN for zero-shot points."""
    from fno_analysis.points import POINT_KEYS

    rows = with_study_columns(df[(df["status"] == "ok") & (df.get("stage", "downstream") != "probe")])
    rows = rows.assign(train_flops=train_flops(rows))
    mean = rows.groupby([*POINT_KEYS, "lr"], dropna=False)["train_flops"].mean().rename("flops").reset_index()
    merged = points[[*POINT_KEYS, "lr"]].merge(mean, on=[*POINT_KEYS, "lr"], how="left")
    return pd.Series(
        np.where(points["mode"] == "zeroshot", np.nan, merged["flops"].to_numpy(float)), index=points.index
    )
