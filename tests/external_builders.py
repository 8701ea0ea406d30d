"""Small datasets in every supported format, made with the project's own solvers, for the
dataset tests: each as benchmarks publish theirs (PDEBench's HDF5, neuraloperator's .pt
files per split and grid, NumPy archives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fno.data import DatasetSpec, load_fields


def poisson(n: int, resolution: int, split: str = "train", lo: float = 1.0, hi: float = 10.0):
    """(f (n, R, R), u (n, R, R), e (n,)) of Poisson samples with eigenvalues e in [lo, hi]."""
    fields = load_fields(DatasetSpec("poisson", (lo, hi), n, resolution, 0, split))
    return fields.source.numpy(), fields.solution.numpy(), fields.params["e"], fields.coefficients.numpy()


def pdebench_h5(path: Path, n: int = 160, resolution: int = 24) -> Path:
    """PDEBench's 2D Darcy layout: nu (N, H, W), tensor (N, 1, H, W), x- and y-coordinate
    (H,), (W,); plus beta (N,), a per-sample parameter (here the Poisson eigenvalue)."""
    import h5py

    f, u, e, _ = poisson(n, resolution)
    with h5py.File(path, "w") as h5:
        h5["nu"] = f
        h5["tensor"] = u[:, None]
        h5["beta"] = e
        h5["x-coordinate"] = np.linspace(0, 1, resolution)
        h5["y-coordinate"] = np.linspace(0, 1, resolution)
    return path


def cropped_npz(path: Path, n: int = 80) -> Path:
    """A non-periodic, non-square, several-channel set: Poisson samples at 32 x 32 cropped to
    a 16 x 24 window (so neither axis wraps), the source f (N, H, W) and the three diffusion
    coefficients as constant planes (N, H, W, 3), NHWC; test samples under "{name}_test"."""
    out = {}
    for split, suffix, count in (("train", "", n), ("test", "_test", 16)):
        f, u, _, c = poisson(count, 32, split)
        window = (slice(None), slice(4, 20), slice(2, 26))
        out[f"f{suffix}"] = f[window]
        planes = np.broadcast_to(c[:, None, None, :], (*f[window].shape, c.shape[1]))
        out[f"coef{suffix}"] = np.ascontiguousarray(planes, dtype=np.float32)
        out[f"u{suffix}"] = u[window]
    np.savez(path, **out)
    return path


def neuralop_pt(folder: Path, n_train: int = 64, n_test: int = 16) -> Path:
    """neuraloperator's Darcy files: darcy_train_16.pt, darcy_test_16.pt and darcy_test_32.pt,
    each a dict {'x': (N, H, W), 'y': (N, H, W)}; x here an integer field (f quantised to
    int16), read as float."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, split, count, resolution in (
        ("darcy_train_16", "train", n_train, 16),
        ("darcy_test_16", "test", n_test, 16),
        ("darcy_test_32", "test", n_test, 32),
    ):
        f, u, _, _ = poisson(count, resolution, split)
        x = torch.from_numpy(np.round(f * 1000).astype(np.int16))
        torch.save({"x": x, "y": torch.from_numpy(u)}, folder / f"{name}.pt")
    return folder


def npy_folder(folder: Path, n: int = 64) -> Path:
    """A folder of .npy files, one array per file: a.npy (N, 2, H, W) NCHW (f and f squared),
    u.npy (N, H, W)."""
    folder.mkdir(parents=True, exist_ok=True)
    f, u, _, _ = poisson(n, 16)
    np.save(folder / "a.npy", np.stack([f, f * f], axis=1))
    np.save(folder / "u.npy", u)
    return folder
