"""Calibration and speed of the power-law fit: interval coverage of the true exponent.

For each synthetic curve err(N) = a N^-b + c on N = 2^3 .. 2^15 with log-normal noise,
draws ``--replicates`` noisy copies, fits each (``analysis.fit.fit_curve``, 200
bootstrap replicates) and counts how often the 95% interval holds the true b, for the
bootstrap-t interval that the fit reports and for the plain percentile interval of
the same bootstrap replicates.

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


if __name__ == "__main__":
    main()
