"""``Fields``: a batch of solved samples in compact form, the one batch type of the project.

The families produce it (float64), the data layer casts, caches and serves it (float32),
and a trial reads model inputs and targets from it. Compact: the coefficient planes of
the model's input are constant per sample, so a sample stores its coefficient vector
and the planes are made (as broadcast views) only when inputs are asked for.

A user's dataset (``fno.data.external``) is the same type with channel axes: source
(batch, C_in, H, W) holds every input field, solution (batch, C_out, H, W) every output
field, and there are no coefficients ((batch, 0)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Fields:
    """source, solution: (batch, n, n), axis -2 is x, or (batch, channels, H, W) for a user's
    dataset; coefficients: (batch, C - 1), the values of the constant input channels
    after the source's; params: raw physical parameters, name -> (batch,) float64 numpy
    (``fno.physics.families.PARAMS``; a dataset's: its ``param``); channel_names: the C
    input channel names (the source's first)."""

    source: torch.Tensor
    solution: torch.Tensor
    coefficients: torch.Tensor
    params: dict[str, np.ndarray]
    channel_names: tuple[str, ...]

    def __len__(self) -> int:
        return self.source.shape[0]

    def inputs(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Model inputs (batch, C, n, n): the source, then each coefficient as a constant plane."""
        f = self.source if index is None else self.source[index]
        f = f[:, None] if f.ndim == 3 else f
        if self.coefficients.shape[1] == 0:
            return f
        c = self.coefficients if index is None else self.coefficients[index]
        planes = c[:, :, None, None].expand(-1, -1, *f.shape[-2:])  # (b, C-1, n, n) view
        return torch.cat([f, planes], dim=1)

    def targets(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Model targets (batch, C_out, n, n): the solution u (one channel for the families)."""
        u = self.solution if index is None else self.solution[index]
        return u[:, None] if u.ndim == 3 else u

    @property
    def out_channels(self) -> int:
        return 1 if self.solution.ndim == 3 else self.solution.shape[1]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Fields:
        """The tensors on ``device`` and/or as ``dtype`` (params stay float64 numpy)."""
        return dataclasses.replace(
            self,
            source=self.source.to(device, dtype),
            solution=self.solution.to(device, dtype),
            coefficients=self.coefficients.to(device, dtype),
        )

    def head(self, n: int) -> Fields:
        """The first n samples."""
        return Fields(
            self.source[:n],
            self.solution[:n],
            self.coefficients[:n],
            {k: v[:n] for k, v in self.params.items()},
            self.channel_names,
        )

    @staticmethod
    def concat(parts: Sequence[Fields]) -> Fields:
        """The samples of ``parts`` in order (one layout)."""
        if len(parts) == 1:
            return parts[0]
        return Fields(
            torch.cat([p.source for p in parts]),
            torch.cat([p.solution for p in parts]),
            torch.cat([p.coefficients for p in parts]),
            {k: np.concatenate([p.params[k] for p in parts]) for k in parts[0].params},
            parts[0].channel_names,
        )
