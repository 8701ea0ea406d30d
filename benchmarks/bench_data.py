"""Data-generation throughput per family against the FFT floor, and a per-sample baseline.

For each family and batch (chunk) size, samples/s of ``fno.data.iter_chunks`` at
128 x 128 (float64 inside), and its time as a multiple of the "FFT floor": one rfft2
plus one irfft2 of an already generated float64 batch of the same size, run back to
back with each generation so that both see the same machine. Also one large request
with the default chunking, and a
per-sample numpy generator in the style of the public code (a loop over samples and
over the 144 bumps, full complex FFT, real part), as the baseline the goals refer to.

    python benchmarks/bench_data.py                  # all families, batches 1..4096
    python benchmarks/bench_data.py --batches 64 256 --families poisson --device cuda

Timings are medians over repeats; run on an otherwise idle machine. On shared
virtual machines absolute rates drift by 2x from minute to minute; the ratios drift less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from fno.data import DatasetSpec, default_chunk_size, iter_chunks
from fno.physics.families import PRETRAIN_RANGE, SINGLE_FAMILIES
from fno.physics.source import BUMP_CENTRES, SIGMA


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired(fn, floor, min_time: float, device: torch.device, max_reps: int = 25) -> tuple[float, float]:
    """(median seconds of fn, median of fn/floor over back-to-back pairs).

    Shared machines drift by 2x over seconds; a ratio taken between two runs made
    back to back is far steadier than one taken between two separate medians.
    """
    fn(), floor()  # warm-up: FFT plans, allocations
    _sync(device)
    times, ratios = [], []
    while len(times) < 5 or (sum(times) < min_time and len(times) < max_reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        mid = time.perf_counter()
        floor()
        _sync(device)
        end = time.perf_counter()
        times.append(mid - start)
        ratios.append((mid - start) / (end - mid))
    return statistics.median(times), statistics.median(ratios)


def fft_floor_fn(batch: int, n: int, device: torch.device):
    """One rfft2 plus one irfft2 of an already generated float64 batch."""
    f = torch.randn(batch, n, n, dtype=torch.float64, device=device)
    return lambda: torch.fft.irfft2(torch.fft.rfft2(f), s=(n, n))


def generation_fn(family: str, samples: int, chunk: int | None, n: int, device: torch.device):
    spec = DatasetSpec(family, PRETRAIN_RANGE.get(family), samples, n)

    def run():
        for _ in iter_chunks(spec, 0, samples, chunk_size=chunk, device=device, dtype=torch.float32):
            pass

    return run


def public_style_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """One Poisson sample the public code's way: loops over bumps, full complex FFT."""
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    f = np.zeros((n, n))
    vf = rng.choice([0.2, 0.4, 0.6, 0.8])
    for cx in BUMP_CENTRES:
        for cy in BUMP_CENTRES:
            a = 0.0 if rng.random() < vf else rng.uniform(1e-3, 1)
            f += a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * SIGMA**2))
    f = f / f.max()
    f -= f.mean()
    theta, e = rng.uniform(0, 2 * np.pi), rng.uniform(1, 5)
    c, s = np.cos(theta), np.sin(theta)
    k11, k22, k12 = c * c + e * s * s, s * s + e * c * c, c * s * (e - 1)
    k = np.fft.fftfreq(n, 1 / n)
    k[n // 2] = n // 2
    kx, ky = np.meshgrid(2 * np.pi * k, 2 * np.pi * k, indexing="ij")
    sym = 0.01 * (k11 * kx**2 + k22 * ky**2 + 2 * k12 * kx * ky)
    sym[0, 0] = 1.0
    u_hat = np.fft.fft2(f) / sym
    u_hat[0, 0] = 0
    return np.real(np.fft.ifft2(u_hat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=[*SINGLE_FAMILIES, "mixture"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64, 256, 1024, 4096])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per measurement")
    parser.add_argument("--baseline-samples", type=int, default=20)
    parser.add_argument("--large", type=int, default=4096, help="also time one request of this many samples")
    args = parser.parse_args()
    device = torch.device(args.device)
    n = args.resolution
    malloc = os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default")
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, grid {n}x{n}, "
        f"MALLOC_MMAP_THRESHOLD_={malloc}"
    )
    if args.baseline_samples:
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(args.baseline_samples):
            public_style_sample(rng, n)
        rate = args.baseline_samples / (time.perf_counter() - start)
        print(f"per-sample numpy baseline (public-code style, poisson): {rate:,.0f} samples/s\n")
    header = f"{'family':<10} {'batch':>6} {'samples/s':>11} {'x FFT floor':>12}"
    print(header + "   (x FFT floor: median of back-to-back ratios; floor = rfft2 + irfft2, float64)")
    print("-" * len(header))
    for family in args.families:
        for batch in args.batches:
            floor = fft_floor_fn(batch, n, device)
            seconds, ratio = paired(generation_fn(family, batch, batch, n, device), floor, args.min_time, device)
            print(f"{family:<10} {batch:>6} {batch / seconds:>11,.0f} {ratio:>12.2f}")
        if args.large:
            chunk = default_chunk_size(n)
            floor = fft_floor_fn(chunk, n, device)
            n_floor = args.large // chunk

            def floors(floor=floor, n_floor=n_floor):
                for _ in range(n_floor):
                    floor()

            seconds, ratio = paired(
                generation_fn(family, args.large, None, n, device),
                floors,
                0.0,
                device,
                max_reps=3,
            )
            print(
                f"{family:<10} {args.large:>6} {args.large / seconds:>11,.0f} {ratio:>12.2f}"
                f"   <- one request, default chunks of {chunk}"
            )
        print()


if __name__ == "__main__":
    main()
