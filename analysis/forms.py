"""Which learning-curve law predicts: the pure, saturating and broken power laws, each fitted
robustly and judged by the error it makes predicting a curve's largest N from the others.

In-sample residuals favour the form with more parameters; what a scaling law is for is
extrapolation, so the forms are compared on held-out points (Choshen et al.'s criterion):
each is fitted to every point but the largest N, by a Huber loss on log error
(HUBER_DELTA, as the surface fit: ``fno_analysis.laws``) from the SCREENED lowest-loss
points of a grid of starts, and its relative miss at the largest N is its held-out
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

import numpy as np
from scipy.optimize import least_squares

HUBER_DELTA = 0.1  # on log error: a 10% miss
PREDICTS = 0.10  # a form "predicts" a curve if its held-out error is at most this
SCREENED = 1  # starts the optimiser runs from: those of lowest loss on the grid
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


def _huber(r: np.ndarray) -> np.ndarray:
    z = (r / HUBER_DELTA) ** 2
    return (np.where(z <= 1, z, 2 * np.sqrt(z) - 1)).sum(axis=-1)


def fit_form(form: str, n, err) -> np.ndarray:
    """The form's parameters (scales as logs) fitted to (n, err); see the module docstring."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    log_n, log_y = np.log(np.asarray(n, dtype=float)), np.log(np.asarray(err, dtype=float))
    starts = _starts(form, log_n, log_y)
    losses = _huber(_log_model(form, starts, log_n) - log_y)
    best, best_cost = starts[0], math.inf
    for x0 in starts[np.argsort(losses)[:SCREENED]]:
        fit = least_squares(lambda x: _log_model(form, x, log_n) - log_y, x0, loss="huber", f_scale=HUBER_DELTA,
                            max_nfev=200)  # fmt: skip
        if fit.cost < best_cost:
            best, best_cost = fit.x, fit.cost
    return best


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
