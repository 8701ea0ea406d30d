"""Shared spectral machinery of the solvers: array kinds, shape checks, wave numbers.

Conventions used by every solver in ``fno.physics``:

- A field has shape (batch, nx, ny); array axis -2 is x, axis -1 is y, and grid
  point [i, j] sits at (x, y) = (i / nx, j / ny) on the periodic unit square.
- Spectra are ``torch.fft.rfft2`` spectra over (x, y): shape (batch, nx, ny//2 + 1).
- Wave numbers are integers k; the derivative symbol is d = 2 pi k.
- Nyquist (k = n/2 on an even grid): second derivatives keep -(2 pi n/2)^2, first
  derivatives are zero there (the usual convention for real spectral
  differentiation), so every operator maps real fields to real fields exactly and the
  mixed derivative d/dx d/dy vanishes on the Nyquist row and column.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def to_float64(x: Array, name: str, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a float64 tensor (on ``device`` when given); names ``x`` in errors."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray | list | tuple | float | int):
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real, got dtype {t.dtype}")
    return t.to(device=device if device is not None else t.device, dtype=torch.float64)


def output_like(reference: Array) -> Callable[[torch.Tensor], Array]:
    """A function that returns a result as the same kind of array as ``reference``."""
    if isinstance(reference, torch.Tensor):
        return lambda t: t
    return lambda t: t.detach().cpu().numpy()


def check_field(f: torch.Tensor, name: str = "f") -> tuple[int, int, int]:
    """Validate a batch of fields (batch, nx, ny); return its shape."""
    if f.ndim != 3:
        raise ValueError(f"{name} must have shape (batch, nx, ny), got shape {tuple(f.shape)}")
    batch, nx, ny = f.shape
    if nx < 2 or ny < 2:
        raise ValueError(f"{name} needs at least 2 grid points per axis, got {nx} x {ny}")
    return batch, nx, ny


def check_batch(x: torch.Tensor, name: str, batch: int, trailing: tuple[int, ...]) -> None:
    """Require ``x`` to have shape (batch, *trailing), naming it and the expected shape."""
    want = (batch, *trailing)
    if tuple(x.shape) != want:
        raise ValueError(f"{name} must have shape {want} to match f, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite")


@dataclass(frozen=True)
class WaveNumbers:
    """Derivative symbols on the rfft2 grid, broadcastable to (nx, ny//2 + 1).

    ``dx``, ``dy``: first-derivative symbols 2 pi k (Nyquist set to 0), shapes (nx, 1)
    and (1, ny//2 + 1). ``dxx``, ``dyy``: (2 pi k)^2, Nyquist kept.
    ``weight``: (1, ny//2 + 1) multiplicity of each rfft column in the full spectrum
    (2 for columns that stand for a conjugate pair, else 1), for Parseval sums.
    ``second``: (3, nx * (ny//2 + 1)) rows dxx, dyy, 2 dx dy, flattened, and ``first``:
    (2, nx * (ny//2 + 1)) rows dx, dy: symbols of a batch are one small matmul with these.
    """

    dx: torch.Tensor
    dy: torch.Tensor
    dxx: torch.Tensor
    dyy: torch.Tensor
    weight: torch.Tensor
    second: torch.Tensor
    first: torch.Tensor


@functools.lru_cache(maxsize=32)
def wave_numbers(nx: int, ny: int, device: torch.device) -> WaveNumbers:
    """The cached ``WaveNumbers`` of an nx x ny grid on ``device`` (treat as read-only)."""
    kx = torch.fft.fftfreq(nx, d=1.0 / nx, dtype=torch.float64, device=device)  # (nx,)
    ky = torch.fft.rfftfreq(ny, d=1.0 / ny, dtype=torch.float64, device=device)  # (ny//2+1,)
    ax, ay = 2 * np.pi * kx, 2 * np.pi * ky
    dx, dy = ax.clone(), ay.clone()
    if nx % 2 == 0:
        dx[nx // 2] = 0.0
    if ny % 2 == 0:
        dy[ny // 2] = 0.0
    weight = torch.full_like(ky, 2.0)
    weight[0] = 1.0
    if ny % 2 == 0:
        weight[-1] = 1.0
    dx, dy, dxx, dyy = dx[:, None], dy[None, :], (ax**2)[:, None], (ay**2)[None, :]
    shape = (nx, ny // 2 + 1)
    second = torch.stack([dxx.expand(shape), dyy.expand(shape), 2 * dx * dy]).flatten(1)
    first = torch.stack([dx.expand(shape), dy.expand(shape)]).flatten(1)
    return WaveNumbers(dx, dy, dxx, dyy, weight[None, :], second, first)


def spectral_power(z: torch.Tensor) -> torch.Tensor:
    """|z|^2 of a complex tensor, without the square root of abs()."""
    return torch.view_as_real(z).square().sum(dim=-1)


def diffusion_symbol(K: torch.Tensor, wn: WaveNumbers) -> torch.Tensor:
    """d^T K d for K rows (k11, k22, k12): shape (batch, nx, ny//2 + 1), float64."""
    return (K @ wn.second).view(K.shape[0], wn.dx.shape[0], wn.dy.shape[1])


def advection_symbol(v: torch.Tensor, wn: WaveNumbers) -> torch.Tensor:
    """v . d (the advection symbol is i v . d): shape (batch, nx, ny//2 + 1), float64."""
    return (v @ wn.first).view(v.shape[0], wn.dx.shape[0], wn.dy.shape[1])
