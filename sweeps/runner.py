"""Run planned trials on Ray Tune; write one results row per finished trial; resume by key.

Resume does not use ``Tuner.restore`` or any search-algorithm state: at the start the
runner reads the results folder and submits only the keys that have no row there
(and those whose failure a re-run retries: fno.results.RETRIED_FAILURES). Rows are
written by the driver, one Parquet file per trial, the moment Tune reports the trial
finished, so a driver killed with SIGKILL loses only the trials that were running
(which resume from their saved state), and the same command continues the sweep.

Order of execution, driver-side and without a stage barrier: a small Tune searcher
hands out pre-training trials first, then every trial whose inputs are ready, the
most expensive first (longest processing time first). A fine-tune or zero-shot
trial becomes ready the moment its own pre-training finishes ``ok``; while it
waits, scratch trials keep the slots busy. Nothing waits inside a trial, so a
retried pre-training can never queue behind the trials that wait for it. The
``stage`` column (pretrain / downstream) says what a trial is, not when it ran.

One stream of trials, one ``Tuner.fit`` for the whole sweep: no batch waits for its
slowest trial, and Tune reuses its actors throughout. How many trials run at once
follows the cluster (``LiveSlots``: its resources re-read every few seconds, so nodes
that join are used and nodes that leave are not waited for); the searcher hands out
a trial only while fewer than that many are in flight.

Faults: a trial saves its training state every ``checkpoint_every_s`` seconds (at an
evaluation) under ``checkpoints/<key>/resume.pt`` in the sweep's storage, and a
retry resumes from it. Trials that raise or lose their worker are retried
(``max_retries``) by Tune, then recorded with status ``failed``, their error and a
failure class (fno.results.FAILURES); a trial out of GPU memory under an automatic
share is run once more at twice the share; a trial past its time limit ends as
``timeout``; downstream trials whose pre-training failed are recorded as failed
(``dependency``) without running. Nothing stops the sweep early (no fail_fast); the
caller learns of failures from the returned counts.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import platform
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fno.memory import gpu_share, trial_memory
from fno.model import FNOConfig
from fno.provenance import code_version, git_commit, library_versions, source_digest
from fno.results import COLUMNS, EVALUATION_SCHEMA, compact, skip_keys, statuses, write_evaluations, write_row
from fno.storage import Location, location
from fno.train import TrialConfig, TrialControl, TrialTimeoutError, data_columns, run_trial
from fno_sweeps.grid import PlannedTrial, trial_flops
from fno_sweeps.interrupt import Interrupt, tune_stopper
from fno_sweeps.live import Stopwatch, TrialBoard, duration_text
from fno_sweeps.metrics import SweepMetrics

COMPACT_EVERY = 256  # rows between compactions of the results folder (few files to open, however long the sweep)
SLOTS_REFRESH_S = 10.0  # how often the cluster's resources are re-read for the number of trials at once
AUTOSCALE_DEMAND = 8  # with --autoscale: trials requested beyond what the cluster holds, so that it grows
# --trial-timeout auto: TIMEOUT_FACTOR x the trial's FLOPs at the slowest FLOP rate seen in this
# sweep (DEFAULT_RATE before any trial finished: a slow CPU), and never under TIMEOUT_FLOOR_S.
TIMEOUT_FACTOR = 10.0
TIMEOUT_FLOOR_S = 1800.0
DEFAULT_RATE = 1e8  # FLOP/s
HANG_GRACE_S = 120.0  # past its limit, a trial that does not stop by itself (hung in a step) is killed


def checkpoint_path(sweep_dir: Path | Location, key: str) -> Location:
    return location(sweep_dir) / "checkpoints" / key / "checkpoint.pt"


def resume_path(sweep_dir: Path | Location, key: str) -> Location:
    """The trial's saved training state (fno.train.TrialControl), resumed by a retry."""
    return location(sweep_dir) / "checkpoints" / key / "resume.pt"


def hang_marker(sweep_dir: Path | Location, key: str) -> Location:
    """Written by a trial's watchdog before it kills a worker that hung past its limit."""
    return location(sweep_dir) / "checkpoints" / key / "timed-out"


# Error texts (Ray's exception names and messages, this tool's own) by failure class; the
# first class with a match wins, anything else is "error" (fno.results.FAILURES).
FAILURE_PATTERNS = (
    ("timeout", ("TrialTimeoutError", "past its time limit")),
    ("out of memory", ("out of GPU memory", "OutOfMemoryError", "CUDA out of memory", "running low on memory")),
    (
        "infrastructure",
        ("ActorDiedError", "RayActorError", "ActorUnavailableError", "NodeDiedError", "WorkerCrashedError",
         "OwnerDiedError", "ObjectLostError", "RaySystemError", "ended without a result", "actor died",
         "node was terminated", "worker died", "preempted"),
    ),
)  # fmt: skip


def failure_class(error: str) -> str:
    """The failure class (fno.results.FAILURES) of a trial's error text."""
    for name, patterns in FAILURE_PATTERNS:
        if any(p.lower() in error.lower() for p in patterns):
            return name
    return "error"


def _ray_version() -> str:
    import ray

    return ray.__version__


def result_row(
    trial: PlannedTrial, sweep: str, result: dict[str, Any] | None, error: str = "", failure: str = ""
) -> dict[str, Any]:
    """The results row of a finished (result given) or failed (result None) trial; a
    failed one's ``failure`` class defaults to the class of its error text."""
    c = trial.config
    lo, hi = c.param_bounds
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
        "failure": (failure or failure_class(error)) if result is None else "",
        "resumed_step": 0,
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
        **data_columns(c),  # a dataset's digest and grid, the model's padding and coordinates
    }
    if result is not None:  # the trial's own measurements (TrialResult fields) take precedence
        row.update({name: result[name] for name in COLUMNS if name in result})
    return row


def trainable(config: dict[str, Any]) -> None:
    """The grid's Tune function trainable: the planned trial's config, checkpoint folder
    and controls (resume state, time limit, CPU fallback)."""
    spec = config["trial"]
    control = TrialControl(spec.get("resume") or None, spec.get("save_every_s", 300.0), spec.get("timeout_s"))
    run_reported_trial(
        TrialConfig.from_dict(spec["config"]),
        spec["out_dir"] or None,
        spec.get("name", ""),
        control,
        spec.get("hang_marker", ""),
        spec.get("allow_cpu_fallback", False),
    )


def run_reported_trial(
    trial_config: TrialConfig,
    out_dir: str | None = None,
    name: str = "",
    control: TrialControl | None = None,
    hang_marker_path: str = "",
    allow_cpu_fallback: bool = False,
) -> None:
    """``run_trial`` inside a Tune worker: every evaluation reported to Tune, then the
    result (under ``trial_result``, for the driver's row) as the last report.

    Prints a line when the trial starts (its name, node and device) and when it ends, to
    the worker's log (stderr, the dashboard's default log tab): the Ray dashboard shows
    a trial actor as ``trainable``, and one actor runs several trials in turn, so its
    log says which ran when. A trial given a GPU share on a node without CUDA fails,
    naming the node, unless ``allow_cpu_fallback`` (then it runs on the CPU and says so).

    With a time limit, a watchdog thread kills this worker HANG_GRACE_S after the limit
    if the trial has not stopped by itself (a step that never returns), leaving
    ``hang_marker_path``: the retry that follows finds it and ends as a timeout.
    """
    import ray
    import torch
    from ray import tune

    control = control or TrialControl()

    def report(step: int, epoch: float, train_loss: float, val_rel_l2: float) -> None:
        tune.report({"step": step, "epoch": epoch, "train_loss": train_loss, "val_rel_l2": val_rel_l2})

    name = name or f"{trial_config.mode}-{trial_config.family}"
    node = ray.get_runtime_context().get_node_id()[:12]
    if hang_marker_path and location(hang_marker_path).is_file():
        raise TrialTimeoutError(
            f"trial {name} hung past its time limit of {control.timeout_s or 0:.0f} s in an earlier attempt and its "
            "worker was killed (--trial-timeout)"
        )
    gpus = ray.get_gpu_ids()
    if trial_config.device == "cuda" and not gpus:
        raise RuntimeError("this trial asked for a GPU share but Ray assigned it no GPU")
    device = trial_config.device
    if device == "cuda" and not torch.cuda.is_available():
        where = f"node {platform.node()} (Ray node {node}): Ray assigned GPU {gpus}, but CUDA is not available"
        if not allow_cpu_fallback:
            raise RuntimeError(
                f"{where} (torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}): fix the node's "
                "driver or torch build, or pass --allow-cpu-fallback to run GPU trials there on the CPU"
            )
        print(f"[fno] trial {name}: {where}: running on the CPU (--allow-cpu-fallback)", file=sys.stderr, flush=True)
        trial_config = replace(trial_config, device="cpu", bf16=False, tf32=False)
        device = "cpu"
    where = f"GPU {gpus} as cuda (share {trial_config.gpu_share or 1:g})" if device == "cuda" else "CPU"
    print(f"[fno] trial {name} started on node {node}, {where}", file=sys.stderr, flush=True)
    finished = threading.Event()
    if control.timeout_s and hang_marker_path:
        threading.Thread(
            target=_watch_for_hang, args=(finished, control.timeout_s, hang_marker_path, name), daemon=True
        ).start()
    try:
        # With a GPU request Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU: "cuda" is it.
        result = run_trial(trial_config, report, out_dir, control).to_dict()
    finally:
        finished.set()
    # Host name plus Ray node id: two Ray nodes on one host stay distinguishable.
    result["node"] = f"{result['node']}/{node}"
    resumed = f", resumed from step {result['resumed_step']}" if result["resumed_step"] else ""
    print(f"[fno] trial {name} ended: {result['status']}, test {result['test_rel_l2']:.4g}, "
          f"{result['wall_s']:.0f} s{resumed}", file=sys.stderr, flush=True)  # fmt: skip
    # trial_status at the top level: Tune hands searchers the result flattened.
    final = {"trial_result": result, "trial_status": result["status"]}
    tune.report({**final, "val_rel_l2": result["val_rel_l2"], "step": result["steps"]})


def _watch_for_hang(finished: threading.Event, timeout_s: float, marker: str, name: str) -> None:
    """Kill this worker if the trial is still running HANG_GRACE_S after its limit (its
    own check runs between steps, so only a step that never returns gets here)."""
    if finished.wait(timeout_s + HANG_GRACE_S):
        return
    print(f"[fno] trial {name} still running {HANG_GRACE_S:.0f} s past its limit of {timeout_s:.0f} s: killing its "
          "worker", file=sys.stderr, flush=True)  # fmt: skip
    location(marker).write_bytes(b"")
    os._exit(1)


@dataclass
class Progress:
    """What the driver shows while trials run: counts, the running trials (a live view on
    a terminal, ``fno_sweeps.live.TrialBoard``), a line per finished trial, and the time left.

    The time left comes from measured trial times (from the driver's view: start to
    row). With ``cost`` (estimated FLOPs per planned key) each trial left is predicted
    by t = a + b x FLOPs fitted to the trials measured so far (a per-trial overhead and
    a rate, ``fit_trial_times``), so that neither a long pre-training nor short zero-shot
    trials skew it; without (hpo.py, whose trials are not known ahead), trials left times
    the mean time. Running trials count with what they have left. The sum is shared
    among the slots in use. None ("estimating...") until a trial has been measured.
    """

    total: int
    concurrency: int
    cost: dict[str, float] | None = None
    stopwatch: Stopwatch | None = None  # prints when the first trial starts
    board: TrialBoard = field(default_factory=TrialBoard)
    counts: Counter = field(default_factory=Counter)
    measured: list[tuple[float, float]] = field(default_factory=list)  # (FLOPs, seconds) of trials that ran
    eta_s: float | None = None  # the estimated seconds left, as last shown
    slowest_rate: float = math.inf  # the lowest FLOP/s of a trial that ran ok (auto time limits)
    started_at: dict[str, float] = field(default_factory=dict)  # running keys -> time.monotonic() at start
    cost_left: dict[str, float] = field(init=False)  # the FLOPs of the keys without a row yet
    announced: bool = False  # the first trial's start was said

    def __post_init__(self) -> None:
        self.cost_left = dict(self.cost or {})

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def started(self, trial: PlannedTrial) -> None:
        """A trial started (or started again after a retry)."""
        if self.stopwatch is not None and not self.announced:
            self.board.line(f"[{self.stopwatch.elapsed():5.1f} s] first trial running: {trial.name}")
            self.announced = True
        self.started_at[trial.key] = time.monotonic()
        self.board.started(trial.key, trial.name, trial.config.total_steps)
        self.board.tick(self.header())

    def reported(self, trial: PlannedTrial, result: dict[str, Any]) -> None:
        """A trial's report to Tune (its step and validation error at an evaluation)."""
        self.board.reported(trial.key, result.get("step"), result.get("val_rel_l2"))
        self.board.tick(self.header())

    def stopped_running(self, trial: PlannedTrial) -> None:
        """A trial that is no longer running, without a row (it is retried, or was cut short)."""
        self.started_at.pop(trial.key, None)
        self.board.ended(trial.key)

    def tick(self) -> None:
        """Called often (every step of Tune's loop): redraws the live view when due."""
        self.board.tick(self.header())

    def close(self) -> None:
        self.board.close()

    def finished(self, trial: PlannedTrial, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        began = self.started_at.pop(trial.key, None)
        self.board.ended(trial.key)
        seconds = time.monotonic() - began if began is not None else float(row["wall_s"])
        flops = self.cost_left.pop(trial.key, 0.0)
        if row["wall_s"] > 0:  # it ran (a dependency failure did not)
            self.measured.append((flops, seconds))
            if row["status"] == "ok" and flops > 0:
                self.slowest_rate = min(self.slowest_rate, flops / row["wall_s"])
        self.eta_s = self.estimate_left()
        status = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        metric = f"test {row['test_rel_l2']:.4f}" if row["status"] == "ok" else row["error"][:80]
        self.board.line(f"[{self.done}/{self.total} done ({status}), {self._state()}] {trial.name}: {metric}",
                        self.header())  # fmt: skip

    def header(self) -> str:
        """The live view's first line."""
        return f"{self.done}/{self.total} done, {self._state()}"

    def _state(self) -> str:
        left = self.total - self.done
        running = min(len(self.started_at), left)
        eta = self.estimate_left()
        if left == 0:
            return "0 running, 0 pending"
        when = "time left: estimating..." if eta is None else f"about {duration_text(eta)} left"
        return f"{running} running, {left - running} pending, {when}"

    def estimate_left(self) -> float | None:
        """Seconds until the last trial ends (see the class); None before any was measured."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if not self.measured:
            return None
        now = time.monotonic()
        if self.cost is not None:
            a, b = fit_trial_times(self.measured)
            waiting = sum(a + b * f for k, f in self.cost_left.items() if k not in self.started_at)
            running = [a + b * self.cost_left.get(k, 0.0) - (now - t) for k, t in self.started_at.items()]
        else:
            mean = sum(s for _, s in self.measured) / len(self.measured)
            waiting = max(0, left - len(self.started_at)) * mean
            running = [mean - (now - t) for t in self.started_at.values()]
        running = [max(r, 0.0) for r in running]
        slots = max(1, min(self.concurrency, left))
        return max((waiting + sum(running)) / slots, max(running, default=0.0), 1.0)


def fit_trial_times(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of seconds = a + b x FLOPs, least squares with a, b >= 0, over (FLOPs, seconds)
    points. One point, or points of equal FLOPs, give the rate alone (a = 0) where FLOPs
    are positive, else the overhead alone."""
    n = len(points)
    mean_f = sum(f for f, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    spread = sum((f - mean_f) ** 2 for f, _ in points)
    if spread <= 0:
        return (0.0, mean_t / mean_f) if mean_f > 0 else (mean_t, 0.0)
    b = sum((f - mean_f) * (t - mean_t) for f, t in points) / spread
    a = mean_t - b * mean_f
    if b < 0:  # time does not grow with FLOPs here: an overhead per trial
        return mean_t, 0.0
    if a < 0:  # through the origin
        return 0.0, sum(f * t for f, t in points) / sum(f * f for f, _ in points)
    return a, b


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

    def compact(self) -> None:
        """Merge the rows and evaluations written so far into few files."""
        compact(self.results_dir)
        compact(self.evaluations_dir, EVALUATION_SCHEMA)

    def record(self, trial: PlannedTrial, result: dict[str, Any] | None, error: str = "", failure: str = "") -> None:
        if result is not None:
            write_evaluations(self.evaluations_dir, trial.key, result.get("evaluations", []))
        self._write(trial, result_row(trial, self.sweep, result, error, failure))

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
        if len(self.recorded) % COMPACT_EVERY == 0:
            self.compact()
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

    planned_of: the PlannedTrial of a Tune trial (from its config); order: the sweep's
    DependencyOrder (None in a search, which has no dependants), told how each failed
    trial ended (its dependants wait on it) and given back trials run again (out of
    memory under an automatic share).
    """

    def __new__(cls, *args, **kwargs):
        from ray import tune

        class RowWriter(tune.Callback):
            def __init__(
                self,
                planned_of: Callable[[Any], PlannedTrial],
                recorder: Recorder,
                order: DependencyOrder | None = None,
            ):
                self.planned_of, self.recorder, self.order = planned_of, recorder, order

            def on_trial_start(self, iteration, trials, trial, **info):
                planned = self.planned_of(trial)
                self.recorder.progress.started(planned)
                if self.recorder.metrics is not None:
                    self.recorder.metrics.trial_started(planned.key)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.recorder.progress.reported(self.planned_of(trial), result)

            def on_trial_recover(self, iteration, trials, trial, **info):
                self.recorder.progress.stopped_running(self.planned_of(trial))  # it starts again

            def on_step_end(self, iteration, trials, **info):
                self.recorder.progress.tick()

            def on_trial_complete(self, iteration, trials, trial, **info):
                last = trial.last_result or {}
                result = last.get("trial_result")
                if result is None and self.recorder.stopping:
                    self.recorder.progress.stopped_running(self.planned_of(trial))
                    return  # cut short by an interrupt: no row, so the next run runs it again
                if result is not None:
                    self.recorder.record(self.planned_of(trial), result)
                elif "val_rel_l2" in last:  # ended by a scheduler (ASHA) after some evaluations
                    self.recorder.record_stopped(self.planned_of(trial), last)
                else:
                    self.recorder.record(self.planned_of(trial), None, "trial ended without a result", "infrastructure")

            def on_trial_error(self, iteration, trials, trial, **info):
                if self.recorder.stopping:
                    return  # killed while stopping: not a failure of the trial
                planned = self.planned_of(trial)
                if planned.key in self.recorder.recorded:  # it finished and has its row; what failed came after
                    if self.order is not None:
                        self.order.settle(planned.key, (trial.last_result or {}).get("trial_status", "failed"))
                    return  # (never overwrite the row)
                error = trial.error_file and Path(trial.error_file).exists() and Path(trial.error_file).read_text()
                error = (error or "trial raised").strip()
                failure = failure_class(error)
                order, spec = self.order, trial.config["trial"]
                if order is not None and failure == "out of memory" and order.retry_larger(planned, spec):
                    self.recorder.progress.stopped_running(planned)
                    return  # given back to the order at twice the share: no row yet
                self.recorder.record(planned, None, error.splitlines()[-1][:2000], failure)
                if order is not None:
                    order.settle(planned.key, "failed")

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
    waiting trials are recorded as failed (``dependency``) without running. A trial is
    handed out only while fewer than ``capacity()`` are in flight, and none once
    ``halted()`` returns a reason (the lease was lost): the running ones finish. Plain
    Python: ``tune_searcher`` wraps it for Tune.

    timeout_s(trial): the time limit given to a trial as it is handed out (None: none).
    """

    def __init__(
        self,
        specs: Sequence[tuple[PlannedTrial, dict]],
        running_pretrains: set[str],
        recorder: Recorder,
        capacity: Callable[[], int] | None = None,
        halted: Callable[[], str] | None = None,
        timeout_s: Callable[[PlannedTrial], float | None] | None = None,
    ):
        self.recorder = recorder
        self.capacity, self.halted, self.timeout_s = capacity, halted, timeout_s
        self.waiting: dict[str, list[tuple[PlannedTrial, dict]]] = {}
        self.ready: list[tuple[tuple, int, PlannedTrial, dict]] = []
        self.issued: dict[str, str] = {}  # Tune trial id -> key, for trials that gate others
        self.in_flight: set[str] = set()  # Tune trial ids handed out and not yet complete
        self.enlarged: set[str] = set()  # keys given back once at a larger GPU share
        self._order = 0
        for trial, spec in specs:
            if trial.pretrained_key in running_pretrains:
                self.waiting.setdefault(trial.pretrained_key, []).append((trial, spec))
            else:
                self._push(trial, spec)

    def __getstate__(self) -> dict:
        # Tune pickles its searcher and callbacks with the experiment's state, for a restore
        # this tool never does; the live hooks (the lease's lock, Ray calls) stay out.
        return {**self.__dict__, "capacity": None, "halted": None, "timeout_s": None}

    def _push(self, trial: PlannedTrial, spec: dict) -> None:
        self._order += 1  # ties keep the grid's order
        heapq.heappush(self.ready, ((trial.stage != "pretrain", -trial_flops(trial)), self._order, trial, spec))

    def next_trial(self, trial_id: str) -> dict | str | None:
        """The next trial's Tune config; None if none is ready yet or the slots are full;
        "FINISHED" when none is left (or the run is halted)."""
        if self.halted is not None and self.halted():
            return "FINISHED"
        if not self.ready:
            return None if self.waiting or self.in_flight else "FINISHED"
        if self.capacity is not None and len(self.in_flight) >= self.capacity():
            return None
        _, _, trial, spec = heapq.heappop(self.ready)
        if trial.key in self.waiting:
            self.issued[trial_id] = trial.key
        self.in_flight.add(trial_id)
        if self.timeout_s is not None:
            spec = {**spec, "timeout_s": self.timeout_s(trial)}
        return {"trial": spec}

    def trial_finished(self, trial_id: str, result: dict | None, error: bool) -> None:
        """Tune's word that a trial ended. Dependants of one that raised wait for ``settle``
        (the row writer knows whether it runs again); others are settled here."""
        self.in_flight.discard(trial_id)
        key = self.issued.pop(trial_id, None)
        if key is None or error:
            return
        self.settle(key, (result or {}).get("trial_status", "failed"))

    def settle(self, key: str, status: str) -> None:
        """Pre-training ``key`` ended with ``status``: release or fail the trials waiting on it."""
        for trial, spec in self.waiting.pop(key, []):
            if status == "ok":
                self._push(trial, spec)
            else:
                error = f"pre-training trial {key} is {status}; its checkpoint is not usable"
                self.recorder.record(trial, None, error, "dependency")

    def retry_larger(self, trial: PlannedTrial, spec: dict) -> bool:
        """Give ``trial`` (out of GPU memory) back once at twice its automatic GPU share, up
        to a whole GPU; False where that is not possible (fixed share, already enlarged)."""
        share = spec.get("gpus", 0.0)
        if not spec.get("auto_share") or trial.key in self.enlarged or not 0 < share < 1:
            return False
        self.enlarged.add(trial.key)
        larger = min(1.0, 2 * share)
        config = {**spec["config"], "gpu_share": larger}
        self._push(trial, {**spec, "gpus": larger, "config": config, "enlarged": True})
        print(f"[{trial.name}] out of GPU memory at a share of {share:g}: run again at {larger:g}", flush=True)
        return True


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
    concurrency: int | None = None  # None: as many as the cluster's resources allow, followed as it changes
    max_retries: int = 1
    verbose: int = 0  # Tune's own console output (0: only our progress lines)
    retry_failed: bool = False  # run keys recorded as failed again (their rows are replaced)
    gpu_memory_gib: float | None = None  # per GPU; needed by gpus_per_trial=None
    bf16: bool = False  # CUDA trials: bf16 autocast (recorded in the results)
    tf32: bool = False  # CUDA trials: TF32 matmuls (recorded in the results)
    checkpoint_every_s: float = 300.0  # a trial saves its training state this often (resumed by a retry)
    trial_timeout_s: float | None = None  # per trial; None: auto (TIMEOUT_FACTOR x its expected time); 0: none
    allow_cpu_fallback: bool = False  # GPU trials on a node without CUDA run on its CPU instead of failing
    autoscale: bool = False  # the cluster grows on demand: request AUTOSCALE_DEMAND trials beyond its slots

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
    halted: Callable[[], str] | None = None,
    stopwatch: Stopwatch | None = None,
) -> Counter:
    """Run the ``trials`` that have no row yet (or a failure a re-run retries) as one
    stream; return the status counts of this run.

    ``interrupt`` (``fno_sweeps.interrupt``): once requested, Tune stops the running
    trials (they get no row). ``halted()``: once it returns a reason, no further trial
    starts and the running ones finish with their rows. ``on_row``: called after each
    row is written. ``stopwatch``: says when the first trial starts.
    """
    sweep_dir = location(sweep_dir)
    results_dir = sweep_dir / "results"
    status = statuses(results_dir)
    done = skip_keys(status, include_failed=not settings.retry_failed)
    pending = [t for t in trials if t.key not in done]
    cost = {t.key: trial_flops(t) for t in pending}
    slots = LiveSlots(settings, min((settings.gpu_share(t) for t in pending), default=0.0))
    progress = Progress(len(pending), slots(), cost, stopwatch)
    slots.progress = progress
    if stopwatch is not None and pending:
        stopwatch.say(f"handing {len(pending)} trials to Ray Tune, {slots()} at once; the first starts with its worker")
    recorder = Recorder(results_dir, sweep, progress, interrupt, on_row, SweepMetrics(sweep, len(pending)))
    try:
        _run_stream(pending, status, sweep, sweep_dir, settings, recorder, slots, halted)
    finally:
        progress.close()
        recorder.compact()
    return recorder.progress.counts


@dataclass
class LiveSlots:
    """How many trials may be in flight now: ``settings.concurrency`` if fixed, else what
    the cluster's alive nodes hold (``resource_slots``), re-read at most every
    SLOTS_REFRESH_S seconds, plus AUTOSCALE_DEMAND under ``settings.autoscale`` (pending
    trials are what makes an autoscaler add nodes). Keeps ``progress.concurrency`` current."""

    settings: RunSettings
    smallest_share: float
    progress: Progress | None = None
    _value: int = 0
    _read_at: float = -math.inf

    def __call__(self) -> int:
        if self.settings.concurrency is not None:
            return self.settings.concurrency
        now = time.monotonic()
        if now - self._read_at >= SLOTS_REFRESH_S:
            self._read_at = now
            held = resource_slots(self.settings, self.smallest_share)
            self._value = held + (AUTOSCALE_DEMAND if self.settings.autoscale else 0)
            if self.progress is not None:
                self.progress.concurrency = held
        return self._value


def trial_timeout(settings: RunSettings, progress: Progress, trial: PlannedTrial) -> float | None:
    """A trial's time limit in seconds: --trial-timeout if given (0: none), else
    TIMEOUT_FACTOR x its FLOPs at the slowest rate a trial of this sweep ran at
    (DEFAULT_RATE before one finished), at least TIMEOUT_FLOOR_S."""
    if settings.trial_timeout_s is not None:
        return settings.trial_timeout_s or None
    rate = progress.slowest_rate if math.isfinite(progress.slowest_rate) else DEFAULT_RATE
    return max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * trial_flops(trial) / rate)


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


def _run_stream(pending, status, sweep, sweep_dir, settings, recorder, slots: LiveSlots, halted) -> None:
    """One Tuner.fit for every pending trial, handed out by a DependencyOrder."""
    from ray import tune
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    running_pretrains = {t.key for t in pending if t.stage == "pretrain"}
    specs = _prepare(pending, running_pretrains, status, sweep_dir, settings, recorder)
    if not specs:
        return
    planned = {p.key: p for p, _ in specs}
    order = DependencyOrder(
        specs, running_pretrains, recorder, slots, halted, lambda t: trial_timeout(settings, recorder.progress, t)
    )

    def planned_of(tune_trial) -> PlannedTrial:
        return planned[tune_trial.config["trial"]["key"]]

    def resources(config: dict) -> PlacementGroupFactory:  # each trial its own GPU share
        return PlacementGroupFactory([{"CPU": settings.cpus_per_trial, "GPU": config["trial"]["gpus"]}])

    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        tune_config=tune.TuneConfig(
            search_alg=tune_searcher(order),
            num_samples=-1,  # the order says when it is done (an out-of-memory retry adds a trial)
            reuse_actors=True,
            trial_name_creator=lambda t: planned_of(t).name,
            trial_dirname_creator=lambda t: t.config["trial"]["key"] + ("-x2" if t.config["trial"]["enlarged"] else ""),
        ),
        run_config=tune.RunConfig(
            name=sweep,
            storage_path=str((sweep_dir / "ray").resolve()),
            failure_config=tune.FailureConfig(max_failures=settings.max_retries, fail_fast=False),
            callbacks=tune_callbacks(RowWriterCallback(planned_of, recorder, order)),
            stop=tune_stopper(recorder.interrupt) if recorder.interrupt is not None else None,
            verbose=settings.verbose,
        ),
    )
    # With a custom searcher Tune keeps one trial pending at a time unless told otherwise
    # (it would start trials one by one); the order already caps trials in flight.
    with environment(TUNE_MAX_PENDING_TRIALS_PG=str(max(16, slots())), **tune_output(settings.verbose)):
        tuner.fit()


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Environment variables set (None: removed) for the block, restored after."""
    previous = {name: os.environ.get(name) for name in values}

    def put(items) -> None:
        for name, value in items:
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    put(values.items())
    try:
        yield
    finally:
        put(previous.items())


def tune_output(verbose: int) -> dict[str, str | None]:
    """The environment of ``Tuner.fit`` for Tune's own console output: at --verbose 0 none.
    Tune's newer output engine prints its configuration box (search algorithm, scheduler,
    number of trials) at every verbosity, the older one nothing at verbosity 0, so that
    one is used then; from --verbose 1, the newer one, as Tune prints by default."""
    return {"RAY_AIR_NEW_OUTPUT": "0" if verbose == 0 else os.environ.get("RAY_AIR_NEW_OUTPUT")}


def _prepare(pending, running_pretrains, status, sweep_dir, settings, recorder):
    """(trial, spec) pairs to submit; a trial whose checkpoint cannot come gets a failed row.

    running_pretrains: keys of the pre-training trials among ``pending``. status: key ->
    status of the rows already written (from ``fno.results.statuses``). A checkpoint can
    come if its pre-training is among the trials to run or finished ``ok`` and its file
    is there.
    """
    runnable = []
    for trial in pending:
        out_dir = ""
        if trial.stage == "pretrain":
            out_dir = str(checkpoint_path(sweep_dir, trial.key).parent.resolve())
        elif trial.pretrained_key:
            path = checkpoint_path(sweep_dir, trial.pretrained_key)
            usable = status.get(trial.pretrained_key) == "ok" and path.is_file()
            if trial.pretrained_key not in running_pretrains and not usable:
                why = status.get(trial.pretrained_key, "missing")
                error = f"pre-training trial {trial.pretrained_key} is {why}; its checkpoint {path} is not usable"
                recorder.record(trial, None, error, "dependency")
                continue
        config = worker_config(trial, sweep_dir, settings)
        marker = hang_marker(sweep_dir, trial.key)
        if marker.is_file():  # a timeout of an earlier run is retried afresh
            marker.delete()
        spec = {
            "key": trial.key,
            "name": trial.name,
            "config": config,
            "out_dir": out_dir,
            "gpus": settings.gpu_share(trial),
            "auto_share": settings.gpus_per_trial is None,
            "enlarged": False,
            "resume": str(resume_path(sweep_dir, trial.key).resolve()) if trial.config.mode != "zeroshot" else "",
            "save_every_s": settings.checkpoint_every_s,
            "hang_marker": str(marker.resolve()),
            "allow_cpu_fallback": settings.allow_cpu_fallback,
        }
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
