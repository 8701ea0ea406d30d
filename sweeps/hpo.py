"""Search training hyperparameters of one setting with Optuna (TPE) through Ray Tune, ASHA early stopping.

    fno-hpo --family poisson --size w32-m8 --mode finetune --n-train 64 --trials 40

(``python sweeps/hpo.py ...`` in a checkout.)

Searches the learning rate and weight decay (log scale), the batch size and the step
budget of one setting (family, shift, size, mode, N). Trials report their validation
error at every evaluation; ASHA stops the unpromising ones early. The study lives in
an Optuna journal file beside the results (safe with concurrent writers, also on a
shared filesystem, unlike SQLite), so running the same command again continues it:
``--trials`` is the total, finished trials count toward it, and trials that were
running when the driver died are marked failed and replaced. Every finished trial is
a row of the sweep's results table (stage ``hpo``; early-stopped ones with status
``stopped``). At the end: the best configuration and its validation error, written
as a TOML snippet for a preset, and as ``--set`` flags for ``fno-sweep``.

Fine-tune and zero-shot need a pre-trained model: the preset's pre-training trial for
the size and ``--pretrain-family`` is run first (once; it is skipped when its row is
already in the results).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fno.checks import sha256_hex
from fno.config import load_toml
from fno.physics.families import SINGLE_FAMILIES
from fno.results import statuses
from fno.storage import Location
from fno.train import TrialConfig
from fno.vocabulary import FITTED_MODES, SHIFTS
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
    output_base,
    parse_checked,
    parse_set_flags,
    prog,
    refuse,
    remove_if_empty,
    run_settings,
    start_ray,
)
from fno_sweeps.grid import PRESET_DIR, PlannedTrial, Preset, expand, parse_size, trial_key
from fno_sweeps.lease import Lease, LeaseHeldError
from fno_sweeps.live import Stopwatch
from fno_sweeps.runner import (
    Progress,
    Recorder,
    RowWriterCallback,
    checkpoint_path,
    environment,
    resource_slots,
    run_reported_trial,
    run_trials,
    tune_callbacks,
    tune_output,
    worker_config,
)

METRIC, MODE = "val_rel_l2", "min"  # declared once: the searcher, the scheduler and the summary use them
SEARCHED = ("lr", "weight_decay", "batch_size", "steps")


@dataclass(frozen=True)
class SearchSpace:
    """Ranges searched; log-uniform for lr and weight_decay, log-uniform integers for steps."""

    lr: tuple[float, float] = (1e-4, 1e-2)
    weight_decay: tuple[float, float] = (1e-8, 1e-3)
    batch_size: tuple[int, ...] = (8, 16, 32, 64)  # capped by N in training
    steps: tuple[int, int] = (100, 800)

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "steps"):
            lo, hi = getattr(self, name)
            if not (lo > 0 and hi > 0):
                raise ValueError(f"--{name.replace('_', '-')} {lo} {hi}: both ends must be positive (log scale)")
            if lo > hi:
                raise ValueError(f"--{name.replace('_', '-')} {lo} {hi}: lo > hi; give the range as LO HI")
        if not self.batch_size or any(b < 1 for b in self.batch_size):
            raise ValueError(f"--batch-sizes {list(self.batch_size)}: need one or more positive integers")

    def tune_space(self) -> dict[str, Any]:
        from ray import tune

        return {
            "lr": tune.loguniform(*self.lr),
            "weight_decay": tune.loguniform(*self.weight_decay),
            "batch_size": tune.choice(sorted(set(self.batch_size))),
            "steps": tune.lograndint(self.steps[0], self.steps[1] + 1),
        }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog(SCRIPT), description=__doc__.split("\n\n")[0])
    p.add_argument("--family", required=True, help="downstream family: poisson, advdiff, helmholtz")
    p.add_argument("--size", required=True, help="model size, wWIDTH-mMODES (e.g. w32-m8)")
    p.add_argument("--mode", required=True, choices=FITTED_MODES, help="training mode searched")
    p.add_argument("--n-train", type=int, required=True, help="downstream training examples N")
    p.add_argument("--shift", default="none", help="downstream range: none, moderate, large (default none)")
    p.add_argument("--pretrain-family", default=None, help="pre-training set (default: the family itself)")
    p.add_argument("--trials", type=int, default=40, help="total trials of the study (default 40)")
    p.add_argument("--lr", type=float, nargs=2, metavar=("LO", "HI"), default=SearchSpace.lr)
    p.add_argument("--weight-decay", type=float, nargs=2, metavar=("LO", "HI"), default=SearchSpace.weight_decay)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(SearchSpace.batch_size))
    p.add_argument("--steps", type=int, nargs=2, metavar=("LO", "HI"), default=SearchSpace.steps)
    p.add_argument(
        "--grace-steps",
        type=int,
        default=None,
        help="ASHA: steps before a trial can be stopped, in [1, HI of --steps] (default: the larger of the preset's "
        "downstream.eval_every and half of LO)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampler seed and the trials' training seed")
    p.add_argument("--preset", default="cpu", help="preset giving resolution, data sizes and pre-training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset field")
    p.add_argument("--out", default=None, help="results go to OUT/SWEEP/ (default ./out)")
    p.add_argument("--sweep", default=None, help="sweep name (default: hpo-FAMILY-SHIFT-SIZE-MODE-nN)")
    p.add_argument("--take-over", action="store_true", help="run though another driver holds the study's lease")
    add_ray_arguments(p)
    return parse_checked(p, argv, check_flags)


SCRIPT = "sweeps/hpo.py"  # this entry point (fno_sweeps.cluster.ENTRY_POINTS)


def check_setting_flags(args: argparse.Namespace) -> None:
    """The flags that name the setting, each against its allowed values (ValueError naming
    the flag, not the preset field it becomes)."""
    families = (*SINGLE_FAMILIES, *_dataset_names(args))
    if args.family not in families:
        raise ValueError(f"--family must be one of {', '.join(families)}; got {args.family!r}")
    sources = (*families, "mixture")
    if args.pretrain_family is not None and args.pretrain_family not in sources:
        raise ValueError(f"--pretrain-family must be one of {', '.join(sources)}; got {args.pretrain_family!r}")
    if args.shift not in SHIFTS:
        raise ValueError(f"--shift must be one of {', '.join(SHIFTS)}; got {args.shift!r}")
    try:
        parse_size(args.size)
    except ValueError as err:
        raise ValueError(f"--size {args.size}: {str(err).split(': ', 1)[-1]}") from None
    if args.n_train < 1:
        raise ValueError(f"--n-train must be at least 1, got {args.n_train}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {args.trials}")


def _dataset_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The names of the preset's own datasets ([datasets.NAME] tables, and --set datasets.NAME...),
    which --family may name too; none where the preset cannot be read (its loading says why)."""
    path = Path(args.preset)
    path = path if path.suffix else PRESET_DIR / f"{args.preset}.toml"
    try:
        tables = load_toml(path).get("datasets", {})
    except (OSError, ValueError):
        tables = {}
    given = [item.partition("=")[0].strip().split(".") for item in args.set]
    names = {*(tables if isinstance(tables, dict) else {}), *(k[1] for k in given if len(k) > 2 and k[0] == "datasets")}
    return tuple(sorted(names))


def check_grace(space: SearchSpace, grace_steps: int | None, eval_every: int) -> int:
    """ASHA's grace period: --grace-steps, else the larger of the preset's evaluation interval
    (trials report only at evaluations) and half the lowest step budget; it must lie in
    [1, HI] of --steps (ASHA cannot stop a trial before it has reported)."""
    lo, hi = space.steps
    if grace_steps is not None:
        if not 1 <= grace_steps <= hi:
            raise ValueError(f"--grace-steps must be in [1, {hi}] (HI of --steps {lo} {hi}), got {grace_steps}")
        return grace_steps
    grace = max(eval_every, lo // 2)
    if grace > hi:
        raise ValueError(
            f"--steps {lo} {hi}: ASHA's grace period would be {grace} steps, the preset's downstream.eval_every "
            f"({eval_every}: trials report their validation error only at evaluations), more than the highest "
            f"budget {hi}. Allowed: HI >= {grace} (--steps {lo} {grace}), or --grace-steps in [1, {hi}] with "
            f"--set downstream.eval_every=N, N <= {hi}"
        )
    return grace


@dataclass(frozen=True)
class Setting:
    """The fixed part of every trial of the study, and where it goes."""

    template: PlannedTrial  # the setting's downstream trial at the preset's own training values
    pretrain: PlannedTrial | None
    space: SearchSpace
    sweep: str
    sweep_dir: Path
    study_name: str
    grace_steps: int


def plan(args: argparse.Namespace) -> Setting:
    """Validate everything and build the setting; fails naming the flag or field before Ray starts."""
    check_setting_flags(args)
    space = SearchSpace(tuple(args.lr), tuple(args.weight_decay), tuple(args.batch_sizes), tuple(args.steps))
    source = args.pretrain_family or args.family
    overrides = parse_set_flags(args.set)
    overrides.update(
        sizes=[args.size],
        pretrain_families=[source],
        families=[args.family],
        shifts=[args.shift],
        n_train=[args.n_train],
        train_modes=[args.mode],
        seeds=[args.seed],
        lrs=[SearchSpace.lr[0]],  # a placeholder: every trial sets its own
    )
    preset = Preset.load(args.preset, overrides)
    trials = expand(preset)
    downstream = [t for t in trials if t.stage == "downstream"]
    if not downstream:
        raise ValueError(f"--family {args.family} cannot be fine-tuned from --pretrain-family {source}")
    template = downstream[0]
    pretrain = next((t for t in trials if t.key == template.pretrained_key), None)
    sweep = args.sweep or f"hpo-{args.family}-{args.shift}-{args.size}-{args.mode}-n{args.n_train}"
    definition = {"trial": template.key, "space": space.__dict__, "metric": METRIC, "seed": args.seed}
    study = sha256_hex(definition, compact=False, default=list)[:16]  # the format study names were made with
    grace = check_grace(space, args.grace_steps, template.config.eval_every)
    base = output_base(args)
    if not base.is_local:
        raise ValueError(
            f"{destination_flag(args)} {base}: the Optuna search keeps its study in a journal file, which needs a "
            "filesystem (a shared one with --cluster); object-store URIs are for fno-sweep"
        )
    return Setting(template, pretrain, space, sweep, base.local / sweep, f"study-{study}", grace)


def searched_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The TrialConfig fields a sampled configuration sets: the searched values, and a
    fixed step budget (the search's steps replace a preset's epoch rule)."""
    return {**{k: config[k] for k in SEARCHED}, "epochs": None, "min_steps": None, "max_steps": None}


def planned_trial(setting: Setting, config: dict[str, Any]) -> PlannedTrial:
    """The results-table identity of one sampled configuration."""
    template = setting.template
    trial_config = TrialConfig.from_dict({**template.config.to_dict(), **searched_fields(config)})
    key = trial_key(trial_config, template.pretrained_key)
    return PlannedTrial(key, "hpo", template.shift, trial_config, template.pretrained_key, template.pretrain_family)


def _hpo_trainable(config: dict[str, Any]) -> None:
    """Ray Tune trainable: the setting's trial with the sampled values."""
    run_reported_trial(TrialConfig.from_dict({**config["setting"]["config"], **searched_fields(config)}))


def open_study(setting: Setting):
    """The persisted Optuna study; trials left running by a dead driver are marked failed."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its INFO lines ("Using an existing study") are ours to say
    setting.sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(setting.sweep_dir / "optuna.journal")))
    study = optuna.create_study(
        study_name=setting.study_name, storage=storage, direction="minimize", load_if_exists=True
    )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study, storage


def finished_trials(study) -> list:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=done)


def pretrain(setting: Setting, args: argparse.Namespace, clock: Stopwatch | None = None) -> bool:
    """Run the setting's pre-training unless its checkpoint is there (a failed one is retried)."""
    results_dir = setting.sweep_dir / "results"
    settings = run_settings(args, retry_failed=True)
    run_trials([setting.pretrain], setting.sweep, setting.sweep_dir, settings, stopwatch=clock)
    status = statuses(results_dir).get(setting.pretrain.key, "missing")
    path = checkpoint_path(setting.sweep_dir, setting.pretrain.key)
    if status != "ok" or not path.is_file():
        print(f"error: pre-training {setting.pretrain.key} is {status}; see {results_dir}", file=sys.stderr)
        return False
    return True


def run_search(
    setting: Setting, args: argparse.Namespace, study, storage, remaining: int, clock: Stopwatch | None = None
) -> None:
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    settings = run_settings(args)
    # One GPU share for the search, that of its largest batch (memory grows with the batch).
    largest = dataclasses.replace(
        setting.template, config=dataclasses.replace(setting.template.config, batch_size=max(setting.space.batch_size))
    )
    config = worker_config(largest, setting.sweep_dir, settings)
    config["batch_size"] = setting.template.config.batch_size  # the searched value replaces it in each trial
    # The sampler is seeded per run: a continued study draws new points, not the first run's again.
    sampler = TPESampler(seed=args.seed + len(study.trials), n_startup_trials=min(10, args.trials // 2 or 1))
    searcher = OptunaSearch(sampler=sampler, study_name=setting.study_name, storage=storage)
    gpus = settings.gpu_share(largest)
    concurrency = settings.concurrency or resource_slots(settings, gpus)
    progress = Progress(remaining, concurrency, stopwatch=clock)
    recorder = Recorder(Location(setting.sweep_dir / "results"), setting.sweep, progress)
    scheduler = ASHAScheduler(
        time_attr="step", max_t=setting.space.steps[1], grace_period=setting.grace_steps, reduction_factor=3
    )
    tuner = tune.Tuner(
        tune.with_resources(_hpo_trainable, {"cpu": settings.cpus_per_trial, "gpu": gpus}),
        param_space={**setting.space.tune_space(), "setting": {"config": config}},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=remaining,
            max_concurrent_trials=concurrency,
            trial_name_creator=lambda t: planned_trial(setting, t.config).name,
            trial_dirname_creator=lambda t: planned_trial(setting, t.config).key,
        ),
        run_config=tune.RunConfig(
            name=setting.study_name,
            storage_path=str((setting.sweep_dir / "ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=settings.max_retries, fail_fast=False),
            callbacks=tune_callbacks(RowWriterCallback(lambda t: planned_trial(setting, t.config), recorder)),
            verbose=settings.verbose,
        ),
    )
    try:
        with environment(**tune_output(settings.verbose)):
            tuner.fit()
    finally:
        progress.close()


def best_snippet(setting: Setting, best) -> str:
    """The best configuration as TOML for a preset (and as --set flags in a comment)."""
    p = best.params
    c = setting.template.config
    capped = f"  # capped by N: {c.n_train} per batch at N = {c.n_train}" if p["batch_size"] > c.n_train else ""
    flags = (
        f"--set 'lrs=[{p['lr']:.6g}]' --set downstream.weight_decay={p['weight_decay']:.6g} "
        f"--set downstream.batch_size={p['batch_size']} --set downstream.steps={p['steps']}"
    )
    return (
        f"# Best of study {setting.study_name} ({setting.sweep}): {METRIC} = {best.value:.6g}\n"
        f"# setting: {c.family}, range {list(c.param_range) if c.param_range is not None else 'all samples'}, "
        f"w{c.width}-m{c.modes}, {c.mode}, N = {c.n_train}\n"
        f"# for fno-sweep: {flags}\n"
        f"lrs = [{p['lr']:.6g}]\n\n"
        f"[downstream]\n"
        f"weight_decay = {p['weight_decay']:.6g}\n"
        f"batch_size = {p['batch_size']}{capped}\n"
        f"steps = {p['steps']}\n"
    )


def main(argv=None) -> int:
    clock = Stopwatch()
    args = parse_args(argv)
    try:  # everything that can be known before Ray starts and before anything is written
        setting = plan(args)
        check_local_resources(args)
        check_cluster(args)
    except ValueError as err:
        return refuse(prog(SCRIPT), str(err))
    created = first_missing(setting.sweep_dir)
    try:
        try:
            check_writable(setting.sweep_dir, destination_flag(args))
            lease = Lease(setting.sweep_dir, continue_command(SCRIPT, argv), take_over=args.take_over)
            lease.acquire()
        except (ValueError, LeaseHeldError) as err:
            return refuse(prog(SCRIPT), str(err))
        try:
            return _search(args, setting, clock)
        finally:
            lease.release()
    finally:
        remove_if_empty(setting.sweep_dir, created)  # a search refused before it began leaves no folder


def _search(args: argparse.Namespace, setting: Setting, clock: Stopwatch | None = None) -> int:
    """The study itself, once its folder is writable and this driver holds it."""
    clock = clock or Stopwatch()
    study, storage = open_study(setting)
    done = len(finished_trials(study))
    remaining = args.trials - done
    clock.say(f"study {setting.study_name} in {setting.sweep_dir}: {done} trials finished, {max(remaining, 0)} to run")
    if remaining > 0:
        try:
            start_ray(args, say=clock.say)
            check_resources(args)
            if setting.pretrain is not None and not pretrain(setting, args, clock):
                return 1
            run_search(setting, args, study, storage, remaining, clock)
        finally:
            import ray

            ray.shutdown()
    finished = finished_trials(study)
    values = [t for t in finished if t.value is not None and math.isfinite(t.value)]
    if not values:
        print("no trial finished with a validation error; nothing to report")
        return 1
    best = min(values, key=lambda t: t.value)
    snippet = best_snippet(setting, best)
    path = setting.sweep_dir / "best.toml"
    path.write_text(snippet)
    print(f"{len(finished)} trials finished; best {METRIC} = {best.value:.6g} with {best.params}")
    print(f"written to {path}:\n\n{snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
