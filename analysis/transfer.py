"""The transfer law of Hernandez et al. (2021), fitted jointly to the scratch and fine-tune
curves of every model size.

Pre-training is worth D_T "effective examples": fine-tuning on D_F examples reaches the
error that training from scratch reaches on D_E = D_F + D_T. The law says
D_T = k D_F^alpha P^beta (P: the model's parameter count); beta > 0 is the paper's
second claim, "the gain grows with model size", as one exponent.

The fit (per family, shift and pre-training set; full fine-tuning against scratch;
points as ``fno_analysis.points`` gives them: learning rate chosen by validation, seeds
averaged):
- each size s has its own scratch curve err_s(N) = a_s N^-b_s + c_s, and fine-tuning on
  N examples is modelled as err_s(N + k N^alpha P_s^beta): 3 parameters per size plus
  k, alpha and beta, all fitted at once by a Huber loss on log error
  (``fno_analysis.forms``: HUBER_DELTA) from a grid of starts (``huber_lm``). Fitting
  the data rather than D_T values read off two separately fitted curves uses every
  point once, with its own noise, and shares k, alpha and beta across sizes: on
  synthetic tables (benchmarks/bench_laws.py) it halved the error of beta.
- fine-tune points whose error lies below the scratch curve at scratch's largest
  measured N are left out: their D_E would be an extrapolation of scratch's curve
  (and a fine-tuned model can beat scratch's floor, which no D_E describes).
- 95% intervals: percentiles of a wild bootstrap (Rademacher signs on the log
  residuals, each divided by sqrt(1 - leverage)), every replicate refitted from the
  estimate and from the best other start; given only with at least MIN_SIZES sizes
  that keep fine-tune points, and not for a parameter at its bound.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy.special import expit

from fno.vocabulary import FITTED_MODES
from fno_analysis.fit import CONFIDENCE
from fno_analysis.forms import fit_form, huber_lm, huber_loss, predict
from fno_analysis.points import SIZE_KEYS, with_study_columns

TRANSFER_KEYS = ["family", "shift", "pretrain_family"]
TRANSFER_PARAMS = ("k", "alpha", "beta")
MIN_SIZES = 3  # sizes with fine-tune points for an interval (beta is a slope over sizes)
MIN_FINETUNE_POINTS = 4  # fine-tune points (over at least 2 sizes) for a fit at all
# Bounds of (log k, alpha, beta) and of each size's (log a, b, log c). beta may be
# negative: a larger model may transfer less, and the fit must be able to say so.
TRANSFER_BOUNDS = (np.array([-20.0, 0.0, -2.0]), np.array([20.0, 2.0, 2.0]))
CURVE_BOUNDS = (np.array([-30.0, 0.0, -30.0]), np.array([30.0, 4.0, 5.0]))
START_ALPHA = (0.5, 1.0)  # starting alpha, beta and D_T / D_F at the median point (every triple) ...
START_BETA = (-0.2, 0.2, 0.5)
START_RATIO = (0.3, 3.0, 30.0)
SCREENED = 3  # ... of which the fit starts from those with the lowest loss


class _Points:
    """The arrays one group's fit reads: per point its size index, log N, log P, whether
    it is a fine-tune point, and log error."""

    def __init__(self, size: np.ndarray, log_n: np.ndarray, log_p: np.ndarray, finetune: np.ndarray, log_y):
        self.size, self.log_n, self.log_p, self.finetune, self.log_y = size, log_n, log_p, finetune, log_y
        self.n_sizes = int(size.max()) + 1
        self.rows = np.arange(len(size))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each point's parameter columns of its size's log a, b and log c."""
        base = 3 + 3 * self.size
        return base, base + 1, base + 2


def _log_model(x: np.ndarray, pts: _Points) -> tuple[np.ndarray, ...]:
    """log error at every point for parameters x (B, 3 + 3 S), with the pieces the
    Jacobian reuses: (model, power, log c, log M, log T), each (B, m)."""
    la, b, lc = (x[:, c] for c in pts.columns())
    log_t = x[:, :1] + x[:, 1:2] * pts.log_n + x[:, 2:3] * pts.log_p  # log k N^alpha P^beta
    log_m = np.where(pts.finetune, np.logaddexp(pts.log_n, log_t), pts.log_n)  # log of the scratch N matched
    power = la - b * log_m
    return np.logaddexp(power, lc), power, lc, log_m, log_t


def _residuals(x: np.ndarray, pts: _Points, log_y: np.ndarray) -> np.ndarray:
    return _log_model(x, pts)[0] - log_y


def _jacobian(x: np.ndarray, pts: _Points) -> np.ndarray:
    """d log model / d x, (B, m, 3 + 3 S)."""
    _, power, lc, log_m, log_t = _log_model(x, pts)
    share = expit(power - lc)  # the power term's share of the error
    b = x[:, pts.columns()[1]]
    d_log_m = -b * share * np.where(pts.finetune, expit(log_t - pts.log_n), 0.0)  # via T / M
    jac = np.zeros((*share.shape, x.shape[1]))
    la_col, b_col, lc_col = pts.columns()
    jac[:, pts.rows, la_col] = share
    jac[:, pts.rows, b_col] = -share * log_m
    jac[:, pts.rows, lc_col] = 1 - share
    jac[..., 0], jac[..., 1], jac[..., 2] = d_log_m, d_log_m * pts.log_n, d_log_m * pts.log_p
    return jac


def _bounds(n_sizes: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.concatenate([t, np.tile(c, n_sizes)]) for t, c in zip(TRANSFER_BOUNDS, CURVE_BOUNDS, strict=True))


def _fit(starts: np.ndarray, pts: _Points, log_y: np.ndarray) -> np.ndarray:
    """Huber fits of replicates log_y (k, m), each from every start (s, K), the best end
    kept: (k, K)."""
    k, s = len(log_y), len(starts)
    y = np.repeat(log_y, s, axis=0)  # (k s, m): replicate-major
    ends, loss = huber_lm(
        np.tile(starts, (k, 1)),
        lambda x, rows: _residuals(x, pts, y[rows]),
        lambda x, rows: _jacobian(x, pts),
        bounds=_bounds(pts.n_sizes),
        iterations=60,
    )
    best = loss.reshape(k, s).argmin(axis=1)
    return ends.reshape(k, s, -1)[np.arange(k), best]


def _starts(curves: np.ndarray, pts: _Points) -> np.ndarray:
    """The SCREENED starts of lowest loss: each size's scratch curve as fitted alone
    (``curves`` (S, 3)), every (alpha, beta, D_T / D_F at the median fine-tune point)."""
    ft = pts.finetune
    mid_n, mid_p = np.median(pts.log_n[ft]), np.median(pts.log_p[ft])
    starts = []
    for alpha, beta, ratio in itertools.product(START_ALPHA, START_BETA, START_RATIO):
        log_k = math.log(ratio) + (1 - alpha) * mid_n - beta * mid_p
        starts.append(np.concatenate([[log_k, alpha, beta], curves.ravel()]))
    starts = np.clip(np.array(starts), *_bounds(pts.n_sizes))
    loss = huber_loss(_residuals(starts, pts, pts.log_y[None, :]))
    return starts[np.argsort(loss)[:SCREENED]]


def _group_points(group: pd.DataFrame) -> tuple[_Points | None, np.ndarray, pd.DataFrame, int, list[int]]:
    """One group's points for the fit: per size (SIZE_KEYS) with both curves, scratch's
    points and the fine-tune points inside scratch's measured error range (between its
    fitted errors at its largest and smallest N: D_E inside scratch's measured N). P of a
    size is its fine-tuned model's parameter count. Returns (points or None, scratch
    curves (S, 3) fitted alone, the fine-tune points kept with their P in n_params, sizes,
    [fine-tune points below scratch's range, above it])."""
    kept, arrays, curves, outside = [], [], [], [0, 0]
    for _, size in group.groupby(SIZE_KEYS, sort=True):
        scratch = size[size["mode"] == "scratch"].sort_values("n_train")
        finetune = size[size["mode"] == "finetune"].sort_values("n_train")
        if len(scratch) < 4 or finetune.empty:
            continue
        curve = fit_form("saturating", scratch["n_train"], scratch["test_rel_l2"])  # (log a, b, log c)
        floor, top = predict("saturating", curve, [scratch["n_train"].max(), scratch["n_train"].min()])
        below, above = finetune["test_rel_l2"] < floor, finetune["test_rel_l2"] > top
        outside[0], outside[1] = outside[0] + int(below.sum()), outside[1] + int(above.sum())
        inside = finetune[~below & ~above]
        p = int(finetune["n_params"].max())
        inside = inside.assign(n_params=p)
        s = len(curves)
        curves.append(curve)
        for part, is_ft in ((scratch, False), (inside, True)):
            arrays.append((np.full(len(part), s), part["n_train"], np.full(len(part), p), np.full(len(part), is_ft),
                           part["test_rel_l2"]))  # fmt: skip
        kept.append(inside)
    kept = pd.concat(kept) if kept else group.iloc[:0]
    if len(kept) < MIN_FINETUNE_POINTS or kept["n_params"].nunique() < 2:
        return None, np.empty((0, 3)), kept, len(curves), outside
    size, n, p, finetune, y = (np.concatenate([np.asarray(a[i], dtype=float) for a in arrays]) for i in range(5))
    pts = _Points(size.astype(int), np.log(n), np.log(p), finetune.astype(bool), np.log(y))
    return pts, np.clip(np.array(curves), *CURVE_BOUNDS), kept, len(curves), outside


def _groups(points: pd.DataFrame):
    """(keys, points) per TRANSFER_KEYS group: full fine-tuning from that pre-training set
    and scratch of the same family and shift."""
    points = with_study_columns(points[points["mode"].isin(FITTED_MODES)])
    scratch = points[points["mode"] == "scratch"]
    finetune = points[(points["mode"] == "finetune") & points["finetune_strategy"].isin(["", "full"])]
    for keys, group in finetune.groupby(TRANSFER_KEYS, sort=True):
        family, shift, _ = keys
        yield keys, pd.concat([group, scratch[(scratch["family"] == family) & (scratch["shift"] == shift)]])


def _at_bound(value: float, i: int) -> bool:
    """Whether (log k, alpha, beta)[i] = value sits at its TRANSFER_BOUNDS."""
    return bool(value <= TRANSFER_BOUNDS[0][i] + 1e-6 or value >= TRANSFER_BOUNDS[1][i] - 1e-6)


def _unidentified(x: np.ndarray) -> dict[str, str]:
    """The transfer parameters at a bound, with their values."""
    out = {}
    for i, name in enumerate(TRANSFER_PARAMS):
        if _at_bound(x[i], i):
            out[name] = f"at its bound {math.exp(x[i]) if name == 'k' else x[i]:g}"
    return out


def fit_transfer(points: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transfer law per (family, shift, pretrain_family) of ``points``
    (``fno_analysis.points.select_points``), and the samples it explains.

    Returns (law, samples). law: TRANSFER_KEYS, k, alpha, beta with _lo / _hi, n_sizes
    (sizes with fine-tune points kept), n_samples (fine-tune points kept), d_f_min,
    d_f_max (the D_F range it holds over), note. samples: TRANSFER_KEYS, n_params, d_f,
    d_t: per kept fine-tune point, D_E read from its size's fitted scratch curve, minus
    D_F (the law's line runs through these).
    """
    params = [k for n in TRANSFER_PARAMS for k in (n, f"{n}_lo", f"{n}_hi")]
    rows, samples = [], []
    for i, (keys, group) in enumerate(_groups(points)):
        named = dict(zip(TRANSFER_KEYS, keys, strict=True))
        row = {**named, **dict.fromkeys(params, math.nan), "n_sizes": 0, "n_samples": 0, "d_f_min": math.nan,
               "d_f_max": math.nan, "note": ""}  # fmt: skip
        pts, curves, kept, n_pairs, (below, above) = _group_points(group)
        row.update(n_sizes=kept["n_params"].nunique(), n_samples=len(kept))
        if not kept.empty:
            row.update(d_f_min=float(kept["n_train"].min()), d_f_max=float(kept["n_train"].max()))
        if pts is None:
            if n_pairs == 0:
                why = "no size with a scratch curve (4 points or more) and fine-tune points"
            elif kept.empty and below == 0:
                why = ("fine-tuning is worse than scratch's error at scratch's smallest N everywhere: no positive "
                       "transfer to measure")  # fmt: skip
            elif kept.empty and above == 0:
                why = ("fine-tuning beats scratch's error at scratch's largest N everywhere: D_T cannot be read "
                       "without extrapolating scratch's curve (measure scratch at larger N)")  # fmt: skip
            else:
                why = (
                    f"{len(kept)} fine-tune point(s) over {row['n_sizes']} size(s) inside scratch's measured error "
                    f"range ({below} below it, {above} above): too few for k, alpha and beta (needs "
                    f"{MIN_FINETUNE_POINTS} over 2 sizes)"
                )
            rows.append({**row, "note": why})
            continue
        starts = _starts(curves, pts)
        x = _fit(starts, pts, pts.log_y[None, :])[0]
        row.update(k=math.exp(x[0]), alpha=float(x[1]), beta=float(x[2]))
        samples.append(_samples(named, x, pts))
        # Wild bootstrap, from the estimate and from the best start.
        model = _log_model(x[None, :], pts)[0][0]
        jac = _jacobian(x[None, :], pts)[0]
        leverage = np.einsum("mi,ij,mj->m", jac, np.linalg.pinv(jac.T @ jac), jac)
        residuals = (model - pts.log_y) / np.sqrt(np.clip(1 - leverage, 0.05, 1))  # fitted residuals are too small
        signs = np.random.default_rng(seed + i).choice([-1.0, 1.0], size=(n_boot, len(residuals)))
        xb = _fit(np.array([x, starts[0]]), pts, model[None, :] - signs * residuals)
        unidentified = _unidentified(x)
        if row["n_sizes"] < MIN_SIZES:
            row["note"] = (f"estimate only, no interval: fine-tune points inside scratch's error range at "
                           f"{row['n_sizes']} sizes (needs {MIN_SIZES})")  # fmt: skip
        else:
            q = (1 - CONFIDENCE) / 2
            lo, hi = np.quantile(xb[:, :3], [q, 1 - q], axis=0)
            for j, name in enumerate(TRANSFER_PARAMS):
                if name not in unidentified and (_at_bound(lo[j], j) or _at_bound(hi[j], j)):
                    # A percentile interval cut off by a bound is no 95% interval.
                    unidentified[name] = "(its bootstrap interval reaches a bound)"
            lo[0], hi[0] = math.exp(lo[0]), math.exp(hi[0])
            for j, name in enumerate(TRANSFER_PARAMS):
                if name not in unidentified:
                    row[f"{name}_lo"], row[f"{name}_hi"] = float(lo[j]), float(hi[j])
            if unidentified:
                row["note"] = "not identified (no interval): " + "; ".join(f"{k} {v}" for k, v in unidentified.items())
        rows.append(row)
    law = pd.DataFrame(rows, columns=[*TRANSFER_KEYS, *params, "n_sizes", "n_samples", "d_f_min", "d_f_max", "note"])
    columns = [*TRANSFER_KEYS, "n_params", "d_f", "d_t"]
    return law, (pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=columns))


def _samples(named: dict, x: np.ndarray, pts: _Points) -> pd.DataFrame:
    """D_T of each kept fine-tune point: D_E from its size's fitted scratch curve, minus D_F."""
    ft = pts.finetune
    la, b, lc = (x[c][ft] for c in pts.columns())
    excess = np.exp(pts.log_y[ft]) - np.exp(lc)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_e = np.exp((la - np.log(excess)) / b)
    d_e = np.where(excess > 0, d_e, np.inf)
    d_f = np.exp(pts.log_n[ft])
    frame = pd.DataFrame({**named, "n_params": np.exp(pts.log_p[ft]).round().astype(int), "d_f": d_f, "d_t": d_e - d_f})
    return frame[np.isfinite(frame["d_t"]) & (frame["d_t"] > 0)]


def transfer_law(
    df: pd.DataFrame, n_boot: int = 200, seed: int = 0, points: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The transfer law of a results table (``fit_transfer``'s first table); ``points``:
    ``select_points(df)`` if already computed."""
    from fno_analysis.points import select_points

    return fit_transfer(select_points(df) if points is None else points, n_boot, seed)[0]


def transfer_points(df: pd.DataFrame, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """The (D_F, D_T) samples of a results table's transfer laws (``fit_transfer``'s second table)."""
    from fno_analysis.points import select_points

    return fit_transfer(select_points(df) if points is None else points, n_boot=20)[1]
