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
    spectral_power,
    to_float64,
    wave_numbers,
)

NEWTON_TOL = 1e-13  # on log(psi^2): psi relative error below 1e-13
NEWTON_MAX_ITER = 100
# Newton runs on the modes with |kx|, |ky| <= NEWTON_LOW_K; the full spectrum is used only
# where the energy outside that block could move psi by more than the tolerance. The
# source's energy beyond |k| = 32 is below 1e-17 of its total (Gaussian bumps,
# sigma = 1/32), so at the study's settings that never happens.
NEWTON_LOW_K = 32


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


def _symbol_parts(K: torch.Tensor, v: torch.Tensor, s: float, wn: WaveNumbers):
    """(s d^T K d, v . d), each (B, nx, ny//2+1) real: the diffusion and advection symbols at lam = 1/2."""
    return diffusion_symbol(K, wn).mul_(s), advection_symbol(v, wn)


def _solve_spectrum(f_hat, diffusion, advection, lam, shape):
    a = diffusion * (1 - lam)[:, None, None]  # real part of the symbol a + i b
    b = advection * lam[:, None, None]
    a[:, 0, 0] = 1.0
    norm2 = (a * a).add_(b * b)
    inverse = torch.complex(a.div_(norm2), b.div_(norm2).neg_())  # 1 / (a + i b); multiply beats divide
    u_hat = f_hat * inverse
    u_hat[:, 0, 0] = 0.0
    return torch.fft.irfft2(u_hat, s=shape)


def solve(f: Array, K: Array, v: Array, lam: Array, s: float = DEFAULT_S) -> Array:
    """Solve -(1 - lam) s div(K grad u) + lam v . grad u = f exactly for a batch.

    f: (batch, nx, ny) zero mean, axis -2 is x; K: (batch, 3) rows (k11, k22, k12),
    positive definite; v: (batch, 2) velocity (vx, vy); lam: (batch,) in [0, 1).
    Returns u, (batch, nx, ny) float64 with zero mean, the same kind of array as f.
    """
    ft, Kt, vt, lt, s, wn = _checked(f, K, v, lam, s)
    diffusion, advection = _symbol_parts(Kt, vt, s, wn)
    return output_like(f)(_solve_spectrum(torch.fft.rfft2(ft), diffusion, advection, lt, tuple(ft.shape[-2:])))


def ratio(f: Array, K: Array, v: Array, lam: Array, s: float = DEFAULT_S) -> Array:
    """The realised advection-to-diffusion ratio psi of each sample: shape (batch,).

    Evaluated from the spectrum by Parseval (one rfft2, no solve). Same arguments as
    ``solve``; returns the same kind of array as f.
    """
    ft, Kt, vt, lt, s, wn = _checked(f, K, v, lam, s)
    w = spectral_power(torch.fft.rfft2(ft)).mul_(wn.weight)  # |f_hat|^2 with rfft multiplicity
    diffusion, advection = _symbol_parts(Kt, vt, s, wn)
    diffusion = diffusion.mul_((1 - lt)[:, None, None]).square_()
    advection = advection.mul_(lt[:, None, None]).square_()
    w /= diffusion + advection
    w[:, 0, 0] = 0.0
    psi2 = (w * advection).sum(dim=(-2, -1)) / (w * diffusion).sum(dim=(-2, -1))
    return output_like(f)(psi2.sqrt())


def _low_block(x: torch.Tensor) -> torch.Tensor:
    """The rfft modes with |kx|, |ky| <= NEWTON_LOW_K of x (B, nx, ny//2+1); x itself if that is all."""
    nx, ny_half = x.shape[-2:]
    if nx <= 2 * NEWTON_LOW_K + 1 and ny_half <= NEWTON_LOW_K + 1:
        return x
    k = NEWTON_LOW_K
    return torch.cat([x[:, : k + 1, : k + 1], x[:, nx - k :, : k + 1]], dim=1)


def _weights_and_ratios(power, diffusion, advection):
    """Newton's inputs: w (B, M) = mode power normalised to sum 1, c2 = (v.d / s d^T K d)^2.

    power: |f_hat|^2 times rfft multiplicity, zero mode already 0. All (B, rows, cols).
    """
    w = power.flatten(1)
    w = w / w.sum(dim=1, keepdim=True)
    q = diffusion.flatten(1).clone()
    q[:, 0] = 1.0  # the zero mode has weight 0
    return w, advection.flatten(1).div(q).square_()


def _newton_log_t(w, c2, goal, x, tol):
    """Solve log psi^2(x) = goal for x = log t, per sample; a converged sample is frozen.

    w, c2: (B, M) from ``_weights_and_ratios``; goal: (B,) target log psi^2; x: (B,)
    start. Returns x with |residual| < tol. A sample's iterates depend on it alone.
    """
    lo = torch.full_like(x, -torch.inf)
    hi = torch.full_like(x, torch.inf)
    for _ in range(NEWTON_MAX_ITER):
        r2 = c2 * (2 * x).exp()[:, None]
        m = r2.add(1.0).reciprocal_()  # 1 / (1 + r^2)
        wm = w * m
        a = r2.mul_(wm)  # w r^2 / (1 + r^2)
        num, den = a.sum(dim=1), wm.sum(dim=1)
        g = (num / den).log() - goal
        active = g.abs() >= tol
        if not bool(active.any()):
            return x
        slope2 = 2 * a.mul_(m).sum(dim=1)  # d num/dx = -d den/dx
        lo = torch.where(g < 0, torch.maximum(lo, x), lo)
        hi = torch.where(g > 0, torch.minimum(hi, x), hi)
        x_new = x + (-g / (slope2 / num + slope2 / den)).clamp(-4.0, 4.0)
        bisect = 0.5 * (lo + hi)
        x_new = torch.where(((x_new <= lo) | (x_new >= hi)) & torch.isfinite(bisect), bisect, x_new)
        x = torch.where(active, x_new, x)
    worst = g.abs().max().item()
    raise RuntimeError(f"lam_for_ratio did not converge in {NEWTON_MAX_ITER} steps (|log psi error| {worst:.2e})")


def _lam_from_spectrum(f_hat, diffusion, advection, psi, wn):
    """lam (B,) realising psi, from the spectrum and the symbols of ``_symbol_parts``.

    Newton runs on the low-mode block, where the energy of f is. With eps the share of
    the energy outside the block, log psi^2 on the full spectrum differs from its value
    on the block by at most 2 eps (2 + psi^2 + psi^-2); samples where that bound is not
    below NEWTON_TOL / 2 are polished on the full spectrum.
    """
    lam = torch.zeros_like(psi)
    live = psi > 0
    if not bool(live.all()):
        if not bool(live.any()):
            return lam
        f_hat, diffusion, advection = f_hat[live], diffusion[live], advection[live]
    target = psi[live]
    goal = 2 * target.log()
    power = spectral_power(f_hat).mul_(wn.weight)  # (B, nx, ny//2+1): |f_hat|^2 with multiplicity
    power[:, 0, 0] = 0.0
    low_power = _low_block(power)
    w, c2 = _weights_and_ratios(low_power, _low_block(diffusion), _low_block(advection))
    x = 0.5 * (goal - (w * c2).sum(dim=1).log())  # small-t limit: psi^2 ~ t^2 sum(w c^2)
    x = _newton_log_t(w, c2, goal, x, NEWTON_TOL / 2)
    if low_power.shape[1:] != power.shape[1:]:
        total = power.sum(dim=(-2, -1))
        eps = (total - low_power.sum(dim=(-2, -1))).clamp_min(0) / total + 4 * torch.finfo(total.dtype).eps
        polish = 2 * eps * (2 + target**2 + target**-2) >= NEWTON_TOL / 2
        if bool(polish.any()):
            w, c2 = _weights_and_ratios(power[polish], diffusion[polish], advection[polish])
            x[polish] = _newton_log_t(w, c2, goal[polish], x[polish], NEWTON_TOL)
    t = x.exp()
    lam[live] = t / (1 + t)
    return lam


def _checked_psi(psi: Array, ft: torch.Tensor) -> torch.Tensor:
    target = to_float64(psi, "psi", ft.device)
    check_batch(target, "psi", ft.shape[0], ())
    if (target < 0).any():
        raise ValueError(f"psi must be >= 0, got minimum {target.min().item()}")
    return target


def lam_for_ratio(f: Array, K: Array, v: Array, psi: Array, s: float = DEFAULT_S) -> Array:
    """The lam in [0, 1) for which each sample's realised ratio equals ``psi``: (batch,).

    psi: (batch,) targets >= 0. Batched safeguarded Newton on log t, t = lam/(1-lam);
    converges to |log psi_realised - log psi| < NEWTON_TOL / 2 or raises. Each sample's
    result depends on that sample alone, not on the rest of the batch.
    """
    ft, Kt, vt, _, s, wn = _checked(f, K, v, None, s)
    target = _checked_psi(psi, ft)
    diffusion, advection = _symbol_parts(Kt, vt, s, wn)
    return output_like(f)(_lam_from_spectrum(torch.fft.rfft2(ft), diffusion, advection, target, wn))


def solve_with_ratio(f: Array, K: Array, v: Array, psi: Array, s: float = DEFAULT_S) -> tuple[Array, Array]:
    """``lam_for_ratio`` then ``solve``, sharing one FFT of f: returns (u, lam)."""
    ft, Kt, vt, _, s, wn = _checked(f, K, v, None, s)
    target = _checked_psi(psi, ft)
    diffusion, advection = _symbol_parts(Kt, vt, s, wn)
    f_hat = torch.fft.rfft2(ft)
    lam = _lam_from_spectrum(f_hat, diffusion, advection, target, wn)
    u = _solve_spectrum(f_hat, diffusion, advection, lam, tuple(ft.shape[-2:]))
    out = output_like(f)
    return out(u), out(lam)
