"""How much accelerator memory one trial needs: the rule GPU shares follow.

Units and conventions: every size is in bytes (``GiB`` in messages is 2**30 bytes);
float32 throughout (``--bf16`` autocast only lowers the true need, so the rule errs high
there). A trial trains at batch
``config.batch`` = min(batch_size, N) but evaluates at batch ``config.batch_size``
capped by the evaluated set (n_val, n_test): ``fno.train.per_sample_errors`` slices the
set in steps of ``batch_size``, so a small-N trial of a large-batch preset evaluates at
a much larger batch than it trains at.

A trial holds on its device for its whole run:
- the parameters, their gradients and Adam's two moments: 16 bytes per parameter
  (the best weights so far are copied to host memory, not kept on the device);
- the training, validation and test sets, resident: f and u, n^2 floats each per
  sample, plus a few coefficients; the test set also on every extra test grid
  (``eval_resolutions``: the same test samples, r^2 floats each).

On top of that, the larger of two phases (they do not overlap: training's graph is
freed by the backward pass before an evaluation starts):
- training: the activations autograd saves for the backward pass, per sample of a
  batch. They are counted, not guessed: a forward pass at batch 1 under
  ``torch.autograd.graph.saved_tensors_hooks`` records every saved tensor that is not a
  parameter. Each of them has 1, w or 2w channels, so the count is exactly linear in
  the width w (tests/test_gpu.py checks it against a direct count): two tiny
  forwards, at widths 1 and 2, give it for any width at a cost of milliseconds;
- evaluation (no autograd): the most bytes that the tensors of one evaluation hold at
  once, at its real batch: the normalised inputs, every temporary of the forward, the
  prediction, the error and band-error temporaries, and the per-sample results of the
  whole set. Also counted, not guessed: ``fno.train.per_sample_errors`` and
  ``fno.train.mean_field_error`` run on the ``meta`` device (shapes only: nothing is
  allocated or computed, so the true width and batch cost milliseconds) under a
  dispatch mode that follows every tensor an operation returns in new storage until
  it is freed (``_LiveTensors``; the first count in a process takes seconds while torch
  imports its meta kernels). On the CPU the same count equals the peak that
  torch's own allocator accounting reports (``torch.profiler`` memory events;
  tests/test_gpu.py), and the meta device takes the GPU's code path
  (``fno.model.irfft_real``). The largest of: validation at the training grid, the test
  set at every test grid (with band errors), and the mean-field baseline (the whole
  test set at once, before training);
- workspace of each phase (the FFT library's plans and buffers, temporaries of the
  forward that are freed before the backward, the caching allocator's rounding):
  WORKSPACE_FACTOR times the phase's counted bytes plus FIXED_WORKSPACE, both set above
  what was measured for training on a GPU (docs/gpu.md): the total is a ceiling, not a
  forecast. (For evaluation every temporary is already counted, so the same factor
  errs further on the high side; no GPU measured an evaluation's peak yet.)

``trial_memory(config)`` returns the parts in bytes; ``gpu_share(bytes, gpu_bytes)``
the smallest share 1/k of a GPU that holds them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from fno.data import Fields, Normalization
from fno.model import FNO2d, FNOConfig
from fno.train import mean_field_error, per_sample_errors

OPTIMIZER_BYTES_PER_PARAMETER = 16  # float32 weight, gradient, Adam's exp_avg and exp_avg_sq
# Device memory beyond the saved activations, as a multiple of them, plus a fixed part
# (FFT plans, the caching allocator's block rounding): on an H200 the peak reserved
# memory left 0.20 to 0.47 x the activations at 128 x 128, batch 128, w16-m4 .. w128-m32,
# and 0.67 x at 64 x 64, batch 64, w32-m8 with its data resident (docs/gpu.md).
WORKSPACE_FACTOR = 0.6
FIXED_WORKSPACE = 128 * 2**20
SHARES = tuple(1 / k for k in range(1, 9))  # GPU shares a trial may ask for: 1, 1/2, ..., 1/8
HEADROOM = 0.9  # of a share, usable by the trial (the CUDA context and fragmentation take the rest)
FLOAT32 = 4  # bytes


@dataclass(frozen=True)
class TrialMemory:
    """Device bytes of one trial, by part; ``total`` is what a share must hold:
    the resident parts plus the larger phase, training or evaluation."""

    parameters: int  # weights, gradients, optimizer state
    data: int  # train + validation + test sets (and the test set on extra grids), resident
    activations: int  # saved for the backward pass, one training batch (config.batch)
    workspace: int  # WORKSPACE_FACTOR x activations + FIXED_WORKSPACE
    evaluation: int  # the largest no-grad evaluation's live tensors, at its batch (config.batch_size)
    evaluation_workspace: int  # WORKSPACE_FACTOR x evaluation + FIXED_WORKSPACE

    @property
    def training_peak(self) -> int:
        """Bytes beyond the resident parts while training."""
        return self.activations + self.workspace

    @property
    def evaluation_peak(self) -> int:
        """Bytes beyond the resident parts while evaluating."""
        return self.evaluation + self.evaluation_workspace

    @property
    def total(self) -> int:
        return self.parameters + self.data + max(self.training_peak, self.evaluation_peak)


@functools.lru_cache(maxsize=256)
def _saved_bytes(in_channels: int, width: int, modes: int, layers: int, resolution: int) -> int:
    """Bytes autograd saves in one float32 forward pass at batch 1, parameters excluded."""
    torch.manual_seed(0)
    model = FNO2d(in_channels, 1, width, modes, layers)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()  # one storage saved twice counts once
        return tensor

    x = torch.zeros(1, in_channels, resolution, resolution)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    return sum(saved.values())


def activation_bytes_per_sample(in_channels: int, width: int, modes: int, layers: int, resolution: int) -> int:
    """Saved-activation bytes per training sample: counted at widths 1 and 2, extended
    linearly to ``width`` (exact: every saved tensor has 1, w or 2w channels)."""
    one = _saved_bytes(in_channels, 1, modes, layers, resolution)
    two = _saved_bytes(in_channels, 2, modes, layers, resolution)
    return one + (two - one) * (width - 1)


class _LiveTensors(TorchDispatchMode):
    """Follows the storage of every tensor an operation returns new (not a view, not an
    in-place or ``out=`` result) until it is freed; ``peak``: the most bytes of them
    alive at once, sampled as each operation returns (its inputs and outputs alive).

    Tensors made before the mode was entered (parameters, resident data, cached
    constants) are not counted. What a kernel allocates inside itself (an FFT
    library's work area) is not seen: that is the workspace's part. On the meta device
    a value read (``Tensor.item``) answers 0, so code that reads a scalar runs through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}  # storage -> (weak reference, bytes)
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
            return 0
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, tuple) else (out,)
        for result, declared in zip(results, func._schema.returns, strict=False):
            if declared.alias_info is not None:
                continue  # a view of, or written into, an existing tensor: no new storage
            for tensor in result if isinstance(result, list | tuple) else (result,):
                if isinstance(tensor, torch.Tensor):
                    storage = tensor.untyped_storage()
                    ref = StorageWeakRef(storage)
                    self.live[ref.cdata] = (ref, storage.nbytes())
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self.live.values()))
        return out


def live_peak(fn, *args, **kwargs) -> int:
    """The peak bytes of the tensors ``fn(*args, **kwargs)`` allocates (``_LiveTensors``).

    ``fn`` runs twice and the second run is counted: the first builds the per-process
    constants that it makes on first use (spectral bin weights, band masks,
    normalisation tensors: kilobytes, kept in caches), so the count is the same however
    many times it is taken."""
    for _ in range(2):
        with _LiveTensors() as tracker:
            fn(*args, **kwargs)
    return tracker.peak


@functools.lru_cache(maxsize=16)
def _meta_model(in_channels: int, width: int, modes: int, layers: int) -> FNO2d:
    """An FNO2d on the meta device (shapes only), for counting its evaluations."""
    with torch.device("meta"):
        model = FNO2d(in_channels, 1, width, modes, layers)
    # SpectralConv2d.forward only wraps _forward in autocast(enabled=False), and autocast
    # has no meta device; without autocast (float32, as counted) the two are the same.
    for layer in model.fourier:
        layer.spectral.forward = layer.spectral._forward
    return model


def _channel_names(in_channels: int) -> tuple[str, ...]:
    return tuple(f"c{i}" for i in range(in_channels))


def _meta_fields(n: int, in_channels: int, resolution: int) -> Fields:
    """``n`` samples on the meta device (shapes only)."""
    plane = torch.empty(n, resolution, resolution, device="meta")
    coefficients = torch.empty(n, in_channels - 1, device="meta")
    return Fields(plane, torch.empty_like(plane), coefficients, {}, _channel_names(in_channels))


@functools.lru_cache(maxsize=1024)
def evaluation_bytes(
    in_channels: int, width: int, modes: int, layers: int, resolution: int, n: int, batch_size: int, bands: bool
) -> int:
    """Peak bytes that ``fno.train.per_sample_errors`` allocates evaluating ``n`` samples
    at ``batch_size`` (float32, no autograd), the resident samples and parameters excluded.

    Counted on the meta device at the true width and batch (``live_peak``): one batch of
    min(batch_size, n) samples, plus the per-sample results of the other samples, which
    stay alive until the last batch and are then concatenated (1 float per sample, 4
    with ``bands``, twice: a few kilobytes; the one bound in the count)."""
    batch = min(batch_size, n)
    model = _meta_model(in_channels, width, modes, layers)
    norm = Normalization(_channel_names(in_channels), (0.0,) * in_channels, (1.0,) * in_channels, 0.0, 1.0)
    fields = _meta_fields(batch, in_channels, resolution)
    one_batch = live_peak(per_sample_errors, model, norm, fields, batch, bands=bands)
    return one_batch + 2 * (n - batch) * (4 if bands else 1) * FLOAT32


@functools.lru_cache(maxsize=256)
def mean_field_bytes(in_channels: int, resolution: int, n_train: int, n_test: int) -> int:
    """Peak bytes that ``fno.train.mean_field_error`` allocates (the whole test set at
    once: one test-set-sized difference), counted on the meta device like ``evaluation_bytes``."""
    train = _meta_fields(n_train, in_channels, resolution)
    return live_peak(mean_field_error, train, _meta_fields(n_test, in_channels, resolution))


def _evaluation_peak(config, in_channels: int) -> int:
    """The largest no-grad step of a trial: validation (training grid), the test set on
    every test grid (with band errors), and the mean-field baseline."""
    shape = (in_channels, config.width, config.modes, config.layers)
    steps = [evaluation_bytes(*shape, r, config.n_test, config.batch_size, True) for r in config.test_resolutions]
    if config.mode != "zeroshot":  # a zero-shot trial only tests
        steps.append(evaluation_bytes(*shape, config.resolution, config.n_val, config.batch_size, False))
        steps.append(mean_field_bytes(in_channels, config.resolution, config.n_train, config.n_test))
    return max(steps)


def trial_memory(config) -> TrialMemory:
    """Device memory of one ``fno.train.TrialConfig`` in bytes, by part (pretrain, scratch
    or finetune; a zero-shot trial holds no gradients, optimizer state, training or
    validation set, and is counted as if it did, except that it runs no validation)."""
    in_channels = config.in_channels
    n_params = FNOConfig(in_channels, 1, config.width, config.modes, config.layers).n_params
    per_sample = activation_bytes_per_sample(in_channels, config.width, config.modes, config.layers, config.resolution)
    activations = per_sample * config.batch
    samples = config.n_train + config.n_val + config.n_test
    data = samples * (2 * config.resolution**2 + in_channels) * FLOAT32
    data += sum(config.n_test * (2 * r**2 + in_channels) * FLOAT32 for r in config.test_resolutions[1:])
    evaluation = _evaluation_peak(config, in_channels)
    return TrialMemory(
        parameters=OPTIMIZER_BYTES_PER_PARAMETER * n_params,
        data=data,
        activations=activations,
        workspace=math.ceil(WORKSPACE_FACTOR * activations) + FIXED_WORKSPACE,
        evaluation=evaluation,
        evaluation_workspace=math.ceil(WORKSPACE_FACTOR * evaluation) + FIXED_WORKSPACE,
    )


def gpu_share(need_bytes: int, gpu_bytes: int) -> float:
    """The smallest share in SHARES whose usable part (HEADROOM of it) holds ``need_bytes``.

    Raises ValueError when even a whole GPU is too small, naming both sizes.
    """
    for share in reversed(SHARES):
        if need_bytes <= HEADROOM * share * gpu_bytes:
            return share
    raise ValueError(
        f"a trial needs about {need_bytes / 2**30:.1f} GiB of GPU memory, more than {HEADROOM:.0%} of one "
        f"{gpu_bytes / 2**30:.3g} GiB GPU; use a smaller batch_size, resolution or model"
    )
