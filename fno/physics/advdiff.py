"""SYS-2, advection-diffusion: -(1 - lam) s div(K grad u) + lam v . grad u = f.

Solved exactly in Fourier space: u_hat = f_hat / ((1 - lam) s d^T K d + i lam v . d),
zero mode of u set to 0. The controlled parameter is the advection-to-diffusion ratio

    psi = ||lam v . grad u||_2 / ||(1 - lam) s div(K grad u)||_2,

which by Parseval needs only |f_hat|^2 and the two symbols, no inverse FFT. With
t = lam / (1 - lam) and per-mode c_k = (v . d) / (s d^T K d), r_k = t c_k:

    psi^2 = sum_k w_k r_k^2 / (1 + r_k^2)  /  sum_k w_k / (1 + r_k^2),   w_k = |f_hat_k|^2,

which increases monotonically in t, so the lam that realises a target psi is found by
a safeguarded Newton iteration in log t, batched over samples. Axis and Nyquist
conventions: ``fno.physics.spectral``.
"""

from __future__ import annotations

import torch

from fno.physics.poisson import DEFAULT_S, check_diffusion_tensor, check_positive
from fno.physics.spectral import (
    Array,
    WaveNumbers,
    advection_symbol,
    check_batch,
    check_field,
    diffusion_symbol,
    output_like,
    to_float64,
    wave_numbers,
)

NEWTON_TOL = 1e-13  # on log(psi^2): psi relative error below 1e-13
NEWTON_MAX_ITER = 100


def _checked(f: Array, K: Array, v: Array, lam: Array | None, s: float):
    ft = to_float64(f, "f")
    batch, nx, ny = check_field(ft)
    Kt = to_float64(K, "K", ft.device)
    check_batch(Kt, "K", batch, (3,))
    check_diffusion_tensor(Kt)
    vt = to_float64(v, "v", ft.device)
    check_batch(vt, "v", batch, (2,))
    lt = None
    if lam is not None:
        lt = to_float64(lam, "lam", ft.device)
        check_batch(lt, "lam", batch, ())
        if ((lt < 0) | (lt >= 1)).any():
            raise ValueError(f"lam must lie in [0, 1), got values in [{lt.min().item()}, {lt.max().item()}]")
    return ft, Kt, vt, lt, check_positive(s), wave_numbers(nx, ny, ft.device)


def _mode_weights(ft: torch.Tensor, wn: WaveNumbers) -> torch.Tensor:
    """|f_hat|^2 times each rfft column's multiplicity, zero mode excluded: (B, nx, ny//2+1)."""
    w = torch.fft.rfft2(ft).abs().square_().mul_(wn.weight)
    w[:, 0, 0] = 0.0
    return w


def solve(f: Array, K: Array, v: Array, lam: Array, s: float = DEFAULT_S) -> Array:
    """Solve -(1 - lam) s div(K grad u) + lam v . grad u = f exactly for a batch.

    f: (batch, nx, ny) zero mean, axis -2 is x; K: (batch, 3) rows (k11, k22, k12),
    positive definite; v: (batch, 2) velocity (vx, vy); lam: (batch,) in [0, 1).
    Returns u, (batch, nx, ny) float64 with zero mean, the same kind of array as f.
    """
    ft, Kt, vt, lt, s, wn = _checked(f, K, v, lam, s)
    nx, ny = ft.shape[-2:]
    diffusion = diffusion_symbol(Kt, wn).mul_((1 - lt)[:, None, None] * s)
    advection = advection_symbol(vt, wn).mul_(lt[:, None, None])
    symbol = torch.complex(diffusion, advection)  # (B, nx, ny//2+1)
    symbol[:, 0, 0] = 1.0
    u_hat = torch.fft.rfft2(ft)
    u_hat /= symbol
    u_hat[:, 0, 0] = 0.0
    return output_like(f)(torch.fft.irfft2(u_hat, s=(nx, ny)))


def ratio(f: Array, K: Array, v: Array, lam: Array, s: float = DEFAULT_S) -> Array:
    """The realised advection-to-diffusion ratio psi of each sample: shape (batch,).

    Evaluated from the spectrum by Parseval (one rfft2, no solve). Same arguments as
    ``solve``; returns the same kind of array as f.
    """
    ft, Kt, vt, lt, s, wn = _checked(f, K, v, lam, s)
    w = _mode_weights(ft, wn)
    diffusion = diffusion_symbol(Kt, wn).mul_((1 - lt)[:, None, None] * s).square_()
    advection = advection_symbol(vt, wn).mul_(lt[:, None, None]).square_()
    w /= diffusion + advection
    w[:, 0, 0] = 0.0
    psi2 = (w * advection).sum(dim=(-2, -1)) / (w * diffusion).sum(dim=(-2, -1))
    return output_like(f)(psi2.sqrt())


def lam_for_ratio(f: Array, K: Array, v: Array, psi: Array, s: float = DEFAULT_S) -> Array:
    """The lam in [0, 1) for which each sample's realised ratio equals ``psi``: (batch,).

    psi: (batch,) targets >= 0. Batched safeguarded Newton on log t, t = lam/(1-lam);
    converges to |log psi_realised - log psi| < NEWTON_TOL / 2 or raises.
    """
    ft, Kt, vt, _, s, wn = _checked(f, K, v, None, s)
    target = to_float64(psi, "psi", ft.device)
    check_batch(target, "psi", ft.shape[0], ())
    if (target < 0).any():
        raise ValueError(f"psi must be >= 0, got minimum {target.min().item()}")
    w = _mode_weights(ft, wn).flatten(1)  # (B, M)
    q = diffusion_symbol(Kt, wn).flatten(1).mul_(s)
    q[:, 0] = 1.0  # zero mode: weight 0 already
    c2 = advection_symbol(vt, wn).flatten(1).div_(q).square_()  # (B, M)
    lam = torch.zeros_like(target)
    live = target > 0
    if not live.any():
        return output_like(f)(lam)
    w, c2, goal = w[live], c2[live], 2 * target[live].log()
    w = w / w.sum(dim=1, keepdim=True)
    # Small-t limit: psi^2 ~ t^2 sum(w c^2); start there.
    x = 0.5 * (goal - (w * c2).sum(dim=1).log())  # log t
    lo = torch.full_like(x, -torch.inf)
    hi = torch.full_like(x, torch.inf)
    for _ in range(NEWTON_MAX_ITER):
        r2 = c2 * (2 * x).exp()[:, None]
        m = (1 + r2).reciprocal_()
        wm = w * m
        num = (wm * r2).sum(dim=1)
        den = wm.sum(dim=1)
        slope2 = 2 * (wm * r2 * m).sum(dim=1)  # d num/dx = -d den/dx
        g = (num / den).log() - goal
        if bool((g.abs() < NEWTON_TOL).all()):
            break
        lo = torch.where(g < 0, torch.maximum(lo, x), lo)
        hi = torch.where(g > 0, torch.minimum(hi, x), hi)
        step = -g / (slope2 / num + slope2 / den)
        x_new = x + step.clamp(-4.0, 4.0)
        outside = (x_new <= lo) | (x_new >= hi)
        bisect = 0.5 * (lo + hi)
        x = torch.where(outside & torch.isfinite(bisect), bisect, x_new)
    else:
        worst = g.abs().max().item()
        raise RuntimeError(f"lam_for_ratio did not converge in {NEWTON_MAX_ITER} steps (|log psi error| {worst:.2e})")
    t = x.exp()
    lam[live] = t / (1 + t)
    return output_like(f)(lam)
