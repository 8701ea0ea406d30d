"""A preset's trials one after another in this process, on one GPU, timed: the GPU run
of a sweep on a machine without Ray (docs/gpu.md).

    python benchmarks/gpu_sweep.py --preset strategies --set resolution=64 \
        --set eval_resolutions=[64,128] --out OUT [--minutes 8]

Trials run in the sweep's order (pre-training first), each through the same
``fno.train.run_trial`` and results and evaluations writers as a Ray sweep (its rows
read the same: ``fno-report OUT/<preset>``), and resume by key. With
``--minutes`` no trial starts after that many minutes. Prints the time per mode and the
total; the table is the measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from fno.config import parse_overrides
from fno.results import EVALUATION_SCHEMA, compact, finished_keys
from fno.train import TrialConfig, run_trial
from fno_sweeps.grid import Preset, expand, trial_flops
from fno_sweeps.runner import Progress, Recorder, RunSettings, checkpoint_path, worker_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="strategies")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--minutes", type=float, default=None, help="start no trial after this many minutes")
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run of this script")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU (--device cpu for a smoke run)", file=sys.stderr)
        return 2
    preset = Preset.load(args.preset, parse_overrides(args.set))
    sweep_dir = args.out / preset.name
    results_dir = sweep_dir / "results"
    done = finished_keys(results_dir)
    pending = [t for t in expand(preset) if t.key not in done]  # pre-training first
    gpus = 1.0 if args.device == "cuda" else 0.0
    settings = RunSettings(cpus_per_trial=torch.get_num_threads(), gpus_per_trial=gpus, tf32=args.tf32, bf16=args.bf16)
    recorder = Recorder(results_dir, preset.name, Progress(len(pending), 1, {t.key: trial_flops(t) for t in pending}))
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{where}: {len(pending)} trials of {preset.name} to run", flush=True)
    started, seconds = time.perf_counter(), defaultdict(float)
    for trial in pending:
        if args.minutes is not None and time.perf_counter() - started > 60 * args.minutes:
            print(f"stopping: {args.minutes:g} minutes are up; the same command resumes", flush=True)
            break
        config = TrialConfig.from_dict(worker_config(trial, sweep_dir, settings))
        out_dir = checkpoint_path(sweep_dir, trial.key).parent if trial.stage == "pretrain" else None
        try:
            result = run_trial(config, None, out_dir).to_dict()
        except (ValueError, RuntimeError, FileNotFoundError) as err:  # recorded as failed, as a sweep does
            recorder.record(trial, None, f"{type(err).__name__}: {err}")
            continue
        recorder.record(trial, result)
        seconds[config.mode] += result["wall_s"]
    compact(results_dir)
    compact(recorder.evaluations_dir, EVALUATION_SCHEMA)
    total = time.perf_counter() - started
    counts = recorder.progress.counts
    print(f"\n{sum(counts.values())} trials in {total:.1f} s ({dict(counts)}); trial wall time by mode:")
    for mode, value in sorted(seconds.items()):
        print(f"  {mode:9s} {value:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
