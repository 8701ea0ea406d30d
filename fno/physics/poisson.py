"""SYS-1, anisotropic Poisson: -s div(K grad u) = f on the periodic unit square.

Solved exactly in Fourier space: u_hat = f_hat / (s d^T K d), zero mode of u set to 0
(u has zero mean; f must have zero mean for the equation to hold). Axis and Nyquist
conventions: ``fno.physics.spectral``.
"""

from __future__ import annotations

import numpy as np
import torch

from fno.physics.spectral import (
    Array,
    check_batch,
    check_field,
    diffusion_symbol,
    output_like,
    to_float64,
    wave_numbers,
)

DEFAULT_S = 0.01


def check_diffusion_tensor(K: torch.Tensor, name: str = "K") -> None:
    """Require every row (k11, k22, k12) of K to be symmetric positive definite."""
    k11, k22, k12 = K[:, 0], K[:, 1], K[:, 2]
    bad = (k11 <= 0) | (k11 * k22 - k12**2 <= 0)
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"{name} must be positive definite (k11 > 0 and k11*k22 - k12^2 > 0); row {i} is {K[i].tolist()}"
        )


def check_positive(s: float, name: str = "s") -> float:
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {s!r}")
    return float(s)


def diffusion_tensor(theta: Array, eigenvalue: Array) -> np.ndarray:
    """K = R(theta)^T diag(1, e) R(theta) as rows (k11, k22, k12): shape (batch, 3).

    theta in radians, e > 0 the second eigenvalue (the first is 1).
    """
    theta, e = np.asarray(theta, dtype=np.float64), np.asarray(eigenvalue, dtype=np.float64)
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([c**2 + e * s**2, s**2 + e * c**2, c * s * (e - 1.0)], axis=-1)


def solve(f: Array, K: Array, s: float = DEFAULT_S) -> Array:
    """Solve -s div(K grad u) = f exactly (spectrally) for a batch.

    f: (batch, nx, ny), axis -2 is x, axis -1 is y, zero mean per sample.
    K: (batch, 3) rows (k11, k22, k12) of a symmetric positive definite tensor.
    Returns u, (batch, nx, ny) float64 with zero mean, the same kind of array as f
    (numpy, or torch on f's device).
    """
    ft = to_float64(f, "f")
    batch, nx, ny = check_field(ft)
    Kt = to_float64(K, "K", ft.device)
    check_batch(Kt, "K", batch, (3,))
    check_diffusion_tensor(Kt)
    s = check_positive(s)
    wn = wave_numbers(nx, ny, ft.device)
    inverse = diffusion_symbol(Kt, wn).mul_(s)  # (B, nx, ny//2+1) real
    inverse[:, 0, 0] = 1.0
    u_hat = torch.fft.rfft2(ft) * inverse.reciprocal_()  # (B, nx, ny//2+1) complex; multiply beats divide
    u_hat[:, 0, 0] = 0.0
    return output_like(f)(torch.fft.irfft2(u_hat, s=(nx, ny)))
