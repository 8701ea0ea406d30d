"""Synthetic results tables for the analysis tests: rows of the results schema whose
errors follow known curves."""

import math

import numpy as np
import pandas as pd

from fno.results import SCHEMA
from fno_analysis.fit import saturating

N_VALUES = 2 ** np.arange(3, 16)  # the paper's N = 2^3 .. 2^15


def results_table(curves: dict, lrs=(1e-3,), seeds=(0,), noise=0.0, rng=None, n_values=N_VALUES) -> pd.DataFrame:
    """A results table whose test errors follow given curves: {(mode, width): (a, b, c)}.

    Validation error is 1.1 x the test error; zero-shot rows (N = 1) have none.
    """
    rng = rng or np.random.default_rng(0)
    rows = []
    for (mode, width), (a, b, c) in curves.items():
        for n in n_values if mode != "zeroshot" else [1]:
            for lr in lrs:
                for seed in seeds:
                    err = saturating(n, a, b, c) * math.exp(noise * rng.normal()) if noise else saturating(n, a, b, c)
                    rows.append(
                        result_row(mode, width, int(n), lr, seed, err, err * 1.1 if mode != "zeroshot" else math.nan)
                    )
    return pd.DataFrame(rows)


def result_row(mode, width, n, lr, seed, test, val, status="ok", error="", data_seed=0):
    row = {field.name: None for field in SCHEMA}
    row.update(
        key=f"{mode}-{width}-{n}-{lr}-{seed}",
        sweep="synthetic",
        stage="downstream",
        family="poisson",
        shift="none",
        mode=mode,
        width=width,
        modes=4,
        layers=4,
        n_params=1000 * width,
        n_train=n,
        lr=lr,
        seed=seed,
        data_seed=data_seed,
        pretrain_family="poisson" if mode in ("finetune", "zeroshot") else "",
        val_rel_l2=val,
        test_rel_l2=test,
        status=status,
        error=error,
        wall_s=1.0,
        steps=100,
        best_step=100,
        eval_steps=[],
        eval_val_rel_l2=[],
    )
    return row
