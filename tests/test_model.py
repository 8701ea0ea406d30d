"""FNO2d: shapes, parameter and FLOP counts, the spectral convolution, input errors."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fno.model import FNO2d, FNOConfig, Pointwise, SpectralConv2d, irfft_real, max_modes, real_edge_bins


@pytest.mark.parametrize("width,modes,layers", [(8, 4, 4), (16, 4, 2), (12, 6, 3)])
def test_n_params_matches_the_module(width, modes, layers):
    model = FNO2d(4, 1, width, modes, layers)
    assert model.config.n_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", [("w16-m4", 64e3), ("w64-m16", 17e6), ("w128-m32", 256e6)])
def test_presets_span_the_papers_range(name, expected):
    n = FNOConfig.from_preset(name, in_channels=4).n_params
    assert 0.9 * expected < n < 1.2 * expected


def test_flops_match_a_counted_forward_pass(monkeypatch):
    """The count is the FFT algorithm's, the path GPUs run; the CPU's matrix DFTs compute
    the same map with more (but faster) arithmetic, which a nominal count leaves out."""
    monkeypatch.setattr(SpectralConv2d, "_forward_dft", SpectralConv2d._forward_fft)
    config = FNOConfig(in_channels=4, width=8, modes=4, layers=3)
    model = FNO2d.from_config(config)
    x = torch.randn(2, 4, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x)
    parts = config.flop_breakdown(32)
    # The counter sees the matmuls; it counts a complex multiply-add as 2 like a real one.
    matmul = parts["lift"] + parts["skip"] + parts["projection"] + parts["spectral_contraction"] / 4
    assert counter.get_total_flops() == pytest.approx(2 * matmul, rel=1e-12)
    assert config.flops_per_sample(32) > matmul  # FFTs on top


def _explicit_irfft2(z: torch.Tensor, nx: int, ny: int) -> torch.Tensor:
    """irfft2 as its definition, the same on every device: a complex ifft over x, then
    y(t) = (1/ny) sum_k w_k Re(Z_k e^(2 pi i k t / ny)), w_k = 1 at the zero and Nyquist
    frequencies and 2 between (so their imaginary parts cannot count)."""
    z = torch.fft.ifft(z, n=nx, dim=-2)
    k = torch.arange(ny // 2 + 1, dtype=torch.float64, device=z.device)
    t = torch.arange(ny, dtype=torch.float64, device=z.device)
    weight = torch.full_like(k, 2.0)
    weight[0] = 1.0
    if ny % 2 == 0:
        weight[-1] = 1.0
    angle = 2 * torch.pi * k[:, None] * t[None, :] / ny  # (ny//2+1, ny)
    scale = weight[:, None] / ny
    return z.real @ (torch.cos(angle) * scale).to(z.real.dtype) - z.imag @ (torch.sin(angle) * scale).to(z.real.dtype)


def _dense_spectral_conv(layer: SpectralConv2d, x: torch.Tensor) -> torch.Tensor:
    """Reference: full rfft2, a zero spectrum with the two corners filled, irfft2."""
    nx, ny, m = x.shape[-2], x.shape[-1], layer.modes
    x_hat = torch.fft.rfft2(x)
    w = torch.view_as_complex(layer.weight).reshape(2, m, m, layer.in_channels, layer.out_channels)
    out = torch.zeros(x.shape[0], layer.out_channels, nx, ny // 2 + 1, dtype=x_hat.dtype, device=x.device)
    out[:, :, :m, :m] = torch.einsum("bixy,xyio->boxy", x_hat[:, :, :m, :m], w[0])
    out[:, :, nx - m :, :m] = torch.einsum("bixy,xyio->boxy", x_hat[:, :, nx - m :, :m], w[1])
    return _explicit_irfft2(out, nx, ny)


# The layer's two implementations: matrix DFTs (the CPU's) and truncated FFTs (other devices').
PATHS = ["_forward_dft", "_forward_fft"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nx,ny,modes", [(16, 16, 4), (17, 17, 4), (16, 15, 8), (20, 9, 5), (8, 8, 4), (8, 6, 4)])
def test_spectral_conv_equals_dense_reference(nx, ny, modes, path):
    torch.manual_seed(0)
    layer = SpectralConv2d(3, 5, modes).double()
    x = torch.randn(2, 3, nx, ny, dtype=torch.float64)
    torch.testing.assert_close(getattr(layer, path)(x), _dense_spectral_conv(layer, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nx,ny,modes", [(8, 8, 4), (9, 7, 4), (8, 6, 4), (10, 9, 3)])
def test_spectral_conv_gradients_equal_the_dense_reference(nx, ny, modes, path):
    """Both paths' backward passes (autograd of the matrix products; the hand-written
    truncated rfft) against autograd of the dense reference, for input and weights;
    (8, 6, 4) keeps the Nyquist column."""
    torch.manual_seed(0)
    layer = SpectralConv2d(3, 2, modes).double()
    forward = getattr(layer, path)
    x = torch.randn(2, 3, nx, ny, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, 2, nx, ny, dtype=torch.float64)
    ours = torch.autograd.grad(forward(x), (x, layer.weight), grad_out)
    reference = torch.autograd.grad(_dense_spectral_conv(layer, x), (x, layer.weight), grad_out)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(forward, (x,))


@pytest.mark.parametrize("nx,ny,modes", [(64, 64, 8), (63, 65, 16), (64, 64, 33)])
def test_the_cpu_takes_the_matrix_path_and_float32_stays_accurate(nx, ny, modes):
    """On the CPU the layer runs its matrix DFTs; in float32 both paths stay within a few
    float32 roundings of the float64 reference (measured: at most 4.2e-7 and 2.1e-7)."""
    torch.manual_seed(0)
    layer = SpectralConv2d(4, 4, min(modes, nx // 2))
    x = torch.randn(2, 4, nx, ny)
    assert torch.equal(layer(x), layer._forward_dft(x))
    reference = _dense_spectral_conv(layer.double(), x.double())
    layer.float()
    scale = reference.abs().max()
    dft_error = (layer._forward_dft(x).double() - reference).abs().max() / scale
    fft_error = (layer._forward_fft(x).double() - reference).abs().max() / scale
    assert dft_error < 1e-6 and fft_error < 1e-6  # float32's epsilon is 1.2e-7


CUDA_CASES = [(n, n, n // 4) for n in (32, 64, 128)] + [(n + 2, n, n // 2 + 1) for n in (32, 64, 128)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("nx,ny,modes", CUDA_CASES)
def test_spectral_conv_gradients_on_cuda_equal_the_dense_reference(nx, ny, modes):
    """cuFFT's irfft may read the imaginary parts of the zero and Nyquist bins; the layer
    clears them, so its hand-written gradient still matches autograd of the reference
    (whose inverse transform is written out). The (n + 2, n, n/2 + 1) cases keep Nyquist."""
    torch.manual_seed(0)
    layer = SpectralConv2d(3, 2, modes).double().cuda()
    x = torch.randn(2, 3, nx, ny, dtype=torch.float64, device="cuda", requires_grad=True)
    grad_out = torch.randn(2, 2, nx, ny, dtype=torch.float64, device="cuda")
    torch.testing.assert_close(layer(x), _dense_spectral_conv(layer, x), rtol=1e-10, atol=1e-12)
    ours = torch.autograd.grad(layer(x), (x, layer.weight), grad_out)
    reference = torch.autograd.grad(_dense_spectral_conv(layer, x), (x, layer.weight), grad_out)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_the_zero_and_nyquist_bins_are_made_real_before_irfft():
    z = torch.complex(torch.ones(2, 5), torch.ones(2, 5))
    cleared = real_edge_bins(z, 8)  # 5 = 8 // 2 + 1 columns: the last is Nyquist
    assert cleared.imag[:, 0].eq(0).all() and cleared.imag[:, -1].eq(0).all() and cleared.imag[:, 1:-1].eq(1).all()
    assert real_edge_bins(z, 9).imag[:, -1].eq(1).all()  # odd n has no Nyquist bin
    assert real_edge_bins(z[:, :3], 8).imag[:, -1].eq(1).all()  # truncated: the last kept bin is not Nyquist
    torch.testing.assert_close(cleared.real, z.real)


@pytest.mark.parametrize("n,k", [(8, 5), (9, 5), (8, 3), (16, 9)])
def test_the_cpu_irfft_ignores_the_imaginary_parts_of_the_edge_bins(n, k):
    """irfft_real skips the clearing on the CPU: this is the property that makes that safe."""
    torch.manual_seed(0)
    z = torch.randn(3, 4, k, dtype=torch.complex128)
    expected = torch.fft.irfft(real_edge_bins(z, n), n=n, dim=-1)
    torch.testing.assert_close(irfft_real(z, n), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.fft.irfft(z, n=n, dim=-1), expected, rtol=0, atol=1e-12)


def test_pointwise_equals_a_linear_layer_with_and_without_an_addend():
    torch.manual_seed(0)
    layer = Pointwise(3, 5).double()
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    addend = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    linear = torch.einsum("oc,bcxy->boxy", layer.weight, x) + layer.bias[:, None, None]
    torch.testing.assert_close(layer(x), linear)
    torch.testing.assert_close(layer(x, addend=addend), linear + addend)


@pytest.mark.parametrize("n", [16, 17, 32])
def test_forward_shapes_on_even_and_odd_grids(n):
    model = FNO2d(3, 1, width=8, modes=4)
    assert model(torch.randn(2, 3, n, n)).shape == (2, 1, n, n)


def test_a_band_limited_input_is_resolution_independent():
    """On inputs with no energy above the kept modes, the operator commutes with refinement."""
    torch.manual_seed(0)
    layer = SpectralConv2d(2, 2, 3).double()
    coarse = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    hat = torch.fft.rfft2(coarse)
    hat[:, :, 3:6] = 0
    hat[:, :, :, 3:] = 0
    coarse = torch.fft.irfft2(hat, s=(8, 8))
    fine_hat = torch.zeros(1, 2, 16, 9, dtype=hat.dtype)
    fine_hat[:, :, :3, :3], fine_hat[:, :, -3:, :3] = hat[:, :, :3, :3] * 4, hat[:, :, -3:, :3] * 4
    fine = torch.fft.irfft2(fine_hat, s=(16, 16))
    torch.testing.assert_close(layer(fine)[:, :, ::2, ::2], layer(coarse), rtol=1e-10, atol=1e-12)


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"modes=9 is too many for a 16 x 16 grid: at most 8"):
        FNO2d(3, modes=9)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="width must be a positive integer, got 0"):
        FNO2d(3, width=0)
    with pytest.raises(ValueError, match="modes must be a positive integer"):
        FNOConfig(in_channels=3, modes=-1)
    with pytest.raises(ValueError, match=r"input must have shape \(batch, 4, x, y\), got \(1, 3, 16, 16\)"):
        FNO2d(4, width=8, modes=4)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown size preset 'w999'"):
        FNOConfig.from_preset("w999", 4)
    assert max_modes(16, 16) == 8 and max_modes(16, 9) == 5


def test_spectral_part_stays_float32_under_bf16_autocast():
    model = FNO2d(3, 1, width=8, modes=4)
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), model(x), rtol=0.1, atol=0.1)
