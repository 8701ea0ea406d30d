"""Run planned trials on Ray Tune; write one results row per finished trial; resume by key.

Resume does not use ``Tuner.restore`` or any search-algorithm state: before each
phase the runner reads the results folder and submits only the keys that have no
row there. Rows are written by the driver, one Parquet file per trial, the moment
Tune reports the trial finished, so a driver killed with SIGKILL loses only the
trials that were running, and the same command continues the sweep.

Order of execution: two phases. First every trial that needs no checkpoint (the
pre-training runs and the scratch runs), then every trial that loads one (fine-tune
and zero-shot). Within a phase the most expensive trials start first (longest
processing time first), so the short scratch trials fill the slots while the
pre-training runs finish instead of leaving cores idle at the phase boundary. The
``stage`` column (pretrain / downstream) is unaffected.

Trials that raise are retried (``max_retries``) by Tune and then recorded with status
``failed`` and their error; downstream trials whose pre-training failed are recorded
as failed without running. Nothing stops the sweep early (no fail_fast).
"""

from __future__ import annotations

import math
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fno import __version__
from fno.model import FNOConfig
from fno.results import skip_keys, statuses, write_row
from fno.train import TrialConfig, run_trial
from sweeps.grid import PlannedTrial, trial_flops

TRIAL_BATCH = 256  # trials per Tuner.fit(): bounds driver memory and scheduler load on huge grids

# Execution phases: (name, does this trial belong here). A trial loads a checkpoint
# exactly when it has a pretrained_key, and such trials run only after the first phase.
PHASES: tuple[tuple[str, Callable[[PlannedTrial], bool]], ...] = (
    ("independent", lambda t: not t.pretrained_key),  # pre-training and scratch
    ("from-pretrained", lambda t: bool(t.pretrained_key)),  # fine-tune and zero-shot
)


def checkpoint_path(sweep_dir: Path, key: str) -> Path:
    return sweep_dir / "checkpoints" / key / "checkpoint.pt"


def result_row(trial: PlannedTrial, sweep: str, result: dict[str, Any] | None, error: str = "") -> dict[str, Any]:
    """The results row of a finished (result given) or failed (result None) trial."""
    c = trial.config
    lo, hi = c.data_spec("train").ranges if c.family != "mixture" else (math.nan, math.nan)
    sizes = FNOConfig(1, 1, c.width, c.modes, c.layers)
    row = {
        "key": trial.key,
        "sweep": sweep,
        "stage": trial.stage,
        "family": c.family,
        "shift": trial.shift,
        "param_lo": lo,
        "param_hi": hi,
        "mode": c.mode,
        "width": c.width,
        "modes": c.modes,
        "layers": c.layers,
        "n_params": sizes.n_params,
        "flops_per_sample": sizes.flops_per_sample(c.resolution),
        "n_train": c.n_train,
        "resolution": c.resolution,
        "lr": c.lr,
        "epochs": 0.0,
        "steps": 0,
        "batch_size": min(c.batch_size, c.n_train),
        "seed": c.seed,
        "pretrained_key": trial.pretrained_key,
        "pretrain_family": trial.pretrain_family,
        "val_rel_l2": math.nan,
        "test_rel_l2": math.nan,
        "train_loss": math.nan,
        "status": "failed",
        "error": error,
        "wall_s": 0.0,
        "train_s": 0.0,
        "samples_per_s": 0.0,
        "device": "",
        "node": platform.node(),
        "started_at": "",
        "code_version": __version__,
    }
    if result is not None:
        for name in (
            "status",
            "error",
            "val_rel_l2",
            "test_rel_l2",
            "train_loss",
            "steps",
            "epochs",
            "batch_size",
            "n_params",
            "flops_per_sample",
            "wall_s",
            "train_s",
            "samples_per_s",
            "device",
            "node",
            "started_at",
            "code_version",
        ):
            row[name] = result[name]
    return row


def _trainable(config: dict[str, Any]) -> None:
    """The Tune function trainable: a thin wrapper of ``run_trial`` (imported by workers)."""
    from ray import tune

    spec = config["trial"]
    trial_config = TrialConfig.from_dict(spec["config"])

    def report(step: int, epoch: float, train_loss: float, val_rel_l2: float) -> None:
        tune.report({"step": step, "epoch": epoch, "train_loss": train_loss, "val_rel_l2": val_rel_l2})

    import ray

    result = run_trial(trial_config, report, spec["out_dir"] or None).to_dict()
    # Host name plus Ray node id: two Ray nodes on one host stay distinguishable.
    result["node"] = f"{result['node']}/{ray.get_runtime_context().get_node_id()[:12]}"
    tune.report({"trial_result": result, "val_rel_l2": result["val_rel_l2"], "step": result["steps"]})


@dataclass
class Progress:
    """Counts and an estimate of time left, printed as trials finish."""

    total: int
    concurrency: int
    started: float = field(default_factory=time.perf_counter)
    counts: Counter = field(default_factory=Counter)
    trial_seconds: list[float] = field(default_factory=list)

    def finished(self, name: str, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        self.trial_seconds.append(row["wall_s"])
        done = sum(self.counts.values())
        left = self.total - done
        mean = sum(self.trial_seconds) / len(self.trial_seconds)
        eta = left * mean / max(1, self.concurrency)
        status = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        metric = f"test {row['test_rel_l2']:.4f}" if row["status"] == "ok" else row["error"][:80]
        print(
            f"[{done}/{self.total} done ({status}), {left} running or pending, about {eta / 60:.1f} min left] "
            f"{name}: {metric}",
            flush=True,
        )


class _RowWriter:
    """Tune callback (built lazily so this module imports without Ray): writes rows."""

    def __new__(cls, *args, **kwargs):
        from ray import tune

        class RowWriter(tune.Callback):
            def __init__(self, planned: dict[str, PlannedTrial], results_dir: Path, sweep: str, progress: Progress):
                self.planned, self.results_dir, self.sweep, self.progress = planned, results_dir, sweep, progress

            def _write(self, trial, result, error=""):
                planned = self.planned[trial.config["trial"]["key"]]
                row = result_row(planned, self.sweep, result, error)
                write_row(self.results_dir, row)
                self.progress.finished(planned.name, row)

            def on_trial_complete(self, iteration, trials, trial, **info):
                result = (trial.last_result or {}).get("trial_result")
                if result is None:
                    self._write(trial, None, "trial ended without a result")
                else:
                    self._write(trial, result)

            def on_trial_error(self, iteration, trials, trial, **info):
                error = trial.error_file and Path(trial.error_file).exists() and Path(trial.error_file).read_text()
                last = (error or "trial raised").strip().splitlines()[-1]
                self._write(trial, None, last[:2000])

        return RowWriter(*args, **kwargs)


@dataclass
class RunSettings:
    """How trials are executed (not part of any key)."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int | None = None  # None: as many as the resources allow
    max_retries: int = 1
    device: str = "auto"
    verbose: int = 0  # Tune's own console output (0: only our progress lines)
    retry_failed: bool = False  # run keys recorded as failed again (their rows are replaced)


def run_trials(
    trials: Sequence[PlannedTrial],
    sweep: str,
    sweep_dir: Path,
    settings: RunSettings,
    on_batch: Callable[[int], None] | None = None,
) -> Counter:
    """Run ``trials`` that have no row yet, in ``PHASES`` order; return status counts of this run."""
    from ray import tune

    results_dir = sweep_dir / "results"
    counts: Counter = Counter()
    for phase, belongs in PHASES:
        status = statuses(results_dir)  # one read of the table per phase
        done = skip_keys(status, include_failed=not settings.retry_failed)
        pending = [t for t in trials if belongs(t) and t.key not in done]
        pending.sort(key=trial_flops, reverse=True)  # stable: grid order among equals
        if not pending:
            continue
        runnable = _prepare(pending, status, sweep, sweep_dir, results_dir, settings, counts)
        progress = Progress(len(runnable), settings.concurrency or 1)
        for lo in range(0, len(runnable), TRIAL_BATCH):
            batch = runnable[lo : lo + TRIAL_BATCH]
            planned = {p.key: p for p, _ in batch}
            resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
            tuner = tune.Tuner(
                tune.with_resources(_trainable, resources),
                param_space={"trial": tune.grid_search([spec for _, spec in batch])},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=settings.concurrency,
                    reuse_actors=True,
                    trial_name_creator=lambda t, names=planned: names[t.config["trial"]["key"]].name,
                    trial_dirname_creator=lambda t: t.config["trial"]["key"],
                ),
                run_config=tune.RunConfig(
                    name=f"{sweep}-{phase}",
                    storage_path=str((sweep_dir / "ray").resolve()),
                    failure_config=tune.FailureConfig(max_failures=settings.max_retries, fail_fast=False),
                    callbacks=[_RowWriter(planned, results_dir, sweep, progress)],
                    verbose=settings.verbose,
                ),
            )
            tuner.fit()
            if on_batch is not None:
                on_batch(len(batch))
        counts.update(progress.counts)
    return counts


def _prepare(pending, status, sweep, sweep_dir, results_dir, settings, counts):
    """(trial, spec) pairs to submit; downstream trials without a usable checkpoint get a failed row.

    status: key -> status of the rows already written (from ``fno.results.statuses``).
    """
    runnable = []
    threads = max(1, int(settings.cpus_per_trial))
    for trial in pending:
        config = trial.config.to_dict()
        config.update(device=settings.device, threads=threads)
        out_dir = ""
        if trial.stage == "pretrain":
            out_dir = str(checkpoint_path(sweep_dir, trial.key).parent.resolve())
        elif trial.pretrained_key:
            path = checkpoint_path(sweep_dir, trial.pretrained_key)
            if status.get(trial.pretrained_key) != "ok" or not path.is_file():
                why = status.get(trial.pretrained_key, "missing")
                error = f"pre-training trial {trial.pretrained_key} is {why}; its checkpoint {path} is not usable"
                write_row(results_dir, result_row(trial, sweep, None, error))
                counts["failed"] += 1
                continue
            config["pretrained"] = str(path.resolve())
        runnable.append((trial, {"key": trial.key, "config": config, "out_dir": out_dir}))
    return runnable
