"""The PDE operators applied to a solution, for residual checks.

Built independently of the solvers: derivatives are taken one at a time with the
full complex FFT along one axis (``torch.fft.fft``), the way a spectral-collocation
code would, and combined in physical space. Only the Nyquist convention is shared
with the solvers (first derivatives vanish there; see ``fno.physics.spectral``),
because it is part of the definition of the discrete operator.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fno.physics.families import SINGLE_FAMILIES, S


def derivative(u: torch.Tensor, axis: int, order: int) -> torch.Tensor:
    """d^order u / d(axis)^order on the periodic unit square, spectrally; u float64 (B, nx, ny)."""
    n = u.shape[axis]
    k = 2 * math.pi * torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=u.device)
    if order % 2 == 1 and n % 2 == 0:
        k[n // 2] = 0.0
    multiplier = (1j * k) ** order
    shape = [1] * u.ndim
    shape[axis] = n
    return torch.fft.ifft(torch.fft.fft(u, dim=axis) * multiplier.reshape(shape), dim=axis).real


def _column(params: dict[str, np.ndarray], name: str, device) -> torch.Tensor:
    return torch.as_tensor(params[name], dtype=torch.float64, device=device)[:, None, None]


def diffusion_term(u: torch.Tensor, params: dict[str, np.ndarray]) -> torch.Tensor:
    """div(K grad u) with K from params k11, k22, k12."""
    k11, k22, k12 = (_column(params, k, u.device) for k in ("k11", "k22", "k12"))
    uxx, uyy = derivative(u, -2, 2), derivative(u, -1, 2)
    uxy = derivative(derivative(u, -2, 1), -1, 1)
    return k11 * uxx + k22 * uyy + 2 * k12 * uxy


def advection_term(u: torch.Tensor, params: dict[str, np.ndarray]) -> torch.Tensor:
    """v . grad u with v from params v1, v2."""
    return _column(params, "v1", u.device) * derivative(u, -2, 1) + _column(params, "v2", u.device) * derivative(
        u, -1, 1
    )


def apply(family: str, u: torch.Tensor, params: dict[str, np.ndarray], s: float = S) -> torch.Tensor:
    """L u for one single family, all samples of the batch; u float64 (B, nx, ny)."""
    if family == "poisson":
        return -s * diffusion_term(u, params)
    if family == "advdiff":
        lam = _column(params, "lam", u.device)
        return -(1 - lam) * s * diffusion_term(u, params) + lam * advection_term(u, params)
    if family == "helmholtz":
        lap = derivative(u, -2, 2) + derivative(u, -1, 2)
        return -s * lap - _column(params, "omega", u.device) * u
    raise ValueError(f"unknown family {family!r}; expected one of {SINGLE_FAMILIES}")


def symbol_bound(family: str, params: dict[str, np.ndarray], n: int, s: float = S) -> np.ndarray:
    """An upper bound on max_k |symbol of L| per sample, (B,): scales round-off residuals."""
    d2 = 2 * (math.pi * n) ** 2  # max |2 pi k|^2 on an n x n grid
    if family == "helmholtz":
        return s * d2 + np.abs(params["omega"])
    e_max = np.maximum(1.0, params["e"])
    if family == "poisson":
        return s * e_max * d2
    lam = params["lam"]
    return (1 - lam) * s * e_max * d2 + lam * np.sqrt(d2)


def residual(family: str, f: torch.Tensor, u: torch.Tensor, params: dict[str, np.ndarray], s: float = S):
    """Per-sample residuals of L u = f, as numpy (B,) arrays (relative, normalised).

    relative:   ||L u - f|| / ||f||.
    normalised: ||L u - f|| / (||f|| + bound(|symbol|) ||u||), the backward error; it
                is a few machine epsilons of the stored dtype when u solves the PDE
                exactly up to rounding of u and f, whatever the dtype.
    """
    r = torch.linalg.vector_norm(apply(family, u, params, s) - f, dim=(-2, -1)).cpu().numpy()
    nf = torch.linalg.vector_norm(f, dim=(-2, -1)).cpu().numpy()
    nu = torch.linalg.vector_norm(u, dim=(-2, -1)).cpu().numpy()
    return r / nf, r / (nf + symbol_bound(family, params, u.shape[-1], s) * nu)
