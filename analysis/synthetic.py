"""Results tables drawn from known scaling laws, to check the estimators against the truth
(benchmarks/bench_laws.py, tests): scratch training follows a surface
err(N, P) = E + A P^-alpha + B N^-beta, and fine-tuning follows the transfer law, i.e.
fine-tuning on D_F examples reaches the error scratch reaches on D_F + k D_F^a P^b.
Each trial's error carries log-normal seed noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fno.results import SCHEMA


@dataclass(frozen=True)
class Truth:
    """The laws a synthetic table is drawn from."""

    E: float = 0.01
    A: float = 5.0
    alpha: float = 0.3
    B: float = 2.0
    beta: float = 0.5
    k: float = 2.0  # transfer law D_T = k D_F^a P^b
    a: float = 1.0
    b: float = 0.2

    def scratch(self, n, p):
        return self.E + self.A * np.power(p, -self.alpha) + self.B * np.power(n, -self.beta)

    def finetune(self, n, p):
        return self.scratch(n + self.k * np.power(n, self.a) * np.power(p, self.b), p)


def law_table(
    truth: Truth,
    n_params: Sequence[int],
    n_values: Sequence[int],
    seeds: int = 3,
    noise: float = 0.05,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """A results table (the schema's columns) of scratch and fine-tune trials for each
    model size (given as parameter counts; width = the size's index + 1) and N, plus one
    pre-training trial per size; ``noise``: the sd of the log error over seeds."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for i, p in enumerate(n_params):
        base = {"width": i + 1, "modes": 4, "layers": 4, "n_params": int(p), "flops_per_sample": 100.0 * p}
        rows.append({**base, "mode": "pretrain", "n_train": 4096, "seed": 0, "test_rel_l2": 0.01, "steps": 20_000})
        for mode, law in (("scratch", truth.scratch), ("finetune", truth.finetune)):
            for n in n_values:
                clean = float(law(float(n), float(p)))
                for seed in range(seeds):
                    err = clean * float(np.exp(noise * rng.normal()))
                    rows.append({**base, "mode": mode, "n_train": int(n), "seed": seed, "test_rel_l2": err,
                                 "steps": 10 * int(n)})  # fmt: skip
    df = pd.DataFrame(rows)
    df["key"] = [f"t{i}" for i in range(len(df))]
    df["val_rel_l2"] = df["test_rel_l2"] * np.exp(0.01 * rng.normal(size=len(df)))
    fixed = {"sweep": "synthetic", "family": "poisson", "shift": "none", "lr": 1e-3, "status": "ok", "error": "",
             "batch_size": 16, "data_seed": 0, "wall_s": 1.0, "resolution": 32}  # fmt: skip
    df = df.assign(**fixed)
    df["stage"] = np.where(df["mode"] == "pretrain", "pretrain", "downstream")
    df["pretrain_family"] = np.where(df["mode"] == "finetune", "poisson", "")
    df["finetune_strategy"] = np.where(df["mode"] == "finetune", "full", "")
    for name in SCHEMA.names:
        if name not in df:
            df[name] = None
    return df[list(SCHEMA.names)]
