"""Is a preset's training budget enough? Re-run its largest-N scratch trials at 1x, 2x, 4x.

    python benchmarks/bench_budget.py [--preset cpu] [--set KEY=VALUE ...] [--factors 1 2 4]
                                      [--mode scratch] [--lr 3e-3] [--workers 2] [--json OUT]

For every (size, family, shift, learning rate) of the preset, the downstream trial at
the largest N (seed 0) is trained with its budget multiplied by each factor (epochs
or steps, with any step bounds) and its validation and test errors are printed with
the improvement over the 1x run. A preset's budget converges where doubling improves
the validation error by less than 10% (the study's rule; the report's budget-probe
diagnostic uses the same threshold). Trials run without Ray, ``--workers`` at a time,
one thread each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fno.config import parse_overrides
from fno.train import TrialConfig
from fno_sweeps.grid import Preset, expand, scaled_budget


def _run(config: dict) -> dict:
    import torch

    from fno.train import run_trial

    torch.set_num_threads(1)
    trial = TrialConfig.from_dict(config)
    started = time.perf_counter()
    result = run_trial(trial)
    return {
        "steps": result.steps,
        "val": result.val_rel_l2,
        "test": result.test_rel_l2,
        "best_step": result.best_step,
        "seconds": time.perf_counter() - started,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    p.add_argument("--mode", default="scratch", choices=["scratch"], help="trained from a random init")
    p.add_argument("--lr", type=float, default=None, help="only this learning rate of the grid")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    args = p.parse_args(argv)
    preset = Preset.load(args.preset, parse_overrides(args.set))
    largest = max(preset.n_train)
    base = [
        t.config
        for t in expand(preset)
        if t.stage == "downstream"
        and t.config.mode == args.mode
        and t.config.n_train == largest
        and t.config.seed == preset.seeds[0]
        and (args.lr is None or t.config.lr == args.lr)
    ]
    if not base:
        print(f"error: no {args.mode} trial at N = {largest} (check --lr)", file=sys.stderr)
        return 2
    jobs = [(i, f, scaled_budget(c, f).to_dict()) for i, c in enumerate(base) for f in args.factors]
    print(f"{len(base)} trials x factors {args.factors}: {len(jobs)} runs, {args.workers} at a time", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_run, [job[2] for job in jobs]))
    rows = []
    for (i, factor, _), result in zip(jobs, results, strict=True):
        c = base[i]
        shift = next(s for s in preset.shifts if preset.shift_range(c.family, s) == tuple(c.param_range))
        rows.append({"size": f"w{c.width}-m{c.modes}", "family": c.family, "shift": shift, "lr": c.lr,
                     "n_train": c.n_train, "factor": factor, **result})  # fmt: skip
    print(f"{'size':8} {'family':9} {'shift':8} {'lr':>7} {'x':>4} {'steps':>6} {'val':>8} {'test':>8} "
          f"{'val gain':>8} {'test gain':>9} {'s':>6}")  # fmt: skip
    for row in rows:
        ref = next(r for r in rows if r["factor"] == args.factors[0] and
                   all(r[k] == row[k] for k in ("size", "family", "shift", "lr")))  # fmt: skip
        row["val_improvement"] = 1 - row["val"] / ref["val"]
        row["test_improvement"] = 1 - row["test"] / ref["test"]
        print(
            f"{row['size']:8} {row['family']:9} {row['shift']:8} {row['lr']:7.0e} {row['factor']:4g} "
            f"{row['steps']:6d} {row['val']:8.4f} {row['test']:8.4f} {row['val_improvement']:8.1%} "
            f"{row['test_improvement']:9.1%} {row['seconds']:6.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
