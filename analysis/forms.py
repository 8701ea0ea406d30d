"""Which learning-curve law predicts: the pure, saturating and broken power laws, each fitted
robustly and judged by the error it makes predicting a curve's largest N from the others.

In-sample residuals favour the form with more parameters; what a scaling law is for is
extrapolation, so the forms are compared on held-out points (Choshen et al.'s criterion):
each is fitted to every point but the largest N, by a Huber loss on log error
(HUBER_DELTA, as the surface fit: ``fno_analysis.laws``) from every point of a grid
of starts at once (``huber_lm``), the best end kept, and its relative miss at the largest N is its held-out
error. A form needs more training points than parameters (pure 2, saturating 3,
broken 4). A curve where no form predicts within PREDICTS (10%) is flagged by the
diagnostics: no law extrapolates it.

Forms (n examples, every scale kept positive by fitting its log):
- pure:       a n^-b
- saturating: a n^-b + c
- broken:     a n^-b1 (1 + n / d)^-(b2 - b1): slope b1 well below the break d, b2 above.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import expit

HUBER_DELTA = 0.1  # on log error: a 10% miss
PREDICTS = 0.10  # a form "predicts" a curve if its held-out error is at most this
FORMS = ("pure", "saturating", "broken")
N_PARAMS = {"pure": 2, "saturating": 3, "broken": 4}


def _log_model(form: str, x: np.ndarray, log_n: np.ndarray) -> np.ndarray:
    """log of the form's prediction; x are its parameters (..., k), scales as logs."""
    x = x[..., None]  # broadcast over points
    if form == "pure":
        return x[..., 0, :] - x[..., 1, :] * log_n
    if form == "saturating":
        return np.logaddexp(x[..., 0, :] - x[..., 1, :] * log_n, x[..., 2, :])
    slope_change = x[..., 3, :] - x[..., 1, :]
    return x[..., 0, :] - x[..., 1, :] * log_n - slope_change * np.logaddexp(0.0, log_n - x[..., 2, :])


def _starts(form: str, log_n: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """A grid of starting parameters around the data's scale."""
    top, bottom, middle = log_y[np.argmin(log_n)], log_y.min(), 0.5 * (log_n.min() + log_n.max())
    starts = []
    for b in (0.2, 0.5, 1.0):
        log_a = top + b * log_n.min()
        if form == "pure":
            starts.append([log_a, b])
        elif form == "saturating":
            starts += [[log_a, b, bottom + math.log(f)] for f in (0.1, 0.5, 0.9)]
        else:
            starts += [[log_a, b, middle, b2] for b2 in (0.5 * b, 2 * b)]
    return np.array(starts)


def huber_loss(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber's loss of residuals r (..., m), summed over the last axis (in units of delta^2 / 2)."""
    z = (r / delta) ** 2
    return np.where(z <= 1, z, 2 * np.sqrt(z) - 1).sum(axis=-1)


def huber_lm(
    x0: np.ndarray,
    residuals: Callable[[np.ndarray, np.ndarray], np.ndarray],
    jacobian: Callable[[np.ndarray, np.ndarray], np.ndarray],
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    iterations: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    """Many small Huber fits at once: Levenberg-Marquardt steps on the reweighted (IRLS)
    least-squares problem, a step taken only where it lowers that fit's loss (else its
    damping grows); fits that have converged drop out of the batch.

    x0 (B, k): the starts. residuals(x, rows) -> (a, m) and jacobian(x, rows) ->
    (a, m, k) evaluate fits ``rows`` (indices into the batch) at x (a, k). Returns the
    ends (B, k) and their losses (B,).
    """
    x = np.array(x0, dtype=float)
    clip = (lambda v: np.clip(v, *bounds)) if bounds is not None else (lambda v: v)
    everyone = np.arange(len(x))
    loss = huber_loss(residuals(x, everyone))
    damping = np.full(len(x), 1e-3)
    active = everyone
    eye = np.eye(x.shape[1])
    for _ in range(iterations):
        xa, lam = x[active], damping[active]
        r, jac = residuals(xa, active), jacobian(xa, active)
        jw = jac * np.minimum(1.0, HUBER_DELTA / np.maximum(np.abs(r), 1e-12))[..., None]  # Huber's weights
        normal = jw.transpose(0, 2, 1) @ jac  # (a, k, k)
        scale = np.einsum("aii->ai", normal)[..., None] * eye  # Marquardt's diagonal scaling
        step = np.linalg.solve(normal + lam[:, None, None] * (scale + 1e-12 * eye),
                               -(jw.transpose(0, 2, 1) @ r[..., None]))[..., 0]  # fmt: skip
        trial = clip(xa + step)
        trial_loss = huber_loss(residuals(trial, active))
        better = trial_loss < loss[active]
        converged = better & (loss[active] - trial_loss <= 1e-6 * trial_loss)
        x[active[better]], loss[active[better]] = trial[better], trial_loss[better]
        damping[active] = np.where(better, lam / 3, lam * 4)
        active = active[~converged & (damping[active] < 1e10)]  # stuck fits (huge damping) stop too
        if active.size == 0:
            break
    return x, loss


def _log_jacobian(form: str, x: np.ndarray, log_n: np.ndarray) -> np.ndarray:
    """d log model / d x, (a, m, k), for parameters x (a, k)."""
    x = x[..., None]
    ones = np.ones_like(log_n) * np.ones_like(x[..., 0, :])
    if form == "pure":
        return np.stack([ones, -ones * log_n], axis=-1)
    if form == "saturating":
        power = x[..., 0, :] - x[..., 1, :] * log_n
        share = expit(power - x[..., 2, :])  # the power term's share of the error
        return np.stack([share, -share * log_n, 1 - share], axis=-1)
    soft = np.logaddexp(0.0, log_n - x[..., 2, :])
    sigmoid = expit(log_n - x[..., 2, :])
    return np.stack([ones, -log_n + soft, (x[..., 3, :] - x[..., 1, :]) * sigmoid, -soft], axis=-1)


def fit_form(form: str, n, err) -> np.ndarray:
    """The form's parameters (scales as logs) fitted to (n, err); see the module docstring."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    log_n, log_y = np.log(np.asarray(n, dtype=float)), np.log(np.asarray(err, dtype=float))
    ends, losses = huber_lm(
        _starts(form, log_n, log_y),
        lambda x, rows: _log_model(form, x, log_n) - log_y,
        lambda x, rows: _log_jacobian(form, x, log_n),
    )
    return ends[np.argmin(losses)]


def predict(form: str, params: np.ndarray, n) -> np.ndarray:
    """The form's error at n."""
    return np.exp(_log_model(form, np.asarray(params, dtype=float), np.log(np.asarray(n, dtype=float))))


def heldout_errors(n, err) -> dict[str, float]:
    """Per form, the relative miss at the largest N of a fit to the other points (NaN where
    they are not more than the form's parameters); and ``best_form``: the form with the
    smallest (None where no form could be tried)."""
    n, y = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    order = np.argsort(n)
    n, y = n[order], y[order]
    out: dict = {}
    for form in FORMS:
        if len(n) - 1 <= N_PARAMS[form]:
            out[f"heldout_{form}"] = math.nan
            continue
        params = fit_form(form, n[:-1], y[:-1])
        out[f"heldout_{form}"] = float(abs(predict(form, params, n[-1:])[0] / y[-1] - 1))
    tried = {form: out[f"heldout_{form}"] for form in FORMS if np.isfinite(out[f"heldout_{form}"])}
    out["best_form"] = min(tried, key=tried.get) if tried else None
    return out


def no_form_predicts(row) -> bool:
    """True where forms were tried and none predicted the largest N within PREDICTS."""
    values = [row.get(f"heldout_{form}", math.nan) for form in FORMS]
    tried = [v for v in values if v is not None and np.isfinite(v)]
    return bool(tried) and min(tried) > PREDICTS
