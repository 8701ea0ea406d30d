"""Datasets of the user's own: formats, lazy reads, splits, checks before Ray, the model's
padding, coordinates and channel adaptation, trials and a whole sweep on three formats."""

import dataclasses
import os

import h5py
import numpy as np
import pytest
import torch
from external_builders import cropped_npz, neuralop_pt, npy_folder, pdebench_h5, poisson
from helpers import sweep_rows
from tiny_sweep import TINY

from fno import results
from fno.data import DatasetError, ExternalDataset, Fields, Normalization, Plan, check_external, load_split
from fno.data import main as data_main
from fno.data.external import DEFAULT_COORDS, DEFAULT_PADDING
from fno.data.readers import LazyArray, file_digest
from fno.model import FNO2d, FNOConfig
from fno.train import TrialConfig, load_checkpoint, load_data, run_trial, save_checkpoint
from fno.train import main as train_main
from fno_sweeps import scaling
from fno_sweeps.grid import Preset, expand, trial_key

PLAN = Plan(32, 8, 8, ("none",), (4,))


def darcy(tmp_path, **extra) -> ExternalDataset:
    """The PDEBench-style HDF5 set with two shifts of its beta."""
    path = pdebench_h5(tmp_path / "darcy.h5")
    table = {"path": str(path), "inputs": "nu", "outputs": "tensor", "param": "beta"}
    table["shifts"] = {"none": [1, 5], "moderate": [5, 10]}
    return ExternalDataset.from_dict("mydarcy", {**table, **extra})


def pt_set(tmp_path) -> ExternalDataset:
    folder = neuralop_pt(tmp_path / "darcy_pt")
    table = {"path": str(folder), "inputs": "x", "outputs": "y"}
    table["splits"] = {"train": "darcy_train_16.pt", "test": "darcy_test_16.pt"}
    table["test_resolutions"] = {"32": "darcy_test_32.pt"}
    return ExternalDataset.from_dict("ptdarcy", table)


def npz_set(tmp_path) -> ExternalDataset:
    table = {"path": str(cropped_npz(tmp_path / "cropped.npz")), "inputs": ["f", "coef"], "outputs": "u"}
    return ExternalDataset.from_dict("cropped", {**table, "layout": "NHWC", "splits": {"test": "{name}_test"}})


# ------------------------------------------------------------------ formats and reads


def test_every_format_reads_as_float32_fields_of_its_grid_and_channels(tmp_path):
    h5 = check_external(darcy(tmp_path), PLAN)
    assert h5.grid == (24, 24) and h5.channel_names == ("nu",) and h5.out_channels == 1  # (N, 1, H, W) as NCHW
    fields = load_split(h5, "train", 32, 8, 8, 0, h5.shift_range("moderate"))
    assert fields.inputs().shape == (32, 1, 24, 24) and fields.targets().shape == (32, 1, 24, 24)
    assert (
        fields.inputs().dtype == torch.float32
        and ((fields.params["param"] >= 5) & (fields.params["param"] <= 10)).all()
    )
    # Non-square, non-periodic, several channels (NHWC), a named test split by template.
    npz = check_external(npz_set(tmp_path), Plan(32, 8, 8))
    assert npz.grid == (16, 24) and npz.channel_names == ("f", "coef[0]", "coef[1]", "coef[2]")
    test = load_split(npz, "test", 32, 8, 8, 0, None)
    f, _, _, c = poisson(16, 32, "test")
    np.testing.assert_array_equal(test.inputs()[:, 0].numpy(), f[:8, 4:20, 2:26])
    np.testing.assert_array_equal(test.inputs()[:, 3].numpy(), np.broadcast_to(c[:8, 2, None, None], (8, 16, 24)))
    # neuraloperator's files: integer inputs read as float, a test set on another grid.
    pt = check_external(pt_set(tmp_path), Plan(32, 8, 16))
    assert pt.test_grids == {32: (16 * 2, 32)} and pt.grid == (16, 16)
    assert "test named" in pt.split_rule and "val carved" in pt.split_rule
    at32 = load_split(pt, "test", 32, 8, 16, 0, None, resolution=32)
    raw = torch.load(tmp_path / "darcy_pt" / "darcy_test_32.pt", weights_only=True)
    assert at32.inputs().dtype == torch.float32 and torch.equal(at32.inputs()[:, 0], raw["x"].float())
    # A folder of .npy files, NCHW.
    folder = ExternalDataset.from_dict(
        "npyset", {"path": str(npy_folder(tmp_path / "npy")), "inputs": "a", "outputs": "u", "layout": "NCHW"}
    )
    assert check_external(folder, Plan(16, 8, 8)).channel_names == ("a[0]", "a[1]")


def test_a_trial_reads_only_its_samples():
    rows_read = []

    def read(lo, hi):
        rows_read.append(hi - lo)
        return np.arange(lo, hi, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)

    array = LazyArray((100_000, 3), np.dtype("float32"), read)
    index = np.array([70_000, 5, 6, 7, 99_999, 512])
    np.testing.assert_array_equal(array.take(index)[:, 0], index)  # in the order asked
    assert sum(rows_read) <= 10  # nearby samples share a read; nothing else is read


def test_seeded_splits_nest_are_disjoint_and_follow_the_data_seed(tmp_path):
    ds = check_external(darcy(tmp_path), PLAN)

    def params(split, n, seed=0, shift="none"):
        return load_split(ds, split, n, 8, 8, seed, ds.shift_range(shift)).params["param"]

    small, large = params("train", 16), params("train", 32)
    np.testing.assert_array_equal(small, large[:16])  # N's samples are the first N of a larger N's
    used = [set(params(s, 32)) for s in ("train", "val", "test")]
    assert all(not (a & b) for i, a in enumerate(used) for b in used[i + 1 :])
    assert set(params("train", 16, seed=1)) != set(small)
    assert set(params("test", 8)) == set(params("test", 8))  # deterministic


# ------------------------------------------------------------------ checks before Ray


def broken(tmp_path, case):
    """A preset table for a dataset with one problem, and the message the check must give."""
    path = pdebench_h5(tmp_path / "darcy.h5")
    base = {"path": str(path), "inputs": "nu", "outputs": "tensor"}
    if case == "missing array":
        return {**base, "inputs": "coef"}, r"array 'coef' not found in darcy.h5 \(arrays there: beta, nu, tensor"
    with h5py.File(path, "a") as h5:
        if case == "sample counts":
            del h5["tensor"]
            h5["tensor"] = np.zeros((50, 1, 24, 24), np.float32)
            return base, "different sample counts.*fix"
        if case == "grids":
            del h5["tensor"]
            h5["tensor"] = np.zeros((160, 1, 24, 20), np.float32)
            return base, "different grids.*nu 24x24, tensor 24x20"
        if case == "nan":
            h5["nu"][3, 0, 0] = np.nan
            h5["nu"][7, 1, 1] = np.inf
            return base, r"array 'nu' of darcy.h5 holds 1 NaN and 1 inf values \(samples \[3, 7\].*fix: drop"
    if case == "too few samples":
        return base | {"n_train": [150]}, r"holds 160 samples in range; the largest N \(150\).*needs 166; fix: lower"
    if case == "empty shift":
        table = base | {"param": "beta", "shifts": {"none": [1, 5], "large": [50, 60]}}
        return table, r"range \[50, 60\] of param 'beta' holds no samples.*spans \[1.*fix: change"
    if case == "modes":
        return base | {"sizes": ["w8-m16"]}, r"grid 24x24 holds at most 12 Fourier modes, a model size asks 16"
    if case == "unsupported":
        (tmp_path / "data.csv").write_text("1,2\n")
        return base | {"path": str(tmp_path / "data.csv")}, r"unsupported format .csv; supported: .h5"
    if case == "unreadable":
        (tmp_path / "bad.h5").write_bytes(b"not hdf5")
        return base | {"path": str(tmp_path / "bad.h5")}, r"bad.h5 is not a readable .h5 file"
    if case == "unknown field":
        return base | {"input": "nu"}, r"unknown fields \['input'\]; allowed: path, inputs"
    raise AssertionError(case)


CASES = [
    "missing array",
    "sample counts",
    "grids",
    "nan",
    "too few samples",
    "empty shift",
    "modes",
    "unsupported",
    "unreadable",
    "unknown field",
]


@pytest.mark.parametrize("case", CASES)
def test_every_bad_dataset_is_refused_before_ray_naming_the_array_and_the_fix(tmp_path, case, capsys):
    table, match = broken(tmp_path, case)
    preset_fields = {k: table.pop(k) for k in ("n_train", "sizes") if k in table}
    shifts = ["none", "large"] if "shifts" in table else ["none"]
    with pytest.raises(DatasetError, match=f"dataset mydarcy: .*{match}"):
        Preset.from_dict(
            {
                "name": "t",
                "families": ["mydarcy"],
                "train_modes": ["scratch"],
                "n_train": [8],
                "n_val": 8,
                "n_test": 8,
                "shifts": shifts,
                **preset_fields,
                "datasets": {"mydarcy": table},
            }
        )
    if case == "nan":  # the sweep command says so and exits 2, before Ray starts
        preset = tmp_path / "p.toml"
        preset.write_text(
            f'families = ["mydarcy"]\n[datasets.mydarcy]\npath = "{table["path"]}"\ninputs = "nu"\noutputs = "tensor"\n'
        )
        assert scaling.main(["--preset", str(preset), "--out", str(tmp_path / "out"), "--no-dashboard", *TINY]) == 2
        assert "holds 1 NaN and 1 inf" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_the_digest_follows_the_content_and_so_do_keys(tmp_path):
    described = darcy(tmp_path)
    ds = check_external(described, PLAN)
    config = TrialConfig(
        mode="scratch",
        family="mydarcy",
        dataset=ds.to_dict(),
        param_range=(1, 5),
        n_train=8,
        n_val=8,
        n_test=8,
        width=8,
        modes=4,
        steps=5,
    )
    before = file_digest(tmp_path / "darcy.h5")
    moved = dataclasses.replace(config, dataset={**config.dataset, "path": "/elsewhere/darcy.h5"})
    assert trial_key(moved) == trial_key(config)  # where it lies is not what it is
    with h5py.File(tmp_path / "darcy.h5", "a") as h5:
        h5["nu"][0, 0, 0] += 1.0
    changed = check_external(described, PLAN)
    assert changed.digest != ds.digest and file_digest(tmp_path / "darcy.h5") != before
    assert trial_key(dataclasses.replace(config, dataset=changed.to_dict())) != trial_key(config)
    with pytest.raises(DatasetError, match="its files changed since the sweep was planned"):
        load_split(ds, "train", 8, 8, 8, 0, (1, 5))


# ------------------------------------------------------------------ model and normalisation


def test_padding_and_coordinates_keep_shapes_and_old_checkpoints_load(tmp_path):
    torch.manual_seed(0)
    plain, padded = FNO2d(3, 2, 8, 4), FNO2d(3, 2, 8, 4, padding=0.25, coords=True)
    x = torch.randn(2, 3, 16, 24)
    assert padded(x).shape == plain(x).shape == (2, 2, 16, 24)
    assert padded.lift.weight.shape == (8, 5) and padded.config.n_params == plain.config.n_params + 2 * 8
    assert padded.config.flops_per_sample(16) > plain.config.flops_per_sample(16)  # the Fourier layers see 20 x 20
    # A version-1 checkpoint (no padding, no coords in its config) loads with the defaults.
    config = TrialConfig(mode="scratch", n_train=8, width=8, modes=4, resolution=16, steps=1)
    norm = Normalization(("a", "b", "c"), (0.0,) * 3, (1.0,) * 3, 0.0, 1.0)
    save_checkpoint(tmp_path / "c.pt", plain, norm, config)
    old = torch.load(tmp_path / "c.pt", weights_only=True)
    old["version"] = 1
    old["model_config"] = {k: v for k, v in old["model_config"].items() if k not in ("padding", "coords")}
    torch.save(old, tmp_path / "c.pt")
    model, _, _ = load_checkpoint(tmp_path / "c.pt")
    assert model.config == FNOConfig(3, 2, 8, 4) and torch.equal(model(x), plain(x))


def test_adapting_channels_replaces_lift_or_projection_only():
    model = FNO2d(4, 1, 8, 4)
    fourier = {k: v.clone() for k, v in model.fourier.state_dict().items()}
    assert model.adapt_channels(4, 1, seed=0) == ()
    assert model.adapt_channels(1, 2, seed=0) == ("lift", "projection")
    assert model.lift.weight.shape == (8, 1) and model.project_out.weight.shape == (2, 16)
    assert all(torch.equal(v, model.fourier.state_dict()[k]) for k, v in fourier.items())
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 2, 16, 16)


def test_normalisation_is_per_channel_for_datasets():
    source = torch.stack([torch.randn(6, 8, 8), 5 + 3 * torch.randn(6, 8, 8)], dim=1)
    solution = torch.stack([torch.randn(6, 8, 8), 100 * torch.randn(6, 8, 8)], dim=1)
    fields = Fields(source, solution, torch.zeros(6, 0), {}, ("a", "b"))
    norm = Normalization.fit(fields)
    assert norm.input_mean[1] == pytest.approx(source[:, 1].mean().item(), rel=1e-6)
    assert isinstance(norm.target_std, tuple) and norm.target_std[1] == pytest.approx(
        solution[:, 1].std(correction=0).item(), rel=1e-5
    )
    y = norm.normalize_targets(fields.targets())
    assert y.std(dim=(0, 2, 3)).allclose(torch.ones(2), atol=0.01)
    assert torch.allclose(norm.denormalize_targets(y), solution, atol=1e-4)
    assert Normalization.from_dict(norm.to_dict()) == norm


# ------------------------------------------------------------------ trials and commands


def test_a_built_in_model_fine_tunes_onto_a_one_channel_dataset(tmp_path):
    ds = check_external(darcy(tmp_path), PLAN)
    common = {"n_val": 8, "n_test": 8, "width": 8, "modes": 4, "device": "cpu", "eval_every": 10}
    pre = TrialConfig(mode="pretrain", family="poisson", n_train=32, resolution=16, steps=20, **common)
    run_trial(pre, out_dir=tmp_path / "pre")
    data = {"family": "mydarcy", "dataset": ds.to_dict(), "param_range": ds.shift_range("moderate"), **common}
    tune = TrialConfig(
        mode="finetune",
        n_train=16,
        steps=20,
        pretrained=str(tmp_path / "pre" / "checkpoint.pt"),
        finetune_strategy="lift-head",
        padding=0.0,
        coords=False,
        **data,
    )
    result = run_trial(tune, out_dir=tmp_path / "tune")
    assert result.status == "ok" and result.adapted_layers == "lift" and result.dataset_digest == ds.digest
    assert 0 < result.n_trainable < result.n_params and result.grid_h == result.grid_w == 24
    model, norm, _ = load_checkpoint(tmp_path / "tune" / "checkpoint.pt")
    assert model.config.in_channels == 1 and norm.channel_names == ("nu",)
    zeroshot = dataclasses.replace(tune, mode="zeroshot", steps=0, n_train=1, finetune_strategy="full")
    with pytest.raises(ValueError, match="zero-shot needs matching layouts"):
        run_trial(zeroshot)
    # Unset, the fine-tuned model takes the dataset's padding and coordinates (a new lift for
    # them), and both sides' normalisation are the Darcy samples', not Poisson's.
    pre_model, pre_norm, _ = load_checkpoint(tmp_path / "pre" / "checkpoint.pt")
    default = dataclasses.replace(tune, padding=None, coords=None)
    result = run_trial(default, out_dir=tmp_path / "default")
    model, norm, _ = load_checkpoint(tmp_path / "default" / "checkpoint.pt")
    assert (result.padding, result.coords, result.adapted_layers) == (DEFAULT_PADDING, DEFAULT_COORDS, "lift")
    assert (model.config.padding, model.config.coords) == (DEFAULT_PADDING, DEFAULT_COORDS)
    assert (pre_model.config.padding, pre_model.config.coords) == (0.0, False)
    train = load_data(default, "train")
    fitted = Normalization.fit(train)
    assert norm.target_mean == pytest.approx(fitted.target_mean) and norm.target_std == pytest.approx(fitted.target_std)
    assert norm.target_std != pytest.approx(pre_norm.target_std)


def test_the_inspect_and_train_commands(tmp_path, capsys):
    path = pdebench_h5(tmp_path / "darcy.h5")
    args = [
        "inspect",
        str(path),
        "--inputs",
        "nu",
        "--outputs",
        "tensor",
        "--param",
        "beta",
        "--shift",
        "none=1,5",
        "--n-train",
        "16",
        "--n-val",
        "8",
        "--n-test",
        "8",
        "--modes",
        "4",
    ]
    assert data_main(args) == 0
    out = capsys.readouterr().out
    assert "tensor                   (160, 1, 24, 24)" in out and "NaN 0" in out and "grid 24 x 24" in out
    assert "beta in [1, 5]: " in out and "train 16, val 8, test 8" in out and "#" in out  # the histogram
    assert data_main([*args[:-2], "--modes", "13"]) == 1
    assert "at most 12 Fourier modes" in capsys.readouterr().err
    toml = tmp_path / "d.toml"
    toml.write_text(f'[datasets.mydarcy]\npath = "{path}"\ninputs = "nu"\noutputs = "tensor"\n')
    cli = [
        "--family",
        "mydarcy",
        "--datasets",
        str(toml),
        "--n-train",
        "8",
        "--steps",
        "4",
        "--width",
        "8",
        "--modes",
        "4",
        "--set",
        "n_val=8",
        "--set",
        "n_test=8",
        "--set",
        "eval_every=2",
        "--out",
        str(tmp_path / "t"),
    ]
    assert train_main(cli) == 0
    assert "scratch mydarcy n_train=8" in capsys.readouterr().out
    assert train_main([*cli[:2], "--datasets", str(toml), "--family", "burgers", "--out", str(tmp_path)]) == 2


# ------------------------------------------------------------------ a whole sweep


def test_a_sweep_over_hdf5_npz_and_pt_datasets_with_scratch_finetune_and_zeroshot(tmp_path):
    h5, npz, pt = darcy(tmp_path), npz_set(tmp_path), pt_set(tmp_path)
    preset = tmp_path / "mine.toml"
    preset.write_text(f"""families = ["mydarcy", "cropped", "ptdarcy"]
pretrain_families = ["poisson", "mydarcy"]

[datasets.mydarcy]
path = "{h5.path}"
inputs = "nu"
outputs = "tensor"
param = "beta"
shifts = {{ none = [1, 5], moderate = [5, 10] }}

[datasets.cropped]
path = "{npz.path}"
inputs = ["f", "coef"]
outputs = "u"
layout = "NHWC"
splits = {{ test = "{{name}}_test" }}

[datasets.ptdarcy]
path = "{pt.path}"
inputs = "x"
outputs = "y"
splits = {{ train = "darcy_train_16.pt", test = "darcy_test_16.pt" }}
test_resolutions = {{ 32 = "darcy_test_32.pt" }}
""")
    args = ["--preset", str(preset), "--out", str(tmp_path / "out"), "--no-dashboard", *TINY, "--set", "n_test=16"]
    assert scaling.main(args) == 0
    df = sweep_rows(tmp_path / "out", "mine")
    assert set(df["status"]) == {"ok"} and df["key"].is_unique
    by = df.groupby(["family", "mode"]).size().to_dict()
    # scratch: mydarcy none+moderate, cropped, ptdarcy; fine-tune from poisson and mydarcy each;
    # zero-shot where layouts match: poisson (4 channels) -> cropped (f + 3 coefficients),
    # mydarcy (1 channel) -> mydarcy's two shifts and ptdarcy.
    assert by == {
        ("poisson", "pretrain"): 1,
        ("mydarcy", "pretrain"): 1,
        ("mydarcy", "scratch"): 2,
        ("mydarcy", "finetune"): 4,
        ("mydarcy", "zeroshot"): 2,
        ("cropped", "scratch"): 1,
        ("cropped", "finetune"): 2,
        ("cropped", "zeroshot"): 1,
        ("ptdarcy", "scratch"): 1,
        ("ptdarcy", "finetune"): 2,
        ("ptdarcy", "zeroshot"): 1,
    }
    tuned = df[df["mode"] == "finetune"].set_index(["family", "pretrain_family"])["adapted_layers"].to_dict()
    assert tuned == {
        ("mydarcy", "poisson"): "lift",
        ("mydarcy", "mydarcy"): "",
        ("cropped", "poisson"): "lift",  # same 4 channels; the dataset model adds coordinates
        ("cropped", "mydarcy"): "lift",
        ("ptdarcy", "poisson"): "lift",
        ("ptdarcy", "mydarcy"): "",
    }
    datasets = df[df["family"] != "poisson"]
    assert (datasets["dataset_digest"].str.len() == 64).all() and (
        df[df["family"] == "poisson"]["dataset_digest"] == ""
    ).all()
    assert set(zip(datasets["grid_h"], datasets["grid_w"], strict=True)) == {(24, 24), (16, 24), (16, 16)}
    scratch = datasets[datasets["mode"] == "scratch"]
    assert (scratch["padding"] > 0).all() and scratch["coords"].all()  # the defaults for datasets
    evaluations = results.read_evaluations(tmp_path / "out" / "mine" / "evaluations").to_pandas()
    pt_keys = set(df[df["family"] == "ptdarcy"]["key"])
    assert set(evaluations[evaluations["key"].isin(pt_keys)]["resolution"]) == {16, 32}  # its test file at 32
    report = (tmp_path / "out" / "mine" / "summary.md").read_text()
    assert all(name in report for name in ("mydarcy", "cropped", "ptdarcy"))
    assert os.path.exists(tmp_path / "out" / "mine" / "report.html")


def test_a_dataset_on_an_object_store_is_copied_once_and_hpo_takes_a_dataset_family(tmp_path):
    import fsspec

    from fno.data.readers import localize
    from fno_sweeps import hpo

    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/darcy.h5", pdebench_h5(tmp_path / "darcy.h5").read_bytes())
    local = localize("memory://bucket/darcy.h5", tmp_path / "cache")
    assert local.read_bytes() == (tmp_path / "darcy.h5").read_bytes()
    stamp = local.stat().st_mtime_ns
    assert localize("memory://bucket/darcy.h5", tmp_path / "cache") == local and local.stat().st_mtime_ns == stamp
    remote = ExternalDataset.from_dict(
        "mydarcy", {"path": "memory://bucket/darcy.h5", "inputs": "nu", "outputs": "tensor"}
    )
    assert check_external(remote, PLAN).digest == check_external(darcy(tmp_path), PLAN).digest
    toml = tmp_path / "preset.toml"
    toml.write_text(f'[datasets.mydarcy]\npath = "{tmp_path / "darcy.h5"}"\ninputs = "nu"\noutputs = "tensor"\n')
    flags = [
        "--family",
        "mydarcy",
        "--pretrain-family",
        "poisson",
        "--size",
        "w8-m4",
        "--mode",
        "finetune",
        "--n-train",
        "8",
        "--preset",
        str(toml),
        "--out",
        str(tmp_path / "out"),
        "--set",
        "resolution=16",
    ]
    setting = hpo.plan(hpo.parse_args(flags))
    assert setting.template.config.family == "mydarcy" and setting.pretrain.config.family == "poisson"
    assert "mydarcy, range all samples" in hpo.best_snippet(
        setting,
        type("Best", (), {"value": 0.1, "params": {"lr": 1e-3, "weight_decay": 1e-6, "batch_size": 8, "steps": 10}})(),
    )


def test_a_dataset_declared_with_set_flags_joins_a_named_preset_and_built_in_keys_stay(tmp_path):
    path = pdebench_h5(tmp_path / "darcy.h5")
    overrides = {
        "families": ["poisson", "mydarcy"],
        "datasets.mydarcy.path": str(path),
        "datasets.mydarcy.inputs": "nu",
        "datasets.mydarcy.outputs": "tensor",
        "n_train": [8, 16],
    }
    trials = expand(Preset.load("cpu", overrides))
    plain = {t.key for t in expand(Preset.load("cpu", {"n_train": [8, 16]}))}
    assert plain <= {t.key for t in trials}  # the built-in family's trials keep their keys
    mine = [t for t in trials if t.config.family == "mydarcy"]
    assert {t.shift for t in mine} == {"none"}  # a dataset without shifts offers none only
    assert {t.config.mode for t in mine} == {"scratch", "finetune"}  # 4 channels -> 1: no zero-shot
    assert all(t.config.resolution == 24 and t.config.dataset["digest"] for t in mine)
