"""The layer-level measurements behind fno.model's choices: forward + backward, ms per call.

- pointwise 1x1 layer: ``Pointwise`` (one baddbmm) against a 1x1 convolution and an einsum;
- complex contraction over modes: the complex bmm ``SpectralConv2d`` uses against a
  real-valued block bmm;
- "rfft along y, keep m columns": ``_TruncatedRFFT`` against autograd of rfft + slice;
- the whole spectral convolution: its CPU path (the truncated transforms as real matrix
  products) against its path for other devices (FFTs on the kept columns), both on the CPU.

    python benchmarks/bench_layers.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fno.model import Pointwise, SpectralConv2d, _TruncatedRFFT


def time_ms(fn: Callable[[], object], repeats: int = 20) -> float:
    """Median milliseconds of ``fn()`` after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def pointwise_times(c: int, o: int, batch: int = 16, n: int = 64) -> dict[str, float]:
    layer = Pointwise(c, o)
    x = torch.randn(batch, c, n, n, requires_grad=True)
    g = torch.randn(batch, o, n, n)
    w, b = layer.weight, layer.bias
    return {
        "baddbmm (ours)": time_ms(lambda: layer(x).backward(g)),
        "conv2d 1x1": time_ms(lambda: F.conv2d(x, w[:, :, None, None], b).backward(g)),
        "einsum": time_ms(lambda: (torch.einsum("oc,bcxy->boxy", w, x) + b[:, None, None]).backward(g)),
    }


def contraction_times(modes: int, channels: int, batch: int = 16) -> dict[str, float]:
    a = torch.randn(modes, batch, channels, dtype=torch.cfloat, requires_grad=True)
    w_real = torch.randn(modes, channels, channels, 2, requires_grad=True)
    g = torch.randn(modes, batch, channels, dtype=torch.cfloat)

    def block() -> None:
        ar = torch.view_as_real(a)
        lhs = torch.cat([ar[..., 0], ar[..., 1]], -1)  # (M, B, 2C): [re, im]
        w0, w1 = w_real[..., 0], w_real[..., 1]
        rhs = torch.cat([torch.cat([w0, w1], -1), torch.cat([-w1, w0], -1)], 1)  # (M, 2C, 2O)
        out = torch.bmm(lhs, rhs)
        torch.complex(out[..., :channels], out[..., channels:]).backward(g)

    return {
        "complex bmm (ours)": time_ms(lambda: torch.bmm(a, torch.view_as_complex(w_real)).backward(g)),
        "real block bmm": time_ms(block),
    }


def rfft_times(channels: int, m: int, batch: int = 16, n: int = 64) -> dict[str, float]:
    x = torch.randn(batch, channels, n, n, requires_grad=True)
    g = torch.randn(batch, channels, n, m, dtype=torch.cfloat)
    return {
        "custom backward (ours)": time_ms(lambda: _TruncatedRFFT.apply(x, m).backward(g)),
        "autograd rfft + slice": time_ms(lambda: torch.fft.rfft(x, dim=-1)[..., :m].backward(g)),
    }


def spectral_times(channels: int, m: int, n: int, batch: int = 16) -> dict[str, float]:
    torch.manual_seed(0)
    layer = SpectralConv2d(channels, channels, m)
    x = torch.randn(batch, channels, n, n, requires_grad=True)
    g = torch.randn(batch, channels, n, n)
    return {
        "matrix DFT (ours, CPU)": time_ms(lambda: layer._forward_dft(x).backward(g)),
        "truncated FFTs (other devices)": time_ms(lambda: layer._forward_fft(x).backward(g)),
    }


def rows():
    for c, o in ((4, 16), (16, 16), (32, 32), (32, 64), (64, 64), (64, 128)):
        yield f"pointwise {c}->{o}, batch 16, 64x64", pointwise_times(c, o)
    for modes, channels in ((32, 16), (128, 32), (512, 64)):  # the spectral layers of w16-m4, w32-m8, w64-m16
        yield f"complex contraction, {modes} modes, batch 16, {channels} ch", contraction_times(modes, channels)
    for channels, m in ((16, 4), (32, 8), (64, 16)):
        yield f"truncated rfft, batch 16, {channels} ch, 64x64, m={m}", rfft_times(channels, m)
    # The spectral layers of w16-m4, w32-m8, w32-m16 and w64-m16 at 64 x 64; the most modes
    # a 64 x 64 grid holds; finer grids.
    for channels, m, n, batch in (
        (16, 4, 64, 16),
        (32, 8, 64, 16),
        (32, 16, 64, 16),
        (64, 16, 64, 16),
        (32, 32, 64, 16),
        (32, 8, 128, 16),
        (32, 16, 256, 4),
        (32, 32, 256, 4),
    ):
        yield f"spectral layer, batch {batch}, {channels} ch, {n}x{n}, m={m}", spectral_times(channels, m, n, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, forward + backward, median ms per call")
    for label, times in rows():
        cells = "  ".join(f"{name} {ms:7.2f}" for name, ms in times.items())
        print(f"{label:<48} {cells}")


if __name__ == "__main__":
    main()
