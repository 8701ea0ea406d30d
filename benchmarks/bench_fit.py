"""Calibration of the learning-curve fits and gains: interval coverage on synthetic sweeps.

Each case draws ``--replicates`` synthetic sweeps from known curves, runs the analysis
(``fno_analysis.points.select_points``, ``fno_analysis.fit.fit_curves``,
``fno_analysis.gains.data_efficiency_gain``) and counts how often the 95% intervals hold
the true exponent b, the true floor c and the true gain at the target error, and how
often the fit raised a warning. A case's noise is log-normal, per point; cases vary
it: equal across N, falling with N (heteroscedastic), correlated along N (AR(1), as
nested training sets give), split between a point part and a seed part with several
seeds, and with near-tied learning rates chosen by validation error.

    python benchmarks/bench_fit.py [--replicates 300] [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from synthetic_tables import N13, ar1_noise

from fno_analysis.fit import fit_curves, saturating
from fno_analysis.gains import data_efficiency_gain, examples_needed
from fno_analysis.points import select_points


@dataclass(frozen=True)
class Case:
    name: str
    scratch: tuple[float, float, float]  # a, b, c
    finetune: tuple[float, float, float]
    n: tuple[float, ...] = N13
    noise: tuple[float, float] = (0.05, 0.05)  # point noise sd at the smallest and the largest N
    rho: float = 0.0  # AR(1) correlation of the point noise along N
    seeds: int = 1
    data_seeds: int = 1  # each its own point noise (its own nested training sets and test set)
    seed_noise: float = 0.0  # per-seed sd, on top of the point noise
    lrs: int = 1  # rates per point; all equally good on average (near-tied)


CASES = (
    Case("5% noise", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005)),
    Case("15% noise", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.15, 0.15)),
    Case("c = 0", (1.0, 0.5, 0.0), (0.2, 0.5, 0.0), noise=(0.1, 0.1)),
    Case("small c", (1.0, 0.5, 1e-3), (0.2, 0.5, 5e-4), noise=(0.1, 0.1)),
    Case("flat fine-tune", (1.0, 0.5, 0.01), (0.0, 0.5, 0.05), noise=(0.02, 0.02)),
    Case("rising", (1.0, 0.5, 0.01), (0.05, -0.1, 0.0)),
    Case("4 points", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), n=(8.0, 32.0, 128.0, 512.0)),
    Case("5 points", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), n=(4.0, 8.0, 16.0, 32.0, 64.0)),
    Case("heteroscedastic", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.20, 0.03)),
    Case("correlated", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.1, 0.1), rho=0.6),
    Case("correlated, 3 data seeds", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.1, 0.1), rho=0.6, data_seeds=3),
    Case("correlated, 5 data seeds", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.1, 0.1), rho=0.6, data_seeds=5),
    Case("correlated, 10 data seeds", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.1, 0.1), rho=0.6, data_seeds=10),
    Case("independent, 5 data seeds", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.1, 0.1), data_seeds=5),
    Case("3 seeds", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.03, 0.03), seeds=3, seed_noise=0.1),
    Case("tied rates", (1.0, 0.5, 0.01), (0.2, 0.5, 0.005), noise=(0.03, 0.03), seeds=3, seed_noise=0.1, lrs=5),
)


def _noise(case: Case, rng) -> np.ndarray:
    """(m,) log point noise: sd from noise[0] to noise[1] along N, AR(1) with rho."""
    m = len(case.n)
    return ar1_noise(rng, (m,), np.linspace(case.noise[0], case.noise[1], m), case.rho)


def synthetic_sweep(case: Case, rng) -> pd.DataFrame:
    """A results table of one cell: scratch and fine-tune curves of the case. Each data
    seed has its own point noise, which both curves share (one test set, nested training
    sets); rates and training seeds add their own."""
    rows = []
    n_values = np.asarray(case.n)
    for data_seed in range(case.data_seeds):
        shared = _noise(case, rng)
        for mode, (a, b, c) in (("scratch", case.scratch), ("finetune", case.finetune)):
            truth = saturating(n_values, a, b, c) * np.exp(shared)
            for i, n in enumerate(n_values):
                for lr in range(case.lrs):
                    for seed in range(case.seeds):
                        err = truth[i] * math.exp(case.seed_noise * rng.normal())
                        val = err * math.exp(0.02 * rng.normal())  # validation tracks test, nearly
                        rows.append(
                            {
                                "family": "poisson",
                                "shift": "none",
                                "pretrain_family": "poisson" if mode == "finetune" else "",
                                "mode": mode,
                                "width": 8,
                                "modes": 4,
                                "layers": 4,
                                "n_params": 1000,
                                "n_train": int(n),
                                "lr": 10.0 ** -(3 + lr),
                                "seed": seed,
                                "data_seed": data_seed,
                                "status": "ok",
                                "val_rel_l2": val,
                                "test_rel_l2": err,
                                "stage": "downstream",
                            }
                        )
    return pd.DataFrame(rows)


def true_gain(case: Case, target: float) -> float:
    return float(examples_needed(target, *case.scratch) / examples_needed(target, *case.finetune))


def run_case(case: Case, replicates: int, rng) -> dict:
    counts = {"b": 0, "c": 0, "gain": 0, "gain_valid": 0, "warned": 0}
    a_f, b_f, _ = case.finetune
    # The scratch error three quarters of the way up the N range (log scale): both curves reach it where they can.
    target = float(saturating(case.n[0] ** 0.25 * case.n[-1] ** 0.75, *case.scratch))
    gain = true_gain(case, target) if b_f > 0 and a_f > 0 else math.nan
    verdicts: dict[str, int] = {}
    for r in range(replicates):
        df = synthetic_sweep(case, rng)
        points = select_points(df)
        fits = fit_curves(df, n_boot=200, seed=r, points=points).set_index("mode")
        scratch = fits.loc["scratch"]
        warned = bool(scratch["warning"]) or bool(fits.loc["finetune", "warning"])
        counts["warned"] += warned
        if np.isfinite(scratch["b"]):
            counts["b"] += scratch["b_lo"] <= case.scratch[1] <= scratch["b_hi"]
        counts["c"] += scratch["c_lo"] <= case.scratch[2] <= scratch["c_hi"]
        g = data_efficiency_gain(df, target_error=float(target), fits=fits.reset_index()).iloc[0]
        verdicts[g["verdict"]] = verdicts.get(g["verdict"], 0) + 1
        if g["verdict"] == "measured" and math.isfinite(gain):
            counts["gain_valid"] += 1
            counts["gain"] += g["gain_lo"] <= gain <= g["gain_hi"]
        elif g["verdict"] in ("lower bound", "upper bound") and math.isfinite(gain):
            counts["gain_valid"] += 1  # a bound is right when the truth lies on its side
            counts["gain"] += gain >= g["bound"] if g["verdict"] == "lower bound" else gain <= g["bound"]
    return {**counts, "verdicts": verdicts, "true_gain": gain}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=300)
    parser.add_argument("--cases", nargs="*", default=None, help="names of cases to run (default: all)")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.cases is None or c.name in args.cases]
    n = args.replicates
    print(f"{n} synthetic sweeps per case; coverage of the 95% intervals of the scratch curve's b and c and of the")
    print("gain (a censored gain counts as covered when the truth lies on its bound's side)\n")
    print("| case | b | c | gain (true) | gain verdicts | warned | ms per sweep |\n|---|---:|---:|---:|---|---:|---:|")
    for case in cases:
        started = time.perf_counter()
        out = run_case(case, n, np.random.default_rng(2026))
        ms = (time.perf_counter() - started) / n * 1e3
        b_cov = f"{out['b'] / n:.1%}"
        gain = f"{out['gain'] / out['gain_valid']:.1%} ({out['true_gain']:.3g})" if out["gain_valid"] else "n/a"
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(out["verdicts"].items()))
        c_cov, warned = f"{out['c'] / n:.1%}", f"{out['warned'] / n:.0%}"
        print(f"| {case.name} | {b_cov} | {c_cov} | {gain} | {verdicts} | {warned} | {ms:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
