"""Search training hyperparameters of one setting with Optuna (TPE) through Ray Tune, ASHA early stopping.

    python sweeps/hpo.py --family poisson --size w32-m8 --mode finetune --n-train 64 --trials 40

Searches the learning rate and weight decay (log scale), the batch size and the step
budget of one setting (family, shift, size, mode, N). Trials report their validation
error at every evaluation; ASHA stops the unpromising ones early. The study lives in
an Optuna journal file beside the results (safe with concurrent writers, also on a
shared filesystem, unlike SQLite), so running the same command again continues it:
``--trials`` is the total, finished trials count toward it, and trials that were
running when the driver died are marked failed and replaced. Every finished trial is
a row of the sweep's results table (stage ``hpo``; early-stopped ones with status
``stopped``). At the end: the best configuration and its validation error, written
as a TOML snippet for a preset, and as ``--set`` flags for ``sweeps/scaling.py``.

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
from fno.config import parse_overrides
from fno.results import statuses
from fno.storage import Location
from fno.train import TrialConfig
from fno.vocabulary import FITTED_MODES
from fno_sweeps.cluster import (
    add_ray_arguments,
    check_resources,
    check_writable,
    continue_command,
    destination_flag,
    output_base,
    run_settings,
    start_ray,
)
from fno_sweeps.grid import PlannedTrial, Preset, expand, trial_key
from fno_sweeps.lease import Lease, LeaseHeldError
from fno_sweeps.runner import (
    Progress,
    Recorder,
    RowWriterCallback,
    checkpoint_path,
    resource_slots,
    run_reported_trial,
    run_trials,
    tune_callbacks,
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
    p = argparse.ArgumentParser(prog="python sweeps/hpo.py", description=__doc__.split("\n\n")[0])
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
    p.add_argument("--grace-steps", type=int, default=None, help="ASHA: steps before a trial can be stopped")
    p.add_argument("--seed", type=int, default=0, help="sampler seed and the trials' training seed")
    p.add_argument("--preset", default="cpu", help="preset giving resolution, data sizes and pre-training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset field")
    p.add_argument("--out", default="out", help="results go to OUT/SWEEP/ (default ./out)")
    p.add_argument("--sweep", default=None, help="sweep name (default: hpo-FAMILY-SHIFT-SIZE-MODE-nN)")
    p.add_argument("--take-over", action="store_true", help="run though another driver holds the study's lease")
    add_ray_arguments(p)
    return p.parse_args(argv)


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
    """Validate everything and build the setting; fails naming the field before Ray starts."""
    if args.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {args.trials}")
    space = SearchSpace(tuple(args.lr), tuple(args.weight_decay), tuple(args.batch_sizes), tuple(args.steps))
    source = args.pretrain_family or args.family
    overrides = parse_overrides(args.set)
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
    grace = args.grace_steps or max(template.config.eval_every, space.steps[0] // 2)
    if grace < 1:
        raise ValueError(f"--grace-steps must be at least 1, got {grace}")
    base = output_base(args)
    if not base.is_local:
        raise ValueError(
            f"{destination_flag(args)} {base}: the Optuna search keeps its study in a journal file, which needs a "
            "filesystem (a shared one with --cluster); object-store URIs are for sweeps/scaling.py"
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


def pretrain(setting: Setting, args: argparse.Namespace) -> bool:
    """Run the setting's pre-training unless its checkpoint is there (a failed one is retried)."""
    results_dir = setting.sweep_dir / "results"
    run_trials([setting.pretrain], setting.sweep, setting.sweep_dir, run_settings(args, retry_failed=True))
    status = statuses(results_dir).get(setting.pretrain.key, "missing")
    path = checkpoint_path(setting.sweep_dir, setting.pretrain.key)
    if status != "ok" or not path.is_file():
        print(f"error: pre-training {setting.pretrain.key} is {status}; see {results_dir}", file=sys.stderr)
        return False
    return True


def run_search(setting: Setting, args: argparse.Namespace, study, storage, remaining: int) -> None:
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
    recorder = Recorder(Location(setting.sweep_dir / "results"), setting.sweep, Progress(remaining, concurrency))
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
            trial_name_creator=lambda t: f"hpo-{planned_trial(setting, t.config).name}",
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
    tuner.fit()


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
        f"# setting: {c.family}, range {list(c.param_range)}, w{c.width}-m{c.modes}, {c.mode}, N = {c.n_train}\n"
        f"# for sweeps/scaling.py: {flags}\n"
        f"lrs = [{p['lr']:.6g}]\n\n"
        f"[downstream]\n"
        f"weight_decay = {p['weight_decay']:.6g}\n"
        f"batch_size = {p['batch_size']}{capped}\n"
        f"steps = {p['steps']}\n"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        setting = plan(args)
        check_writable(setting.sweep_dir, destination_flag(args))
        command = continue_command("sweeps/hpo.py", argv)
        lease = Lease(setting.sweep_dir, command, take_over=args.take_over)
        lease.acquire()
    except (ValueError, LeaseHeldError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _search(args, setting)
    finally:
        lease.release()


def _search(args: argparse.Namespace, setting: Setting) -> int:
    """The study itself, once its folder is writable and this driver holds it."""
    study, storage = open_study(setting)
    done = len(finished_trials(study))
    remaining = args.trials - done
    print(f"study {setting.study_name} in {setting.sweep_dir}: {done} trials finished, {max(remaining, 0)} to run")
    if remaining > 0:
        start_ray(args)
        check_resources(args)
        try:
            if setting.pretrain is not None and not pretrain(setting, args):
                return 1
            run_search(setting, args, study, storage, remaining)
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
