"""Calibration and speed of the power-law fit: interval coverage of the true exponent.

For each synthetic curve err(N) = a N^-b + c on N = 2^3 .. 2^15 with log-normal noise,
draws ``--replicates`` noisy copies, fits each (``analysis.fit.fit_curve``, 200
bootstrap replicates) and counts how often the 95% interval holds the true b, for the
bootstrap-t interval that the fit reports and for the plain percentile interval of
the same bootstrap replicates.

The second table: curves with several training seeds per point. Each seed's error is
the curve times a point-level factor (the data set's own noise, shared by the seeds,
sd ``point``) times its own seed factor (sd falling linearly from ``seed_hi`` at the
smallest N to ``seed_lo`` at the largest); the fit sees the seed means, with and
without the per-point seed errors (``seed_errors``: the two-stage bootstrap), and
coverage of the true b is counted for both.

    python benchmarks/bench_fit.py [--replicates 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.fit import _interval, fit_curve, saturating

N_VALUES = 2.0 ** np.arange(3, 16)
CASES = (  # (a, b, c, noise)
    (1.0, 0.5, 0.01, 0.05),
    (1.0, 0.5, 0.0, 0.10),
    (0.5, 0.8, 0.05, 0.10),
    (1.0, 0.5, 0.01, 0.15),
)

SEED_CASES = (  # (a, b, c, N values, seeds, point sd, seed sd at the smallest N, at the largest N)
    (1.0, 0.5, 0.01, 2.0 ** np.arange(3, 13), 3, 0.03, 0.15, 0.04),
    (1.0, 0.5, 0.01, 2.0 ** np.arange(3, 13), 2, 0.03, 0.15, 0.04),
    (1.0, 0.5, 0.01, 2.0 ** np.arange(2, 7), 2, 0.02, 0.10, 0.05),
    (0.5, 0.8, 0.02, 2.0 ** np.arange(2, 8), 3, 0.0, 0.20, 0.05),
    (1.0, 0.3, 0.0, 2.0 ** np.arange(3, 11), 5, 0.05, 0.05, 0.05),
)


def seed_coverage(replicates: int) -> None:
    print(f"\n{'a':>5} {'b':>5} {'c':>6} {'N':>9} {'seeds':>5} {'point':>5} {'seed sd':>11} "
          f"{'two-stage':>9} {'means only':>10} {'ms/fit':>7}")  # fmt: skip
    for a, b, c, n, k, point, seed_hi, seed_lo in SEED_CASES:
        rng = np.random.default_rng(11)
        sigma = np.linspace(seed_hi, seed_lo, n.size)[:, None]
        two_stage = means_only = 0
        started = time.perf_counter()
        for r in range(replicates):
            shared = np.exp(rng.normal(0.0, point, (n.size, 1)))
            seeds = saturating(n, a, b, c)[:, None] * shared * np.exp(rng.normal(0.0, 1.0, (n.size, k)) * sigma)
            fit = fit_curve(n, seeds.mean(axis=1), seed=r, seed_errors=list(seeds))
            two_stage += fit["b_lo"] <= b <= fit["b_hi"]
            plain = fit_curve(n, seeds.mean(axis=1), seed=r)
            means_only += plain["b_lo"] <= b <= plain["b_hi"]
        ms = (time.perf_counter() - started) / replicates / 2 * 1e3
        span = f"{int(n[0])}-{int(n[-1])}"
        print(f"{a:>5g} {b:>5g} {c:>6g} {span:>9} {k:>5d} {point:>5g} {f'{seed_hi:g}->{seed_lo:g}':>11} "
              f"{two_stage / replicates:>9.1%} {means_only / replicates:>10.1%} {ms:>7.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=300)
    args = parser.parse_args()
    print(f"{'a':>5} {'b':>5} {'c':>6} {'noise':>6} {'bootstrap-t':>12} {'percentile':>11} {'ms/fit':>7}")
    for a, b, c, noise in CASES:
        rng = np.random.default_rng(7)
        studentized = percentile = 0
        started = time.perf_counter()
        for r in range(args.replicates):
            y = saturating(N_VALUES, a, b, c) * np.exp(rng.normal(0.0, noise, len(N_VALUES)))
            fit = fit_curve(N_VALUES, y, seed=r)
            studentized += fit["b_lo"] <= b <= fit["b_hi"]
            lo, hi = _interval(fit["boot"][:, 1])
            percentile += lo <= b <= hi
        ms = (time.perf_counter() - started) / args.replicates * 1e3
        n = args.replicates
        print(f"{a:>5g} {b:>5g} {c:>6g} {noise:>6g} {studentized / n:>12.1%} {percentile / n:>11.1%} {ms:>7.1f}")
    seed_coverage(args.replicates)


if __name__ == "__main__":
    main()
