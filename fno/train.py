"""One trial of the study: build an FNO, train it in one of four modes, return a result.

Modes:
- pretrain: random init, train on the (usually large) pre-training set, save a checkpoint.
- scratch:  random init, train on N downstream examples.
- finetune: load every pre-trained weight, train all of them on N downstream examples.
- zeroshot: evaluate the pre-trained model on the downstream test set, no training.

Training: Adam, cosine learning-rate decay over a step budget, MSE on normalised
targets, batch size capped by N. The metric is the per-sample relative L2 error
||pred - u|| / ||u|| averaged over a set; the best checkpoint is chosen by validation
error and the test error reported is that checkpoint's. A non-finite loss ends the
trial with status "diverged", not an exception.

Nothing here imports Ray: a sweep engine passes ``report`` to follow and stop a trial.
CLI: ``python -m fno.train --config trial.toml [--set key=value ...] --out DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fno.checks import check_choice, check_int
from fno.config import check_known_fields, load_toml, parse_overrides
from fno.data import MIN_RESOLUTION, DatasetSpec, Fields, Normalization, load_fields
from fno.data.external import DEFAULT_COORDS, DEFAULT_PADDING, ExternalDataset, load_split
from fno.metrics import band_errors, relative_l2, summarize
from fno.model import FNO2d, FNOConfig, check_modes, check_padding
from fno.provenance import code_version, library_versions, source_digest
from fno.storage import Location, location
from fno.vocabulary import FINETUNE_STRATEGIES, PRETRAINED_MODES, RANDOM_INIT_MODES, TRAINING_MODES

CHECKPOINT_FORMAT = "fno-scaling-checkpoint"
CHECKPOINT_VERSION = 2  # 2: the model config records padding and coords
READABLE_CHECKPOINT_VERSIONS = (1, 2)  # version 1 reads as padding 0, no coordinates

Report = Callable[[int, float, float, float], None]  # (step, epoch, train_loss, val_rel_l2)
RESUME_FORMAT = "fno-scaling-resume"
RESUME_VERSION = 1
# TrialConfig fields that say where and how a trial runs, not what it computes: a state
# saved under one device, thread count or GPU share resumes under another.
EXECUTION_FIELDS = ("device", "threads", "gpu_share")


class TrialTimeoutError(RuntimeError):
    """A trial ran past its time limit (``TrialControl.timeout_s``)."""


@dataclass(frozen=True)
class TrialControl:
    """How a trial survives the worker it runs on; none of it changes its result.

    resume_path: where the training state (weights, optimizer, schedule position, the
    shuffling generator, the validation curve and best weights so far) is saved, at an
    evaluation step at least ``save_every_s`` seconds after the last save, and resumed
    from when the trial starts again (a retry after a lost worker). A resumed trial
    takes exactly the steps an uninterrupted one would (same order, same updates).
    timeout_s: wall seconds from the trial's start after which it raises TrialTimeoutError
    (checked every step; None: no limit).
    """

    resume_path: str | None = None
    save_every_s: float = 300.0
    timeout_s: float | None = None


@dataclass(frozen=True)
class TrialConfig:
    """All that defines one trial. Validated on construction; loadable from TOML.

    Data: ``family``/``param_range`` are the training data's for pretrain and the
    downstream task's otherwise; n_train samples come from the train split (the first
    N: sets nest), n_val and n_test from their own splits.
    """

    mode: str = "scratch"
    family: str = "poisson"
    param_range: Any = None  # (lo, hi); {family: (lo, hi)} for the mixture; None: pre-training range
    n_train: int = 256
    n_val: int = 64
    n_test: int = 64
    resolution: int = 64
    data_seed: int = 0  # selects the data; the same for every trial of a study
    channels: str = "native"  # "union" to feed single-family data to a mixture-pretrained model
    # Model (pretrain and scratch; finetune and zeroshot take it from the checkpoint).
    width: int = 32
    modes: int = 8
    layers: int = 4
    # Optimisation.
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32  # capped by n_train
    # The budget: exactly one of steps and epochs. steps is a fixed count; epochs is the
    # paper's rule (a pass count, so the budget grows with N): steps = ceil(epochs * N /
    # min(batch_size, N)), clipped to [min_steps, max_steps]. The cosine schedule spans it.
    steps: int | None = None  # None with epochs None: DEFAULT_STEPS
    epochs: float | None = None
    min_steps: int | None = None  # epochs only: floor for tiny N (e.g. 8 samples, batch 8)
    max_steps: int | None = None  # epochs only: cap for huge N
    eval_every: int = 100  # steps between validation passes (and report calls); see eval_steps
    seed: int = 0  # model init and batch order
    pretrained: str | None = None  # checkpoint path: required for finetune and zeroshot
    # finetune only: which weights are trained (fno.vocabulary.FINETUNE_STRATEGIES);
    # "full" is the paper's. Other modes keep "full" (their weights are all trained).
    finetune_strategy: str = "full"
    # Test resolutions besides ``resolution`` (always evaluated): the model trained at
    # ``resolution`` is tested on the same test samples sampled on each of these grids.
    # For a dataset: labels of its test_resolutions (test sets of their own).
    eval_resolutions: tuple[int, ...] = ()
    # A dataset of the user's (fno.data.external): the record of the checked dataset
    # (ExternalDataset.to_dict(), with its digest and grid); family is then its name,
    # param_range a range of its param (None: every sample) and resolution its grid's
    # larger side. None: a built-in family.
    dataset: Any = None
    # The model's domain padding (a fraction of each axis) and coordinate channels (pretrain
    # and scratch; finetune and zeroshot take them from the checkpoint). None: the default
    # for the data, DEFAULT_PADDING and DEFAULT_COORDS for a dataset, none for the
    # periodic built-in families.
    padding: float | None = None
    coords: bool | None = None
    # Execution.
    device: str = "auto"  # auto: cuda if available, else cpu
    threads: int | None = None  # CPU threads for this trial; None leaves torch's default
    bf16: bool = False  # CUDA only: bf16 autocast for pointwise layers (FFTs stay float32)
    tf32: bool = False  # CUDA only: TF32 matmuls (the 1x1 layers, most FLOPs at large grids)
    # CUDA only: the share of the GPU this trial was given (a sweep's --gpus-per-trial);
    # the process is capped at it, so a trial that outgrows it fails alone, saying so.
    gpu_share: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.mode, "mode", TRAINING_MODES)
        check_choice(self.finetune_strategy, "finetune_strategy", FINETUNE_STRATEGIES)
        if self.mode != "finetune" and self.finetune_strategy != "full":
            raise ValueError(f"finetune_strategy applies to mode finetune; mode {self.mode} trains every weight")
        for name in ("n_train", "n_val", "n_test", "resolution", "width", "modes", "layers", "batch_size"):
            check_int(getattr(self, name), name)
        self._check_budget()
        check_int(self.eval_every, "eval_every")
        check_int(self.data_seed, "data_seed", minimum=0)
        check_int(self.seed, "seed", minimum=0)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            if self.lr <= 0:
                raise ValueError(f"lr must be > 0, got {self.lr!r}")
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.mode in RANDOM_INIT_MODES and self.pretrained:
            raise ValueError(f"mode {self.mode} starts from a random init; pretrained must be unset")
        if self.threads is not None:
            check_int(self.threads, "threads")
        for name in ("bf16", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        share = self.gpu_share
        if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1):
            raise ValueError(f"gpu_share must be a number in (0, 1], got {share!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}") from None
        self._check_dataset()  # before the grid checks: a dataset sets the grid
        self._check_eval_resolutions()
        if self.mode in RANDOM_INIT_MODES:
            check_modes(self.modes, *self.grid)
            for resolution in self.eval_resolutions:
                try:
                    check_modes(self.modes, *self.grid_at(resolution))
                except ValueError as err:
                    raise ValueError(f"eval_resolutions: {err}") from None
        if self.dataset is None:
            self.data_spec("train")  # validates family, param_range, channels

    def _check_dataset(self) -> None:
        """Validate ``dataset`` (kept as its plain record) and resolve padding and coords."""
        external = self.dataset is not None
        if external:
            ds = self.dataset if isinstance(self.dataset, ExternalDataset) else None
            if ds is None:
                if not isinstance(self.dataset, Mapping):
                    raise ValueError(f"dataset must be a checked dataset's record (a table), got {self.dataset!r}")
                ds = ExternalDataset.from_record(self.dataset)
            if not ds.checked:
                raise ValueError(f"dataset {ds.name}: a trial needs the checked record (fno.data.external.check)")
            if self.family != ds.name:
                raise ValueError(f"family must be the dataset's name {ds.name!r}, got {self.family!r}")
            if self.channels != "native":
                raise ValueError(f"channels applies to the built-in families; dataset {ds.name} keeps its own")
            if self.param_range is not None:
                if ds.param is None:
                    raise ValueError(f"param_range: dataset {ds.name} has no param to select samples by; leave it out")
                try:
                    lo, hi = (float(v) for v in self.param_range)
                except (TypeError, ValueError):
                    raise ValueError(f"param_range must be a pair [lo, hi], got {self.param_range!r}") from None
                if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                    raise ValueError(f"param_range must be finite with lo <= hi, got [{lo}, {hi}]")
                object.__setattr__(self, "param_range", (lo, hi))
            object.__setattr__(self, "dataset", ds.to_dict())
            object.__setattr__(self, "resolution", ds.resolution)
        padding = (DEFAULT_PADDING if external else 0.0) if self.padding is None else self.padding
        object.__setattr__(self, "padding", check_padding(padding))
        coords = (DEFAULT_COORDS if external else False) if self.coords is None else self.coords
        if not isinstance(coords, bool):
            raise ValueError(f"coords must be true or false, got {coords!r}")
        object.__setattr__(self, "coords", coords)

    @property
    def external(self) -> ExternalDataset | None:
        """The dataset of a dataset trial; None for a built-in family."""
        return None if self.dataset is None else ExternalDataset.from_record(self.dataset)

    @property
    def grid(self) -> tuple[int, int]:
        """(H, W) of the training grid."""
        return tuple(self.dataset["grid"]) if self.dataset is not None else (self.resolution, self.resolution)

    def grid_at(self, resolution: int) -> tuple[int, int]:
        """(H, W) of the test grid labelled ``resolution``."""
        if self.dataset is None:
            return (resolution, resolution)
        if resolution == self.resolution:
            return self.grid
        return tuple(self.dataset["test_grids"][str(resolution)])

    @property
    def in_channels(self) -> int:
        """Input channels of the data (the model's in_channels)."""
        if self.dataset is not None:
            return len(self.dataset["channel_names"])
        return len(self.data_spec("train").channel_names)

    @property
    def param_bounds(self) -> tuple[float, float]:
        """(lo, hi) of the data's parameter range; NaN for the mixture and a dataset's every sample."""
        if self.dataset is not None:
            return tuple(self.param_range) if self.param_range is not None else (math.nan, math.nan)
        return self.data_spec("train").ranges if self.family != "mixture" else (math.nan, math.nan)

    def _check_eval_resolutions(self) -> None:
        value = self.eval_resolutions
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise ValueError(f"eval_resolutions must be a list of grid sizes, got {value!r}")
        object.__setattr__(self, "eval_resolutions", tuple(value))
        if self.dataset is not None:
            offered = sorted(int(k) for k in self.dataset["test_resolutions"])
            extra = [r for r in self.eval_resolutions if r not in offered and r != self.resolution]
            if extra:
                raise ValueError(
                    f"eval_resolutions {extra}: dataset {self.family} has test sets at {offered or 'none'} (its "
                    "test_resolutions) besides its own grid"
                )
            return
        for resolution in self.eval_resolutions:
            if (
                isinstance(resolution, bool)
                or not isinstance(resolution, int)
                or resolution < MIN_RESOLUTION
                or resolution % 2
            ):
                raise ValueError(f"eval_resolutions must be even integers >= {MIN_RESOLUTION}, got {resolution!r}")

    @property
    def test_resolutions(self) -> tuple[int, ...]:
        """The resolutions the trained model is tested at: its own first, then the others ascending."""
        return (self.resolution, *sorted(set(self.eval_resolutions) - {self.resolution}))

    def check_checkpoint(self) -> None:
        """Refuse a fine-tune or zero-shot trial without a checkpoint path. Not checked on
        construction: a sweep plans such trials before their pre-training exists (the
        planned trial holds the dependency) and sets the path when it submits them."""
        if self.mode in PRETRAINED_MODES and not self.pretrained:
            raise ValueError(f"mode {self.mode} needs pretrained = path of a pre-training checkpoint")

    def _check_budget(self) -> None:
        if self.steps is not None and self.epochs is not None:
            raise ValueError(
                f"give exactly one of steps and epochs as the budget, got steps={self.steps} and epochs={self.epochs}"
            )
        if self.steps is not None:
            check_int(self.steps, "steps", minimum=0 if self.mode == "zeroshot" else 1)
            for name in ("min_steps", "max_steps"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to an epochs budget only; with steps={self.steps} leave it unset")
            return
        if self.epochs is not None:
            value = self.epochs
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ValueError(f"epochs must be a finite number > 0, got {value!r}")
        for name in ("min_steps", "max_steps"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name)
        if self.min_steps is not None and self.max_steps is not None and self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) > max_steps ({self.max_steps})")

    @property
    def batch(self) -> int:
        """The batch size used: batch_size capped by n_train (the paper's min(128, N))."""
        return min(self.batch_size, self.n_train)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of this trial's budget (0 for zero-shot)."""
        if self.mode == "zeroshot":
            return 0
        if self.steps is not None:
            return self.steps
        if self.epochs is None:
            return DEFAULT_STEPS
        return budget_steps(self.epochs, self.n_train, self.batch_size, self.min_steps, self.max_steps)

    def eval_steps(self) -> list[int]:
        """Steps after which the validation error is measured: every eval_every steps, and
        always at 80%, 90% and 100% of the budget (the under-training diagnostic reads those)."""
        total = self.total_steps
        if total == 0:
            return []
        marks = set(range(self.eval_every, total + 1, self.eval_every))
        marks.update(max(1, math.ceil(f * total)) for f in (0.8, 0.9, 1.0))
        return sorted(marks)

    def data_spec(self, split: str, resolution: int | None = None) -> DatasetSpec:
        """The spec of a split, on the training grid or on ``resolution`` (same samples)."""
        if self.dataset is not None:
            raise ValueError(f"{self.family} is a dataset, not a built-in family: it has no DatasetSpec")
        n = {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]
        grid = self.resolution if resolution is None else resolution
        return DatasetSpec(self.family, self.param_range, n, grid, self.data_seed, split, self.channels)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.dataset is None:
            out["param_range"] = self.data_spec("train").stream()["param_range"]
        elif self.param_range is not None:
            out["param_range"] = list(self.param_range)
        out["eval_resolutions"] = list(self.eval_resolutions)  # lists, like TOML's (Tune logs no tuples)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        check_known_fields(cls, data, "TrialConfig")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrialConfig:
        return cls.from_dict(load_toml(path))


DEFAULT_STEPS = 1000  # a trial that names neither steps nor epochs


def budget_steps(
    epochs: float, n_train: int, batch_size: int, min_steps: int | None = None, max_steps: int | None = None
) -> int:
    """Steps of an epoch budget: ceil(epochs * N / min(batch_size, N)), clipped to
    [min_steps, max_steps]. The paper: 500 epochs at batch min(128, N), so N = 8 takes
    500 steps and N = 32,768 takes 128,000."""
    steps = math.ceil(epochs * n_train / min(batch_size, n_train) - 1e-9)
    if min_steps is not None:
        steps = max(steps, min_steps)
    if max_steps is not None:
        steps = min(steps, max_steps)
    return max(steps, 1)


@dataclass
class TrialResult:
    """What one trial produced; fields follow the results schema (fno.results.SCHEMA)."""

    mode: str
    status: str  # ok | diverged
    val_rel_l2: float  # best validation error (nan if never evaluated)
    test_rel_l2: float  # test error of the best-validation checkpoint
    train_loss: float  # mean training loss over the last evaluation interval
    steps: int  # optimizer steps taken
    epochs: float  # steps * batch_size / n_train
    best_step: int  # the step of the best validation error (whose checkpoint is kept)
    batch_size: int
    n_params: int
    flops_per_sample: float
    wall_s: float
    train_s: float
    samples_per_s: float  # training samples per second of train_s
    device: str
    node: str
    started_at: str
    code_version: str  # package version + source digest (fno.provenance)
    n_trainable: int = 0  # parameters the trial trained (the strategy's; 0 for zero-shot)
    finetune_strategy: str = ""  # the fine-tuning strategy; "" for other modes
    gpu_name: str = ""  # torch.cuda.get_device_name; "" on CPU
    gpu_share: float = 0.0  # the share of that GPU the trial was capped at; 0 on CPU
    bf16: bool = False  # bf16 autocast was on (CUDA only)
    tf32: bool = False  # TF32 matmuls were on (CUDA only)
    error: str = ""
    checkpoint: str = ""
    resumed_step: int = 0  # the step this run resumed from (TrialControl.resume_path); 0 from the start
    # The data and the model's input side (``data_columns``): a dataset's content digest
    # ("" for a built-in family), the training grid, how a dataset's splits were made,
    # the model's padding and coordinates, and the layers a fine-tune replaced to fit
    # the data's channels ("lift", "projection", "lift,projection" or "").
    dataset_digest: str = ""
    grid_h: int = 0
    grid_w: int = 0
    split_rule: str = ""
    padding: float = 0.0
    coords: bool = False
    adapted_layers: str = ""
    # The test error (rel L2, training resolution) of predicting every test sample by the mean
    # of the training targets: a trivial predictor the model must beat (predicting zero
    # scores 1.0). NaN for zero-shot, which has no training set of its own.
    mean_field_rel_l2: float = math.nan
    source_digest: str = ""  # fno.provenance.source_digest of the code that ran
    torch_version: str = ""
    cuda_version: str = ""
    # The validation curve: the error after each evaluated step (always 80%, 90%, 100%).
    eval_steps: list[int] = dataclasses.field(default_factory=list)
    eval_val_rel_l2: list[float] = dataclasses.field(default_factory=list)
    # The test evaluations of the best checkpoint (fno.results.EVALUATION_SCHEMA rows
    # without the key): every metric at every test resolution, the training one first.
    evaluations: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | os.PathLike | Location, model: FNO2d, norm: Normalization, config: TrialConfig, **extra
) -> None:
    """One self-describing dict: rebuilds the model and its normalisation; atomic write."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "code_version": code_version(),
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalization": norm.to_dict(),
        "data_spec": config.data_spec("train").to_dict()
        if config.dataset is None
        else {"family": config.family, "dataset": config.dataset, "param_range": config.to_dict()["param_range"]},
        "trial_config": config.to_dict(),
        **extra,
    }
    location(path).write(lambda fh: torch.save(checkpoint, fh))


def load_checkpoint(path: str | os.PathLike | Location) -> tuple[FNO2d, Normalization, dict[str, Any]]:
    """(model on CPU, normalisation, the checkpoint dict); loaded with weights_only=True."""
    path = location(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} not found")
    try:
        source = path.local if path.is_local else io.BytesIO(path.read_bytes())
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged or foreign file
        raise ValueError(f"{path} is not a readable checkpoint: {type(err).__name__}: {err}") from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an fno-scaling checkpoint")
    if checkpoint.get("version") not in READABLE_CHECKPOINT_VERSIONS:
        raise ValueError(
            f"{path}: checkpoint version {checkpoint.get('version')}, this code reads "
            f"{', '.join(map(str, READABLE_CHECKPOINT_VERSIONS))}"
        )
    model = FNO2d.from_config(FNOConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model, Normalization.from_dict(checkpoint["normalization"]), checkpoint


def check_compatible(norm: Normalization, model: FNO2d, fields: Fields, path: str) -> None:
    """Refuse downstream data that the pre-trained model cannot read, saying what differs."""
    have, want = tuple(fields.channel_names), tuple(norm.channel_names)
    if have != want:
        hint = " (use channels = 'union' for a mixture-pretrained model)" if len(want) == 8 else ""
        raise ValueError(
            f"checkpoint {path} was trained on channels {list(want)} ({len(want)}); "
            f"the downstream data has {list(have)} ({len(have)}){hint}"
        )
    check_modes(model.config.modes, *fields.source.shape[-2:])


def check_layout(norm: Normalization, model: FNO2d, fields: Fields, path: str) -> None:
    """Refuse data whose channel counts the pre-trained model cannot read as it is (zero-shot
    across datasets: the layouts must match; a sweep plans it only where they do)."""
    want, have = (model.config.in_channels, model.config.out_channels), (len(fields.channel_names), fields.out_channels)
    if want != have:
        raise ValueError(
            f"checkpoint {path} reads {want[0]} input and writes {want[1]} output channels; the data has {have[0]} "
            f"and {have[1]}: zero-shot needs matching layouts (fine-tune instead: it replaces the lift or projection)"
        )
    check_modes(model.config.modes, *fields.source.shape[-2:])


def adapt_to(
    model: FNO2d,
    norm: Normalization,
    train: Fields,
    seed: int,
    padding: float | None = None,
    coords: bool | None = None,
    same_data: bool = True,
) -> tuple[Normalization, str]:
    """Fit a pre-trained model to ``train`` for fine-tuning: a fresh lifting layer where the
    input channels differ in count or ``coords`` differs from the model's, a fresh output
    projection where the output channels differ (``FNO2d.adapt_channels``, seeded), the
    Fourier layers kept; ``padding`` (None: the model's) replaces the model's, which no
    weight depends on. Normalisation: with ``same_data`` (the checkpoint was trained on
    this dataset) a replaced side is refitted on ``train`` and the other keeps the
    checkpoint's, which its weights were trained with; otherwise both are refitted (the
    checkpoint's statistics describe other data: a Poisson model's target scale is not a
    Darcy set's, and its weights expect unit-scale inputs and outputs). Returns
    (normalisation, the replaced layers as "lift", "projection", "lift,projection" or "")."""
    replaced = model.adapt_channels(len(train.channel_names), train.out_channels, seed, coords=coords)
    if padding is not None:
        model.config = dataclasses.replace(model.config, padding=check_padding(padding))
    if replaced or not same_data:
        fitted = Normalization.fit(train)
        if "lift" in replaced or not same_data:
            norm = norm.with_inputs_of(fitted)
        if "projection" in replaced or not same_data:
            norm = norm.with_targets_of(fitted)
    check_modes(model.config.modes, *train.source.shape[-2:])
    return norm, ",".join(replaced)


def data_columns(config: TrialConfig) -> dict[str, Any]:
    """The results columns (fno.results.SCHEMA) that describe a trial's data and the model's
    input side, as planned (a finished trial's result replaces padding, coords and
    adapted_layers by the model's own)."""
    ds = config.dataset
    return {
        "dataset_digest": ds["digest"] if ds else "",
        "grid_h": config.grid[0],
        "grid_w": config.grid[1],
        "split_rule": ds["split_rule"] if ds else "",
        "padding": config.padding,
        "coords": config.coords,
        "adapted_layers": "",
    }


# ----------------------------------------------------------------------- training


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name} requested but CUDA is not available")
    return device


@torch.no_grad()
def per_sample_errors(
    model: FNO2d, norm: Normalization, fields: Fields, batch_size: int, autocast: bool = False, bands: bool = False
) -> torch.Tensor:
    """Per-sample relative L2 errors of the de-normalised prediction on ``fields``: (n,),
    or with ``bands`` (n, 4): relative L2, then the low, mid and high band errors
    (fno.metrics). On the fields' device; no host sync."""
    model.eval()
    out = []
    for lo in range(0, len(fields), batch_size):
        index = slice(lo, lo + batch_size)
        x = norm.normalize_inputs(fields.inputs(index))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            pred = norm.denormalize_targets(model(x).float())
        target = fields.targets(index)
        rel = relative_l2(pred, target)
        out.append(torch.cat([rel[:, None], band_errors(pred, target)], dim=1) if bands else rel)
    model.train()
    return torch.cat(out)


def evaluate(model: FNO2d, norm: Normalization, fields: Fields, batch_size: int, autocast: bool = False) -> float:
    """Mean per-sample relative L2 error on ``fields``; one host sync however many batches."""
    return per_sample_errors(model, norm, fields, batch_size, autocast).mean().item()


def mean_field_error(train: Fields, test: Fields) -> float:
    """Mean per-sample relative L2 error on ``test`` of the trivial predictor that answers
    every sample with the mean of the training targets (a (1, n, n) field)."""
    mean_target = train.targets().mean(dim=0, keepdim=True).to(test.targets().device)  # (1, 1, n, n)
    return relative_l2(mean_target.expand_as(test.targets()), test.targets()).mean().item()


def test_metrics(
    model: FNO2d, norm: Normalization, tests: Mapping[int, Fields], batch_size: int, autocast: bool = False
) -> list[dict[str, Any]]:
    """The evaluation rows of a trained model: {resolution, metric, value} for every test
    set (resolution -> fields) and every metric of fno.metrics.EVAL_METRICS."""
    rows = []
    for resolution, fields in tests.items():
        metrics = summarize(per_sample_errors(model, norm, fields, batch_size, autocast, bands=True))
        rows += [{"resolution": resolution, "metric": name, "value": value} for name, value in metrics.items()]
    return rows


def _cosine_lr(step: int, total: int, base: float) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / total))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, fused into one kernel where this torch and device have it (CPU needs torch >= 2.4).

    Fused and for-each Adam compute the same update; fused took the optimizer step at
    w64-m16 on CPU from about 25 ms to about 7 ms (benchmarks/bench_model.py uses this too).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]  # a frozen part is not optimised
    try:
        return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # fused Adam not built for this device or dtype
        return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)


def configure_cuda(config: TrialConfig, device: torch.device) -> str:
    """Set this process's CUDA options for ``config`` and return the GPU's name ("" on CPU).

    TF32 is set both ways (a reused worker process must not inherit the last trial's),
    and with ``gpu_share`` the process's allocator is capped at that share of the GPU.
    """
    if device.type != "cuda":
        return ""
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.backends.cuda.matmul.allow_tf32 = config.tf32
    torch.backends.cudnn.allow_tf32 = config.tf32
    torch.cuda.set_per_process_memory_fraction(config.gpu_share or 1.0, index)
    return torch.cuda.get_device_name(index)


@dataclass
class BestWeights:
    """The best validation error so far, its step and a host copy of its weights (host
    memory: the device keeps only the live model)."""

    val_rel_l2: float = math.inf
    step: int = 0
    state: dict[str, torch.Tensor] | None = None

    def offer(self, val_rel_l2: float, step: int, model: torch.nn.Module) -> None:
        if val_rel_l2 < self.val_rel_l2:
            self.val_rel_l2, self.step = val_rel_l2, step
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _epoch_order(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A shuffled order of n samples, drawn on the host (the same on every device) and
    sent in one asynchronous copy per epoch from pinned memory."""
    order = torch.randperm(n, generator=generator)
    if device.type == "cuda":
        return order.pin_memory().to(device, non_blocking=True)
    return order


def run_trial(
    config: TrialConfig,
    report: Report | None = None,
    out_dir: str | os.PathLike | None = None,
    control: TrialControl | None = None,
) -> TrialResult:
    """Run one trial; write ``checkpoint.pt`` (pretrain, scratch, finetune) under ``out_dir``.

    ``control``: resume state and time limit (TrialControl); the resume file is removed
    once the trial has its result.

    On CUDA, a trial that runs out of memory raises RuntimeError naming its share, and
    the memory it held is returned to the device either way.
    """
    config.check_checkpoint()
    device = resolve_device(config.device)
    try:
        return _run_trial(config, device, report, out_dir, control or TrialControl())
    except torch.cuda.OutOfMemoryError as err:
        cap = torch.cuda.get_device_properties(device).total_memory * (config.gpu_share or 1.0)
        raise RuntimeError(
            f"out of GPU memory within this trial's share ({config.gpu_share or 1.0:g} of the GPU, "
            f"{cap / 2**30:.1f} GiB): ask for a larger --gpus-per-trial, or a smaller batch ({err})"
        ) from None
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # a reused worker starts its next trial with the memory free


@dataclass
class _Prepared:
    """Phase 1's output: the model and normalisation, and the data, on the trial's device
    (train and val are None for zero-shot)."""

    model: FNO2d
    norm: Normalization
    train: Fields | None
    val: Fields | None
    tests: dict[int, Fields]  # resolution -> the test set on that grid, the training one first
    adapted_layers: str = ""  # what a fine-tune replaced to fit the data's channels (adapt_to)

    @property
    def device(self) -> torch.device:
        return next(iter(self.tests.values())).source.device


def load_data(
    config: TrialConfig, split: str, resolution: int | None = None, device: torch.device | None = None
) -> Fields:
    """A split of the trial's data (a built-in family's through the cache, a dataset's
    samples read from its files), on the training grid or the test grid ``resolution``."""
    if config.dataset is None:
        return load_fields(config.data_spec(split, resolution), device=device)
    fields = load_split(
        config.dataset, split, config.n_train, config.n_val, config.n_test, config.data_seed, config.param_range,
        resolution,
    )  # fmt: skip
    return fields.to(device) if device is not None else fields


def _prepare(config: TrialConfig, device: torch.device) -> _Prepared:
    """Phase 1: the checkpoint (read first: a bad one fails before any data is made), the
    data, the normalisation (fitted on the host) and the model, on ``device``. Where the
    checkpoint or the data is a dataset's, channel layouts are matched by count, and a
    fine-tune adapts the model to the data's (``adapt_to``)."""
    external = config.dataset is not None
    if config.mode in PRETRAINED_MODES:
        model, norm, checkpoint = load_checkpoint(config.pretrained)
        external = external or (checkpoint.get("trial_config") or {}).get("dataset") is not None
        for resolution in config.test_resolutions:  # before any data is made
            check_modes(model.config.modes, *config.grid_at(resolution))
    tests = {r: load_data(config, "test", r, device) for r in config.test_resolutions}
    if config.mode == "zeroshot":
        check = check_layout if external else check_compatible
        check(norm, model, tests[config.resolution], config.pretrained)
        return _Prepared(model.to(device), norm, None, None, tests)
    train = load_data(config, "train")  # on the host: normalisation is fitted there
    val = load_data(config, "val", device=device)
    adapted = ""
    if config.mode == "finetune":
        if external:
            trained_on = (checkpoint.get("trial_config") or {}).get("family")
            norm, adapted = adapt_to(
                model, norm, train, config.seed, config.padding, config.coords, same_data=trained_on == config.family
            )
        else:
            check_compatible(norm, model, train, config.pretrained)
        model.freeze_for(config.finetune_strategy)
    else:
        norm = Normalization.fit(train)
        torch.manual_seed(config.seed)
        model = FNO2d(
            len(train.channel_names), train.out_channels, config.width, config.modes, config.layers, config.padding,
            config.coords,
        )  # fmt: skip
    return _Prepared(model.to(device), norm, train.to(device), val, tests, adapted)


@dataclass
class _Trained:
    """Phase 2's output."""

    status: str  # ok | diverged
    error: str
    steps: int
    train_loss: float  # mean over the last evaluation interval
    train_s: float
    best: BestWeights
    eval_steps: list[int]  # the validation curve, for the under-training diagnostic
    eval_val_rel_l2: list[float]
    resumed_step: int = 0  # the step a saved state resumed this run from


def _save_resume(
    path: str,
    config: TrialConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    order: torch.Tensor,
    cursor: int,
    out: _Trained,
    train_s: float,
) -> None:
    """The loop's whole state at an evaluation step (the interval's loss sum is zero
    there), written atomically: a worker lost while writing leaves the last save."""
    state = {
        "format": RESUME_FORMAT,
        "version": RESUME_VERSION,
        "trial_config": _resume_identity(config),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(optimizer.state_dict()),
        "generator": generator.get_state(),
        "order": order.cpu(),
        "cursor": cursor,
        "steps": out.steps,
        "train_loss": out.train_loss,
        "eval_steps": list(out.eval_steps),
        "eval_val_rel_l2": list(out.eval_val_rel_l2),
        "best_val_rel_l2": out.best.val_rel_l2,
        "best_step": out.best.step,
        "best_state": out.best.state,
        "train_s": train_s,
    }
    location(path).write(lambda fh: torch.save(state, fh))


def _to_cpu(value: Any) -> Any:
    """``value`` (an optimizer's state dict) with every tensor copied to the host."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _resume_identity(config: TrialConfig) -> str:
    """What a resume state must match: the trial's config without EXECUTION_FIELDS."""
    fields = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}
    return json.dumps(fields, sort_keys=True)


def _load_resume(path: str | None, config: TrialConfig) -> dict[str, Any] | None:
    """The saved state at ``path`` if there is one for this very trial, else None (a state
    of another configuration, or an unreadable file, is ignored with a warning: the trial
    starts over)."""
    if not path or not location(path).is_file():
        return None
    target = location(path)
    try:
        source = target.local if target.is_local else io.BytesIO(target.read_bytes())
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        print(f"[fno] resume state {path} unreadable ({type(err).__name__}): starting over", file=sys.stderr)
        return None
    if state.get("format") != RESUME_FORMAT or state.get("version") != RESUME_VERSION:
        print(f"[fno] {path} is not a resume state of this version: starting over", file=sys.stderr)
        return None
    if state["trial_config"] != _resume_identity(config):
        print(f"[fno] resume state {path} belongs to another configuration: starting over", file=sys.stderr)
        return None
    return state


def _train(
    config: TrialConfig, run: _Prepared, autocast: bool, report: Report | None, control: TrialControl, started: float
) -> _Trained:
    """Phase 2: the optimisation loop, evaluating at ``config.eval_steps()``.

    No host sync between evaluations: the order is sent once per epoch, the
    normalisation's tensors are cached on the device, and the loss is summed on the
    device and read (and checked for divergence) only at evaluations. With
    ``control.resume_path``, the loop's state is saved at evaluations and a saved state
    is resumed; ``started`` (perf_counter) is when the trial began, for its time limit.
    """
    model, norm, train, device = run.model, run.norm, run.train, run.device
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    order = _epoch_order(config.n_train, generator, device)
    batch_size, total = config.batch, config.total_steps
    evaluate_at = set(config.eval_steps())
    out = _Trained("ok", "", 0, math.nan, 0.0, BestWeights(), [], [])
    cursor, last_eval, interval_steps = 0, 0, 0
    train_s_before = 0.0  # training seconds of the runs this one resumes
    state = _load_resume(control.resume_path, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        order, cursor = state["order"].to(device), state["cursor"]
        out.steps, out.train_loss, last_eval = state["steps"], state["train_loss"], state["steps"]
        out.eval_steps, out.eval_val_rel_l2 = list(state["eval_steps"]), list(state["eval_val_rel_l2"])
        out.best = BestWeights(state["best_val_rel_l2"], state["best_step"], state["best_state"])
        out.resumed_step, train_s_before = state["steps"], state["train_s"]
    interval_loss = torch.zeros((), device=device)
    deadline = started + control.timeout_s if control.timeout_s else math.inf
    loop_started = last_save = time.perf_counter()
    model.train()
    while out.steps < total:
        if time.perf_counter() > deadline:
            raise TrialTimeoutError(
                f"trial ran past its time limit of {control.timeout_s:.0f} s at step {out.steps} of {total} "
                "(--trial-timeout)"
            )
        if cursor + batch_size > config.n_train:  # new epoch: reshuffle
            order, cursor = _epoch_order(config.n_train, generator, device), 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        x = norm.normalize_inputs(train.inputs(index))
        y = norm.normalize_targets(train.targets(index))
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(out.steps, total, config.lr)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = F.mse_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        out.steps += 1
        interval_loss += loss.detach()
        interval_steps += 1
        if out.steps in evaluate_at:
            out.train_loss = interval_loss.item() / interval_steps  # the interval's one host sync
            if not math.isfinite(out.train_loss):
                out.status, out.error = (
                    "diverged",
                    f"non-finite training loss between steps {last_eval} and {out.steps}",
                )
                break
            interval_loss.zero_()
            interval_steps, last_eval = 0, out.steps
            val_err = evaluate(model, norm, run.val, config.batch_size, autocast)
            out.eval_steps.append(out.steps)
            out.eval_val_rel_l2.append(val_err)
            out.best.offer(val_err, out.steps, model)
            if control.resume_path and out.steps < total and time.perf_counter() - last_save >= control.save_every_s:
                train_s = train_s_before + time.perf_counter() - loop_started
                _save_resume(control.resume_path, config, model, optimizer, generator, order, cursor, out, train_s)
                last_save = time.perf_counter()
            if report is not None:
                report(out.steps, out.steps * batch_size / config.n_train, out.train_loss, val_err)
    out.train_s = train_s_before + time.perf_counter() - loop_started
    if out.status == "ok" and not math.isfinite(out.best.val_rel_l2):
        out.status, out.error = "diverged", "validation error was never finite"
    return out


def _run_trial(
    config: TrialConfig,
    device: torch.device,
    report: Report | None,
    out_dir: str | os.PathLike | None,
    control: TrialControl,
) -> TrialResult:
    """The phases: set up the device, prepare (``_prepare``), train (``_train``), then test
    the best checkpoint and save it."""
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    gpu_name = configure_cuda(config, device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    run = _prepare(config, device)
    autocast = config.bf16 and device.type == "cuda"
    common = {
        "mode": config.mode,
        "batch_size": config.batch,
        "n_params": run.model.config.n_params,
        "flops_per_sample": run.model.config.flops_per_sample(config.resolution),
        "n_trainable": 0
        if config.mode == "zeroshot"
        else sum(p.numel() for p in run.model.parameters() if p.requires_grad),
        "finetune_strategy": config.finetune_strategy if config.mode == "finetune" else "",
        "device": str(device),
        "gpu_name": gpu_name,
        "gpu_share": (config.gpu_share or 1.0) if device.type == "cuda" else 0.0,
        "bf16": autocast,
        "tf32": config.tf32 and device.type == "cuda",
        "node": platform.node(),
        "started_at": started_at,
        "code_version": code_version(),
        "source_digest": source_digest(),
        **library_versions(),
        **data_columns(config),
        "padding": run.model.config.padding,  # the model's own (a checkpoint's for finetune and zeroshot)
        "coords": run.model.config.coords,
        "adapted_layers": run.adapted_layers,
    }
    if config.mode == "zeroshot":
        evaluations = test_metrics(run.model, run.norm, run.tests, config.batch_size, autocast)
        return TrialResult(
            status="ok",
            val_rel_l2=math.nan,
            test_rel_l2=evaluations[0]["value"],  # rel_l2 at the training resolution
            evaluations=evaluations,
            train_loss=math.nan,
            steps=0,
            epochs=0.0,
            best_step=0,
            wall_s=time.perf_counter() - started,
            train_s=0.0,
            samples_per_s=0.0,
            **common,
        )
    mean_field = mean_field_error(run.train, run.tests[config.resolution])
    trained = _train(config, run, autocast, report, control, started)
    best, test_err, checkpoint, evaluations = trained.best, math.nan, "", []
    if trained.status == "ok":
        run.model.load_state_dict(best.state)
        evaluations = test_metrics(run.model, run.norm, run.tests, config.batch_size, autocast)
        test_err = evaluations[0]["value"]  # rel_l2 at the training resolution
        if out_dir is not None:
            checkpoint = str(location(out_dir) / "checkpoint.pt")
            save_checkpoint(checkpoint, run.model, run.norm, config, best_step=best.step, val_rel_l2=best.val_rel_l2)
    result = TrialResult(
        status=trained.status,
        val_rel_l2=best.val_rel_l2 if math.isfinite(best.val_rel_l2) else math.nan,
        test_rel_l2=test_err,
        train_loss=trained.train_loss,
        steps=trained.steps,
        epochs=trained.steps * config.batch / config.n_train,
        best_step=best.step,
        wall_s=time.perf_counter() - started,
        train_s=trained.train_s,
        samples_per_s=trained.steps * config.batch / max(trained.train_s, 1e-9),
        error=trained.error,
        checkpoint=checkpoint,
        eval_steps=trained.eval_steps,
        eval_val_rel_l2=trained.eval_val_rel_l2,
        evaluations=evaluations,
        mean_field_rel_l2=mean_field,
        resumed_step=trained.resumed_step,
        **common,
    )
    if control.resume_path and location(control.resume_path).is_file():  # the result supersedes it
        location(control.resume_path).delete()
    return result


# ---------------------------------------------------------------------------- CLI


# TrialConfig fields with a flag of their own (any field: --set KEY=VALUE), and their types.
CLI_FIELDS: dict[str, type] = {
    "mode": str,
    "family": str,
    "pretrained": str,
    "device": str,
    "n_train": int,
    "steps": int,
    "epochs": float,
    "width": int,
    "modes": int,
    "resolution": int,
    "seed": int,
    "threads": int,
    "lr": float,
}


def dataset_fields(fields: Mapping[str, Any], datasets: Path | None, shift: str | None) -> dict[str, Any]:
    """The TrialConfig fields that make ``fields`` a dataset trial: where ``family`` names a
    dataset of the TOML file ``datasets``, its checked record (and with ``shift`` that
    shift's param range); {} for a built-in family."""
    from fno.data.external import Plan, check
    from fno.physics.families import FAMILIES

    family = fields.get("family", "poisson")
    tables = load_toml(datasets).get("datasets", {}) if datasets is not None else {}
    if family not in tables:
        if shift is not None:
            raise ValueError(f"--shift applies to a dataset; {family} is not one of --datasets {datasets}")
        if datasets is not None and family not in FAMILIES:
            raise ValueError(f"--family {family}: no [datasets.{family}] in {datasets} (it has {sorted(tables)})")
        return {}
    ds = ExternalDataset.from_dict(family, tables[family])
    defaults = TrialConfig.__dataclass_fields__
    plan = Plan(*(int(fields.get(k, defaults[k].default)) for k in ("n_train", "n_val", "n_test")),
                shifts=(shift or ds.shift_names[0],), data_seeds=(int(fields.get("data_seed", 0)),))  # fmt: skip
    checked = check(ds, plan)
    out: dict[str, Any] = {"dataset": checked.to_dict()}
    if "param_range" not in fields:
        out["param_range"] = checked.shift_range(shift or checked.shift_names[0])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fno.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="TOML file of TrialConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field")
    for name, kind in CLI_FIELDS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind)
    parser.add_argument(
        "--datasets",
        type=Path,
        help="TOML file with [datasets.NAME] tables (a preset works): --family NAME then trains on that dataset",
    )
    parser.add_argument("--shift", help="a dataset's shift (its shifts table): the param range to use")
    parser.add_argument("--out", type=Path, required=True, help="folder for result.json and checkpoint.pt")
    args = parser.parse_args(argv)
    try:
        fields: dict[str, Any] = {}
        if args.config:
            fields.update(load_toml(args.config))
        for name in CLI_FIELDS:
            value = getattr(args, name)
            if value is not None:
                fields[name] = value
        fields.update(parse_overrides(args.set))
        fields.update(dataset_fields(fields, args.datasets, args.shift))
        config = TrialConfig.from_dict(fields)
        config.check_checkpoint()
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def progress(step: int, epoch: float, train_loss: float, val: float) -> None:
        print(f"step {step:6d}  epoch {epoch:7.2f}  train loss {train_loss:.3e}  val rel L2 {val:.4f}", flush=True)

    print(f"{config.mode} {config.family} n_train={config.n_train} on {resolve_device(config.device)}", flush=True)
    try:
        result = run_trial(config, progress, args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(
        json.dumps({"config": config.to_dict(), "result": result.to_dict()}, indent=1)
    )
    print(
        f"{result.status}: test rel L2 {result.test_rel_l2:.4f} (best val {result.val_rel_l2:.4f} at step "
        f"{result.best_step}), {result.train_s:.1f} s training; wrote {args.out / 'result.json'}"
    )
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
