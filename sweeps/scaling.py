"""Run a scaling-and-transfer study: `python sweeps/scaling.py [--preset cpu] [--cluster] ...`.

With no arguments: the `cpu` preset on a local Ray instance started for the run
(bound to 127.0.0.1, token authentication on), results under out/cpu/results/.
Re-running the same command continues the sweep: finished trials are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `fno` and `sweeps` importable
    sys.path.insert(0, str(ROOT))

from fno.config import parse_overrides  # noqa: E402
from fno.results import finished_keys, read_results  # noqa: E402
from sweeps.grid import Preset, estimate_flops, expand  # noqa: E402
from sweeps.runner import RunSettings, run_trials  # noqa: E402

# What a worker on another node does not need of this repository.
RUNTIME_EXCLUDES = [".git", ".venv", ".ci/venv", "out", "data", "**/__pycache__", "*.parquet", "*.pt"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python sweeps/scaling.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu", help="preset name in sweeps/presets/ or a TOML path (default cpu)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field: --set n_train=[16,64] --set pretrain.steps=200",
    )
    p.add_argument("--out", type=Path, default=ROOT / "out", help="results go to OUT/SWEEP/ (default ./out)")
    p.add_argument("--sweep", default=None, help="sweep name (default: the preset's name)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; run nothing")
    p.add_argument(
        "--throughput",
        type=float,
        default=None,
        help="sustained FLOP/s per trial for --dry-run's time estimate (default: measured here)",
    )
    p.add_argument("--cluster", action="store_true", help="connect to an existing Ray cluster")
    p.add_argument("--address", default=None, help="cluster address (default: $RAY_ADDRESS, else auto)")
    p.add_argument("--storage", default=None, help="shared folder for results and checkpoints on a cluster")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions allowed, e.g. 0.25")
    p.add_argument("--concurrency", type=int, default=None, help="trials at once (default: as resources allow)")
    p.add_argument("--max-retries", type=int, default=1, help="retries of a trial that raises")
    p.add_argument("--retry-failed", action="store_true", help="run trials recorded as failed again")
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray: CPUs to use (default: all)")
    p.add_argument("--dashboard-host", default="127.0.0.1", help="local Ray dashboard bind address")
    p.add_argument("--no-dashboard", action="store_true", help="local Ray without the dashboard")
    p.add_argument("--no-report", action="store_true", help="skip report.html and summary.md at the end")
    p.add_argument("--device", default="auto", help="trial device: auto, cpu, cuda")
    p.add_argument("--verbose", type=int, default=0, help="Ray Tune's own console output level (0-3)")
    return p.parse_args(argv)


def plan(args: argparse.Namespace):
    """Load and validate everything; fails with a named field before Ray starts."""
    preset = Preset.load(args.preset, parse_overrides(args.set))
    trials = expand(preset)
    sweep = args.sweep or preset.name
    base = Path(args.storage) if args.storage else args.out
    if "://" in str(base):
        raise ValueError(f"--storage {base}: object-store URIs are not supported yet; use a shared folder")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_retries < 0:
        raise ValueError("need --cpus-per-trial > 0, --gpus-per-trial >= 0 and --max-retries >= 0")
    if 1 < args.gpus_per_trial != int(args.gpus_per_trial):
        raise ValueError(f"--gpus-per-trial {args.gpus_per_trial}: fractions must be below 1 (Ray cannot split them)")
    return preset, trials, sweep, base / sweep


def print_plan(trials, sweep_dir: Path, throughput: float | None) -> None:
    from collections import Counter

    done = set(read_results(sweep_dir / "results").column("key").to_pylist())
    by_stage = Counter(t.stage for t in trials)
    pending = [t for t in trials if t.key not in done]
    print(f"plan for {sweep_dir}: {len(trials)} trials ({len(pending)} to run, {len(trials) - len(pending)} done)")
    for stage in ("pretrain", "downstream"):
        modes = Counter(t.config.mode for t in trials if t.stage == stage)
        print(f"  stage {stage}: {by_stage[stage]} trials ({', '.join(f'{k} {v}' for k, v in sorted(modes.items()))})")
    flops = estimate_flops(pending)
    rate = throughput or _measure_throughput()
    print(f"  compute to run: {flops:.3g} FLOP; at {rate:.3g} FLOP/s per trial: {flops / rate / 3600:.2f} trial-hours")


def _measure_throughput() -> float:
    """Sustained training FLOP/s of one small FNO step on this machine (a rough scale)."""
    import torch

    from fno.model import FNO2d

    model = FNO2d(4, 1, 16, 6)
    optimizer = torch.optim.Adam(model.parameters())
    x, y = torch.randn(16, 4, 32, 32), torch.randn(16, 1, 32, 32)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        steps += 1
    return 3 * 16 * steps * model.config.flops_per_sample(32) / (time.perf_counter() - start)


def start_ray(args: argparse.Namespace, sweep_dir: Path) -> None:
    import ray

    if args.cluster:
        # Joining an existing cluster: the driver authenticates with the cluster's token
        # (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN). A local instance
        # below gets token authentication by default and writes its own token.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
        ray.init(
            address=address, runtime_env={"working_dir": str(ROOT), "excludes": RUNTIME_EXCLUDES}, log_to_driver=False
        )
        nodes = [n for n in ray.nodes() if n["Alive"]]
        if len(nodes) > 1 and not args.storage:
            ray.shutdown()
            raise SystemExit(
                f"error: the cluster at {address} has {len(nodes)} nodes; pass --storage with a folder every node "
                "sees (checkpoints of stage 1 are read by stage 2 trials on any node)"
            )
        print(f"connected to Ray cluster at {address}: {len(nodes)} nodes")
        return
    context = ray.init(
        # "local": always a new, private instance. Without it, ray.init joins whatever
        # /tmp/ray/ray_current_cluster names, even a cluster that has since died.
        address="local",
        num_cpus=args.num_cpus,
        include_dashboard=not args.no_dashboard,
        dashboard_host=args.dashboard_host,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        log_to_driver=False,
    )
    if not args.no_dashboard and context.dashboard_url:
        print(
            f"Ray dashboard: http://{context.dashboard_url} (sign in with the token that "
            "`ray get-auth-token` prints; it is in ~/.ray/auth_token)"
        )


def check_resources(args: argparse.Namespace) -> None:
    """Refuse requests no node can satisfy (Tune would leave such trials PENDING forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    if args.gpus_per_trial > most_gpus or args.cpus_per_trial > most_cpus:
        ray.shutdown()
        raise SystemExit(
            f"error: a trial asks for {args.cpus_per_trial} CPUs and {args.gpus_per_trial} GPUs, but the largest "
            f"node has {most_cpus:g} CPUs and {most_gpus:g} GPUs; lower --cpus-per-trial / --gpus-per-trial"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        _, trials, sweep, sweep_dir = plan(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(trials, sweep_dir, args.throughput)
        return 0
    started = time.perf_counter()
    done = finished_keys(sweep_dir / "results", include_failed=not args.retry_failed)
    skipped = sum(t.key in done for t in trials)
    if skipped == len(trials):
        print(f"sweep {sweep}: all {len(trials)} trials already done; results: {sweep_dir / 'results'}")
        if not args.no_report:
            write_sweep_report(sweep_dir)
        return 0
    start_ray(args, sweep_dir)
    check_resources(args)
    settings = RunSettings(
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        device=args.device,
        verbose=args.verbose,
        retry_failed=args.retry_failed,
    )
    try:
        counts = run_trials(trials, sweep, sweep_dir, settings)
    finally:
        import ray

        ray.shutdown()
    ran = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(
        f"sweep {sweep}: ran {sum(counts.values())} trials ({ran}), skipped {skipped} already done, "
        f"{time.perf_counter() - started:.0f} s; results: {sweep_dir / 'results'} "
        f"(pandas.read_parquet on that folder)"
    )
    if not args.no_report:
        write_sweep_report(sweep_dir)
    return 0


def write_sweep_report(sweep_dir: Path) -> None:
    """The report at the end of a run; a failure here is reported, and the results stay."""
    from analysis.report import write_report

    try:
        html_path, md_path = write_report(sweep_dir)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"report not written: {err}; run `python analysis/report.py {sweep_dir}` to retry", file=sys.stderr)
        return
    print(f"report: {html_path} (self-contained; open in a browser)\nsummary: {md_path}")


if __name__ == "__main__":
    sys.exit(main())
