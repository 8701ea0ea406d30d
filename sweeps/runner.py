"""Run planned trials on Ray Tune; write one results row per finished trial; resume by key.

Resume does not use ``Tuner.restore`` or any search-algorithm state: before each
batch the runner reads the results folder and submits only the keys that have no
row there. Rows are written by the driver, one Parquet file per trial, the moment
Tune reports the trial finished, so a driver killed with SIGKILL loses only the
trials that were running, and the same command continues the sweep.

Order of execution, driver-side and without a stage barrier: a small Tune searcher
hands out pre-training trials first, then every trial whose inputs are ready, the
most expensive first (longest processing time first). A fine-tune or zero-shot
trial becomes ready the moment its own pre-training finishes ``ok``; while it
waits, scratch trials keep the slots busy. Nothing waits inside a trial, so a
retried pre-training can never queue behind the trials that wait for it. The
``stage`` column (pretrain / downstream) says what a trial is, not when it ran.

Trials that raise are retried (``max_retries``) by Tune and then recorded with status
``failed`` and their error; downstream trials whose pre-training failed are recorded
as failed without running. Nothing stops the sweep early (no fail_fast).
"""

from __future__ import annotations

import heapq
import math
import platform
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fno.memory import gpu_share, trial_memory
from fno.model import FNOConfig
from fno.provenance import code_version, git_commit, library_versions, source_digest
from fno.results import COLUMNS, EVALUATION_SCHEMA, compact, skip_keys, statuses, write_evaluations, write_row
from fno.storage import Location, location
from fno.train import TrialConfig, run_trial
from fno_sweeps.grid import PlannedTrial, trial_flops
from fno_sweeps.interrupt import Interrupt, tune_stopper
from fno_sweeps.metrics import SweepMetrics

TRIAL_BATCH = 256  # trials per Tuner.fit(): bounds driver memory and scheduler load on huge grids


def checkpoint_path(sweep_dir: Path | Location, key: str) -> Location:
    return location(sweep_dir) / "checkpoints" / key / "checkpoint.pt"


def _ray_version() -> str:
    import ray

    return ray.__version__


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
        "n_trainable": 0,  # a failed trial trained nothing; its own result says otherwise
        "finetune_strategy": c.finetune_strategy if c.mode == "finetune" else "",
        "flops_per_sample": sizes.flops_per_sample(c.resolution),
        "n_train": c.n_train,
        "resolution": c.resolution,
        "lr": c.lr,
        "weight_decay": c.weight_decay,
        "epochs": 0.0,
        "steps": 0,
        "batch_size": c.batch,
        "seed": c.seed,
        "data_seed": c.data_seed,
        "pretrained_key": trial.pretrained_key,
        "pretrain_family": trial.pretrain_family,
        "val_rel_l2": math.nan,
        "test_rel_l2": math.nan,
        "mean_field_rel_l2": math.nan,
        "train_loss": math.nan,
        "best_step": -1,
        "eval_steps": [],
        "eval_val_rel_l2": [],
        "status": "failed",
        "error": error,
        "wall_s": 0.0,
        "train_s": 0.0,
        "samples_per_s": 0.0,
        "device": "",
        "gpu_name": "",
        "gpu_share": 0.0,
        "bf16": c.bf16,
        "tf32": c.tf32,
        "node": platform.node(),
        "started_at": "",
        "code_version": code_version(),
        # The driver's; a finished trial's own result replaces all but git_commit and ray_version.
        "source_digest": source_digest(),
        "git_commit": git_commit(),
        **library_versions(),
        "ray_version": _ray_version(),
    }
    if result is not None:  # the trial's own measurements (TrialResult fields) take precedence
        row.update({name: result[name] for name in COLUMNS if name in result})
    return row


def trainable(config: dict[str, Any]) -> None:
    """The grid's Tune function trainable: the planned trial's config and checkpoint folder."""
    spec = config["trial"]
    run_reported_trial(TrialConfig.from_dict(spec["config"]), spec["out_dir"] or None, spec.get("name", ""))


def run_reported_trial(trial_config: TrialConfig, out_dir: str | None = None, name: str = "") -> None:
    """``run_trial`` inside a Tune worker: every evaluation reported to Tune, then the
    result (under ``trial_result``, for the driver's row) as the last report.

    Prints a line when the trial starts (its name, node and device) and when it ends, to
    the worker's log (stderr, the dashboard's default log tab): the Ray dashboard shows
    a trial actor as ``trainable``, and one actor runs several trials in turn, so its
    log says which ran when. A trial given a
    GPU share on a node without CUDA (a logical GPU, as in tests) runs on the CPU and
    says so."""
    import ray
    import torch
    from ray import tune

    def report(step: int, epoch: float, train_loss: float, val_rel_l2: float) -> None:
        tune.report({"step": step, "epoch": epoch, "train_loss": train_loss, "val_rel_l2": val_rel_l2})

    name = name or f"{trial_config.mode}-{trial_config.family}"
    node = ray.get_runtime_context().get_node_id()[:12]
    gpus = ray.get_gpu_ids()
    if trial_config.device == "cuda" and not gpus:
        raise RuntimeError("this trial asked for a GPU share but Ray assigned it no GPU")
    device = trial_config.device
    if device == "cuda" and not torch.cuda.is_available():
        print(f"[fno] trial {name}: Ray assigned GPU {gpus} (share {trial_config.gpu_share or 1:g}), but CUDA is not "
              "available on this node: running on the CPU", file=sys.stderr, flush=True)  # fmt: skip
        trial_config = replace(trial_config, device="cpu", bf16=False, tf32=False)
        device = "cpu"
    where = f"GPU {gpus} as cuda (share {trial_config.gpu_share or 1:g})" if device == "cuda" else "CPU"
    print(f"[fno] trial {name} started on node {node}, {where}", file=sys.stderr, flush=True)
    # With a GPU request Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU: "cuda" is it.
    result = run_trial(trial_config, report, out_dir).to_dict()
    # Host name plus Ray node id: two Ray nodes on one host stay distinguishable.
    result["node"] = f"{result['node']}/{node}"
    print(f"[fno] trial {name} ended: {result['status']}, test {result['test_rel_l2']:.4g}, "
          f"{result['wall_s']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    # trial_status at the top level: Tune hands searchers the result flattened.
    final = {"trial_result": result, "trial_status": result["status"]}
    tune.report({**final, "val_rel_l2": result["val_rel_l2"], "step": result["steps"]})


@dataclass
class Progress:
    """Counts and an estimate of time left, printed as trials finish.

    With ``cost`` (estimated FLOPs per planned key) the estimate is the FLOPs left over
    the FLOP rate seen so far, so a long pre-training finishing first does not inflate
    it; without (hpo.py, whose trials are not known ahead), trials left times the mean
    trial time.
    """

    total: int
    concurrency: int
    cost: dict[str, float] | None = None
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # trials' own wall time so far
    flops_run: float = 0.0  # estimated FLOPs of the trials that ran (the rate's numerator)
    flops_left: float = field(init=False)  # ... of the trials without a row yet
    eta_s: float = 0.0  # the estimated seconds left, as last printed

    def __post_init__(self) -> None:
        self.flops_left = sum(self.cost.values()) if self.cost else 0.0

    def finished(self, trial: PlannedTrial, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        self.seconds += row["wall_s"]
        done = sum(self.counts.values())
        left = self.total - done
        if self.cost:
            flops = self.cost.get(trial.key, 0.0)
            self.flops_left -= flops
            self.flops_run += flops if row["wall_s"] > 0 else 0.0
            eta = self.flops_left / max(self.flops_run, 1.0) * self.seconds / max(1, self.concurrency)
        else:
            eta = left * self.seconds / done / max(1, self.concurrency)
        self.eta_s = eta
        status = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        metric = f"test {row['test_rel_l2']:.4f}" if row["status"] == "ok" else row["error"][:80]
        print(
            f"[{done}/{self.total} done ({status}), {left} running or pending, about {eta / 60:.1f} min left] "
            f"{trial.name}: {metric}",
            flush=True,
        )


@dataclass
class Recorder:
    """Writes each finished trial's row (atomically, at once) and reports progress.

    A trial's test evaluations go to the ``evaluations`` folder beside ``results_dir``,
    just before its row: a trial with a row has its evaluations (a crash between the
    two leaves evaluations without a row, which the trial's re-run overwrites).
    """

    results_dir: Location
    sweep: str
    progress: Progress
    interrupt: Interrupt | None = None  # once requested, trials cut short get no row
    on_row: Callable[[], None] | None = None  # called after each row (the live report)
    metrics: SweepMetrics | None = None  # Ray custom metrics of the run
    recorded: set[str] = field(default_factory=set)  # keys given a row by this run

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks and searcher (both hold the recorder) with the
        # experiment's state, for a restore this tool never does: the live parts (the
        # interrupt's saved signal handlers, the report's child process, Ray metrics)
        # stay out of the copy; some hold locks, which do not pickle.
        return {**self.__dict__, "interrupt": None, "on_row": None, "metrics": None}

    @property
    def stopping(self) -> bool:
        return self.interrupt is not None and self.interrupt.requested

    @property
    def evaluations_dir(self) -> Location:
        return self.results_dir.parent / "evaluations"

    def record(self, trial: PlannedTrial, result: dict[str, Any] | None, error: str = "") -> None:
        if result is not None:
            write_evaluations(self.evaluations_dir, trial.key, result.get("evaluations", []))
        self._write(trial, result_row(trial, self.sweep, result, error))

    def record_stopped(self, trial: PlannedTrial, last: dict[str, Any]) -> None:
        """A trial ended early by a scheduler: its last reported evaluation, no test error."""
        row = result_row(trial, self.sweep, None, f"stopped early by the scheduler at step {last.get('step')}")
        row.update(
            status="stopped",
            val_rel_l2=float(last["val_rel_l2"]),
            train_loss=float(last.get("train_loss", math.nan)),
            steps=int(last.get("step", 0)),
            epochs=float(last.get("epoch", 0.0)),
        )
        self._write(trial, row)

    def _write(self, trial: PlannedTrial, row: dict[str, Any]) -> None:
        write_row(self.results_dir, row)
        self.recorded.add(trial.key)
        self.progress.finished(trial, row)
        if self.metrics is not None:
            self.metrics.trial_finished(trial, row, self.progress.eta_s)
        if self.on_row is not None:
            try:
                self.on_row()
            except OSError as err:  # the live report could not start: the sweep goes on
                print(f"warning: report not refreshed ({err})", file=sys.stderr)


class RowWriterCallback:
    """Tune callback (built lazily so this module imports without Ray): records rows.

    planned_of: the PlannedTrial of a Tune trial (from its config).
    """

    def __new__(cls, *args, **kwargs):
        from ray import tune

        class RowWriter(tune.Callback):
            def __init__(self, planned_of: Callable[[Any], PlannedTrial], recorder: Recorder):
                self.planned_of, self.recorder = planned_of, recorder

            def on_trial_start(self, iteration, trials, trial, **info):
                if self.recorder.metrics is not None:
                    self.recorder.metrics.trial_started(self.planned_of(trial).key)

            def on_trial_complete(self, iteration, trials, trial, **info):
                last = trial.last_result or {}
                result = last.get("trial_result")
                if result is None and self.recorder.stopping:
                    return  # cut short by an interrupt: no row, so the next run runs it again
                if result is not None:
                    self.recorder.record(self.planned_of(trial), result)
                elif "val_rel_l2" in last:  # ended by a scheduler (ASHA) after some evaluations
                    self.recorder.record_stopped(self.planned_of(trial), last)
                else:
                    self.recorder.record(self.planned_of(trial), None, "trial ended without a result")

            def on_trial_error(self, iteration, trials, trial, **info):
                if self.recorder.stopping:
                    return  # killed while stopping: not a failure of the trial
                if self.planned_of(trial).key in self.recorder.recorded:
                    return  # it finished and has its row; what failed came after (never overwrite it)
                error = trial.error_file and Path(trial.error_file).exists() and Path(trial.error_file).read_text()
                last = (error or "trial raised").strip().splitlines()[-1]
                self.recorder.record(self.planned_of(trial), None, last[:2000])

        return RowWriter(*args, **kwargs)


def tune_callbacks(row_writer) -> list:
    """``row_writer`` and Tune's JSON log of each trial's reports. Tune's automatic
    loggers are turned off: its TensorBoard logger warned once per trial that it cannot
    log the result's list of evaluations, and this tool's table is the results folder."""
    import os

    from ray.tune.logger import JsonLoggerCallback

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    return [row_writer, JsonLoggerCallback()]


class DependencyOrder:
    """Which trial to start next: ready trials, pre-training first, then most FLOPs first.

    A trial that loads a checkpoint waits (is not handed out) until the pre-training
    trial of its ``pretrained_key`` finishes; if that ends in anything but ``ok``, the
    waiting trials are recorded as failed without running. Plain Python: ``tune_searcher``
    wraps it for Tune.
    """

    def __init__(self, specs: Sequence[tuple[PlannedTrial, dict]], running_pretrains: set[str], recorder: Recorder):
        self.recorder = recorder
        self.waiting: dict[str, list[tuple[PlannedTrial, dict]]] = {}
        self.ready: list[tuple[tuple, int, PlannedTrial, dict]] = []
        self.issued: dict[str, str] = {}  # Tune trial id -> key, for trials that gate others
        self._order = 0
        for trial, spec in specs:
            if trial.pretrained_key in running_pretrains:
                self.waiting.setdefault(trial.pretrained_key, []).append((trial, spec))
            else:
                self._push(trial, spec)

    def _push(self, trial: PlannedTrial, spec: dict) -> None:
        self._order += 1  # ties keep the grid's order
        heapq.heappush(self.ready, ((trial.stage != "pretrain", -trial_flops(trial)), self._order, trial, spec))

    def next_trial(self, trial_id: str) -> dict | str | None:
        """The next trial's Tune config; None if none is ready yet; "FINISHED" when none is left."""
        if self.ready:
            _, _, trial, spec = heapq.heappop(self.ready)
            if trial.key in self.waiting:
                self.issued[trial_id] = trial.key
            return {"trial": spec}
        return None if self.waiting else "FINISHED"

    def trial_finished(self, trial_id: str, result: dict | None, error: bool) -> None:
        key = self.issued.pop(trial_id, None)
        if key is None:
            return
        status = "failed" if error else (result or {}).get("trial_status", "failed")
        for trial, spec in self.waiting.pop(key, []):
            if status == "ok":
                self._push(trial, spec)
            else:
                self.recorder.record(trial, None, f"pre-training trial {key} is {status}; its checkpoint is not usable")


def tune_searcher(order: DependencyOrder):
    """``order`` as a Ray Tune Searcher (built lazily so this module imports without Ray)."""
    from ray.tune.search import Searcher

    class DependencySearcher(Searcher):
        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True

        def suggest(self, trial_id: str):
            config = order.next_trial(trial_id)
            return Searcher.FINISHED if config == "FINISHED" else config

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            order.trial_finished(trial_id, result, error)

        # Nothing to save: a sweep resumes from its results table, never from searcher state.
        def save(self, checkpoint_path: str) -> None:
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

    return DependencySearcher()


@dataclass
class RunSettings:
    """How trials are executed (not part of any key).

    gpus_per_trial: 0 runs every trial on the CPU (whatever GPUs the node has); a share
    in (0, 1] or a whole number runs it on the GPU Ray assigns; None ("auto") gives each
    trial the smallest share 1/k that holds its memory estimate (``fno.memory``) on a GPU
    of ``gpu_memory_gib``.
    """

    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = 0.0
    concurrency: int | None = None  # None: as many as the cluster's resources allow at the start
    max_retries: int = 1
    verbose: int = 0  # Tune's own console output (0: only our progress lines)
    retry_failed: bool = False  # run keys recorded as failed again (their rows are replaced)
    gpu_memory_gib: float | None = None  # per GPU; needed by gpus_per_trial=None
    bf16: bool = False  # CUDA trials: bf16 autocast (recorded in the results)
    tf32: bool = False  # CUDA trials: TF32 matmuls (recorded in the results)

    @property
    def device(self) -> str:
        """The device every trial of this run uses: cuda with a GPU request, else cpu."""
        return "cpu" if self.gpus_per_trial == 0 else "cuda"

    def gpu_share(self, trial: PlannedTrial) -> float:
        """The GPUs ``trial`` asks Ray for: the fixed request, or its share by the memory rule."""
        if self.gpus_per_trial is not None:
            return self.gpus_per_trial
        if not self.gpu_memory_gib:
            raise ValueError("--gpus-per-trial auto needs the GPU memory (--gpu-memory-gib)")
        return gpu_share(trial_memory(trial.config).total, int(self.gpu_memory_gib * 2**30))


def run_trials(
    trials: Sequence[PlannedTrial],
    sweep: str,
    sweep_dir: Path | Location,
    settings: RunSettings,
    interrupt: Interrupt | None = None,
    on_row: Callable[[], None] | None = None,
) -> Counter:
    """Run the ``trials`` that have no row yet; return the status counts of this run.

    Batches of ``TRIAL_BATCH`` trials, trials that need no checkpoint first, so that a
    batch's fine-tune trials find their pre-training in the same or an earlier batch.
    ``interrupt`` (``fno_sweeps.interrupt``): once requested, Tune stops and no further
    batch starts. ``on_row``: called after each row is written.
    """
    sweep_dir = location(sweep_dir)
    results_dir = sweep_dir / "results"
    status = statuses(results_dir)
    done = skip_keys(status, include_failed=not settings.retry_failed)
    pending = [t for t in trials if t.key not in done]
    cost = {t.key: trial_flops(t) for t in pending}
    pending.sort(key=lambda t: (bool(t.pretrained_key), -cost[t.key]))  # stable
    if settings.concurrency is None:
        smallest = min((settings.gpu_share(t) for t in pending), default=0.0)
        settings = replace(settings, concurrency=resource_slots(settings, smallest))
    progress = Progress(len(pending), settings.concurrency, cost)
    recorder = Recorder(results_dir, sweep, progress, interrupt, on_row, SweepMetrics(sweep, len(pending)))
    for lo in range(0, len(pending), TRIAL_BATCH):
        if recorder.stopping:
            break
        batch = pending[lo : lo + TRIAL_BATCH]
        if lo:
            status = statuses(results_dir)  # one read of the table per batch
        _run_batch(batch, status, sweep, sweep_dir, settings, recorder)
        compact(results_dir)  # few files to open, however long the sweep
        compact(recorder.evaluations_dir, EVALUATION_SCHEMA)
    return recorder.progress.counts


def resource_slots(settings: RunSettings, smallest_share: float | None = None) -> int:
    """How many trials the connected Ray cluster can run at once, by CPUs and GPUs per trial.

    Given to Tune as max_concurrent_trials: with a custom searcher and no limit, Tune
    keeps only one trial pending, which starts trials one at a time. smallest_share:
    the smallest GPU request of the run (default: the fixed one).
    """
    import ray

    if smallest_share is None:
        smallest_share = settings.gpus_per_trial or 0.0

    total = ray.cluster_resources()
    return packed_slots(total.get("CPU", 1.0), total.get("GPU", 0.0), settings.cpus_per_trial, smallest_share)


def packed_slots(cpus: float, gpus: float, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """Trials that fit at once: floor(resources / request) on each resource, with a
    tolerance for binary fractions (1.0 // 0.2 is 4.0 in floating point; Ray packs 5)."""
    slots = math.floor(cpus / cpus_per_trial + 1e-9) if cpus_per_trial > 0 else math.inf
    if gpus_per_trial > 0:
        slots = min(slots, math.floor(gpus / gpus_per_trial + 1e-9))
    return max(1, int(min(slots, 10_000)))


def _run_batch(batch, status, sweep, sweep_dir, settings, recorder) -> None:
    from ray import tune
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    specs = _prepare(batch, status, sweep_dir, settings, recorder)
    if not specs:
        return
    running_pretrains = {t.key for t in batch if t.stage == "pretrain"}
    planned = {p.key: p for p, _ in specs}

    def planned_of(tune_trial) -> PlannedTrial:
        return planned[tune_trial.config["trial"]["key"]]

    def resources(config: dict) -> PlacementGroupFactory:  # each trial its own GPU share
        return PlacementGroupFactory([{"CPU": settings.cpus_per_trial, "GPU": config["trial"]["gpus"]}])

    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        tune_config=tune.TuneConfig(
            search_alg=tune_searcher(DependencyOrder(specs, running_pretrains, recorder)),
            num_samples=len(specs),
            max_concurrent_trials=settings.concurrency,
            reuse_actors=True,
            trial_name_creator=lambda t: planned_of(t).name,
            trial_dirname_creator=lambda t: t.config["trial"]["key"],
        ),
        run_config=tune.RunConfig(
            name=sweep,
            storage_path=str((sweep_dir / "ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=settings.max_retries, fail_fast=False),
            callbacks=tune_callbacks(RowWriterCallback(planned_of, recorder)),
            stop=tune_stopper(recorder.interrupt) if recorder.interrupt is not None else None,
            verbose=settings.verbose,
        ),
    )
    tuner.fit()


def _prepare(batch, status, sweep_dir, settings, recorder):
    """(trial, spec) pairs to submit; a trial whose checkpoint cannot come gets a failed row.

    status: key -> status of the rows already written (from ``fno.results.statuses``).
    A checkpoint can come if its pre-training is in this batch or finished ``ok`` and
    its file is there.
    """
    runnable = []
    in_batch = {t.key for t in batch if t.stage == "pretrain"}
    for trial in batch:
        out_dir = ""
        if trial.stage == "pretrain":
            out_dir = str(checkpoint_path(sweep_dir, trial.key).parent.resolve())
        elif trial.pretrained_key:
            path = checkpoint_path(sweep_dir, trial.pretrained_key)
            usable = status.get(trial.pretrained_key) == "ok" and path.is_file()
            if trial.pretrained_key not in in_batch and not usable:
                why = status.get(trial.pretrained_key, "missing")
                error = f"pre-training trial {trial.pretrained_key} is {why}; its checkpoint {path} is not usable"
                recorder.record(trial, None, error)
                continue
        config = worker_config(trial, sweep_dir, settings)
        spec = {"key": trial.key, "name": trial.name, "config": config, "out_dir": out_dir,
                "gpus": settings.gpu_share(trial)}  # fmt: skip
        runnable.append((trial, spec))
    return runnable


def worker_config(trial: PlannedTrial, sweep_dir: Path | Location, settings: RunSettings) -> dict[str, Any]:
    """The TrialConfig fields a worker runs: the trial's, its execution settings, and the
    absolute path of its pre-trained checkpoint (if any) under ``sweep_dir``."""
    config = trial.config.to_dict()
    share = settings.gpu_share(trial)
    config.update(
        device=settings.device,  # cpu without a GPU request, even where the node has GPUs
        threads=max(1, int(settings.cpus_per_trial)),
        gpu_share=min(share, 1.0) if share > 0 else None,
        bf16=settings.bf16,
        tf32=settings.tf32,
    )
    if trial.pretrained_key:
        config["pretrained"] = str(checkpoint_path(sweep_dir, trial.pretrained_key).resolve())
    return config
