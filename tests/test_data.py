"""The dataset layer: purity, splits, nesting, cache integrity, validation, normalisation."""

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fno import data
from fno.data import DatasetSpec
from fno.physics import families, operators

N = 32  # grid for fast tests


def spec(family="poisson", **kw):
    return DatasetSpec(family, kw.pop("param_range", None), kw.pop("n_samples", 12), kw.pop("resolution", N), **kw)


@pytest.mark.parametrize("family", families.FAMILIES)
def test_generated_data_solves_its_pde(family):
    fields = data.generate_fields(spec(family, n_samples=24), dtype=torch.float64)
    for which, name in enumerate(families.SINGLE_FAMILIES):
        rows = np.flatnonzero(fields.params["family"] == which)
        if family not in ("mixture", name):
            assert len(rows) == 0
            continue
        sub = {k: v[rows] for k, v in fields.params.items()}
        rel, _ = operators.residual(name, fields.source[rows], fields.solution[rows], sub)
        assert rel.max() < 1e-10


@pytest.mark.parametrize("family", families.FAMILIES)
def test_shapes_dtypes_and_channel_values(family):
    s = spec(family)
    inputs, targets = data.generate(s)
    assert inputs.shape == (12, len(s.channel_names), N, N) and targets.shape == (12, 1, N, N)
    assert inputs.dtype == targets.dtype == torch.float32
    planes = inputs[:, 1:]
    assert torch.equal(planes, planes[:, :, :1, :1].expand_as(planes))  # coefficient channels are constant


def test_coefficient_channels_follow_the_paper():
    f = data.generate_fields(spec("advdiff"), dtype=torch.float64)
    p = f.params
    c = f.coefficients.numpy()
    np.testing.assert_allclose(c[:, 0], (1 - p["lam"]) * 0.01 * p["k11"], rtol=1e-14)
    np.testing.assert_allclose(c[:, 2], (1 - p["lam"]) * 0.01 * p["k12"], rtol=1e-14)
    np.testing.assert_allclose(c[:, 3], p["lam"] * p["v1"], rtol=1e-14)
    np.testing.assert_allclose(c[:, 4], p["lam"] * p["v2"], rtol=1e-14)
    np.testing.assert_allclose(np.hypot(p["v1"], p["v2"]), 1.0, rtol=1e-14)
    h = data.generate_fields(spec("helmholtz"), dtype=torch.float64)
    np.testing.assert_array_equal(h.coefficients.numpy(), np.stack([np.full(12, 0.01), h.params["omega"]], 1))


def test_psi_lands_in_range_for_every_advdiff_sample():
    f = data.generate_fields(spec("advdiff", param_range=(1.0, 2.0), n_samples=64), dtype=torch.float64)
    p = f.params
    assert np.all((p["psi"] >= 1.0) & (p["psi"] <= 2.0))
    from fno.physics import advdiff

    K = np.stack([p["k11"], p["k22"], p["k12"]], 1)
    realised = advdiff.ratio(f.source.numpy(), K, np.stack([p["v1"], p["v2"]], 1), p["lam"])
    np.testing.assert_allclose(realised, p["psi"], rtol=1e-6)


def test_helmholtz_samples_are_bounded():
    f = data.generate_fields(spec("helmholtz", n_samples=64))
    assert f.solution.abs().max() <= families.HELMHOLTZ_MAX_ABS_U


def test_mixture_has_equal_shares_and_union_layout():
    f = data.generate_fields(spec("mixture", n_samples=30))
    assert np.bincount(f.params["family"].astype(int)).tolist() == [10, 10, 10]
    assert f.channel_names == families.UNION_CHANNELS
    helm = f.params["family"] == 2
    assert torch.all(f.coefficients[torch.as_tensor(helm)][:, :5] == 0)  # no diffusion/advection channels
    assert torch.all(f.coefficients[torch.as_tensor(~helm)][:, 5:] == 0)  # no Helmholtz channels


def test_union_channels_of_a_single_family_match_the_mixture_layout():
    native = data.generate_fields(spec("poisson"))
    union = data.generate_fields(spec("poisson", channels="union"))
    assert union.channel_names == families.UNION_CHANNELS
    assert torch.equal(union.coefficients[:, :3], native.coefficients)
    assert torch.all(union.coefficients[:, 3:] == 0)
    assert torch.equal(union.source, native.source)


def test_same_spec_is_bit_identical_whatever_the_chunking():
    s = spec("mixture", n_samples=20)
    ref = data.generate_fields(s, chunk_size=20)
    for chunk in (1, 7):
        other = data.generate_fields(s, chunk_size=chunk)
        assert torch.equal(ref.source, other.source) and torch.equal(ref.solution, other.solution)
        assert torch.equal(ref.coefficients, other.coefficients)


def test_subsets_nest():
    big = data.generate_fields(spec("advdiff", n_samples=40))
    small = data.generate_fields(spec("advdiff", n_samples=8))
    assert torch.equal(big.source[:8], small.source) and torch.equal(big.solution[:8], small.solution)


def test_splits_and_seeds_never_share_a_sample():
    sources = [data.generate_fields(spec(split=split, n_samples=16)).source for split in data.SPLITS]
    sources.append(data.generate_fields(spec(seed=1, n_samples=16)).source)
    sources.append(data.generate_fields(spec(param_range=(5.0, 10.0), n_samples=16)).source)
    flat = torch.cat(sources).flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(len(flat)) * 1e9
    assert distances.min() > 1e-3


def test_resolution_does_not_change_the_sample():
    lo = data.generate_fields(spec("poisson", n_samples=3, resolution=64), dtype=torch.float64)
    hi = data.generate_fields(spec("poisson", n_samples=3, resolution=128), dtype=torch.float64)
    assert (lo.source - hi.source[:, ::2, ::2]).abs().max() < 1e-12
    assert (lo.solution - hi.solution[:, ::2, ::2]).abs().max() < 1e-6 * hi.solution.abs().max()


def test_void_fractions_have_equal_shares():
    f = data.generate_fields(spec(n_samples=16))
    assert np.unique(f.params["void_fraction"], return_counts=True)[1].tolist() == [4, 4, 4, 4]


# ---------------------------------------------------------------------------- cache


def test_cache_round_trip_slices_and_extends(cache_dir):
    s = spec("helmholtz", n_samples=10)
    first = data.load_fields(s)
    assert torch.equal(first.source, data.generate_fields(s).source)
    manifest = json.loads(next(cache_dir.glob("*.json")).read_text())
    assert manifest["n_samples"] == 10
    smaller = data.load_fields(s.with_samples(4))  # a slice: no regeneration
    assert torch.equal(smaller.solution, first.solution[:4])
    larger = data.load_fields(s.with_samples(16))  # generates only the tail
    assert torch.equal(larger.solution, data.generate_fields(s.with_samples(16)).solution)
    assert len(list(cache_dir.glob("*.bin"))) == 2  # the replaced arrays stay for a grace period
    assert json.loads(next(cache_dir.glob("*.json")).read_text())["n_samples"] == 16


def test_cache_union_view_and_load_tensors(cache_dir):
    inputs, targets = data.load(spec("advdiff", channels="union"))
    ref_in, ref_t = data.generate(spec("advdiff", channels="union"))
    assert torch.equal(inputs, ref_in) and torch.equal(targets, ref_t)


def test_stale_arrays_are_removed_after_the_grace_period(cache_dir, monkeypatch):
    s = spec(n_samples=3)
    data.load_fields(s)
    monkeypatch.setattr(data.cache, "STALE_GRACE_S", -1.0)
    data.load_fields(s.with_samples(5))
    assert len(list(cache_dir.glob("*.bin"))) == 1
    assert not list(cache_dir.glob(".*.tmp"))  # no temp files left behind


def test_an_unwritable_cache_costs_the_cache_not_the_data(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.warns(UserWarning, match="could not write data cache entry"):
        fields = data.load_fields(spec(n_samples=2), cache_dir=blocked / "cache")
    assert torch.equal(fields.source, data.generate_fields(spec(n_samples=2)).source)


def test_concurrent_writers_leave_a_valid_entry(cache_dir):
    import multiprocessing as mp

    s = spec("advdiff", n_samples=24)
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        pool.map(_load_in_worker, [(s.to_dict(), str(cache_dir), n) for n in (8, 16, 24)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no corrupt entry
        fields = data.load_fields(s)
    assert torch.equal(fields.solution, data.generate_fields(s).solution)


def _load_in_worker(args):
    spec_dict, cache, n = args
    data.load_fields(DatasetSpec.from_dict(spec_dict).with_samples(n), cache_dir=cache)


def test_an_entry_is_hashed_once_per_node_and_read_as_a_slice(cache_dir, monkeypatch):
    s = spec("advdiff", n_samples=12)
    data.load_fields(s)
    hashed = []
    original = data.cache._sha256
    monkeypatch.setattr(data.cache, "_sha256", lambda path: hashed.append(path) or original(path))
    for n in (12, 5, 1):
        assert torch.equal(data.load_fields(s.with_samples(n)).source, data.generate_fields(s).source[:n])
    assert hashed == []  # verified when written; the marker stands for it
    arrays = next(cache_dir.glob("*.bin"))
    os.utime(arrays, ns=(arrays.stat().st_atime_ns, arrays.stat().st_mtime_ns + 1))  # touched: verify again
    data.load_fields(s.with_samples(3))
    assert hashed == [arrays]


def test_trials_starting_together_generate_a_set_once(cache_dir, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    generated = []
    original = data.generate_fields

    def slow_generate(*args, **kwargs):
        generated.append(1)
        time.sleep(0.3)  # long enough for the others to arrive while it runs
        return original(*args, **kwargs)

    monkeypatch.setattr(data.cache, "generate_fields", slow_generate)
    s = spec(n_samples=6)
    with ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(lambda _: data.load_fields(s), range(3)))
    assert len(generated) == 1
    assert all(torch.equal(f.solution, loaded[0].solution) for f in loaded)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage_manifest", "missing_arrays"])
def test_corrupt_cache_is_detected_and_regenerated(cache_dir, damage):
    s = spec(n_samples=6)
    good = data.load_fields(s)
    arrays = next(cache_dir.glob("*.bin"))
    manifest = next(cache_dir.glob("*.json"))
    if damage == "truncate":
        arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(arrays.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        arrays.write_bytes(bytes(raw))
    elif damage == "garbage_manifest":
        manifest.write_text("{not json")
    else:
        arrays.unlink()
    with pytest.warns(UserWarning, match="corrupt"):
        again = data.load_fields(s)
    assert torch.equal(again.source, good.source) and torch.equal(again.solution, good.solution)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_fields(s)  # repaired: no warning now


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"family": "navier-stokes"}, "family must be one of poisson, advdiff, helmholtz, mixture"),
        ({"param_range": (5.0, 1.0)}, r"param_range must have lo <= hi, got \[5.0, 1.0\]"),
        ({"param_range": (1.0, float("inf"))}, "param_range must have finite ends"),
        ({"param_range": (1.0,)}, r"param_range must be a pair \[lo, hi\]"),
        ({"param_range": "1 5"}, r"param_range must be a pair \[lo, hi\]"),
        ({"param_range": (0.0, 5.0)}, "eigenvalue e of poisson must be > 0"),
        ({"family": "advdiff", "param_range": (-1.0, 1.0)}, "ratio psi of advdiff must be >= 0"),
        ({"family": "helmholtz", "param_range": (0.0, 1.0)}, "omega of helmholtz must be > 0"),
        ({"family": "mixture", "param_range": {"poisson": (1, 5)}}, "param_range of the mixture must map each"),
        ({"n_samples": 0}, "n_samples must be an integer >= 1, got 0"),
        ({"n_samples": -3}, "n_samples must be an integer >= 1"),
        ({"n_samples": 2.5}, "n_samples must be an integer"),
        ({"resolution": 33}, "resolution must be even and >= 16, got 33"),
        ({"resolution": 8}, "resolution must be an integer >= 16, got 8"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"split": "dev"}, "split must be one of train, val, test"),
        ({"channels": "all"}, "channels must be one of native, union"),
    ],
)
def test_bad_specs_fail_clearly(kwargs, match):
    base = {"family": "poisson", "param_range": None, "n_samples": 4, "resolution": 16}
    with pytest.raises(ValueError, match=match):
        DatasetSpec(**{**base, **kwargs})


def test_spec_dict_round_trip_and_unknown_fields():
    s = spec("mixture", param_range={"poisson": (1, 2), "advdiff": (0.2, 1), "helmholtz": (1, 10)})
    assert DatasetSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.cache_key() == DatasetSpec.from_dict(s.to_dict()).cache_key()
    with pytest.raises(ValueError, match="unknown DatasetSpec fields"):
        DatasetSpec.from_dict({**s.to_dict(), "n_train": 3})


def test_cache_key_ignores_n_samples_but_not_defining_fields():
    s = spec()
    assert s.cache_key() == s.with_samples(99).cache_key()
    for other in (spec(seed=1), spec(split="val"), spec(resolution=64), spec(param_range=(1, 6))):
        assert other.cache_key() != s.cache_key()


# ---------------------------------------------------------------------- normalisation


def test_normalization_fits_pretraining_stats_and_travels_as_plain_data():
    train = data.generate_fields(spec("poisson", n_samples=32))
    norm = data.Normalization.fit(train)
    x = norm.normalize_inputs(train.inputs())
    assert x[:, 0].mean().abs() < 1e-5 and (x[:, 0].std(correction=0) - 1).abs() < 1e-4
    assert (x[:, 1:].mean(dim=(0, 2, 3)).abs() < 1e-4).all()
    y = norm.normalize_targets(train.targets())
    assert torch.allclose(norm.denormalize_targets(y), train.targets(), atol=1e-6)
    restored = data.Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert restored == norm
    # downstream data under shift is normalised with the pre-training statistics
    downstream = data.generate_fields(spec("poisson", param_range=(10.0, 20.0), split="test"))
    z = restored.normalize_inputs(downstream.inputs())
    assert z[:, 1:].abs().mean() > 1  # shifted coefficients stand out: not re-standardised
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 4, n, n\)"):
        norm.normalize_inputs(data.generate_fields(spec("helmholtz")).inputs())


def test_constant_channels_get_unit_std():
    norm = data.Normalization.fit(data.generate_fields(spec("helmholtz", n_samples=8)))
    assert norm.input_std[1] == 1.0  # the s channel is constant


def test_without_flock_the_cache_locks_by_exclusive_create(tmp_path, monkeypatch):
    # Old: fcntl.flock failing (ENOSYS, e.g. Lustre without flock) failed the trial.
    import errno
    import threading

    from fno.data import cache

    def no_flock(*_):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(cache.fcntl, "flock", no_flock)
    inside, overlaps = [], []

    def hold() -> None:
        with cache._entry_lock(tmp_path, "entry"):
            overlaps.append(len(inside))
            inside.append(1)
            time.sleep(0.1)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [0, 0, 0] and not (tmp_path / "entry.lock.excl").exists()


def test_inside_a_batch_job_the_cache_is_on_the_node_local_tmpdir(tmp_path, monkeypatch):
    from fno.data.cache import BATCH_JOB_VARIABLES, CACHE_ENV, default_cache_dir

    for variable in (CACHE_ENV, *BATCH_JOB_VARIABLES):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert default_cache_dir() == Path.home() / ".cache" / "fno-scaling" / "data"  # a laptop: the home cache
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert default_cache_dir() == tmp_path / "fno-scaling-data"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"  # configurable first
