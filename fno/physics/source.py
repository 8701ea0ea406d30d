"""The Gaussian-bump source field f shared by all PDE families (docs/study-design.md, "The physics").

f is a 12 x 12 lattice of Gaussian bumps, sigma = 1/32, spacing 2 sigma, centred at
(0.5, 0.5) on the periodic unit square. Each bump is periodised (images at -1, 0, +1),
so f is smooth and periodic. The field is separable: with G[p, i] the p-th 1-d bump
at x_i and P the (12, 12) amplitude matrix, f[i, j] = sum_pq G[p, i] P[p, q] G[q, j],
i.e. f = G^T P G, one small batched matmul per sample and no loop over bumps.

Resolution independence: the lattice lives in physical units and f is divided by its
maximum on the fixed reference grid of REFERENCE_RESOLUTION points per axis, so a
sample is the same function at every resolution (at n = 64 and n = 128 the values
at shared points agree to round-off).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SIGMA = 1.0 / 32.0
N_BUMPS = 12  # per axis; 144 in all
BUMP_CENTRES = 0.5 + (np.arange(N_BUMPS) - (N_BUMPS - 1) / 2) * 2 * SIGMA
VOID_FRACTIONS = (0.2, 0.4, 0.6, 0.8)  # probability that a bump is switched off
MIN_AMPLITUDE = 1e-3  # amplitudes of live bumps are uniform in [MIN_AMPLITUDE, 1]
REFERENCE_RESOLUTION = 128


@functools.lru_cache(maxsize=32)
def gaussian_matrix(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """G[p, i] = periodised Gaussian bump p at x_i = i / n: shape (N_BUMPS, n), float64.

    Cached per (n, device): treat as read-only.
    """
    x = torch.arange(n, dtype=torch.float64, device=device) / n  # (n,)
    c = torch.as_tensor(BUMP_CENTRES, dtype=torch.float64, device=device)[:, None, None]
    images = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64, device=device)[None, :, None]
    dist = x[None, None, :] - c + images  # (N_BUMPS, 3, n)
    return torch.exp(-0.5 * (dist / SIGMA) ** 2).sum(dim=1)


def bump_amplitudes(u: np.ndarray, void_fraction: np.ndarray) -> np.ndarray:
    """Amplitude matrices P from one uniform per bump: shape (batch, 12, 12), float64.

    A bump is off when its uniform u < void_fraction; otherwise its amplitude is
    MIN_AMPLITUDE + (1 - MIN_AMPLITUDE) * (u - vf) / (1 - vf), which is uniform in
    [MIN_AMPLITUDE, 1] given that it is on. If every bump of a sample is off, the bump
    with the largest u is switched on, so every sample has at least one bump.

    u: (batch, 144) in [0, 1); void_fraction: (batch,) in (0, 1).
    """
    vf = void_fraction[:, None]
    on = u >= vf
    amp = np.where(on, MIN_AMPLITUDE + (1 - MIN_AMPLITUDE) * (u - vf) / (1 - vf), 0.0)
    empty = ~on.any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        cols = u[rows].argmax(axis=1)
        amp[rows, cols] = MIN_AMPLITUDE + (1 - MIN_AMPLITUDE) * u[rows, cols] / vf[rows, 0]
    return amp.reshape(-1, N_BUMPS, N_BUMPS)


def _field(amplitudes: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # ((n, 12) @ (B, 12, 12)) @ (12, n) -> (B, n, n): the batched operand on the left makes
    # the big product one GEMM that writes its result in place (g.T @ (P @ g) transposes it).
    return (g.T @ amplitudes) @ g


def source_field(amplitudes: torch.Tensor, n: int, zero_mean: bool) -> torch.Tensor:
    """The source f on an n x n grid: shape (batch, n, n), float64, on amplitudes' device.

    Divided by its maximum on the reference grid; with ``zero_mean`` the grid mean is
    then removed (SYS-1 and SYS-2, whose operators annihilate constants). For n >= 64
    the grid mean equals the continuous mean to round-off, so the zero-mean field is
    still the same function at every such resolution.
    """
    device = amplitudes.device
    f = _field(amplitudes, gaussian_matrix(n, device))
    if n == REFERENCE_RESOLUTION:
        peak = f.amax(dim=(-2, -1))
    else:
        peak = _field(amplitudes, gaussian_matrix(REFERENCE_RESOLUTION, device)).amax(dim=(-2, -1))
    f /= peak[:, None, None]
    if zero_mean:
        f -= f.mean(dim=(-2, -1), keepdim=True)
    return f
