"""Run a scaling-and-transfer study: `python sweeps/scaling.py [--preset cpu] [--cluster] ...`.

With no arguments: the `cpu` preset on a local Ray instance started for the run
(bound to 127.0.0.1, token authentication on), results under out/cpu/results/.
Re-running the same command continues the sweep: finished trials are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from fno.config import parse_overrides
from fno.results import finished_keys
from fno.storage import Location
from fno_sweeps.cluster import (
    add_ray_arguments,
    check_resources,
    check_writable,
    continue_command,
    destination_flag,
    in_ray_job,
    output_base,
    run_settings,
    start_ray,
)
from fno_sweeps.grid import Preset, estimate_flops, expand
from fno_sweeps.interrupt import Interrupt
from fno_sweeps.lease import Lease, LeaseHeldError
from fno_sweeps.live import DEFAULT_EVERY_S, LiveReport
from fno_sweeps.manifest import StudyChangedError, check_study, record_study
from fno_sweeps.runner import run_trials


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
    p.add_argument("--out", default="out", help="results go to OUT/SWEEP/ (default ./out)")
    p.add_argument("--sweep", default=None, help="sweep name (default: the preset's name)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; run nothing")
    p.add_argument(
        "--throughput",
        type=float,
        default=None,
        help="sustained FLOP/s per trial for --dry-run's time estimate (default: measured here)",
    )
    p.add_argument("--retry-failed", action="store_true", help="run trials recorded as failed again")
    p.add_argument("--no-report", action="store_true", help="skip report.html and summary.md (during and at the end)")
    p.add_argument(
        "--report-every",
        type=float,
        default=DEFAULT_EVERY_S,
        metavar="SECONDS",
        help=f"rewrite the report while the sweep runs, at most this often (default {DEFAULT_EVERY_S:g}; 0: at the "
        "end only)",
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="run even though another driver holds this sweep's lease (only if that driver is dead)",
    )
    add_ray_arguments(p)
    return p.parse_args(argv)


def plan(args: argparse.Namespace):
    """Load and validate everything; fails with a named field before Ray starts."""
    preset = Preset.load(args.preset, parse_overrides(args.set))
    trials = expand(preset)
    sweep = args.sweep or preset.name
    base = output_base(args)
    settings = run_settings(args)
    for trial in trials:  # a trial too large for any share fails here, before Ray starts
        settings.gpu_share(trial)
    return preset, trials, sweep, base / sweep


def print_plan(preset, trials, sweep_dir: Location, throughput: float | None, settings=None) -> None:
    from collections import Counter

    done = finished_keys(sweep_dir / "results")
    by_stage = Counter(t.stage for t in trials)
    pending = [t for t in trials if t.key not in done]
    print(f"plan for {sweep_dir}: {len(trials)} trials ({len(pending)} to run, {len(trials) - len(pending)} done)")
    print(
        f"  grid: pre-training sets {', '.join(preset.pretrain_families)}; downstream families "
        f"{', '.join(preset.families)}; shifts {', '.join(preset.shifts)}; sizes {', '.join(preset.sizes)}; "
        f"N {', '.join(map(str, preset.n_train))}; learning rates {', '.join(f'{v:g}' for v in preset.lrs)}; "
        f"seeds {', '.join(map(str, preset.seeds))}; {preset.resolution} x {preset.resolution}"
    )
    for stage in ("pretrain", "downstream", "probe"):
        staged = [t for t in trials if t.stage == stage]
        if not staged:
            continue
        modes = Counter(t.config.mode for t in staged)
        steps = [t.config.total_steps for t in staged if t.config.mode != "zeroshot"]
        budget = f"; {min(steps)} .. {max(steps)} steps ({_budget_text(staged[-1].config)})" if steps else ""
        print(
            f"  stage {stage}: {by_stage[stage]} trials ({', '.join(f'{k} {v}' for k, v in sorted(modes.items()))})"
            f"{budget}"
        )
    if settings is not None and settings.gpus_per_trial != 0:
        shares = Counter(settings.gpu_share(t) for t in pending)
        listed = ", ".join(f"{share:.3g} GPU for {count}" for share, count in sorted(shares.items()))
        rule = "by the memory rule, fno.memory" if settings.gpus_per_trial is None else "fixed"
        print(f"  GPU requests ({rule}): {listed}")
    flops = estimate_flops(pending)
    on_gpu = settings is not None and settings.gpus_per_trial != 0
    rate = throughput or _measure_throughput("cuda" if on_gpu else "cpu")
    if rate is None:
        print(f"  compute to run: {flops:.3g} FLOP (no GPU here to measure a rate on: pass --throughput)")
        return
    where = "GPU" if on_gpu else "CPU"
    print(
        f"  compute to run: {flops:.3g} FLOP; at {rate:.3g} FLOP/s per trial ({where}, measured here unless "
        f"--throughput): {flops / rate / 3600:.2f} trial-hours"
    )


def _budget_text(config) -> str:
    if config.epochs is None:
        return "fixed step budget"
    bounds = "".join(
        f", {name} {value}" for name in ("min_steps", "max_steps") if (value := getattr(config, name)) is not None
    )
    return f"{config.epochs:g} epochs at batch min({config.batch_size}, N){bounds}"


def _measure_throughput(device: str = "cpu") -> float | None:
    """Sustained training FLOP/s of one FNO step on this machine's CPU or GPU (a rough
    scale: a small model on the CPU, a mid-sized one at 64 x 64 on the GPU); None where
    a GPU rate is asked for and this machine has none."""
    import torch

    from fno.model import FNO2d
    from fno.train import make_optimizer

    if device == "cuda" and not torch.cuda.is_available():
        return None
    width, modes, n, batch = (16, 6, 32, 16) if device == "cpu" else (64, 16, 64, 64)
    model = FNO2d(4, 1, width, modes).to(device)
    optimizer = make_optimizer(model, lr=1e-3)  # as trials train
    x, y = torch.randn(batch, 4, n, n, device=device), torch.randn(batch, 1, n, n, device=device)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    step()  # warm-up: kernels, FFT plans
    if device == "cuda":
        torch.cuda.synchronize()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        step()
        steps += 1
        if device == "cuda":
            torch.cuda.synchronize()
    return 3 * batch * steps * model.config.flops_per_sample(n) / (time.perf_counter() - start)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        preset, trials, sweep, sweep_dir = plan(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        try:
            print("\n".join(check_study(sweep_dir, preset, dry_run=True).lines))  # the verdict; writes nothing
            print_plan(preset, trials, sweep_dir, args.throughput, run_settings(args))
        except ValueError as err:  # another study in this folder, or an unreadable manifest
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # an object store that does not answer
            print(f"error: {destination_flag(args)}: cannot read the sweep folder {sweep_dir} ({err})", file=sys.stderr)
            return 2
        return 0
    try:
        check_writable(sweep_dir, destination_flag(args))
        check_study(sweep_dir, preset)  # another study in this folder: refused before the lease, nothing written
        live = LiveReport(sweep_dir, 0 if args.no_report else args.report_every)
        lease = Lease(sweep_dir, continue_command("sweeps/scaling.py", argv), take_over=args.take_over)
        lease.acquire()
    except (ValueError, LeaseHeldError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        record_study(sweep_dir, preset)  # checked again, now that this driver holds the folder; then written
        if in_ray_job():
            # Ray removes the job's working directory as soon as the job is stopped, while this
            # driver still stops its trials; out of it, nothing the driver does needs it.
            os.chdir(sweep_dir.local if sweep_dir.is_local else tempfile.gettempdir())
        return _run(args, argv, trials, sweep, sweep_dir, live, lease)
    except StudyChangedError as err:  # another driver changed the study meanwhile
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        live.close()
        lease.release()


EXIT_FAILED_TRIALS = 1  # the sweep ran to its end, and some trials failed
EXIT_LEASE_LOST = 3  # another driver took this sweep's folder (or its lease could not be renewed)


def _run(args, argv, trials, sweep: str, sweep_dir: Location, live: LiveReport, lease: Lease) -> int:
    """The sweep itself, once its folder is writable and this driver holds it. Exits 0
    when every trial has an ok (or diverged) row, EXIT_FAILED_TRIALS when some failed,
    EXIT_LEASE_LOST when the lease was lost (no trial started after that)."""
    started = time.perf_counter()
    done = finished_keys(sweep_dir / "results", include_failed=not args.retry_failed)
    skipped = sum(t.key in done for t in trials)
    if skipped == len(trials):
        print(f"sweep {sweep}: all {len(trials)} trials already done; results: {sweep_dir / 'results'}")
        if not args.no_report:
            write_sweep_report(sweep_dir)
        return 0
    start_ray(args)
    check_resources(args)
    settings = run_settings(args, retry_failed=args.retry_failed)
    interrupt = Interrupt()
    try:
        with interrupt:
            counts = run_trials(
                trials,
                sweep,
                sweep_dir,
                settings,
                interrupt=interrupt,
                on_row=live.maybe_refresh,
                halted=lambda: lease.lost_reason if lease.lost else "",
            )
    except KeyboardInterrupt:  # a second signal: out at once
        counts = None
    finally:
        import ray

        ray.shutdown()
    if counts is None or interrupt.requested:
        left = len(trials) - len(finished_keys(sweep_dir / "results", include_failed=not args.retry_failed))
        ran = "" if counts is None else f"ran {sum(counts.values())} trials ({_counts_text(counts)}), "
        print(
            f"sweep {sweep} interrupted: {ran}{left} of {len(trials)} trials left; results so far: "
            f"{sweep_dir / 'results'}\ncontinue with: {continue_command('sweeps/scaling.py', argv)}",
            file=sys.stderr,
        )
        return interrupt.exit_code
    print(
        f"sweep {sweep}: ran {sum(counts.values())} trials ({_counts_text(counts)}), skipped {skipped} already done, "
        f"{time.perf_counter() - started:.0f} s; results: {sweep_dir / 'results'} "
        f"(pandas.read_parquet on that folder)"
    )
    if lease.lost:
        print(
            f"error: this driver lost the sweep's lease ({lease.lost_reason}): it started no trial after that; the "
            f"running ones finished with their rows. {len(trials) - skipped - sum(counts.values())} trials were not "
            "run: check which driver holds the folder before running the command again",
            file=sys.stderr,
        )
        return EXIT_LEASE_LOST
    if not args.no_report:
        live.close()  # the final report replaces any refresh still running
        write_sweep_report(sweep_dir)
    if counts.get("failed"):
        print_failures(sweep_dir, trials, argv)
        return EXIT_FAILED_TRIALS
    return 0


def print_failures(sweep_dir: Location, trials, argv) -> None:
    """The failed trials of this sweep by failure class, a few errors each, and what a re-run does."""
    import pandas as pd

    from fno.results import RETRIED_FAILURES, read_results

    keys = {t.key for t in trials}
    rows = read_results(sweep_dir / "results").to_pandas()
    failed = rows[(rows["status"] == "failed") & rows["key"].isin(keys)]
    print(f"{len(failed)} trials failed:", file=sys.stderr)
    for failure, group in failed.groupby(failed["failure"].replace("", "error")):
        errors = pd.Series(group["error"]).value_counts()
        print(f"  {failure}: {len(group)}", file=sys.stderr)
        for error, count in errors.head(3).items():
            print(f"    {count} x {error[:200]}", file=sys.stderr)
    retried = failed["failure"].isin(RETRIED_FAILURES).sum()
    print(
        f"the same command runs the {retried} failures of classes {', '.join(RETRIED_FAILURES)} again; "
        f"add --retry-failed to run every failed trial again: {continue_command('sweeps/scaling.py', argv)}",
        file=sys.stderr,
    )


def _counts_text(counts) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def write_sweep_report(sweep_dir: Location) -> None:
    """The report at the end of a run; a failure here is reported, and the results stay."""
    from fno_analysis.report import write_report

    try:
        html_path, md_path = write_report(sweep_dir)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"report not written: {err}; run `python analysis/report.py {sweep_dir}` to retry", file=sys.stderr)
        return
    print(f"report: {html_path} (self-contained; open in a browser)\nsummary: {md_path}")


if __name__ == "__main__":
    sys.exit(main())
