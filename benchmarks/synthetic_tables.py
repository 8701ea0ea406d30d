"""Synthetic results tables for the calibration benchmarks (bench_fit.py, bench_verdicts.py).

``ar1_noise`` draws log point noise correlated along N (nested training sets and one
test set make the points of a curve share their noise). ``draw_table`` turns a list of
curves with known true errors into a results table with the columns the analysis reads
(``fno_analysis.points.REQUIRED_COLUMNS`` plus ``stage``, ``data_seed``,
``finetune_strategy``, ``mean_field_rel_l2``, and where asked the validation curves
``steps``, ``best_step``, ``eval_steps``, ``eval_val_rel_l2``, budget probes and
zero-shot rows), vectorised over curves, data seeds, N, learning rates and seeds.

Run from the repository root as ``python benchmarks/<script>.py``: the script's folder
is then importable, so ``from synthetic_tables import ...`` works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

N13 = tuple(2.0 ** np.arange(3, 16))  # 8 .. 32,768: the paper's N grid
LRS3 = (1e-4, 3e-4, 1e-3)  # three learning rates, ascending


def ar1_noise(rng: np.random.Generator, shape: Sequence[int], sd, rho: float) -> np.ndarray:
    """Log noise of ``shape`` (..., m), AR(1) with correlation ``rho`` along the last axis
    and standard deviation ``sd`` (a number, or (m,) values along it: heteroscedastic).
    For shape (m,) it draws exactly ``rng.normal(size=m)``, as bench_fit always did."""
    shape = tuple(int(s) for s in shape)
    z = rng.normal(size=shape)
    e = np.empty(shape)
    e[..., 0] = z[..., 0]
    scale = math.sqrt(1 - rho**2)
    for i in range(1, shape[-1]):  # m <= 13 points
        e[..., i] = rho * e[..., i - 1] + scale * z[..., i]
    return np.asarray(sd, dtype=float) * e


@dataclass(frozen=True)
class Size:
    """A model size (its architecture); the parameter count is that of an FNO with
    ``layers`` Fourier layers of ``width`` channels and ``modes`` x ``modes`` complex
    weights, plus lifting and projection (``extra_inputs``: the mixture's wider lift)."""

    width: int
    modes: int
    layers: int = 4

    def n_params(self, extra_inputs: int = 0) -> int:
        spectral = 2 * self.width * self.width * self.modes * self.modes
        return int(self.layers * (spectral + self.width * self.width + self.width) + (3 + extra_inputs) * self.width
                   + 129 * self.width)  # fmt: skip


PAPER_SIZES = (Size(16, 4), Size(32, 8), Size(64, 16), Size(128, 32))


@dataclass(frozen=True)
class Noise:
    """How a trial's error scatters about the truth (log scale, standard deviations)."""

    point: float = 0.05  # per (data seed, curve, N): the data sets' draw, shared by the rates and seeds
    rho: float = 0.0  # AR(1) correlation of the point noise along N (nested training sets)
    mode_corr: float = 0.5  # correlation of the point noise between the curves of one group (one test set)
    seed: float = 0.03  # per training seed (the study's median sd over seeds: 3%)
    val: float = 0.02  # validation error against the test error of the same trial


@dataclass
class Curve:
    """One learning curve (scratch or fine-tune) or one zero-shot point, with its truth."""

    family: str
    shift: str
    size: Size
    mode: str  # scratch | finetune | zeroshot
    truth: np.ndarray  # (m,) true test error at each N; zero-shot: (1,)
    pretrain_family: str = ""
    group: tuple = ()  # curves of one group share part of their point noise (Noise.mode_corr)
    penalty: tuple[float, ...] = (1.25, 1.0, 1.25)  # error factor of each learning rate (interior optimum)
    still_falling: float = 0.0  # validation curve's drop from 90% of the budget to its end (0: flat)
    probe_gain: float | None = None  # budget probes (2x steps) at the largest N improve val by this share
    extra_inputs: int = 0  # the mixture reads more input channels: a wider lift, more parameters
    mean_field: float = 0.9  # test error of predicting the training targets' mean
    labels: dict = field(default_factory=dict)  # more columns, constant over the curve


def paper_steps(n: np.ndarray) -> np.ndarray:
    """The paper's budget: 500 epochs at batch min(128, N)."""
    n = np.asarray(n, dtype=float)
    return np.ceil(500 * n / np.minimum(128, n)).astype(np.int64)


def _eval_columns(val: np.ndarray, steps: np.ndarray, drop: np.ndarray) -> tuple[list, list, np.ndarray]:
    """Validation curves evaluated at 80%, 90% and 100% of the budget, ending at ``val``:
    the error at 90% is ``val / (1 - drop)`` (flat where drop is 0, a cosine schedule's
    tail); the best step is the last."""
    marks = np.stack([np.floor(0.8 * steps), np.ceil(0.9 * steps), steps], axis=1).astype(np.int64)
    factors = np.stack([(1 + 1e-3) / (1 - drop) ** 2, (1 + 5e-4) / (1 - drop), np.ones_like(drop)], axis=1)
    values = val[:, None] * factors
    return [list(r) for r in marks], [list(r) for r in values], steps.copy()


def draw_table(
    curves: Sequence[Curve],
    n_values: Sequence[float],
    rng: np.random.Generator,
    noise: Noise = Noise(),
    data_seeds: int = 3,
    seeds: int = 2,
    lrs: Sequence[float] = LRS3,
    eval_curves: bool = False,
) -> pd.DataFrame:
    """A results table of ``curves``: every (data seed, curve, N, learning rate, seed)
    of the scratch and fine-tune curves, one row per (data seed, zero-shot point), and
    budget probes where a curve asks for them.

    The error of a trial is truth x penalty(lr) x exp(point noise + seed noise); its
    validation error is that times exp(Noise.val noise). Point noise is drawn per data
    seed and curve, AR(1) along N; curves of one ``group`` share a Noise.mode_corr part
    of its variance. Zero-shot points get independent point noise per data seed.
    """
    n_values = np.asarray(n_values, dtype=float)
    trained = [c for c in curves if c.mode != "zeroshot"]
    zero = [c for c in curves if c.mode == "zeroshot"]
    d, k, m, n_lr, s = data_seeds, len(trained), len(n_values), len(lrs), seeds
    frames = []
    if k:
        groups = {g: i for i, g in enumerate(dict.fromkeys(c.group or (id(c),) for c in trained))}
        gidx = np.array([groups[c.group or (id(c),)] for c in trained])
        shared = ar1_noise(rng, (d, len(groups), m), noise.point, noise.rho)[:, gidx]
        own = ar1_noise(rng, (d, k, m), noise.point, noise.rho)
        point = math.sqrt(noise.mode_corr) * shared + math.sqrt(1 - noise.mode_corr) * own  # (d, k, m)
        truth = np.stack([np.asarray(c.truth, dtype=float) for c in trained])  # (k, m)
        penalty = np.stack([np.asarray(c.penalty, dtype=float) for c in trained])  # (k, lrs)
        log_test = (
            np.log(truth)[None, :, :, None, None]
            + np.log(penalty)[None, :, None, :, None]
            + point[..., None, None]
            + noise.seed * rng.normal(size=(d, k, m, n_lr, s))
        )
        test = np.exp(log_test).ravel()
        val = test * np.exp(noise.val * rng.normal(size=test.size))
        i_d, i_k, i_m, i_l, i_s = (a.ravel() for a in np.indices((d, k, m, n_lr, s)))
        frame = _labelled(trained, i_k)
        frame["n_train"] = n_values[i_m].astype(np.int64)
        frame["lr"] = np.asarray(lrs, dtype=float)[i_l]
        frame["seed"] = i_s
        frame["data_seed"] = i_d
        frame["val_rel_l2"] = val
        frame["test_rel_l2"] = test
        frame["stage"] = "downstream"
        frame["steps"] = paper_steps(frame["n_train"].to_numpy())
        if eval_curves:
            drop = np.array([c.still_falling for c in trained])[i_k]
            frame["eval_steps"], frame["eval_val_rel_l2"], frame["best_step"] = _eval_columns(
                val, frame["steps"].to_numpy(), drop
            )
        frames.append(frame)
        probes = _probes(trained, frame, n_values, rng, noise.seed)
        if probes is not None:
            frames.append(probes)
    if zero:
        i_d, i_z = (a.ravel() for a in np.indices((d, len(zero))))
        truth = np.array([float(np.asarray(c.truth).ravel()[0]) for c in zero])
        frame = _labelled(zero, i_z)
        frame["test_rel_l2"] = truth[i_z] * np.exp(noise.point * rng.normal(size=i_z.size))
        frame = frame.assign(n_train=1, lr=1e-3, seed=0, data_seed=i_d, val_rel_l2=np.nan, stage="downstream", steps=0)
        if eval_curves:
            frame["eval_steps"] = [[] for _ in range(len(frame))]
            frame["eval_val_rel_l2"] = [[] for _ in range(len(frame))]
            frame["best_step"] = 0
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["status"] = "ok"
    out["finetune_strategy"] = np.where(out["mode"] == "finetune", "full", "")
    return out


def _labelled(curves: Sequence[Curve], index: np.ndarray) -> pd.DataFrame:
    """The per-curve columns of the rows ``index`` (positions in ``curves``)."""
    per_curve = pd.DataFrame(
        [
            {
                "family": c.family,
                "shift": c.shift,
                "pretrain_family": c.pretrain_family,
                "mode": c.mode,
                "width": c.size.width,
                "modes": c.size.modes,
                "layers": c.size.layers,
                "n_params": c.size.n_params(c.extra_inputs),
                "mean_field_rel_l2": c.mean_field,
                **c.labels,
            }
            for c in curves
        ]
    )
    return per_curve.iloc[index].reset_index(drop=True)


def _probes(
    curves: Sequence[Curve], frame: pd.DataFrame, n_values: np.ndarray, rng: np.random.Generator, sd: float
) -> pd.DataFrame | None:
    """Budget probes, as a sweep runs them (``fno_sweeps.grid.budget_probes``): the trials
    of the first data seed and seed at the largest N, every rate, again at twice the
    steps, their errors lowered by the curve's ``probe_gain`` and scattered by ``sd``
    (a longer run follows its own path)."""
    asked = {i: c.probe_gain for i, c in enumerate(curves) if c.probe_gain is not None}
    if not asked:
        return None
    keys = ["family", "shift", "pretrain_family", "mode", "width", "modes", "layers"]
    wanted = pd.DataFrame([{**{k: getattr(curves[i], k) for k in keys[:4]}, "width": curves[i].size.width,
                            "modes": curves[i].size.modes, "layers": curves[i].size.layers, "gain": g}
                           for i, g in asked.items()])  # fmt: skip
    base = frame[(frame["n_train"] == int(n_values.max())) & (frame["seed"] == 0) & (frame["data_seed"] == 0)]
    probes = base.merge(wanted, on=keys, how="inner")
    if probes.empty:
        return None
    keep = (1.0 - probes.pop("gain").to_numpy()) * np.exp(sd * rng.normal(size=len(probes)))
    probes["val_rel_l2"] *= keep
    probes["test_rel_l2"] *= keep
    probes["steps"] = 2 * probes["steps"]
    probes["stage"] = "probe"
    if "eval_steps" in probes:
        probes["eval_steps"], probes["eval_val_rel_l2"], probes["best_step"] = _eval_columns(
            probes["val_rel_l2"].to_numpy(), probes["steps"].to_numpy(), np.zeros(len(probes))
        )
    return probes
