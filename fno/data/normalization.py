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
    pre-training statistics. Constant channels (std 0) get std 1.
    """

    channel_names: tuple[str, ...]
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    target_mean: float
    target_std: float

    @classmethod
    def fit(cls, fields: Fields, chunk: int = 1024) -> Normalization:
        """Statistics of ``fields`` (on the host), accumulated in float64 over chunks of
        samples so that no float64 copy of a large set is made."""
        if fields.source.device.type != "cpu":
            raise ValueError(f"fit the normalisation on host data, got {fields.source.device} tensors")
        sums = torch.zeros(4, dtype=torch.float64)  # sum f, sum f^2, sum u, sum u^2 over all points
        for lo in range(0, len(fields), chunk):  # chunks of samples, not samples
            f = fields.source[lo : lo + chunk].double()
            u = fields.solution[lo : lo + chunk].double()
            sums += torch.stack([f.sum(), (f * f).sum(), u.sum(), (u * u).sum()])
        f_mean, f_sq, u_mean, u_sq = (sums / fields.source.numel()).tolist()
        f_std = math.sqrt(max(f_sq - f_mean**2, 0.0))
        u_std = math.sqrt(max(u_sq - u_mean**2, 0.0))
        c = fields.coefficients.double()  # (batch, C - 1): small
        mean = [f_mean, *c.mean(dim=0).tolist()]
        std = [f_std, *c.std(dim=0, correction=0).tolist()]
        std = [s if s > 0 else 1.0 for s in std]
        return cls(tuple(fields.channel_names), tuple(mean), tuple(std), u_mean, u_std if u_std > 0 else 1.0)

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

    def normalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    def denormalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        return cls(
            tuple(data["channel_names"]),
            tuple(data["input_mean"]),
            tuple(data["input_std"]),
            float(data["target_mean"]),
            float(data["target_std"]),
        )
