"""FNO-2d, built bottom-up: spectral convolution -> Fourier layer -> FNO2d.

Layout: channels-first (batch, channel, x, y) throughout, chosen by measurement: the
FFTs then run over contiguous axes, and the activations stay contiguous, which made a
training step 1.3x to 2x faster on CPU than a channels-last variant (see
benchmarks/bench_model.py). Axis convention as in ``fno.physics.spectral``: x is axis -2.

Sizes: width w and modes m set the model size; the spectral weights dominate, 4 w^2 m^2
real numbers per layer (two retained corners, complex), 16 w^2 m^2 for 4 layers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Named sizes spanning the paper's range (about 64K to about 256M parameters).
PRESETS: dict[str, tuple[int, int]] = {
    "w16-m4": (16, 4),
    "w32-m8": (32, 8),
    "w64-m16": (64, 16),
    "w128-m32": (128, 32),
}


def max_modes(nx: int, ny: int) -> int:
    """The most modes per axis whose two corners fit an nx x ny rfft2 spectrum without overlap."""
    return min(nx // 2, ny // 2 + 1)


def check_modes(modes: int, nx: int, ny: int) -> None:
    if modes > max_modes(nx, ny):
        raise ValueError(
            f"modes={modes} is too many for a {nx} x {ny} grid: at most {max_modes(nx, ny)} "
            f"(2*modes <= nx and modes <= ny//2 + 1); use more grid points or fewer modes"
        )


def real_edge_bins(z: torch.Tensor, n: int) -> torch.Tensor:
    """``z`` (..., k) complex, the first k rfft columns of a length-n signal, with the
    imaginary parts of the zero frequency and (n even, k = n//2 + 1) the Nyquist
    frequency set to 0, as a real signal's spectrum has them (a new tensor)."""
    nyquist = n % 2 == 0 and z.shape[-1] == n // 2 + 1
    keep = _bin_weights(z.shape[-1], 0.0, 1.0, 0.0 if nyquist else 1.0, z.real.dtype, z.device)
    return torch.complex(z.real, z.imag * keep)


def irfft_real(z: torch.Tensor, n: int) -> torch.Tensor:
    """irfft of ``z`` (..., k) complex along the last axis to length ``n``, reading the
    zero and Nyquist bins as real, as the spectrum of a real signal has them.

    The CPU library (pocketfft) ignores their imaginary parts by itself (tested);
    cuFFT has been reported not to (pytorch/pytorch#154496), so on other devices they
    are cleared first. That clearing builds a new complex tensor of the whole (B, O, X, m)
    spectrum, which cost the CPU training step 15-30%: it runs only where it is needed.
    """
    if z.device.type != "cpu":
        z = real_edge_bins(z, n)
    return torch.fft.irfft(z, n=n, dim=-1)


@functools.lru_cache(maxsize=64)
def _bin_weights(k: int, first: float, middle: float, last: float, dtype: torch.dtype, device: torch.device):
    """(k,) constant weights: ``first`` at bin 0, ``last`` at bin k - 1, ``middle`` between.

    Built on the host and copied once per (size, dtype, device): writing single elements
    of a device tensor copies a host scalar each time, a host sync per write (12 per
    training step at 4 layers, counted with CUDA's sync debug mode).
    """
    with torch.inference_mode(False):  # a cached constant must serve training too
        weights = torch.full((k,), middle, dtype=dtype)
        weights[-1] = last
        weights[0] = first
        return weights.to(device)


class _TruncatedRFFT(torch.autograd.Function):
    """rfft along the last axis, keeping the first m frequencies, with a hand-written backward.

    (..., n) real -> (..., m) complex. The adjoint of "transform, then keep m columns" is
    one irfft of the m-column gradient (halved where irfft doubles, at 0 < k < n/2),
    times n; autograd's own backward instead zero-pads the gradient to n/2 + 1 columns
    and runs a full-length complex transform (benchmarks/bench_layers.py compares them).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, m: int) -> torch.Tensor:
        ctx.n = x.shape[-1]
        return torch.fft.rfft(x, dim=-1)[..., :m]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        n, m = ctx.n, grad.shape[-1]
        # 1 at the zero frequency (irfft counts it once) and at Nyquist (likewise), 0.5 between.
        last = 1.0 if n % 2 == 0 and m == n // 2 + 1 else 0.5
        weight = _bin_weights(m, 1.0, 0.5, last, grad.real.dtype, grad.device)
        return irfft_real(grad * weight, n) * n, None


@functools.lru_cache(maxsize=64)
def _dft_matrices(nx: int, ny: int, m: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Real matrices of the truncated 2-d DFT that ``SpectralConv2d`` keeps, and of its inverse.

    Complex numbers are carried as real (re, im) pairs, so every product is a real GEMM:

    - ``rfft_y`` (ny, 2m): a row of ny reals -> its rfft's first m bins, columns (re/im, ky);
    - ``fft_x`` (2 * 2m, 2 * nx): a column of nx complex values, rows of the input (x, re/im),
      -> the 2m kept x-frequencies [0, m) and [nx - m, nx), rows of the output (re/im, kx);
    - ``ifft_x`` (2 * nx, 2 * 2m): the inverse, (re/im, kx) -> (x, re/im), with its 1/nx;
    - ``irfft_y`` (2m, ny): m bins, rows (re/im, ky) -> a real row of ny points, as irfft
      reads them (1/ny; each bin 0 < ky < ny/2 counted twice; the imaginary parts of the
      zero and the Nyquist bin ignored).

    Built once per (grid, modes, dtype, device) in float64, with angles reduced mod 2 pi in
    integers (exact for any n), then cast.
    """

    def angles(k: torch.Tensor, n: int) -> torch.Tensor:  # (len(k), n): 2 pi k t / n
        t = torch.arange(n, dtype=torch.int64)
        return 2 * math.pi * ((k[:, None] * t[None, :]) % n).to(torch.float64) / n

    ky = torch.arange(m)
    kx = torch.cat([torch.arange(m), torch.arange(nx - m, nx)])
    nyquist = ny % 2 == 0 and m == ny // 2 + 1
    with torch.inference_mode(False):  # cached constants must serve training too
        a_y = angles(ky, ny)  # (m, ny)
        rfft_y = torch.cat([torch.cos(a_y), -torch.sin(a_y)]).T  # (ny, 2m)
        bin_weight = torch.full((m,), 2.0, dtype=torch.float64)
        bin_weight[0] = 1.0
        if nyquist:
            bin_weight[-1] = 1.0
        imag_weight = bin_weight.clone()
        imag_weight[0] = 0.0  # a real signal's zero bin is real
        if nyquist:
            imag_weight[-1] = 0.0  # ... and so is its Nyquist bin
        irfft_y = torch.cat([bin_weight[:, None] * torch.cos(a_y), -imag_weight[:, None] * torch.sin(a_y)]) / ny

        a_x = angles(kx, nx)  # (2m, nx)
        c, s = torch.cos(a_x), torch.sin(a_x)  # e^{-i a} = c - i s; e^{+i a} = c + i s
        # Forward: (re, im) out = (c re + s im, c im - s re), blocks [[c, s], [-s, c]].
        fft_x = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)])  # (2, 2m, nx, 2)
        # Inverse: (re, im) out = (c re - s im, s re + c im) / nx, blocks [[c, -s], [s, c]].
        ifft_x = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])  # (2 re/im out, 2 re/im in, 2m, nx)
        ifft_x = ifft_x.permute(3, 0, 1, 2) / nx  # (nx, 2, 2, 2m)
        matrices = (rfft_y, fft_x.reshape(4 * m, 2 * nx), ifft_x.reshape(2 * nx, 4 * m), irfft_y)
        return tuple(t.to(dtype=dtype, device=device).contiguous() for t in matrices)


class SpectralConv2d(nn.Module):
    """Multiply the retained Fourier coefficients by learned complex matrices.

    Keeps the modes x modes lowest frequencies in each of the two corners of the rfft2
    spectrum (kx in [0, m) and [-m, 0), ky in [0, m)): the public code's ``mode_cut``.
    (batch, in_channels, x, y) -> (batch, out_channels, x, y).

    Two exact implementations of the same map, chosen by device (tested equal):

    - CPU: the truncated transforms as real matrix products (``_dft_matrices``), which
      compute only the kept frequencies. A layer's forward + backward was 1.4x to 2.9x
      faster than with FFTs from 64 x 64 to 256 x 256, at up to the most modes a grid
      holds (benchmarks/bench_layers.py, docs/model.md); autograd gives the backward.
    - Other devices: FFTs on the kept columns only (``_TruncatedRFFT``, then an x-FFT of m
      columns), as measured on GPUs (docs/gpu.md). There a matrix product would also run
      in TF32 under ``--tf32``, which an FFT does not.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        scale = 1.0 / (in_channels * out_channels)
        # (2 m*m modes, in, out) complex, stored as its real view (..., 2) so that
        # state_dicts, optimizers and torch.compile see ordinary real tensors. Mode index
        # kx_index * m + ky, kx_index over [0, m) then [nx - m, nx).
        self.weight = nn.Parameter(scale * torch.rand(2 * modes * modes, in_channels, out_channels, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # FFTs and the complex contraction stay in the weight's precision under autocast
        # (bf16 FFTs lose too much, and most sizes have none).
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._forward(x.to(self.weight.dtype))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        check_modes(self.modes, x.shape[-2], x.shape[-1])
        if x.device.type == "cpu":
            return self._forward_dft(x)
        return self._forward_fft(x)  # also the meta device's, which fno.memory counts

    def _contract(self, modes_first: torch.Tensor) -> torch.Tensor:
        """(2m*m, B, in) complex -> (2m*m, B, out) complex: one matrix per mode."""
        return torch.bmm(modes_first, torch.view_as_complex(self.weight))

    def _forward_dft(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, nx, ny = x.shape
        m, c_in, c_out = self.modes, self.in_channels, self.out_channels
        rfft_y, fft_x, ifft_x, irfft_y = _dft_matrices(nx, ny, m, x.dtype, x.device)
        z = (x.reshape(-1, ny) @ rfft_y).view(batch * c_in, 2 * nx, m)  # rows (x, re/im), columns ky
        corners = torch.matmul(fft_x, z)  # (B*C, 2 * 2m, m): rows (re/im, kx)
        # (2m, m, B, C, 2) contiguous -> (2m*m, B, C) complex
        corners = corners.view(batch, c_in, 2, 2 * m, m).permute(3, 4, 0, 1, 2).contiguous()
        out = self._contract(torch.view_as_complex(corners).view(2 * m * m, batch, c_in))  # (2m*m, B, O)
        # (B, O, 2, 2m, m) -> (B*O, 2 * 2m, m): rows (re/im, kx)
        out = torch.view_as_real(out).view(2 * m, m, batch, c_out, 2).permute(2, 3, 4, 0, 1).reshape(-1, 4 * m, m)
        z = torch.matmul(ifft_x, out)  # (B*O, 2 * nx, m): rows (x, re/im)
        return (z.view(-1, 2 * m) @ irfft_y).view(batch, c_out, nx, ny)

    def _forward_fft(self, x: torch.Tensor) -> torch.Tensor:
        """The x-transforms run on the m kept columns only, and irfft pads the dropped
        columns itself, so no full-size zero spectrum is built."""
        batch, _, nx, ny = x.shape
        m = self.modes
        x_hat = _TruncatedRFFT.apply(x, m)  # (B, C, X, m) complex: only the kept ky
        x_hat = torch.fft.fft(x_hat, dim=-2)  # x-FFT on the kept columns only
        corners = torch.cat([x_hat[:, :, :m], x_hat[:, :, nx - m :]], dim=2)  # (B, C, 2m, m)
        # (2m*m, B, C), made contiguous: batched complex GEMM on a strided view was 10-20%
        # slower for the whole layer, forward + backward (measured at w32-m8 and w64-m16).
        modes_first = corners.flatten(2).permute(2, 0, 1).contiguous()
        out = self._contract(modes_first)  # (2m*m, B, O)
        out = out.permute(1, 2, 0).reshape(batch, self.out_channels, 2 * m, m)  # (B, O, 2m, m)
        gap = out.new_zeros(batch, self.out_channels, nx - 2 * m, m)  # the dropped kx rows
        out = torch.fft.ifft(torch.cat([out[:, :, :m], gap, out[:, :, m:]], dim=2), dim=-2)  # (B, O, X, m)
        return irfft_real(out, ny)  # ky >= m are zero: irfft pads them


class Pointwise(nn.Module):
    """A 1x1 linear map over channels: (batch, in, x, y) -> (batch, out, x, y).

    Parameters as nn.Linear's (weight (out, in), bias (out,)), same initialisation.
    Runs as one ``baddbmm`` of the expanded weight with the (batch, in, x*y) view, bias
    as its broadcast addend: on CPU, forward + backward, as fast as or faster than a 1x1
    convolution or an einsum from 4 -> 16 to 64 -> 128 channels (the matmul backward
    needs no transposed copies; numbers from benchmarks/bench_layers.py in README.md).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        linear = nn.Linear(in_channels, out_channels)
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: torch.Tensor, addend: torch.Tensor | None = None) -> torch.Tensor:
        """W x + b, plus ``addend`` (batch, out, x, y) if given, summed inside the matmul."""
        batch, _, nx, ny = x.shape
        base = self.bias[None, :, None]  # (1, O, 1), broadcast by baddbmm
        if addend is not None:
            base = addend.flatten(2) + base  # (B, O, X*Y)
        out = torch.baddbmm(base, self.weight.expand(batch, -1, -1), x.flatten(2))  # (B, O, X*Y)
        return out.view(batch, -1, nx, ny)


class FourierLayer(nn.Module):
    """u -> GELU(K u + W u + b): spectral convolution plus pointwise linear skip."""

    def __init__(self, width: int, modes: int, activation: bool = True) -> None:
        super().__init__()
        self.spectral = SpectralConv2d(width, width, modes)
        self.skip = Pointwise(width, width)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W, X, Y) -> (B, W, X, Y)
        y = self.skip(x, addend=self.spectral(x))
        return F.gelu(y) if self.activation else y


@dataclass(frozen=True)
class FNOConfig:
    """Everything that defines an FNO2d; a checkpoint stores it to rebuild the model."""

    in_channels: int  # f plus coefficient planes: 4 poisson, 6 advdiff, 3 helmholtz, 8 union layout
    out_channels: int = 1  # the solution u
    width: int = 32  # channels in the Fourier layers; parameters grow as width^2
    modes: int = 8  # Fourier modes per axis kept in each corner; parameters grow as modes^2
    layers: int = 4  # Fourier layers (paper: 4); no GELU after the last one
    # Domain padding: the Fourier layers see each axis extended by this fraction of its
    # points (zeros on the high side, cropped after), so that a non-periodic field is not
    # wrapped onto itself. A fraction, not a count: the same extent at every test grid.
    padding: float = 0.0
    coords: bool = False  # append x and y in [0, 1] as two input channels (non-periodic data)

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "width", "modes", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_padding(self.padding)
        if not isinstance(self.coords, bool):
            raise ValueError(f"coords must be true or false, got {self.coords!r}")

    @classmethod
    def from_preset(cls, name: str, in_channels: int, out_channels: int = 1, layers: int = 4) -> FNOConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown size preset {name!r}; expected one of {', '.join(PRESETS)}")
        width, modes = PRESETS[name]
        return cls(in_channels, out_channels, width, modes, layers)

    def to_dict(self) -> dict[str, int | float | bool]:
        return asdict(self)

    @property
    def lift_channels(self) -> int:
        """Channels the lifting layer reads: the inputs, and x and y with ``coords``."""
        return self.in_channels + 2 * self.coords

    @property
    def n_params(self) -> int:
        """Trainable real numbers: lift, layers (spectral + skip), projection."""
        w, m = self.width, self.modes
        lift = self.lift_channels * w + w
        layer = 2 * m * m * w * w * 2 + w * w + w
        projection = w * 2 * w + 2 * w + 2 * w * self.out_channels + self.out_channels
        return lift + self.layers * layer + projection

    def flop_breakdown(self, resolution: int) -> dict[str, float]:
        """Real floating-point operations per sample at resolution x resolution, by part.

        Matmuls count 2 per multiply-add; a complex multiply-add counts 8; an FFT of
        length N counts 5 N log2 N complex (2.5 N log2 N real input). GELU and bias
        adds are not counted. A nominal count, the same on every device: on the CPU the
        transforms run as matrix DFTs (``SpectralConv2d``), more arithmetic in less time.
        """
        n, w, m, c = resolution, self.width, self.modes, self.lift_channels
        points = n * n
        p = n + padded_points(n, self.padding)  # the Fourier layers' grid
        fft_y = w * p * 2.5 * p * math.log2(p)  # rfft along y, all rows, w channels
        fft_x = w * m * 5 * p * math.log2(p)  # complex fft along x on the m kept columns
        return {
            "lift": 2 * c * w * points,
            "spectral_contraction": self.layers * 8 * (2 * m * m) * w * w,
            "fft": self.layers * 2 * (fft_y + fft_x),  # forward and inverse
            "skip": self.layers * 2 * w * w * p * p,
            "projection": (2 * w * 2 * w + 2 * 2 * w * self.out_channels) * points,
        }

    def flops_per_sample(self, resolution: int) -> float:
        """Forward FLOPs per sample at resolution x resolution (see ``flop_breakdown``)."""
        return sum(self.flop_breakdown(resolution).values())


def check_padding(padding: float) -> float:
    """``padding`` if it is a fraction in [0, 1), else ValueError naming the field."""
    if isinstance(padding, bool) or not isinstance(padding, int | float) or not 0 <= padding < 1:
        raise ValueError(f"padding must be a fraction in [0, 1) of each axis, got {padding!r}")
    return float(padding)


def padded_points(n: int, padding: float) -> int:
    """Points domain padding adds to an axis of n points: round(padding * n)."""
    return round(padding * n)


@functools.lru_cache(maxsize=32)
def _coordinates(nx: int, ny: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 2, nx, ny): x and y in [0, 1] (both ends on the grid), made once per grid."""
    with torch.inference_mode(False):  # a cached constant must serve training too
        x = torch.linspace(0, 1, nx, dtype=dtype, device=device)
        y = torch.linspace(0, 1, ny, dtype=dtype, device=device)
        return torch.stack(torch.meshgrid(x, y, indexing="ij"))[None]


class FNO2d(nn.Module):
    """Fourier Neural Operator: lift -> ``layers`` Fourier layers -> projection.

    forward: (batch, in_channels, x, y) -> (batch, out_channels, x, y), float32.
    Works at any resolution with at least ``2 * modes`` points per axis (after padding).
    With ``coords``, x and y are appended to the input before the lift; with ``padding``,
    the lifted field is zero-padded on the high side of each axis before the Fourier
    layers and cropped back before the projection.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        width: int = 32,
        modes: int = 8,
        layers: int = 4,
        padding: float = 0.0,
        coords: bool = False,
    ) -> None:
        super().__init__()
        self.config = FNOConfig(in_channels, out_channels, width, modes, layers, padding, coords)
        self.lift = Pointwise(self.config.lift_channels, width)
        self.fourier = nn.ModuleList(FourierLayer(width, modes, activation=i < layers - 1) for i in range(layers))
        self.project_hidden = Pointwise(width, 2 * width)
        self.project_out = Pointwise(2 * width, out_channels)

    @classmethod
    def from_config(cls, config: FNOConfig) -> FNO2d:
        return cls(
            config.in_channels,
            config.out_channels,
            config.width,
            config.modes,
            config.layers,
            config.padding,
            config.coords,
        )

    def adapt_channels(
        self, in_channels: int, out_channels: int, seed: int, coords: bool | None = None
    ) -> tuple[str, ...]:
        """Fit the model to another channel layout: a lifting layer for ``in_channels`` (and
        coordinate channels with ``coords``; None: the model's) and/or an output projection
        for ``out_channels``, freshly initialised (from ``seed``; the global random state is
        left as it was) where they differ; the Fourier layers are kept. Returns the replaced
        parts: ("lift",), ("projection",), both or ()."""
        replaced = []
        coords = self.config.coords if coords is None else coords
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if in_channels != self.config.in_channels or coords != self.config.coords:
                self.config = dataclasses.replace(self.config, in_channels=in_channels, coords=coords)
                self.lift = Pointwise(self.config.lift_channels, self.config.width).to(self.lift.weight.device)
                replaced.append("lift")
            if out_channels != self.config.out_channels:
                self.config = dataclasses.replace(self.config, out_channels=out_channels)
                self.project_out = Pointwise(2 * self.config.width, out_channels).to(self.project_out.weight.device)
                replaced.append("projection")
        return tuple(replaced)

    def trainable_parts(self, strategy: str) -> list[nn.Module]:
        """The modules a fine-tuning ``strategy`` trains (``fno.vocabulary.FINETUNE_STRATEGIES``)."""
        head = [self.project_hidden, self.project_out]
        if strategy == "full":
            return [self]
        if strategy == "head":
            return head
        if strategy == "lift-head":
            return [self.lift, *head]
        if strategy == "frozen-spectral":
            return [self.lift, *(layer.skip for layer in self.fourier), *head]
        raise ValueError(f"finetune_strategy must be one of full, head, lift-head, frozen-spectral; got {strategy!r}")

    def freeze_for(self, strategy: str) -> int:
        """Set requires_grad for ``strategy`` (frozen: everything outside its trainable
        parts); return the number of trainable parameters."""
        self.requires_grad_(False)
        for part in self.trainable_parts(strategy):
            part.requires_grad_(True)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"input must have shape (batch, {self.config.in_channels}, x, y), got {tuple(x.shape)}")
        nx, ny = x.shape[-2:]
        px, py = padded_points(nx, self.config.padding), padded_points(ny, self.config.padding)
        check_modes(self.config.modes, nx + px, ny + py)
        if self.config.coords:
            grid = _coordinates(nx, ny, x.dtype, x.device).expand(x.shape[0], -1, -1, -1)
            x = torch.cat([x, grid], dim=1)
        h = self.lift(x)  # (B, W, X, Y)
        if px or py:
            h = F.pad(h, (0, py, 0, px))  # zeros after the last point of each axis
        for layer in self.fourier:
            h = layer(h)
        if px or py:
            h = h[..., :nx, :ny].contiguous()
        return self.project_out(F.gelu(self.project_hidden(h)))  # (B, out, X, Y)
