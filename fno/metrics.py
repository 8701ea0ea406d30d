"""Error metrics of a prediction against its target, per sample, overall and by frequency band.

Conventions (docs/analysis.md restates them):

- relative L2 error of a sample: ||pred - u|| / ||u|| over its grid points;
- band errors split that error by the wave-number magnitude |k| = sqrt(kx^2 + ky^2)
  (integer wave numbers on the periodic unit square) as a fraction of the grid's
  Nyquist number K = min(nx, ny) / 2, so a band means the same at every resolution:
  low |k| < BAND_EDGES[0] K, mid BAND_EDGES[0] K <= |k| < BAND_EDGES[1] K, high the rest
  (up to sqrt(2) K in the corners). Each is ||P_band (pred - u)|| / ||u||, the band's
  share of the error relative to the whole target, so that per sample
  low^2 + mid^2 + high^2 = (relative L2)^2 (Parseval). Dividing by the target's own
  energy in the band instead would blow up in the high band, where a smooth solution
  has almost none;
- a set's metrics (``summarize``): the means over samples of the relative L2 error and
  of each band error, and the median and 90th percentile of the per-sample relative L2
  error (linear interpolation between samples).
"""

from __future__ import annotations

import functools

import torch

BAND_EDGES = (0.25, 0.5)  # low | mid | high edges, as fractions of the Nyquist number
BANDS = ("low", "mid", "high")
# Metric names of an evaluation, in the order ``summarize`` returns them.
EVAL_METRICS = ("rel_l2", "rel_l2_low", "rel_l2_mid", "rel_l2_high", "rel_l2_p50", "rel_l2_p90")


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ||pred - target|| / ||target|| over all but the batch axis: (batch,)."""
    diff = torch.linalg.vector_norm((pred - target).flatten(1), dim=1)
    return diff / torch.linalg.vector_norm(target.flatten(1), dim=1)


@functools.lru_cache(maxsize=32)
def band_masks(nx: int, ny: int, device: torch.device) -> torch.Tensor:
    """(3, nx, ny) float masks of the low, mid and high bands over fft2's frequency layout."""
    kx = torch.fft.fftfreq(nx, 1.0 / nx, device=device)  # integer wave numbers, (nx,)
    ky = torch.fft.fftfreq(ny, 1.0 / ny, device=device)
    fraction = torch.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2) / (min(nx, ny) / 2)  # (nx, ny)
    low, mid = BAND_EDGES
    masks = torch.stack([fraction < low, (fraction >= low) & (fraction < mid), fraction >= mid])
    return masks.to(torch.float32)


def band_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample band errors (batch, 3): low, mid, high; see the module docstring.

    pred, target: (batch, C, nx, ny) or (batch, nx, ny), real; with C > 1 channels a
    sample's error and target power are summed over them.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    error = (pred - target).float().reshape(-1, *pred.shape[-2:])  # (B, nx, ny)
    target = target.float().reshape(error.shape)
    error_power = torch.fft.fft2(error).abs().square()  # (B, nx, ny)
    target_power = torch.fft.fft2(target).abs().square().sum(dim=(-2, -1))  # (B,)
    if pred.ndim == 4 and pred.shape[1] > 1:  # several output channels: a sample's power is their sum
        error_power = error_power.view(pred.shape[0], -1, *pred.shape[-2:]).sum(dim=1)
        target_power = target_power.view(pred.shape[0], -1).sum(dim=1)
    masks = band_masks(*error.shape[-2:], error.device)  # (3, nx, ny)
    per_band = torch.einsum("bxy,kxy->bk", error_power, masks)  # (B, 3)
    return torch.sqrt(per_band / target_power[:, None])


def summarize(per_sample: torch.Tensor) -> dict[str, float]:
    """A set's metrics from its per-sample errors (n, 4): relative L2, then low, mid and
    high band errors. Keys: EVAL_METRICS. One host sync."""
    rel = per_sample[:, 0]
    values = torch.cat([per_sample.mean(dim=0), torch.quantile(rel, torch.tensor([0.5, 0.9], device=rel.device))])
    return dict(zip(EVAL_METRICS, values.tolist(), strict=True))
