"""GPU checks of the training loop: trials packed onto one GPU at shares 1, 1/2, 1/4,
an oversized trial failing alone inside its share, and host syncs per training step.

- shares: for each share s, 1/s real trials (``fno.train.run_trial``, pre-training,
  each its own process, capped at s of the GPU with ``gpu_share`` exactly as a sweep's
  worker is) start together on this machine's GPU. Ray places such trials the same way
  (it sets CUDA_VISIBLE_DEVICES and the trial caps itself); Ray itself is not needed
  here. Reported: the trials' combined samples/s, the GPU's mean utilisation (NVML,
  sampled every 0.2 s while they run), each trial's peak reserved memory, and the
  memory rule's estimate for the trial (``fno.memory``).
- overflow: one trial at a share far too small for it must end with the error that
  names its share, not take the GPU from the others.
- syncs: ``torch.cuda.set_sync_debug_mode("warn")`` during trials of 20 and 200 steps
  with the same three evaluations: equal counts mean no sync per training step.

    python benchmarks/bench_gpu.py [--shares 1 0.5 0.25] [--size w32-m8] [--resolution 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import warnings

import torch

from fno.data import load_fields
from fno.memory import trial_memory
from fno.model import PRESETS
from fno.train import TrialConfig, run_trial


def trial_config(args, share: float, seed: int, **overrides) -> TrialConfig:
    width, modes = PRESETS[args.size]
    fields = {
        "mode": "pretrain",
        "family": "poisson",
        "n_train": args.n_train,
        "n_val": 256,
        "n_test": 256,
        "resolution": args.resolution,
        "width": width,
        "modes": modes,
        "batch_size": args.batch,
        "steps": args.steps,
        "eval_every": args.steps,
        "lr": 1e-3,
        "seed": seed,
        "device": "cuda",
        "gpu_share": share,
        "tf32": args.tf32,
        "bf16": args.bf16,
    }
    return TrialConfig(**{**fields, **overrides})


def child(config_json: str) -> None:
    """Run one trial in this process; print its numbers as JSON (the last line)."""
    config = TrialConfig.from_dict(json.loads(config_json))
    try:
        result = run_trial(config)
        row = {"status": result.status, "samples_per_s": result.samples_per_s, "train_s": result.train_s}
    except RuntimeError as err:
        row = {"status": "failed", "error": str(err)[:300]}
    row["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    print(json.dumps(row))


def run_group(configs: list[TrialConfig]) -> tuple[list[dict], float]:
    """Start one process per config at once; (their rows, the GPU's mean utilisation % while busy)."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                samples.append(float(torch.cuda.utilization()))
            except (ModuleNotFoundError, RuntimeError):
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(c.to_dict())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in configs
    ]
    sampler.start()
    rows = []
    for process in processes:
        out, err = process.communicate()
        lines = out.strip().splitlines()
        rows.append(json.loads(lines[-1]) if lines else {"status": "crashed", "error": err.strip()[-300:]})
    done.set()
    sampler.join()
    busy = [s for s in samples if s > 0] or [0.0]
    return rows, statistics.mean(busy)


def shares(args) -> None:
    gpu = torch.cuda.get_device_properties(0)
    print(f"GPU {gpu.name}, {gpu.total_memory / 2**30:.0f} GiB; torch {torch.__version__}")
    base = trial_config(args, 1.0, 0)
    for split in ("train", "val", "test"):  # generated once, before any timing (the node's cache)
        load_fields(base.data_spec(split))
    estimate = trial_memory(base).total / 2**30
    print(
        f"trial: pre-training {args.size} at {args.resolution} x {args.resolution}, batch {args.batch}, "
        f"N {args.n_train}, {args.steps} steps, tf32 {args.tf32}, bf16 {args.bf16}; memory rule: {estimate:.2f} GiB\n"
    )
    print("| share | trials | status | samples/s, all trials | samples/s per trial | GPU util % | peak reserved GiB |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for share in args.shares:
        k = round(1 / share)
        rows, util = run_group([trial_config(args, share, seed) for seed in range(k)])
        statuses = ", ".join(sorted({r["status"] for r in rows}))
        ok = [r for r in rows if r["status"] == "ok"]
        combined = args.batch * args.steps * len(ok) / max(r["train_s"] for r in ok) if ok else float("nan")
        per_trial = statistics.mean(r["samples_per_s"] for r in ok) if ok else float("nan")
        peak = max(r["peak_reserved_gib"] for r in rows)
        print(f"| {share:g} | {k} | {statuses} | {combined:,.0f} | {per_trial:,.0f} | {util:.0f} | {peak:.2f} |")
        for r in rows:
            if r["status"] != "ok":
                print(f"  {r['status']}: {r.get('error', '')}")
    print()
    tiny_share = max(0.5 * estimate * 2**30 / gpu.total_memory, 1e-3)  # half of what the rule says it needs
    rows, _ = run_group([trial_config(args, tiny_share, 0, steps=20, eval_every=20)])
    row = rows[0]
    print(f"overflow: a trial at share {tiny_share:.4f} (half its estimate): {row['status']}: {row.get('error')}")


def syncs(args) -> None:
    counts = {}
    for steps in (20, 200):
        config = trial_config(args, 1.0, 0, steps=steps, eval_every=10_000, n_train=512)
        run_trial(trial_config(args, 1.0, 0, steps=2, eval_every=2, n_train=512))  # warm: cache, kernels
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_trial(config)
        torch.cuda.set_sync_debug_mode("default")
        counts[steps] = sum("synchroniz" in str(w.message) for w in caught)
    verdict = "none per step" if counts[20] == counts[200] else f"{(counts[200] - counts[20]) / 180:.1f} per step"
    print(f"host syncs (CUDA sync debug mode): 20 steps {counts[20]}, 200 steps {counts[200]}: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--size", default="w32-m8", choices=list(PRESETS))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--only", choices=("shares", "syncs"), default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure")
        return 1
    if args.only in (None, "syncs"):
        syncs(args)
    if args.only in (None, "shares"):
        shares(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
