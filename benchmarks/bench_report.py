"""Time the analysis report on a large synthetic results table (goal: 100,000 rows in under 30 s).

The table has the results schema and a paper-like grid: 3 families x 3 shifts x 6
model sizes x 13 N x 5 learning rates x 10 seeds for scratch and for fine-tuning from
two pre-training sets (single family, mixture), plus zero-shot rows and 1% failed
trials: about 105,000 rows, 162 fitted curves. Test errors follow saturating power
laws with 10% log-normal noise.

    python benchmarks/bench_report.py [--seeds 10] [--n-boot 200] [--one-row-files 5000]

The last part times what compaction avoids: reading rows stored one file per row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fno.results import PART_PREFIX, SCHEMA, read_results, write_row
from fno.vocabulary import SHIFTS
from fno_analysis.points import read_table
from fno_analysis.report import build_report, write_html, write_summary

FAMILIES = ("poisson", "advdiff", "helmholtz")
SIZES = ((16, 4), (32, 8), (48, 12), (64, 16), (96, 24), (128, 32))
N_VALUES = 2 ** np.arange(3, 16)
LRS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3)


def synthetic_table(seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    grid = []
    for family, (s, shift), (width, modes), (mode, source) in product(
        FAMILIES,
        enumerate(SHIFTS),
        SIZES,
        (("scratch", ""), ("finetune", "same"), ("finetune", "mixture")),
    ):
        source = family if source == "same" else source
        a = (1.0 if mode == "scratch" else 0.1) * (1 + s) * 16 / width
        c = 0.005 * (1 + s)
        grid.append((family, shift, width, modes, mode, source, a, 0.5, c))
    curves = pd.DataFrame(grid, columns=["family", "shift", "width", "modes", "mode", "pretrain_family", "a", "b", "c"])
    n, lr, seed = (a.ravel() for a in np.meshgrid(N_VALUES, LRS, np.arange(seeds), indexing="ij"))
    per_curve = len(n)
    df = curves.loc[curves.index.repeat(per_curve)].reset_index(drop=True)
    df["n_train"] = np.tile(n, len(curves))
    df["lr"] = np.tile(lr, len(curves))
    df["seed"] = np.tile(seed, len(curves))
    noise = np.exp(rng.normal(0.0, 0.1, (2, len(df))))
    clean = df["a"] * df["n_train"] ** -df["b"] + df["c"]
    df["test_rel_l2"] = clean * noise[0] * (1 + np.abs(np.log10(df["lr"]) + 3.5) / 10)
    df["val_rel_l2"] = clean * noise[1] * (1 + np.abs(np.log10(df["lr"]) + 3.5) / 10)
    zero = curves[curves["mode"] == "finetune"].assign(mode="zeroshot", n_train=1, lr=1e-3, seed=0)
    zero["test_rel_l2"] = 0.05 * (1 + 3 * zero["shift"].map(SHIFTS.index))
    zero["val_rel_l2"] = np.nan
    df = pd.concat([df, zero], ignore_index=True)
    df["status"], df["error"] = "ok", ""
    failed = rng.random(len(df)) < 0.01
    df.loc[failed, ["status", "error"]] = ("failed", "RuntimeError: CUDA out of memory")
    df.loc[failed, ["test_rel_l2", "val_rel_l2"]] = np.nan
    df["layers"] = 4
    df["n_params"] = 16 * df["width"] ** 2 * df["modes"] ** 2
    df["key"] = [f"k{i}" for i in range(len(df))]
    df["stage"], df["sweep"], df["wall_s"] = "downstream", "synthetic", rng.uniform(5, 500, len(df))
    for name in SCHEMA.names:
        if name not in df:
            df[name] = None
    return df[SCHEMA.names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per point (10: about 105,000 rows)")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument(
        "--one-row-files",
        type=int,
        default=5000,
        help="also time reading this many rows stored one file per row, uncompacted (0: skip)",
    )
    args = parser.parse_args()
    df = synthetic_table(args.seeds, np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as out:
        # As a sweep leaves its table mid-run: one compacted part, plus one batch of
        # one-row files written since the last compaction.
        results_dir = Path(out) / "synthetic" / "results"
        results_dir.mkdir(parents=True)
        batch = 256
        table = pa.Table.from_pandas(df.iloc[:-batch], schema=SCHEMA, preserve_index=False)
        pq.write_table(table, results_dir / f"{PART_PREFIX}0.parquet")
        for row in df.iloc[-batch:].to_dict("records"):
            write_row(results_dir, row)
        print(f"{len(df):,} rows: one part file and {batch} one-row files")
        started = time.perf_counter()
        read = read_table(results_dir.parent)
        loaded = time.perf_counter()
        report = build_report(read, n_boot=args.n_boot)
        built = time.perf_counter()
        write_html(report, results_dir.parent / "report.html", "synthetic")
        write_summary(report, results_dir.parent / "summary.md", "synthetic")
        size = (results_dir.parent / "report.html").stat().st_size
        done = time.perf_counter()
    print(
        f"{len(report.fits)} curves fitted ({args.n_boot} bootstrap replicates each), {len(report.figures)} figures\n"
        f"read {loaded - started:.1f} s; fits, gains and figures {built - loaded:.1f} s; HTML and Markdown "
        f"{done - built:.1f} s ({size / 2**20:.1f} MB); total {done - started:.1f} s"
    )

    if args.one_row_files:
        with tempfile.TemporaryDirectory() as out:
            for row in df.iloc[: args.one_row_files].to_dict("records"):
                write_row(out, row)
            started = time.perf_counter()
            rows = read_results(out).num_rows
            print(f"uncompacted: {rows:,} one-row files read in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
