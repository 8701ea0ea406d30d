"""How much accelerator memory one training trial needs: the rule GPU shares follow.

A trial holds on its device (float32 throughout; ``fno.train.run_trial``):
- the parameters, their gradients and Adam's two moments: 16 bytes per parameter
  (the best weights so far are copied to host memory, not kept on the device);
- the training, validation and test sets, resident: f and u, n^2 floats each per
  sample, plus a few coefficients;
- the activations autograd saves for the backward pass, per sample of a batch. They
  are counted, not guessed: a forward pass at batch 1 under
  ``torch.autograd.graph.saved_tensors_hooks`` records every saved tensor that is not a
  parameter. Each of them has 1, w or 2w channels, so the count is exactly linear in
  the width w (tests/test_memory.py checks it against a direct count): two tiny
  forwards, at widths 1 and 2, give it for any width at a cost of milliseconds;
- workspace on top (the FFT library's plans and buffers, temporaries of the forward
  that are freed before the backward, the caching allocator's rounding):
  WORKSPACE_FACTOR times the saved activations plus FIXED_WORKSPACE, both set above
  what was measured on a GPU (docs/gpu.md): the total is a ceiling, not a forecast.

``trial_memory(config)`` returns the parts in bytes; ``gpu_share(bytes, gpu_bytes)``
the smallest share 1/k of a GPU that holds them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from fno.model import FNO2d, FNOConfig

OPTIMIZER_BYTES_PER_PARAMETER = 16  # float32 weight, gradient, Adam's exp_avg and exp_avg_sq
# Device memory beyond the saved activations, as a multiple of them, plus a fixed part
# (FFT plans, the caching allocator's block rounding): on an H200 the peak reserved
# memory left 0.20 to 0.47 x the activations at 128 x 128, batch 128, w16-m4 .. w128-m32,
# and 0.67 x at 64 x 64, batch 64, w32-m8 with its data resident (docs/gpu.md).
WORKSPACE_FACTOR = 0.6
FIXED_WORKSPACE = 128 * 2**20
SHARES = tuple(1 / k for k in range(1, 9))  # GPU shares a trial may ask for: 1, 1/2, ..., 1/8
HEADROOM = 0.9  # of a share, usable by the trial (the CUDA context and fragmentation take the rest)


@dataclass(frozen=True)
class TrialMemory:
    """Device bytes of one trial, by part; ``total`` is what a share must hold."""

    parameters: int  # weights, gradients, optimizer state
    data: int  # train + validation + test sets, resident
    activations: int  # saved for the backward pass, one batch
    workspace: int  # WORKSPACE_FACTOR x activations + FIXED_WORKSPACE

    @property
    def total(self) -> int:
        return self.parameters + self.data + self.activations + self.workspace


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


def trial_memory(config) -> TrialMemory:
    """Device memory of one ``fno.train.TrialConfig`` (pretrain, scratch or finetune;
    a zero-shot trial holds no gradients or optimizer state, and is counted as if it did)."""
    in_channels = len(config.data_spec("train").channel_names)
    n_params = FNOConfig(in_channels, 1, config.width, config.modes, config.layers).n_params
    per_sample = activation_bytes_per_sample(in_channels, config.width, config.modes, config.layers, config.resolution)
    activations = per_sample * config.batch
    samples = config.n_train + config.n_val + config.n_test
    data = samples * (2 * config.resolution**2 + in_channels) * 4
    return TrialMemory(
        parameters=OPTIMIZER_BYTES_PER_PARAMETER * n_params,
        data=data,
        activations=activations,
        workspace=math.ceil(WORKSPACE_FACTOR * activations) + FIXED_WORKSPACE,
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
