"""PDE families as data sources: draw coefficients, build f, solve, lay out channels.

Each family turns sample indices of a random stream (``fno.physics.streams``) into a
``Fields`` (``fno.physics.fields``). Samples are independent of each other: sample i depends only on the
stream key and i, never on the batch it is generated in.

Channel layouts (the model's input channels; channel 0 is always the source f, the
rest are constant planes holding the coefficients, as in the public code):

- poisson:   f, s*k11, s*k22, s*k12
- advdiff:   f, (1-lam)*s*k11, (1-lam)*s*k22, (1-lam)*s*k12, lam*v1, lam*v2
- helmholtz: f, s, omega
- union (the mixture, and any family asked for with channels="union"):
  f, D11, D22, D12, a1, a2, s, omega. D is the diffusion tensor of the
  -div(D grad u) term (s*K for poisson, (1-lam)*s*K for advdiff), a the advection
  velocity (lam*v), s and omega the Helmholtz coefficients; absent ones are zero.
"""

from __future__ import annotations

import numpy as np
import torch

from fno.physics import advdiff, helmholtz, poisson
from fno.physics.fields import Fields
from fno.physics.source import N_BUMPS, VOID_FRACTIONS, bump_amplitudes, source_field
from fno.physics.spectral import wave_numbers
from fno.physics.streams import Slot, uniforms

S = poisson.DEFAULT_S
HELMHOLTZ_MAX_ABS_U = 2.0  # Helmholtz samples with max|u| above this are near resonance: redraw omega

SINGLE_FAMILIES = ("poisson", "advdiff", "helmholtz")
FAMILIES = (*SINGLE_FAMILIES, "mixture")
# The parameter each family's range controls, and its admissible open/closed lower bound.
PARAMETER = {"poisson": "eigenvalue e", "advdiff": "ratio psi", "helmholtz": "omega"}
PARAMETER_MIN = {"poisson": (0.0, "> 0"), "advdiff": (0.0, ">= 0"), "helmholtz": (0.0, "> 0")}
PRETRAIN_RANGE = {"poisson": (1.0, 5.0), "advdiff": (0.2, 1.0), "helmholtz": (1.0, 10.0)}
# Downstream ranges per shift (docs/study-design.md); every range stays configurable.
SHIFT_RANGE = {
    "poisson": {"none": (1.0, 5.0), "moderate": (5.0, 10.0), "large": (10.0, 20.0)},
    "advdiff": {"none": (0.2, 1.0), "moderate": (1.0, 2.0), "large": (2.0, 5.0)},
    "helmholtz": {"none": (1.0, 10.0), "moderate": (10.0, 15.0), "large": (15.0, 20.0)},
}

CHANNELS = {
    "poisson": ("f", "s*k11", "s*k22", "s*k12"),
    "advdiff": ("f", "(1-lam)*s*k11", "(1-lam)*s*k22", "(1-lam)*s*k12", "lam*v1", "lam*v2"),
    "helmholtz": ("f", "s", "omega"),
}
UNION_CHANNELS = ("f", "D11", "D22", "D12", "a1", "a2", "s", "omega")
UNION_INDEX = {"poisson": (0, 1, 2, 3), "advdiff": (0, 1, 2, 3, 4, 5), "helmholtz": (0, 6, 7)}
CHANNELS["mixture"] = UNION_CHANNELS

# Raw physical parameters recorded per sample (float64; NaN where a family has none).
PARAMS = (
    "family",
    "void_fraction",
    "theta",
    "e",
    "k11",
    "k22",
    "k12",
    "v1",
    "v2",
    "psi",
    "lam",
    "omega",
    "omega_draws",
)


def _params(batch: int, family: str, **values: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: np.full(batch, np.nan) for name in PARAMS}
    out["family"][:] = SINGLE_FAMILIES.index(family)
    for name, value in values.items():
        out[name] = np.asarray(value, dtype=np.float64)
    return out


def _source(key: int, index: np.ndarray, position: np.ndarray, n: int, zero_mean: bool, device):
    void_fraction = np.asarray(VOID_FRACTIONS)[position % len(VOID_FRACTIONS)]
    u = uniforms(key, index, np.arange(Slot.BUMPS, Slot.BUMPS + N_BUMPS**2))
    amplitudes = torch.as_tensor(bump_amplitudes(u, void_fraction), device=device)
    return source_field(amplitudes, n, zero_mean), void_fraction


def _diffusion(key: int, index: np.ndarray, e_lo: float, e_hi: float):
    theta = 2 * np.pi * uniforms(key, index, Slot.THETA)
    e = e_lo + (e_hi - e_lo) * uniforms(key, index, Slot.EIGENVALUE)
    return theta, e, poisson.diffusion_tensor(theta, e)


def sample_poisson(key, index, position, param_range, n, device) -> Fields:
    """SYS-1 with eigenvalue e ~ U[param_range] at a uniform random rotation."""
    f, vf = _source(key, index, position, n, True, device)
    theta, e, K = _diffusion(key, index, *param_range)
    u = poisson.solve(f, torch.as_tensor(K, device=device), S)
    coefficients = torch.as_tensor(S * K, device=device)
    params = _params(len(index), "poisson", void_fraction=vf, theta=theta, e=e, k11=K[:, 0], k22=K[:, 1], k12=K[:, 2])
    return Fields(f, u, coefficients, params, CHANNELS["poisson"])


def sample_advdiff(key, index, position, param_range, n, device) -> Fields:
    """SYS-2 with psi ~ U[param_range], e ~ U[PRETRAIN_RANGE poisson], v a unit vector."""
    f, vf = _source(key, index, position, n, True, device)
    theta, e, K = _diffusion(key, index, *PRETRAIN_RANGE["poisson"])
    angle = 2 * np.pi * uniforms(key, index, Slot.VELOCITY_ANGLE)
    v = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    lo, hi = param_range
    psi = lo + (hi - lo) * uniforms(key, index, Slot.RATIO)
    Kt, vt = torch.as_tensor(K, device=device), torch.as_tensor(v, device=device)
    u, lam = advdiff.solve_with_ratio(f, Kt, vt, torch.as_tensor(psi, device=device), S)
    coefficients = torch.cat([((1 - lam) * S)[:, None] * Kt, lam[:, None] * vt], dim=1)
    params = _params(len(index), "advdiff", void_fraction=vf, theta=theta, e=e, k11=K[:, 0], k22=K[:, 1], k12=K[:, 2])
    params.update(v1=v[:, 0], v2=v[:, 1], psi=psi, lam=lam.cpu().numpy())
    return Fields(f, u, coefficients, params, CHANNELS["advdiff"])


def sample_helmholtz(key, index, position, param_range, n, device) -> Fields:
    """SYS-3 with omega ~ U[param_range]; omega is redrawn while max|u| > 2."""
    f, vf = _source(key, index, position, n, False, device)
    lo, hi = param_range
    wn = wave_numbers(n, n, f.device)
    f_hat = torch.fft.rfft2(f)
    omega = lo + (hi - lo) * uniforms(key, index, Slot.OMEGA)
    draws = np.ones(len(index))
    u = helmholtz.solve_spectrum(f_hat, torch.as_tensor(omega, device=device), wn, S, (n, n))
    pending = np.flatnonzero((_max_abs(u) > HELMHOLTZ_MAX_ABS_U).cpu().numpy())
    for attempt in range(1, Slot.MAX_OMEGA_DRAWS):  # redraw omega for the rejected rows only
        if len(pending) == 0:
            break
        omega[pending] = lo + (hi - lo) * uniforms(key, index[pending], Slot.OMEGA + attempt)
        draws[pending] += 1
        rows = torch.as_tensor(pending, device=device)
        u[rows] = helmholtz.solve_spectrum(f_hat[rows], torch.as_tensor(omega[pending], device=device), wn, S, (n, n))
        pending = pending[(_max_abs(u[rows]) > HELMHOLTZ_MAX_ABS_U).cpu().numpy()]
    if len(pending):
        raise ValueError(
            f"helmholtz: no omega in [{lo}, {hi}] kept max|u| <= {HELMHOLTZ_MAX_ABS_U} for {len(pending)} samples "
            f"after {Slot.MAX_OMEGA_DRAWS} draws; the range is too close to resonance, choose another"
        )
    coefficients = torch.stack([torch.full_like(f[:, 0, 0], S), torch.as_tensor(omega, device=device)], dim=1)
    params = _params(len(index), "helmholtz", void_fraction=vf, omega=omega, omega_draws=draws)
    return Fields(f, u, coefficients, params, CHANNELS["helmholtz"])


def _max_abs(u: torch.Tensor) -> torch.Tensor:
    """max |u| per sample (B,), in one pass and without an |u| temporary."""
    lo, hi = torch.aminmax(u.flatten(1), dim=1)
    return torch.maximum(hi, -lo)


SAMPLERS = {"poisson": sample_poisson, "advdiff": sample_advdiff, "helmholtz": sample_helmholtz}


def to_union(family: str, coefficients: torch.Tensor) -> torch.Tensor:
    """Native coefficient channels of ``family`` (B, C-1) -> union layout (B, 7), zeros elsewhere."""
    out = coefficients.new_zeros(coefficients.shape[0], len(UNION_CHANNELS) - 1)
    out[:, [i - 1 for i in UNION_INDEX[family][1:]]] = coefficients
    return out


def sample(family, key, index, position, param_range, n, device, union: bool = False) -> Fields:
    """Samples of any family (mixture included) for global stream indices ``index``.

    position: (batch,) index of each sample within its split (it fixes the void
    fraction, position mod 4, and for the mixture the member family, position mod 3,
    so every prefix of a set has equal shares). param_range: (lo, hi) for a single
    family, {family: (lo, hi)} for the mixture. union: lay channels out as the union.
    """
    if family != "mixture":
        batch = SAMPLERS[family](key, index, position, param_range, n, device)
        if union:
            batch.coefficients = to_union(family, batch.coefficients)
            batch.channel_names = UNION_CHANNELS
        return batch
    member = position % len(SINGLE_FAMILIES)
    size = len(index)
    source = torch.empty(size, n, n, dtype=torch.float64, device=device)
    solution = torch.empty_like(source)
    coefficients = source.new_zeros(size, len(UNION_CHANNELS) - 1)
    params = {name: np.full(size, np.nan) for name in PARAMS}
    for which, name in enumerate(SINGLE_FAMILIES):  # three families, not samples
        rows = np.flatnonzero(member == which)
        if len(rows) == 0:
            continue
        part = SAMPLERS[name](key, index[rows], position[rows], param_range[name], n, device)
        at = torch.as_tensor(rows, device=device)
        source[at], solution[at] = part.source, part.solution
        coefficients[at] = to_union(name, part.coefficients)
        for p, values in part.params.items():
            params[p][rows] = values
    return Fields(source, solution, coefficients, params, UNION_CHANNELS)
