"""SYS-3, Helmholtz: -s lap(u) - omega u = f on the periodic unit square.

Solved exactly in Fourier space: u_hat = f_hat / (s |d|^2 - omega); the mean follows
from the equation, mean(u) = -mean(f) / omega. Near a resonance (s |d|^2 close to
omega for a wave number carrying energy) u is large; the data layer redraws omega for
such samples. Axis and Nyquist conventions: ``fno.physics.spectral``.
"""

from __future__ import annotations

import torch

from fno.physics.poisson import DEFAULT_S, check_positive
from fno.physics.spectral import Array, WaveNumbers, check_batch, check_field, output_like, to_float64, wave_numbers


def helmholtz_symbol(omega: torch.Tensor, wn: WaveNumbers, s: float) -> torch.Tensor:
    """s |d|^2 - omega: shape (batch, nx, ny//2 + 1), float64."""
    return s * (wn.dxx + wn.dyy) - omega[:, None, None]


def solve_spectrum(f_hat: torch.Tensor, omega: torch.Tensor, wn: WaveNumbers, s: float, shape: tuple[int, int]):
    """u from an rfft2 spectrum of f (no checks; for callers that reuse f_hat)."""
    return torch.fft.irfft2(f_hat * helmholtz_symbol(omega, wn, s).reciprocal_(), s=shape)


def solve(f: Array, omega: Array, s: float = DEFAULT_S) -> Array:
    """Solve -s lap(u) - omega u = f exactly (spectrally) for a batch.

    f: (batch, nx, ny), axis -2 is x, axis -1 is y. omega: (batch,), no grid wave
    number may be exactly resonant (s |2 pi k|^2 == omega).
    Returns u, (batch, nx, ny) float64, the same kind of array as f.
    """
    ft = to_float64(f, "f")
    batch, nx, ny = check_field(ft)
    om = to_float64(omega, "omega", ft.device)
    check_batch(om, "omega", batch, ())
    s = check_positive(s)
    wn = wave_numbers(nx, ny, ft.device)
    resonant = (s * (wn.dxx + wn.dyy)[None] == om[:, None, None]).flatten(1).any(1)
    if resonant.any():
        i = int(torch.nonzero(resonant)[0])
        raise ValueError(f"omega[{i}] = {om[i].item()} is exactly resonant on this grid; choose another omega")
    return output_like(f)(solve_spectrum(torch.fft.rfft2(ft), om, wn, s, (nx, ny)))
