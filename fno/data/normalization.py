"""Input and target normalisation: fitted once on the pre-training set, carried in checkpoints."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fno.physics.fields import Fields


@functools.lru_cache(maxsize=64)
def _stat_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std tensors, made once per statistics, dtype and device
    (building them per batch copied them to the device at every step)."""
    return (
        torch.tensor(mean, dtype=dtype, device=device)[None, :, None, None],
        torch.tensor(std, dtype=dtype, device=device)[None, :, None, None],
    )


@dataclass(frozen=True)
class Normalization:
    """Per-channel input statistics and target statistics, plain floats.

    Fitted once on the pre-training train split and stored in the model's checkpoint,
    so a fine-tuned or zero-shot model normalises downstream data with the
    pre-training statistics. Constant channels (std 0) get std 1. Targets: one mean and
    std (a float each) for one output channel, as the families have; a tuple of them,
    one per channel, for a dataset with several output fields.
    """

    channel_names: tuple[str, ...]
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    target_mean: float | tuple[float, ...]
    target_std: float | tuple[float, ...]

    @classmethod
    def fit(cls, fields: Fields, chunk: int = 1024) -> Normalization:
        """Statistics of ``fields`` (on the host), accumulated in float64 over chunks of
        samples so that no float64 copy of a large set is made. A source with a channel
        axis (a user's dataset) gets statistics per channel, as do several targets."""
        if fields.source.device.type != "cpu":
            raise ValueError(f"fit the normalisation on host data, got {fields.source.device} tensors")
        f_mean, f_std = _moments(fields.source, chunk)
        u_mean, u_std = _moments(fields.solution, chunk)
        c = fields.coefficients.double()  # (batch, C - 1): small; (batch, 0) for a dataset
        mean = [*f_mean, *(c.mean(dim=0).tolist() if c.shape[1] else [])]
        std = [*f_std, *(c.std(dim=0, correction=0).tolist() if c.shape[1] else [])]
        std = [s if s > 0 else 1.0 for s in std]
        u_std = [s if s > 0 else 1.0 for s in u_std]
        if fields.solution.ndim == 3:
            return cls(tuple(fields.channel_names), tuple(mean), tuple(std), u_mean[0], u_std[0])
        return cls(tuple(fields.channel_names), tuple(mean), tuple(std), tuple(u_mean), tuple(u_std))

    def with_inputs_of(self, other: Normalization) -> Normalization:
        """These target statistics with ``other``'s input statistics (a fine-tune whose
        lifting layer was replaced refits the input side only)."""
        return dataclasses.replace(
            self, channel_names=other.channel_names, input_mean=other.input_mean, input_std=other.input_std
        )

    def with_targets_of(self, other: Normalization) -> Normalization:
        """These input statistics with ``other``'s target statistics."""
        return dataclasses.replace(self, target_mean=other.target_mean, target_std=other.target_std)

    @property
    def out_channels(self) -> int:
        return len(self.target_mean) if isinstance(self.target_mean, tuple) else 1

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != len(self.input_mean):
            raise ValueError(
                f"inputs must have shape (batch, {len(self.input_mean)}, n, n) for channels "
                f"{list(self.channel_names)}, got {tuple(x.shape)}"
            )
        return _stat_tensors(self.input_mean, self.input_std, x.dtype, x.device)

    def normalize_inputs(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def _target_stats(self, y: torch.Tensor) -> tuple[Any, Any]:
        if not isinstance(self.target_mean, tuple):
            return self.target_mean, self.target_std
        return _stat_tensors(self.target_mean, self.target_std, y.dtype, y.device)

    def normalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self._target_stats(y)
        return (y - mean) / std

    def denormalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self._target_stats(y)
        return y * std + mean

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        return cls(
            tuple(data["channel_names"]),
            tuple(data["input_mean"]),
            tuple(data["input_std"]),
            *(_floats(data[k]) for k in ("target_mean", "target_std")),
        )


def _floats(value: Any) -> float | tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, list | tuple) else float(value)


def _moments(x: torch.Tensor, chunk: int) -> tuple[list[float], list[float]]:
    """Mean and std of ``x``: over everything for (batch, n, n), per channel for (batch, C, H,
    W); float64 sums over chunks of samples."""
    dims = (0, 2, 3) if x.ndim == 4 else None
    total = torch.zeros(2, *((x.shape[1],) if dims else ()), dtype=torch.float64)
    for lo in range(0, len(x), chunk):  # chunks of samples, not samples
        part = x[lo : lo + chunk].double()
        total += (
            torch.stack([part.sum(dim=dims), (part * part).sum(dim=dims)])
            if dims
            else torch.stack([part.sum(), (part * part).sum()])
        )
    count = x.numel() // (x.shape[1] if dims else 1)
    means, squares = (total / count).reshape(2, -1).tolist()
    return means, [math.sqrt(max(sq - m**2, 0.0)) for m, sq in zip(means, squares, strict=True)]
