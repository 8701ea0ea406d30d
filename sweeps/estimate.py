"""How long a sweep's plan takes: trial-hours and wall-clock time on a number of slots.

Units: seconds throughout; ``trial-hours`` is the sum over trials of each trial's own
time (what a results row records as ``wall_s``) / 3600; ``wall-clock`` is the time of
the whole command on ``slots`` trials at once.

One trial's time (``trial_seconds``) is

    FIXED_TRIAL_S                                   data from the node's cache, model build or checkpoint
                                                    load, the test metrics' extras, checkpoint save
  + steps x step time                               forward + backward + Adam at the trial's batch and grid
  + evaluations x validation pass (n_val samples)   at config.eval_steps(), in batches of batch_size
  + one test pass (n_test samples) per test resolution

and a zero-shot trial is the fixed cost and its test passes only. A step's and a pass's
time come from a ``StepCost``: ``FlopRate`` (FLOPs / a sustained rate: 3 forward FLOPs
per trained sample, 1 per evaluated one) or ``MeasuredSteps`` (a few timed steps of
each planned shape on the device the trials use, ``measure_steps``, kept a day by
``cached_measure_steps``). Small models are bound by per-step overhead, not FLOPs (4.5
to 26 ms a step for 4.6e6 to 1.9e8 FLOP on 2 CPU cores, docs/sweeps.md), which one
rate missed by up to 30x; the timed steps see it.

Not counted: generating data not yet in a node's cache (at 32 x 32, thousands of samples
a second), trials that fail or are retried, and trials slowing each other (steps are
timed alone). ``wall_clock_seconds`` hands the trials
to the slots as the runner does (pre-training first, then the longest first; a trial
that loads a checkpoint not before its pre-training ends), each trial plus
RAY_DISPATCH_S, plus Ray's start and stop.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fno.model import FNOConfig
from fno.provenance import package_digest
from fno.train import TrialConfig
from fno_sweeps.grid import PlannedTrial

# Measured on the committed study rows (docs/study/results, 903 trials on 2 cores): the
# median of wall_s - train_s, the trial's time outside its training loop (data loaded
# from the cache, model or checkpoint, test evaluation, checkpoint save). benchmarks/
# bench_estimate.py prints it again.
FIXED_TRIAL_S = 0.05
# Ray's cost around the trials, from benchmarks/bench_sweep.py on the cpu preset (86
# trials, 2 slots, docs/sweeps.md "Measured"): 14.9 s before the first trial started,
# 4.9 s after the last ended, 3.8 s of idle slots between trials (0.09 s per trial and slot).
RAY_START_S = 15.0
RAY_STOP_S = 5.0
RAY_DISPATCH_S = 0.1
# The reference GPU for plans without one here: one NVIDIA H200, four w32-m8 trials
# sharing it at 64 x 64, batch 64, each at 8.41e11 FLOP/s (docs/gpu.md, "The gpu preset").
REFERENCE_GPU = "H200"
REFERENCE_GPU_RATE = 8.41e11
REFERENCE_GPU_TRIALS = 4
# A plan on CPUs longer than this on the slots at hand is given on the reference GPU too.
CPU_PLAN_TOO_LONG_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Shape:
    """What a step's time depends on: the model, the grid, the batch, and whether it
    trains (forward + backward + Adam) or evaluates (forward, no gradients)."""

    in_channels: int
    width: int
    modes: int
    layers: int
    resolution: int
    batch: int
    train: bool

    @property
    def flops(self) -> float:
        """FLOPs of one step: 3 forward FLOPs per trained sample, 1 per evaluated one."""
        per_sample = FNOConfig(self.in_channels, 1, self.width, self.modes, self.layers).flops_per_sample(
            self.resolution
        )
        return (3 if self.train else 1) * self.batch * per_sample

    @property
    def group(self) -> tuple[int, ...]:
        """The shape without its input channels (they change only the lift: measured once, at the most)."""
        return (self.width, self.modes, self.layers, self.resolution, self.batch, int(self.train))


class StepCost(Protocol):
    """Seconds of one step (training) or one batch (evaluation) of a shape."""

    def seconds(self, shape: Shape) -> float: ...


@dataclass(frozen=True)
class FlopRate:
    """A step's time as its FLOPs over a sustained rate (FLOP/s per trial)."""

    rate: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"--throughput must be a positive FLOP/s, got {self.rate!r}")

    def seconds(self, shape: Shape) -> float:
        return shape.flops / self.rate


@dataclass
class MeasuredSteps:
    """Timed steps per shape group (``Shape.group``); a shape not timed (the measuring
    budget ran out) gets ``overhead_s + flops / rate`` fitted to the timed shapes of its
    kind (training or evaluation)."""

    times: dict[tuple[int, ...], float]
    device: str
    threads: int
    elapsed_s: float = 0.0
    cached: int = 0  # shapes whose time came from the cache (cached_measure_steps)
    fits: dict[bool, tuple[float, float]] = field(default_factory=dict)  # train -> (overhead_s, s per FLOP)
    flops: dict[tuple[int, ...], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for train in (True, False):
            points = [(self.flops[g], t) for g, t in self.times.items() if bool(g[-1]) == train and g in self.flops]
            if points:
                self.fits[train] = affine_fit(points)

    @property
    def timed(self) -> int:
        return len(self.times)

    def seconds(self, shape: Shape) -> float:
        if shape.group in self.times:
            return self.times[shape.group]
        fit = self.fits.get(shape.train) or self.fits.get(not shape.train)
        if fit is None:
            raise ValueError("no shape was timed: nothing to extrapolate from (raise the measuring budget)")
        overhead, per_flop = fit
        return overhead + per_flop * shape.flops


def affine_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) >= 0 of t = a + b x by least squares over (x, t) points; one point: a = 0."""
    if len(points) == 1 or len({x for x, _ in points}) == 1:
        x, t = max(points)
        return 0.0, t / x if x > 0 else 0.0
    mx = statistics.fmean(x for x, _ in points)
    mt = statistics.fmean(t for _, t in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = max(0.0, sum((x - mx) * (t - mt) for x, t in points) / sxx)
    a = mt - b * mx
    if a < 0:  # no negative overhead: through the origin instead
        a, b = 0.0, sum(x * t for x, t in points) / sum(x * x for x, _ in points)
    return a, b


def in_channels(config: TrialConfig) -> int:
    """The model's input channels for this trial's data (native or union layout)."""
    return config.in_channels  # a user's dataset has no DatasetSpec (TrialConfig.in_channels covers both)


def trial_shapes(config: TrialConfig) -> tuple[Shape | None, Shape, dict[int, Shape]]:
    """(training step or None for zero-shot, validation batch, test batch per resolution)."""
    base = {"in_channels": in_channels(config), "width": config.width, "modes": config.modes, "layers": config.layers}
    train = None if config.mode == "zeroshot" else Shape(**base, resolution=config.resolution, batch=config.batch,
                                                           train=True)  # fmt: skip
    val = Shape(**base, resolution=config.resolution, batch=min(config.batch_size, config.n_val), train=False)
    tests = {
        r: Shape(**base, resolution=r, batch=min(config.batch_size, config.n_test), train=False)
        for r in config.test_resolutions
    }
    return train, val, tests


def _passes(n_samples: int, batch: int) -> int:
    return math.ceil(n_samples / batch)


@dataclass(frozen=True)
class TrialTime:
    """One trial's estimated seconds, by part."""

    steps_s: float
    evals_s: float
    fixed_s: float

    @property
    def total(self) -> float:
        return self.steps_s + self.evals_s + self.fixed_s


def trial_seconds(config: TrialConfig, cost: StepCost, fixed_s: float = FIXED_TRIAL_S) -> TrialTime:
    """One trial's own time (module docstring): fixed cost, steps, validation and test passes."""
    train, val, tests = trial_shapes(config)
    test_s = sum(_passes(config.n_test, s.batch) * cost.seconds(s) for s in tests.values())
    if train is None:
        return TrialTime(0.0, test_s, fixed_s)
    steps_s = config.total_steps * cost.seconds(train)
    val_s = len(config.eval_steps()) * _passes(config.n_val, val.batch) * cost.seconds(val)
    return TrialTime(steps_s, val_s + test_s, fixed_s)


def plan_shapes(trials: Iterable[PlannedTrial]) -> list[Shape]:
    """Every shape the trials step through, one per group at its largest input channels."""
    widest: dict[tuple[int, ...], Shape] = {}
    for trial in trials:
        train, val, tests = trial_shapes(trial.config)
        for shape in (train, val, *tests.values()):
            if shape is not None and (shape.group not in widest or shape.in_channels > widest[shape.group].in_channels):
                widest[shape.group] = shape
    return list(widest.values())


# Which of a shape's timed steps stands for it: the 10th percentile, a step on a core the
# trial has to itself. The median follows whatever else runs now: on this 2-core VM at load
# 5-6 the median put the cpu and study presets at 1.8x and 1.6x their rows' time, the 10th
# percentile at 1.2x and 1.0x (docs/sweeps.md, "The dry run's time estimate").
LAP_QUANTILE = 0.1


def lap_quantile(laps: Sequence[float], q: float = LAP_QUANTILE) -> float:
    """The ``q`` quantile of ``laps`` (linear between order statistics; one lap: itself)."""
    ordered = sorted(laps)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def measure_steps(
    shapes: Sequence[Shape],
    device: str = "cpu",
    threads: int = 1,
    budget_s: float = 10.0,
    min_steps: int = 8,
    per_shape_s: float = 0.2,
) -> MeasuredSteps:
    """Time each shape on ``device`` with ``threads`` torch threads (as a trial does):
    one warm-up step, then steps until ``min_steps`` and ``per_shape_s``, their 10th
    percentile kept (``LAP_QUANTILE``). Smallest first, until the next would pass ``budget_s`` in all: the rest are
    extrapolated (``MeasuredSteps``). Steps use random data; a real model and Adam."""
    import torch

    from fno.model import FNO2d
    from fno.train import make_optimizer

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: this machine has no GPU to time steps on (pass --throughput)")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    times: dict[tuple[int, ...], float] = {}
    flops: dict[tuple[int, ...], float] = {}
    try:
        for shape in sorted(shapes, key=lambda s: s.flops):
            flops[shape.group] = shape.flops
            if times:
                partial = MeasuredSteps(dict(times), device, threads, flops=dict(flops))
                expected = (min_steps + 1) * partial.seconds(shape)
                if time.perf_counter() - started + expected > budget_s:
                    break
            times[shape.group] = _time_shape(shape, device, min_steps, per_shape_s, sync, FNO2d, make_optimizer)
    finally:
        torch.set_num_threads(before)
    return MeasuredSteps(times, device, threads, time.perf_counter() - started, flops=flops)


def _time_shape(shape: Shape, device: str, min_steps: int, per_shape_s: float, sync, model_cls, optimizer_fn) -> float:
    """Seconds of a step of ``shape`` (LAP_QUANTILE of the laps), as fno.train runs it: a batch gathered from the
    training set (source plus coefficient planes), normalised, the cosine rate set, the
    loss summed on the device; an evaluation batch de-normalised to a relative L2 error."""
    import torch
    import torch.nn.functional as F

    n, b, c = shape.resolution, shape.batch, shape.in_channels
    model = model_cls(c, 1, shape.width, shape.modes, shape.layers).to(device)
    samples = 2 * b
    source = torch.randn(samples, n, n, device=device)
    coefficients = torch.rand(samples, c - 1, device=device)
    solution = torch.randn(samples, n, n, device=device)
    order = torch.randperm(samples, device=device)
    loss_sum = torch.zeros((), device=device)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = order[:b]
        planes = coefficients[index][:, :, None, None].expand(-1, -1, n, n)
        x = torch.cat([source[index][:, None], planes], dim=1)
        return (x - 0.5) / 2.0, (solution[index][:, None] - 0.1) / 3.0

    if shape.train:
        optimizer = optimizer_fn(model, lr=1e-4)

        def step() -> None:
            x, y = batch()
            for group in optimizer.param_groups:
                group["lr"] = 1e-4 * 0.5 * (1 + math.cos(0.5))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=False):
                loss = F.mse_loss(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum.add_(loss.detach())

    else:

        @torch.no_grad()
        def step() -> None:
            x, y = batch()
            pred = model(x) * 3.0 + 0.1
            (pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)

    step()  # warm-up: allocations, FFT plans, kernels
    sync()
    laps: list[float] = []
    start = time.perf_counter()
    while len(laps) < min_steps or time.perf_counter() - start < per_shape_s:
        lap = time.perf_counter()
        step()
        sync()
        laps.append(time.perf_counter() - lap)
        if len(laps) >= 50:
            break
    return lap_quantile(laps)


# Timed steps are kept for a day (a VM's speed drifts by up to 2x over one, docs/benchmarks.md)
# in $FNO_STEP_CACHE, else in the temp folder: a second dry run times only what is new.
STEP_CACHE_MAX_AGE_S = 24 * 3600.0


def step_cache_path() -> Path:
    """Where timed steps are kept: $FNO_STEP_CACHE, else fno-scaling-step-times.json in $TMPDIR."""
    return Path(os.environ.get("FNO_STEP_CACHE") or Path(tempfile.gettempdir()) / "fno-scaling-step-times.json")


def cached_measure_steps(
    shapes: Sequence[Shape],
    device: str = "cpu",
    threads: int = 1,
    path: Path | None = None,
    max_age_s: float = STEP_CACHE_MAX_AGE_S,
    **measure_options: float,
) -> MeasuredSteps:
    """``measure_steps`` for the shapes without a time in the cache at ``path`` (default
    ``step_cache_path()``) younger than ``max_age_s``, keyed by device, torch version,
    training code (``fno``'s source digest: changed code is timed again), threads and
    shape; their times are added to it. A cache that cannot be read is ignored, one that
    cannot be written left as it was."""
    import torch

    path = path or step_cache_path()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    prefix = f"{name} torch {torch.__version__} fno {package_digest('fno')} threads {threads} shape "
    try:
        entries = json.loads(path.read_text())
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        entries = {}
    now = time.time()
    known = {}
    for shape in shapes:
        entry = entries.get(prefix + repr(shape.group))
        if isinstance(entry, list) and len(entry) == 2 and now - entry[1] <= max_age_s:
            known[shape.group] = float(entry[0])
    todo = [s for s in shapes if s.group not in known]
    fresh = measure_steps(todo, device, threads, **measure_options) if todo else MeasuredSteps({}, device, threads)
    if fresh.times:
        entries.update({prefix + repr(group): [seconds, now] for group, seconds in fresh.times.items()})
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps(entries, indent=0))
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
    flops = {s.group: s.flops for s in shapes}
    return MeasuredSteps({**known, **fresh.times}, device, threads, fresh.elapsed_s, len(known), flops=flops)


def wall_clock_seconds(
    trials: Sequence[PlannedTrial],
    seconds: Mapping[str, float],
    slots: int,
    start_s: float = RAY_START_S,
    stop_s: float = RAY_STOP_S,
    dispatch_s: float = RAY_DISPATCH_S,
) -> float:
    """The command's time with ``slots`` trials at once: each trial (``seconds[key]``,
    plus ``dispatch_s``) starts in the first free slot, in the runner's order
    (pre-training first, then the longest first; a trial whose pre-training is planned
    too not before it ends), plus Ray's ``start_s`` and ``stop_s``. 0 with no trials."""
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    if not trials:
        return 0.0
    planned = {t.key for t in trials}
    waiting: dict[str, list[PlannedTrial]] = {}
    ready: list[tuple[tuple[bool, float, int], PlannedTrial]] = []
    for i, trial in enumerate(trials):
        if trial.pretrained_key in planned:
            waiting.setdefault(trial.pretrained_key, []).append(trial)
        else:
            ready.append(((trial.stage != "pretrain", -seconds[trial.key], i), trial))
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (end, key)
    now, order = 0.0, len(trials)
    while ready or running:
        while ready and len(running) < slots:
            _, trial = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[trial.key] + dispatch_s, trial.key))
        now, key = heapq.heappop(running)
        for trial in waiting.pop(key, []):
            order += 1
            heapq.heappush(ready, ((trial.stage != "pretrain", -seconds[trial.key], order), trial))
    return start_s + now + stop_s


@dataclass(frozen=True)
class Estimate:
    """A plan's estimate: each trial's time (by key), and the totals."""

    times: dict[str, TrialTime]
    modes: dict[str, str]  # key -> mode
    slots: int
    wall_clock_s: float

    @property
    def trial_hours(self) -> float:
        return sum(t.total for t in self.times.values()) / 3600

    def hours_by_mode(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, t in self.times.items():
            out[self.modes[key]] = out.get(self.modes[key], 0.0) + t.total / 3600
        return dict(sorted(out.items()))

    def hours_by_part(self) -> dict[str, float]:
        """Trial-hours in steps, evaluation passes and fixed costs."""
        parts = {"steps": 0.0, "evaluations": 0.0, "fixed": 0.0}
        for t in self.times.values():
            parts["steps"] += t.steps_s / 3600
            parts["evaluations"] += t.evals_s / 3600
            parts["fixed"] += t.fixed_s / 3600
        return parts


def estimate(
    trials: Sequence[PlannedTrial], cost: StepCost, slots: int, fixed_s: float = FIXED_TRIAL_S, **ray_costs: float
) -> Estimate:
    """Trial-hours and wall-clock of ``trials`` (those still to run) on ``slots`` with ``cost``;
    ``ray_costs``: start_s, stop_s, dispatch_s of ``wall_clock_seconds``."""
    times = {t.key: trial_seconds(t.config, cost, fixed_s) for t in trials}
    wall = wall_clock_seconds(trials, {k: v.total for k, v in times.items()}, slots, **ray_costs)
    return Estimate(times, {t.key: t.config.mode for t in trials}, slots, wall)


def local_slots(
    cpus: float, cpus_per_trial: float, gpus: float = 0.0, smallest_share: float = 0.0, concurrency: int | None = None
) -> int:
    """Trials at once on ``cpus`` and ``gpus`` (the runner's packing: by CPUs, and by GPU
    shares where trials ask for them), capped by ``concurrency``."""
    from fno_sweeps.runner import packed_slots  # Ray-free arithmetic, shared with the runner

    if cpus_per_trial <= 0:
        raise ValueError(f"--cpus-per-trial must be positive, got {cpus_per_trial}")
    slots = packed_slots(cpus, gpus, cpus_per_trial, smallest_share)
    return min(slots, concurrency) if concurrency else slots


def reference_gpu(trials: Sequence[PlannedTrial], gpus: int = 1, slots: int | None = None) -> Estimate:
    """The plan on ``gpus`` reference GPUs (``REFERENCE_GPU``) at their measured per-trial
    rate, REFERENCE_GPU_TRIALS trials per GPU at once (the condition it was measured in)
    unless ``slots`` says otherwise."""
    return estimate(trials, FlopRate(REFERENCE_GPU_RATE), slots or REFERENCE_GPU_TRIALS * gpus)


def duration_text(seconds: float) -> str:
    """Seconds as a readable duration: 42 s, 9.1 min, 3.4 h, 12 days, 2.3e+03 years."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.3g} years"


def hours_text(hours: float) -> str:
    """Trial-hours: thousands separators where large, 3 significant digits, <0.001 below that."""
    if hours >= 1000:
        return f"{hours:,.0f}"
    return f"{hours:.3g}" if hours >= 0.001 else "<0.001"
