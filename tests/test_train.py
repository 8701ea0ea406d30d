"""The trial runner: learning, the study's core claim in miniature, checkpoints, errors."""

import json
import math

import pytest
import torch

from fno import train
from fno.metrics import EVAL_METRICS
from fno.train import TrialConfig, run_trial

# Tiny, fast settings shared by the tests: a 32 x 32 grid and a small FNO.
TINY = {"resolution": 32, "width": 12, "modes": 6, "n_val": 32, "n_test": 32, "device": "cpu", "threads": 2}


def tiny(**kw):
    return TrialConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One pre-trained Poisson model (e in [1, 5]), shared by the tests of this module."""
    out = tmp_path_factory.mktemp("pretrain")
    config = tiny(mode="pretrain", n_train=512, steps=500, lr=3e-3, batch_size=32, eval_every=100)
    result = run_trial(config, out_dir=out)
    assert result.status == "ok"
    return result


def test_a_tiny_model_learns_poisson(pretrained):
    # Predicting zero has relative L2 error 1; the pre-trained model must be far better.
    assert pretrained.test_rel_l2 < 0.15
    assert pretrained.best_step > 0 and math.isfinite(pretrained.val_rel_l2)


@pytest.mark.parametrize("shift,param_range", [("none", (1.0, 5.0)), ("moderate", (5.0, 10.0))])
def test_finetune_beats_scratch_with_16_examples(pretrained, shift, param_range):
    common = {"param_range": param_range, "n_train": 16, "steps": 150, "batch_size": 16, "eval_every": 25}
    scratch = run_trial(tiny(mode="scratch", lr=3e-3, **common))
    finetune = run_trial(tiny(mode="finetune", lr=1e-3, pretrained=pretrained.checkpoint, **common))
    assert scratch.status == finetune.status == "ok"
    assert finetune.test_rel_l2 < 0.8 * scratch.test_rel_l2, (shift, finetune.test_rel_l2, scratch.test_rel_l2)


def test_zeroshot_is_worse_under_shift(pretrained):
    in_dist = run_trial(tiny(mode="zeroshot", pretrained=pretrained.checkpoint, param_range=(1.0, 5.0)))
    shifted = run_trial(tiny(mode="zeroshot", pretrained=pretrained.checkpoint, param_range=(10.0, 20.0)))
    assert in_dist.steps == 0 and in_dist.train_s == 0
    assert in_dist.test_rel_l2 == pytest.approx(pretrained.test_rel_l2, rel=1e-5)  # same data, same model
    assert shifted.test_rel_l2 > in_dist.test_rel_l2


def test_checkpoint_round_trip(pretrained):
    model, norm, checkpoint = train.load_checkpoint(pretrained.checkpoint)
    assert checkpoint["format"] == train.CHECKPOINT_FORMAT and checkpoint["version"] == train.CHECKPOINT_VERSION
    assert checkpoint["model_config"] == {
        "in_channels": 4, "out_channels": 1, "width": 12, "modes": 6, "layers": 4, "padding": 0.0, "coords": False
    }  # fmt: skip
    assert checkpoint["data_spec"]["family"] == "poisson" and checkpoint["best_step"] == pretrained.best_step
    fields = train.load_fields(tiny(mode="pretrain").data_spec("test"))
    assert train.evaluate(model, norm, fields, 16) == pytest.approx(pretrained.test_rel_l2, rel=1e-5)


def test_same_config_and_seed_give_the_same_result():
    config = tiny(mode="scratch", n_train=16, steps=20, eval_every=10)
    a, b = run_trial(config), run_trial(config)
    assert a.test_rel_l2 == b.test_rel_l2 and a.val_rel_l2 == b.val_rel_l2 and a.train_loss == b.train_loss
    c = run_trial(tiny(mode="scratch", n_train=16, steps=20, eval_every=10, seed=1))
    assert c.test_rel_l2 != a.test_rel_l2


def test_divergence_is_a_status_not_an_exception():
    result = run_trial(tiny(mode="scratch", n_train=16, steps=50, lr=1e6, eval_every=5))
    assert result.status == "diverged"
    assert "step" in result.error and math.isnan(result.test_rel_l2)


def test_report_is_called_at_each_evaluation():
    calls = []
    run_trial(tiny(mode="scratch", n_train=16, steps=30, eval_every=10), report=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [10, 20, 24, 27, 30]  # every 10 steps, and at 80%, 90% of the budget
    assert calls[-1][1] == pytest.approx(30.0)  # epochs: 30 steps of a full batch of 16
    assert all(math.isfinite(c[2]) and c[3] > 0 for c in calls)


def test_mismatched_checkpoints_are_refused(pretrained, tmp_path):
    with pytest.raises(ValueError, match=r"trained on channels \['f', 's\*k11', 's\*k22', 's\*k12'\] \(4\)"):
        run_trial(tiny(mode="finetune", family="helmholtz", pretrained=pretrained.checkpoint, n_train=8, steps=1))
    _, norm, _ = train.load_checkpoint(pretrained.checkpoint)
    wide = tmp_path / "modes10.pt"
    train.save_checkpoint(wide, train.FNO2d(4, 1, 8, 10), norm, tiny(mode="pretrain", resolution=32))
    with pytest.raises(ValueError, match="modes=10 is too many for a 16 x 16 grid: at most 8"):
        run_trial(tiny(mode="zeroshot", pretrained=str(wide), resolution=16))
    with pytest.raises(FileNotFoundError, match=r"pretrained checkpoint .* not found"):
        run_trial(tiny(mode="finetune", pretrained=str(tmp_path / "missing.pt"), n_train=8, steps=1))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        run_trial(tiny(mode="zeroshot", pretrained=str(garbage)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "transfer"}, "mode must be one of pretrain, scratch, finetune, zeroshot"),
        ({"mode": "scratch", "pretrained": "x.pt"}, "pretrained must be unset"),
        ({"n_train": 0}, "n_train must be an integer >= 1, got 0"),
        ({"n_train": -4}, "n_train must be an integer >= 1"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"modes": 17}, "modes=17 is too many for a 32 x 32 grid"),
        ({"family": "burgers"}, "family must be one of"),
        ({"param_range": (5, 1)}, "lo <= hi"),
        ({"device": "tpu:0"}, "device must be auto, cpu, cuda"),
        ({"steps": 0}, "steps must be an integer >= 1"),
    ],
)
def test_bad_configs_fail_before_any_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_a_fine_tune_without_a_checkpoint_is_refused_before_any_work():
    config = tiny(mode="finetune")  # plannable: a sweep sets the path when it submits the trial
    with pytest.raises(ValueError, match="mode finetune needs pretrained = path"):
        run_trial(config)


def test_config_from_toml_and_unknown_keys(tmp_path):
    path = tmp_path / "trial.toml"
    path.write_text('mode = "scratch"\nfamily = "advdiff"\nparam_range = [1.0, 2.0]\nn_train = 8\nlr = 5e-4\n')
    config = TrialConfig.from_toml(path)
    assert config.family == "advdiff" and config.data_spec("train").ranges == (1.0, 2.0) and config.lr == 5e-4
    assert TrialConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == TrialConfig.from_dict(config.to_dict())
    path.write_text('mode = "scratch"\nlearning_rate = 1e-3\n')
    with pytest.raises(ValueError, match=r"unknown TrialConfig fields \['learning_rate'\]"):
        TrialConfig.from_toml(path)
    path.write_text("mode = scratch\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        TrialConfig.from_toml(path)


def test_cli_writes_result_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(
        [
            "--mode",
            "scratch",
            "--n-train",
            "8",
            "--steps",
            "4",
            "--resolution",
            "16",
            "--width",
            "8",
            "--modes",
            "4",
            "--set",
            "eval_every=2",
            "--set",
            "n_val=8",
            "--set",
            "n_test=8",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = json.loads((out / "result.json").read_text())
    assert saved["result"]["status"] == "ok" and saved["config"]["n_train"] == 8
    assert (out / "checkpoint.pt").exists()
    printed = capsys.readouterr().out
    assert "step      2" in printed and "test rel L2" in printed
    assert train.main(["--mode", "scratch", "--set", "n_train=-1", "--out", str(out)]) == 2
    assert "n_train must be an integer >= 1" in capsys.readouterr().err


FROZEN_PREFIXES = {  # state-dict prefixes each strategy must leave untouched
    "full": (),
    "head": ("lift.", "fourier."),
    "lift-head": ("fourier.",),
    "frozen-spectral": tuple(f"fourier.{i}.spectral." for i in range(4)),
}


@pytest.mark.parametrize("strategy", list(FROZEN_PREFIXES))
def test_each_fine_tuning_strategy_trains_exactly_its_parts(pretrained, tmp_path, strategy):
    config = tiny(mode="finetune", pretrained=pretrained.checkpoint, n_train=16, steps=20, eval_every=10, lr=1e-2)
    config = TrialConfig(**{**config.to_dict(), "finetune_strategy": strategy})
    result = run_trial(config, out_dir=tmp_path)
    assert result.status == "ok" and result.finetune_strategy == strategy
    before = train.load_checkpoint(pretrained.checkpoint)[0].state_dict()
    after = train.load_checkpoint(result.checkpoint)[0].state_dict()
    frozen = {k for k in before if k.startswith(FROZEN_PREFIXES[strategy])}
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # frozen: unchanged after training
    assert not any(torch.equal(before[k], after[k]) for k in set(before) - frozen)  # the rest: trained
    model = train.load_checkpoint(pretrained.checkpoint)[0]
    assert result.n_trainable == model.freeze_for(strategy) == sum(before[k].numel() for k in set(before) - frozen)


def test_a_strategy_other_than_full_is_only_for_fine_tuning():
    with pytest.raises(ValueError, match="finetune_strategy applies to mode finetune"):
        tiny(mode="scratch", finetune_strategy="head")
    with pytest.raises(ValueError, match="finetune_strategy must be one of full, head, lift-head, frozen-spectral"):
        tiny(mode="finetune", pretrained="x.pt", finetune_strategy="lora")


def test_a_model_trained_at_r_is_tested_at_2r_on_the_same_samples(pretrained):
    config = tiny(mode="zeroshot", pretrained=pretrained.checkpoint, param_range=(1.0, 5.0), eval_resolutions=[64, 32])
    assert config.test_resolutions == (32, 64)
    result = run_trial(config)
    table = {(e["resolution"], e["metric"]): e["value"] for e in result.evaluations}
    assert set(table) == {(r, m) for r in (32, 64) for m in EVAL_METRICS}
    assert table[(32, "rel_l2")] == result.test_rel_l2 == pytest.approx(pretrained.test_rel_l2, rel=1e-5)
    # The 64 x 64 value is the model's error on the same test samples sampled twice as finely.
    model, norm, _ = train.load_checkpoint(pretrained.checkpoint)
    fine = train.load_fields(config.data_spec("test", 64))
    coarse = train.load_fields(config.data_spec("test"))
    scale = coarse.solution.abs().max().item()  # the spectral solve differs at round-off and aliasing level
    torch.testing.assert_close(fine.solution[..., ::2, ::2], coarse.solution, rtol=0, atol=1e-3 * scale)
    assert table[(64, "rel_l2")] == pytest.approx(train.evaluate(model, norm, fine, 16), rel=1e-5)
    # A Fourier operator transfers: the finer grid's error stays within 2x of the training grid's.
    assert table[(64, "rel_l2")] < 2 * table[(32, "rel_l2")]
    for r in (32, 64):  # the bands add up (per sample, so the means only bound it) and percentiles order
        bands = math.sqrt(sum(table[(r, f"rel_l2_{b}")] ** 2 for b in ("low", "mid", "high")))
        assert bands <= table[(r, "rel_l2")] * (1 + 1e-5)
        assert table[(r, "rel_l2_p50")] <= table[(r, "rel_l2_p90")]


def test_trained_trials_are_evaluated_at_every_test_resolution():
    result = run_trial(tiny(mode="scratch", n_train=8, steps=5, eval_every=5, eval_resolutions=[64]))
    assert [(e["resolution"], e["metric"]) for e in result.evaluations[:1]] == [(32, "rel_l2")]
    assert {e["resolution"] for e in result.evaluations} == {32, 64} and len(result.evaluations) == 12
    with pytest.raises(ValueError, match="eval_resolutions must be even integers >= 16, got 12"):
        tiny(mode="scratch", eval_resolutions=[12])
    with pytest.raises(ValueError, match="eval_resolutions: modes=12 is too many for a 16 x 16 grid"):
        tiny(mode="scratch", modes=12, eval_resolutions=[16])
