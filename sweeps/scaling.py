"""Run a scaling-and-transfer study: `fno-sweep [--preset cpu] [--cluster] ...` (or `python sweeps/scaling.py`).

With no arguments: the `cpu` preset on a local Ray instance started for the run
(bound to 127.0.0.1, token authentication on), results under out/cpu/results/.
Re-running the same command continues the sweep: finished trials are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
import time

from fno.results import finished_keys
from fno.storage import Location
from fno_sweeps.cluster import (
    add_ray_arguments,
    check_cluster,
    check_flags,
    check_local_resources,
    check_resources,
    check_writable,
    continue_command,
    destination_flag,
    first_missing,
    in_ray_job,
    output_base,
    parse_checked,
    parse_set_flags,
    prog,
    refuse,
    remove_if_empty,
    run_settings,
    start_ray,
)
from fno_sweeps.grid import Preset, estimate_flops, expand
from fno_sweeps.interrupt import Interrupt
from fno_sweeps.lease import Lease, LeaseHeldError
from fno_sweeps.live import DEFAULT_EVERY_S, LiveReport, Stopwatch
from fno_sweeps.manifest import MANIFEST_NAME, StudyChangedError, check_study, record_study
from fno_sweeps.runner import RunSettings, run_trials


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of trials at once, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 trial at once, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog(SCRIPT), description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu", help="preset name in sweeps/presets/ or a TOML path (default cpu)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field: --set n_train=[16,64] --set pretrain.steps=200",
    )
    p.add_argument("--out", default=None, help="results go to OUT/SWEEP/ (default ./out)")
    p.add_argument("--sweep", default=None, help="sweep name (default: the preset's name)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a compute estimate; run nothing")
    p.add_argument(
        "--adaptive",
        action="store_true",
        help="after the grid, add the trials that could decide what is not decided, in rounds, within the preset's "
        "[adaptive] limits (docs/analysis.md, 'Adaptive rounds'); with --dry-run: print the cap and the worst case",
    )
    p.add_argument(
        "--throughput",
        type=float,
        default=None,
        help="--dry-run: estimate each trial's time from its FLOPs at this sustained FLOP/s per trial (default: "
        "time a few steps of each planned model, batch and grid on the device trials use; docs/sweeps.md)",
    )
    p.add_argument(
        "--slots",
        type=_positive_int,
        default=None,
        metavar="N",
        help="--dry-run: trials at once for the wall-clock estimate, e.g. a cluster not yet at hand (default: this "
        "machine's CPUs or GPUs per trial, or the cluster's with --cluster)",
    )
    p.add_argument("--retry-failed", action="store_true", help="run trials recorded as failed again")
    p.add_argument("--no-report", action="store_true", help="skip report.html and summary.md (during and at the end)")
    p.add_argument(
        "--report-every",
        type=float,
        default=None,
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
    return parse_checked(p, argv, _check_args)


SCRIPT = "sweeps/scaling.py"  # this entry point (fno_sweeps.cluster.ENTRY_POINTS)


def _check_args(args: argparse.Namespace) -> None:
    """The flags on their own (fno_sweeps.cluster.check_flags) and the report's; sets the
    report's default interval."""
    check_flags(args)
    every = args.report_every
    if args.no_report and every is not None:
        raise ValueError(f"--no-report and --report-every {every:g} contradict each other: --no-report writes none")
    if every is not None and not (every >= 0 and every != float("inf")):
        raise ValueError(f"--report-every must be a number of seconds >= 0 (0: only at the end), got {every:g}")
    args.report_every = DEFAULT_EVERY_S if every is None else every


def plan(args: argparse.Namespace):
    """Load and validate everything; fails with a named field before Ray starts."""
    preset = Preset.load(args.preset, parse_set_flags(args.set))
    if getattr(args, "adaptive", False) and not preset.adaptive.enabled:  # --adaptive: on for this run
        preset = dataclasses.replace(preset, adaptive=dataclasses.replace(preset.adaptive, enabled=True))
    trials = expand(preset)
    sweep = args.sweep or preset.name
    base = output_base(args)
    settings = run_settings(args)
    for trial in trials:  # a trial too large for any share fails here, before Ray starts
        settings.gpu_share(trial)
    return preset, trials, sweep, base / sweep


def print_plan(
    preset,
    trials,
    sweep_dir: Location,
    throughput: float | None,
    settings: RunSettings | None = None,
    slots: int | None = None,
    resources: tuple[float, float, str] | None = None,
) -> None:
    """The plan: its grid, its stages, each trial's GPU request, and the estimate of its
    time (trial-hours, wall-clock on ``slots`` trials at once, else on ``resources``:
    CPUs, GPUs and where they were read, default this machine's; fno_sweeps.estimate)."""
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
    print(f"  compute to run: {estimate_flops(pending):.3g} FLOP (training steps and evaluation passes)")
    if pending:
        _print_estimate(pending, throughput, settings or RunSettings(), slots, resources)


def _print_estimate(pending, throughput: float | None, settings: RunSettings, slots: int | None, resources) -> None:
    """The time lines of the plan (fno_sweeps.estimate does the arithmetic)."""
    from fno_sweeps import estimate as est

    on_gpu = settings.gpus_per_trial != 0
    cost, basis = _measure_throughput(pending, "cuda" if on_gpu else "cpu", settings, throughput)
    if cost is None:  # GPU trials, no GPU here and no --throughput
        ref = est.reference_gpu(pending, slots=slots)
        print(
            f"  time to run: no GPU here to measure a rate on: pass --throughput for your GPU's; on one "
            f"{est.REFERENCE_GPU} at the measured {est.REFERENCE_GPU_RATE:.3g} FLOP/s per trial (docs/gpu.md): "
            f"{est.hours_text(ref.trial_hours)} trial-hours, {est.duration_text(ref.wall_clock_s)} wall-clock at "
            f"{ref.slots} trials at once"
        )
        return
    cpus, gpus, where = resources or _local_resources(None, None)
    if on_gpu and not gpus:
        gpus, where = 1.0, "no GPU here, one assumed"
    smallest = min(settings.gpu_share(t) for t in pending) if on_gpu else 0.0
    n_slots = slots or est.local_slots(cpus, settings.cpus_per_trial, gpus if on_gpu else 0.0, smallest,
                                       settings.concurrency)  # fmt: skip
    result = est.estimate(pending, cost, n_slots)
    parts = ", ".join(f"{k} {est.hours_text(v)}" for k, v in result.hours_by_part().items())
    modes = ", ".join(f"{k} {est.hours_text(v)}" for k, v in result.hours_by_mode().items())
    print(f"  time to run: {est.hours_text(result.trial_hours)} trial-hours ({basis}); {parts}; by mode: {modes}")
    if slots:
        held = "--slots"
    else:
        per = f"--cpus-per-trial {settings.cpus_per_trial:g}" + (f", {smallest:.3g} GPU per trial" if on_gpu else "")
        held = f"{where}: {cpus:g} CPUs" + (f", {gpus:g} GPUs" if on_gpu else "") + f" at {per}"
        held += f", --concurrency {settings.concurrency}" if settings.concurrency else ""
    print(
        f"  wall-clock: {est.duration_text(result.wall_clock_s)} on {n_slots} slots ({held}; Ray's start and stop "
        "included)"
    )
    if not on_gpu and result.wall_clock_s > est.CPU_PLAN_TOO_LONG_S:
        ref = est.reference_gpu(pending, slots=slots)
        print(
            f"  too long for CPUs; on one {est.REFERENCE_GPU} at the measured {est.REFERENCE_GPU_RATE:.3g} FLOP/s per "
            f"trial (docs/gpu.md): {est.hours_text(ref.trial_hours)} trial-hours, "
            f"{est.duration_text(ref.wall_clock_s)} wall-clock at {ref.slots} trials at once (GPU trials: "
            "--gpus-per-trial; another rate: --throughput)"
        )


def _plan_resources(args: argparse.Namespace) -> tuple[float, float, str]:
    """The CPUs and GPUs a run of these flags would have: the cluster's with --cluster, else local."""
    return _cluster_resources(args.address) if args.cluster else _local_resources(args.num_cpus, args.num_gpus)


def _local_resources(num_cpus: int | None, num_gpus: int | None) -> tuple[float, float, str]:
    """CPUs and GPUs a local Ray instance would offer (--num-cpus / --num-gpus, else this machine's)."""
    import torch

    cpus = num_cpus if num_cpus is not None else os.cpu_count() or 1
    gpus = num_gpus if num_gpus is not None else torch.cuda.device_count()
    return float(cpus), float(gpus), "this machine"


def _cluster_resources(address: str | None) -> tuple[float, float, str]:
    """The CPUs and GPUs of the Ray cluster at ``address`` (--address, $RAY_ADDRESS, else auto):
    the driver joins it, reads them and leaves; it starts nothing there."""
    import ray

    from fno_sweeps.cluster import check_head_reachable

    os.environ.setdefault("RAY_AUTH_MODE", "token")
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    check_head_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as err:
        raise SystemExit(
            f"error: --cluster: cannot join the Ray cluster at {address} to read its slots ({err}); check its token, "
            "or plan without it: --slots N"
        ) from None
    try:
        total = ray.cluster_resources()
    finally:
        ray.shutdown()
    return total.get("CPU", 0.0), total.get("GPU", 0.0), f"the cluster at {address}"


def _budget_text(config) -> str:
    if config.epochs is None:
        return "fixed step budget"
    bounds = "".join(
        f", {name} {value}" for name in ("min_steps", "max_steps") if (value := getattr(config, name)) is not None
    )
    return f"{config.epochs:g} epochs at batch min({config.batch_size}, N){bounds}"


def _measure_throughput(pending, device: str, settings: RunSettings, throughput: float | None = None):
    """How the estimate times a step, and its basis in words: ``throughput`` (FLOP/s per
    trial) if given; else a few timed steps of every planned shape on ``device`` at the
    trials' threads (4 to 10 s for the cpu and study presets on 2 cores, at most 10 s),
    kept a day in fno_sweeps.estimate.step_cache_path() so that a second dry run
    times only new shapes. (None, reason) for GPU trials on a machine without a GPU."""
    import torch

    from fno_sweeps import estimate as est

    if throughput is not None:
        return est.FlopRate(throughput), f"their FLOPs at {throughput:.3g} FLOP/s per trial, --throughput"
    if device == "cuda" and not torch.cuda.is_available():
        return None, "no GPU here"
    threads = max(1, int(settings.cpus_per_trial))  # as the runner gives each trial
    shapes = est.plan_shapes(pending)
    measured = est.cached_measure_steps(shapes, device, threads)
    where = torch.cuda.get_device_name() if device == "cuda" else f"this CPU, {threads} thread{'s' * (threads > 1)}"
    basis = f"steps timed here on {where}: {measured.timed - measured.cached} shapes in {measured.elapsed_s:.1f} s"
    if measured.cached:
        basis += f", {measured.cached} timed in the last day ({est.step_cache_path()})"
    if measured.timed < len(shapes):
        basis += f", {len(shapes) - measured.timed} more extrapolated"
    return measured, basis


def main(argv=None) -> int:
    clock = Stopwatch()
    args = parse_args(argv)
    try:
        preset, trials, sweep, sweep_dir = plan(args)
    except ValueError as err:
        return refuse(prog(SCRIPT), str(err))
    if args.dry_run:
        try:
            print("\n".join(check_study(sweep_dir, preset, dry_run=True).lines))  # the verdict; writes nothing
            resources = None if args.slots else _plan_resources(args)
            print_plan(preset, trials, sweep_dir, args.throughput, run_settings(args), args.slots, resources)
            if preset.adaptive.enabled:
                print_adaptive_plan(preset, trials, sweep_dir, args.throughput, run_settings(args))
        except ValueError as err:  # another study in this folder, or an unreadable manifest
            print(f"error: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # an object store that does not answer
            print(f"error: {destination_flag(args)}: cannot read the sweep folder {sweep_dir} ({err})", file=sys.stderr)
            return 2
        return 0
    if args.slots:
        return refuse(prog(SCRIPT), "--slots plans a --dry-run's wall-clock; a run takes its slots from Ray (limit "
                      "them with --concurrency)")  # fmt: skip
    try:  # what can be known before Ray starts and before anything is written
        check_local_resources(args)
        check_cluster(args)
    except ValueError as err:
        return refuse(prog(SCRIPT), str(err))
    clock.say(f"plan: {len(trials)} trials; results in {sweep_dir}")
    created = first_missing(sweep_dir)
    try:
        return _hold_and_run(args, argv, preset, trials, sweep, sweep_dir, clock)
    finally:
        remove_if_empty(sweep_dir, created)  # a run refused or failed before any trial leaves no folder


def _hold_and_run(args, argv, preset, trials, sweep: str, sweep_dir: Location, clock: Stopwatch) -> int:
    """Check the folder, take its lease, run; a refusal exits 2 naming its cause."""
    try:
        check_writable(sweep_dir, destination_flag(args))
        check_study(sweep_dir, preset)  # another study in this folder: refused before the lease, nothing written
        live = LiveReport(sweep_dir, 0 if args.no_report else args.report_every)
        lease = Lease(sweep_dir, continue_command(SCRIPT, argv), take_over=args.take_over)
        lease.acquire()
    except (ValueError, LeaseHeldError) as err:
        return refuse(prog(SCRIPT), str(err))
    manifest = sweep_dir / MANIFEST_NAME
    first = not manifest.exists()
    try:
        record_study(sweep_dir, preset)  # checked again, now that this driver holds the folder; then written
        if in_ray_job():
            # Ray removes the job's working directory as soon as the job is stopped, while this
            # driver still stops its trials; out of it, nothing the driver does needs it.
            os.chdir(sweep_dir.local if sweep_dir.is_local else tempfile.gettempdir())
        if preset.adaptive.enabled:
            return _run_adaptive(args, argv, preset, trials, sweep, sweep_dir, live, lease, clock)
        return _run(args, argv, trials, sweep, sweep_dir, live, lease, clock)
    except StudyChangedError as err:  # another driver changed the study meanwhile
        return refuse(prog(SCRIPT), str(err))
    except BaseException:  # Ray did not start (a head that refused the driver ...): no study began here
        if first and not (sweep_dir / "results").exists():
            manifest.delete()
        raise
    finally:
        live.close()
        lease.release()


EXIT_FAILED_TRIALS = 1  # the sweep ran to its end, and some trials failed
EXIT_LEASE_LOST = 3  # another driver took this sweep's folder (or its lease could not be renewed)


def _run(
    args,
    argv,
    trials,
    sweep: str,
    sweep_dir: Location,
    live: LiveReport,
    lease: Lease,
    clock: Stopwatch,
    final: bool = True,
    keep_ray: bool = False,
) -> int:
    """The sweep itself, once its folder is writable and this driver holds it. Exits 0
    when every trial has an ok (or diverged) row, EXIT_FAILED_TRIALS when some failed,
    EXIT_LEASE_LOST when the lease was lost (no trial started after that). ``final``
    False (an adaptive round before the last): no report, no list of failures; ``keep_ray``:
    Ray stays up for the next round (the caller shuts it down)."""
    started = time.perf_counter()
    done = finished_keys(sweep_dir / "results", include_failed=not args.retry_failed)
    skipped = sum(t.key in done for t in trials)
    if skipped == len(trials):
        print(f"sweep {sweep}: all {len(trials)} trials already done; results: {sweep_dir / 'results'}")
        if not args.no_report and final:
            write_sweep_report(sweep_dir)
        return 0
    interrupt = Interrupt()
    try:
        import ray

        if not (keep_ray and ray.is_initialized()):
            start_ray(args, say=clock.say)
            check_resources(args)
        settings = run_settings(args, retry_failed=args.retry_failed)
        with interrupt:
            counts = run_trials(
                trials,
                sweep,
                sweep_dir,
                settings,
                interrupt=interrupt,
                on_row=live.maybe_refresh,
                halted=lambda: lease.lost_reason if lease.lost else "",
                stopwatch=clock,
            )
    except KeyboardInterrupt:  # Ctrl-C while Ray starts, or a second signal: out at once
        counts = None
    finally:
        import ray

        if not keep_ray or counts is None or interrupt.requested:
            ray.shutdown()
    if counts is None or interrupt.requested:
        left = len(trials) - len(finished_keys(sweep_dir / "results", include_failed=not args.retry_failed))
        ran = "" if counts is None else f"ran {sum(counts.values())} trials ({_counts_text(counts)}), "
        print(
            f"sweep {sweep} interrupted: {ran}{left} of {len(trials)} trials left; results so far: "
            f"{sweep_dir / 'results'}\ncontinue with: {continue_command(SCRIPT, argv)}",
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
    if not final:
        return EXIT_FAILED_TRIALS if counts.get("failed") else 0
    if not args.no_report:
        live.close()  # the final report replaces any refresh still running
        write_sweep_report(sweep_dir)
    if counts.get("failed"):
        print_failures(sweep_dir, trials, argv)
        return EXIT_FAILED_TRIALS
    return 0


def _run_adaptive(args, argv, preset, trials, sweep: str, sweep_dir: Location, live: LiveReport, lease: Lease,
                  clock: Stopwatch) -> int:  # fmt: skip
    """The grid, then adaptive rounds (fno_sweeps.adaptive) until one adds nothing, the
    limits are reached or a stop is asked for. The rounds recorded in the manifest are
    replayed first (their trials run where they have no row), then new ones decided from
    the rows, each recorded before its trials run: a re-run resumes at the same point."""
    from fno_sweeps import adaptive
    from fno_sweeps.manifest import read_rounds

    recorded, planned = adaptive.replay(preset, [r for r in read_rounds(sweep_dir) if r.get("additions")])
    all_trials = list({t.key: t for t in [*trials, *planned]}.values())
    for decision in recorded:
        print(f"adaptive round {decision.round} (recorded): {len(decision.specs)} trials; "
              + "; ".join(a.line() for a in decision.additions))  # fmt: skip
    try:
        return _rounds(args, argv, preset, all_trials, recorded, sweep, sweep_dir, live, lease, clock)
    finally:
        import ray

        ray.shutdown()


def _rounds(args, argv, preset, all_trials, recorded, sweep, sweep_dir, live, lease, clock) -> int:
    """The loop of ``_run_adaptive``, Ray kept up from one round to the next."""
    from fno_analysis.points import read_table
    from fno_sweeps import adaptive
    from fno_sweeps.manifest import record_round

    limits = preset.adaptive
    failed = False
    code = _run(args, argv, all_trials, sweep, sweep_dir, live, lease, clock, final=False, keep_ray=True)
    spent = sum(d.hours for d in recorded)
    number = len(recorded) + 1
    hours_of = _hours_estimator(args, preset)
    while code in (0, EXIT_FAILED_TRIALS):
        failed |= code == EXIT_FAILED_TRIALS
        if number > limits.max_rounds:
            print(f"adaptive: stop after round {number - 1}: max_rounds {limits.max_rounds} reached")
            break
        analysis = adaptive.analyse(read_table(sweep_dir))
        known = {t.key for t in all_trials} | set(analysis.df["key"])  # planned, or with a row of another run
        decision = adaptive.decide(preset, analysis, number, limits, spent, hours_of, known)
        record_round(sweep_dir, decision.to_json())  # before its trials run: a re-run replays it
        clock.say("\n".join(decision.lines()))
        if not decision.additions:
            break
        all_trials += adaptive.spec_trials(preset, decision.specs)
        spent += decision.hours
        number += 1
        code = _run(args, argv, all_trials, sweep, sweep_dir, live, lease, clock, final=False, keep_ray=True)
    if code not in (0, EXIT_FAILED_TRIALS):  # interrupted, or the lease lost: _run said so
        return code
    if not args.no_report:
        live.close()
        write_sweep_report(sweep_dir)
    if failed or code == EXIT_FAILED_TRIALS:
        print_failures(sweep_dir, all_trials, argv)
        return EXIT_FAILED_TRIALS
    return 0


def _hours_estimator(args, preset):
    """Trial-hours of planned trials, as the dry run estimates them (steps timed here, kept a
    day; GPU trials on a machine without one: the reference GPU's rate)."""
    from fno_sweeps import estimate as est

    settings = run_settings(args)
    device = "cuda" if settings.gpus_per_trial != 0 else "cpu"

    def hours_of(planned) -> float:
        if not planned:
            return 0.0
        cost, _ = _measure_throughput(planned, device, settings, args.throughput)  # timed shapes kept a day
        cost = cost or est.FlopRate(est.REFERENCE_GPU_RATE)
        return sum(est.trial_seconds(t.config, cost).total for t in planned) / 3600

    return hours_of


def print_adaptive_plan(preset, trials, sweep_dir: Location, throughput: float | None, settings: RunSettings) -> None:
    """--dry-run --adaptive: the limits, the compute cap, the rounds already recorded, and
    the worst case (the static grid of every value the rounds could add, an upper bound)."""
    from fno_sweeps import adaptive
    from fno_sweeps import estimate as est
    from fno_sweeps.manifest import read_rounds

    limits = preset.adaptive
    static = adaptive.static_preset(preset)
    worst = [t for t in expand(static) if t.key not in {p.key for p in trials}]
    cost, basis = _measure_throughput(worst or trials, "cuda" if settings.gpus_per_trial != 0 else "cpu", settings,
                                      throughput)  # fmt: skip
    cost = cost or est.FlopRate(est.REFERENCE_GPU_RATE)
    worst_hours = sum(est.trial_seconds(t.config, cost).total for t in worst) / 3600
    recorded = read_rounds(sweep_dir)
    print(
        f"  adaptive: up to {limits.max_rounds} rounds after the grid; limits: scratch N up to "
        f"{limits.largest_n(preset.n_train)} (max_n), fine-tuning N down to {limits.min_n} (min_n), "
        f"{limits.max_lr_steps} rates beyond the grid's on each side (max_lr_steps), {limits.max_data_seeds} data "
        "seeds per curve (max_data_seeds)"
    )
    print(
        f"  adaptive cap: {est.hours_text(limits.max_trial_hours)} trial-hours of added trials (max_trial_hours); "
        f"worst case, the static grid of every value the rounds could add (lrs "
        f"{', '.join(f'{v:g}' for v in static.lrs)}; N {', '.join(map(str, static.n_train))}; data seeds "
        f"{', '.join(map(str, static.data_seeds))}): {len(worst)} more trials, {est.hours_text(worst_hours)} "
        f"trial-hours ({basis}); so at most {est.hours_text(min(worst_hours, limits.max_trial_hours))} trial-hours "
        "added"
    )
    if recorded:
        added = sum(len(a.get("specs", [])) for r in recorded for a in r.get("additions", []))
        print(f"  adaptive rounds recorded in {sweep_dir / MANIFEST_NAME}: {len(recorded)} ({added} trials added); "
              "a run replays them first")  # fmt: skip


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
        f"add --retry-failed to run every failed trial again: {continue_command(SCRIPT, argv)}",
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
        print(f"report not written: {err}; run `fno-report {shlex.quote(str(sweep_dir))}` to retry", file=sys.stderr)
        return
    print(f"report: {html_path} (self-contained; open in a browser)\nsummary: {md_path}")


if __name__ == "__main__":
    sys.exit(main())
