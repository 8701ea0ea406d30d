"""The dry run's time estimate against a finished sweep: estimated vs measured trial-hours.

For a preset and a sweep folder whose results hold its trials, estimates those trials
as ``fno-sweep --dry-run`` does (``fno_sweeps.estimate``: steps of each planned shape
timed here, or ``--throughput``) and compares with the rows' own times (sum of
``wall_s``), per mode and in total; then the wall-clock on ``--slots`` against the rows'
span (first start to last end, Ray's start and stop not in it). Also prints the fixed
cost per trial the rows show (median of ``wall_s - train_s``) against the estimate's.

    python benchmarks/bench_estimate.py --preset study                      # docs/study, committed
    python benchmarks/bench_estimate.py --preset cpu --sweep-dir /tmp/est_runs/cpu
    python benchmarks/bench_estimate.py --preset cpu --sweep-dir out/cpu --throughput 5e8

The rows' times include the machine's load when they ran; the timed steps, the load now.
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import datetime
from pathlib import Path

import torch

from fno.results import read_results
from fno_sweeps import estimate as est
from fno_sweeps.grid import Preset, expand

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="study", help="preset name or TOML path (default study)")
    parser.add_argument(
        "--sweep-dir", default=None, help="finished sweep folder (default: docs/study for the study preset)"
    )
    parser.add_argument("--throughput", type=float, default=None, help="FLOP/s per trial instead of timed steps")
    parser.add_argument("--cpus-per-trial", type=int, default=1, help="torch threads per trial (default 1)")
    parser.add_argument("--slots", type=int, default=2, help="trials at once when the sweep ran (default 2)")
    args = parser.parse_args()
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else ROOT / "docs" / args.preset
    if not (sweep_dir / "results").is_dir():
        raise SystemExit(f"error: --sweep-dir {sweep_dir}: no results folder there; run the sweep first")
    rows = read_results(sweep_dir / "results").to_pandas()
    rows = rows[rows["status"] == "ok"]
    trials, unmatched = match_rows(rows, expand(Preset.load(args.preset)))
    rows = rows[~rows.index.isin(unmatched)]
    if rows.empty:
        raise SystemExit(f"error: --sweep-dir {sweep_dir}: no ok row of a {args.preset} trial")
    if args.throughput:
        cost, basis = est.FlopRate(args.throughput), f"FLOPs at {args.throughput:.3g} FLOP/s"
    else:
        cost = est.measure_steps(est.plan_shapes(trials), "cpu", args.cpus_per_trial)
        basis = f"{cost.timed} shapes timed in {cost.elapsed_s:.1f} s, {args.cpus_per_trial} thread(s)"
    result = est.estimate(trials, cost, args.slots)
    load = os.getloadavg()
    print(f"preset {args.preset}, {len(trials)} ok trials in {sweep_dir}; estimate: {basis}")
    loads = " ".join(f"{v:.2f}" for v in load)
    print(f"  load average now {loads}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"  {'mode':10s} {'trials':>6s} {'estimated h':>12s} {'measured h':>11s} {'ratio':>6s}")
    measured = rows.groupby("mode")["wall_s"].sum() / 3600
    counts = rows.groupby("mode").size()
    for mode, hours in result.hours_by_mode().items():
        print(f"  {mode:10s} {counts[mode]:6d} {hours:12.4f} {measured[mode]:11.4f} {hours / measured[mode]:6.2f}")
    total = measured.sum()
    print(f"  {'total':10s} {len(rows):6d} {result.trial_hours:12.4f} {total:11.4f} {result.trial_hours / total:6.2f}")
    parts = ", ".join(f"{k} {v:.4f} h" for k, v in result.hours_by_part().items())
    print(f"  estimate by part: {parts}")
    fixed = statistics.median(rows["wall_s"] - rows["train_s"])
    print(f"  fixed cost per trial: rows' median wall_s - train_s {fixed:.3f} s; the estimate's {est.FIXED_TRIAL_S} s")
    starts = [datetime.fromisoformat(s).timestamp() for s in rows["started_at"]]
    span = max(s + w for s, w in zip(starts, rows["wall_s"], strict=True)) - min(starts)
    ray = est.RAY_START_S + est.RAY_STOP_S
    print(
        f"  wall-clock on {args.slots} slots: estimated {result.wall_clock_s - ray:.0f} s + {ray:.0f} s Ray start "
        f"and stop; the rows' span {span:.0f} s (ratio {(result.wall_clock_s - ray) / span:.2f})"
    )


def _describe(stage: str, mode: str, family: str, param: tuple | None, *fields) -> tuple:
    """What sets a trial's cost, and its place in the grid, without its key (keys change
    when TrialConfig gains a field; the rows keep theirs)."""
    where = None if stage == "pretrain" else tuple(round(float(v), 6) for v in param)
    return (stage, mode, family, where, *(round(float(v), 9) for v in fields))


def match_rows(rows, planned: list) -> tuple[list, list]:
    """The planned trial of each row (by key, else by its grid point and budget), and the
    index of the rows that match none."""
    by_key = {t.key: t for t in planned}
    free: dict[tuple, list] = {}
    for t in planned:
        c = t.config
        point = (c.width, c.modes, c.n_train, c.lr, c.seed, c.total_steps)
        free.setdefault(_describe(t.stage, c.mode, c.family, c.param_range, *point), []).append(t)
    trials, unmatched = [], []
    for index, row in rows.iterrows():
        if row["key"] in by_key:
            trials.append(by_key[row["key"]])
            continue
        point = (row["width"], row["modes"], row["n_train"], row["lr"], row["seed"], row["steps"])
        bucket = free.get(_describe(row["stage"], row["mode"], row["family"], (row["param_lo"], row["param_hi"]),
                                    *point), [])  # fmt: skip
        if bucket:
            trials.append(bucket.pop())
        else:
            unmatched.append(index)
    return trials, unmatched


if __name__ == "__main__":
    main()
