"""Error metrics: band errors on fields with known spectra, percentiles, and the evaluations table."""

import math

import numpy as np
import pytest
import torch

from fno.metrics import BAND_EDGES, EVAL_METRICS, band_errors, relative_l2, summarize
from fno.results import EVALUATION_SCHEMA, compact, read_evaluations, write_evaluations


def _wave(n: int, kx: int, ky: int) -> torch.Tensor:
    """cos(2 pi (kx x + ky y)) on an n x n periodic grid: all its energy at |k| = sqrt(kx^2 + ky^2)."""
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.cos(2 * math.pi * (kx * x[:, None] + ky * x[None, :]))


@pytest.mark.parametrize("n", [32, 33, 64])
def test_band_errors_put_a_known_error_in_its_band(n):
    nyquist = n // 2 if n % 2 == 0 else n / 2
    low_k = 1
    mid_k = math.ceil(0.5 * (BAND_EDGES[0] + BAND_EDGES[1]) * nyquist)  # halfway through the mid band
    high_k = math.floor(0.9 * nyquist)
    target = (_wave(n, low_k, 0) + 2 * _wave(n, 0, low_k))[None]  # ||target||^2 = (1 + 4) n^2 / 2
    for k, band in ((low_k, 0), (mid_k, 1), (high_k, 2)):
        error = 0.1 * _wave(n, k, 0)[None]
        got = band_errors(target + error, target)[0].double()
        want = torch.zeros(3, dtype=torch.float64)
        want[band] = 0.1 / math.sqrt(5)  # ||0.1 cos|| / ||target||
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(3, 1, 32, 32), (2, 30, 30), (4, 1, 17, 17)])
def test_band_errors_add_in_quadrature_to_the_relative_error(shape):
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(shape, generator=generator)
    pred = target + 0.3 * torch.randn(shape, generator=generator)
    bands = band_errors(pred, target)
    torch.testing.assert_close(bands.square().sum(dim=1), relative_l2(pred, target).square(), rtol=1e-4, atol=1e-6)


def test_band_edges_are_fractions_of_nyquist_at_every_resolution():
    # The same wave number relative to Nyquist lands in the same band at 32 and 64 points.
    for n in (32, 64):
        target = _wave(n, 1, 0)[None]
        just_below_mid = math.ceil(BAND_EDGES[1] * n / 2) - 1
        got = band_errors(target + _wave(n, just_below_mid, 0)[None], target)[0]
        assert got[1] > 0.5 and got[0] < 1e-5 and got[2] < 1e-5


def test_band_errors_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        band_errors(torch.zeros(2, 8, 8), torch.zeros(2, 8, 9))


def test_summarize_gives_means_and_percentiles_of_the_samples():
    per_sample = torch.rand(101, 4, generator=torch.Generator().manual_seed(1))
    metrics = summarize(per_sample)
    assert tuple(metrics) == EVAL_METRICS
    values = per_sample.numpy().astype(np.float64)
    assert metrics["rel_l2"] == pytest.approx(values[:, 0].mean(), rel=1e-6)
    assert metrics["rel_l2_high"] == pytest.approx(values[:, 3].mean(), rel=1e-6)
    assert metrics["rel_l2_p50"] == pytest.approx(np.median(values[:, 0]), rel=1e-6)
    assert metrics["rel_l2_p90"] == pytest.approx(np.quantile(values[:, 0], 0.9), rel=1e-6)


def test_evaluations_round_trip_and_a_key_keeps_its_latest_rows(tmp_path):
    rows = [
        {"resolution": r, "metric": m, "value": float(i)} for i, (r, m) in enumerate([(32, "rel_l2"), (64, "rel_l2")])
    ]
    write_evaluations(tmp_path, "a", rows)
    write_evaluations(tmp_path, "b", rows[:1])
    assert compact(tmp_path, EVALUATION_SCHEMA) == 3
    write_evaluations(tmp_path, "a", [{"resolution": 32, "metric": "rel_l2", "value": 9.0}])  # a re-run of a
    table = read_evaluations(tmp_path).to_pandas()
    got = sorted(zip(table["key"], table["resolution"], table["value"], strict=True))
    assert got == [("a", 32, 9.0), ("b", 32, 0.0)]
    assert write_evaluations(tmp_path, "c", []) is None
    with pytest.raises(ValueError, match="resolution, metric and value"):
        write_evaluations(tmp_path, "d", [{"resolution": 32, "value": 1.0}])
    (tmp_path / "zz.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"evaluations file .*zz.parquet is corrupt"):
        read_evaluations(tmp_path)
