"""Training budgets in epochs (the paper's rule), budget probes, and keys that stay put."""

import math

import pytest

from fno.train import TrialConfig, budget_steps, run_trial
from fno_sweeps.grid import Preset, expand, scaled_budget

# The `cpu` preset as it was before budgets in epochs existed: its keys must not change.
FIXED_STEP_PRESET = {
    "name": "cpu",
    "resolution": 32,
    "sizes": ["w8-m4", "w16-m6"],
    "shifts": ["none", "moderate", "large"],
    "n_train": [8, 16, 32, 64, 128, 256],
    "lrs": [1e-3, 3e-3],
    "pretrain": {"n_train": 1024, "steps": 800, "batch_size": 32, "eval_every": 100, "lr": 3e-3},
    "downstream": {"steps": 200, "batch_size": 16, "eval_every": 50},
}


def test_the_paper_rule_grows_the_budget_with_n():
    assert budget_steps(500, 8, 128) == 500  # batch min(128, 8) = 8: one step per epoch
    assert budget_steps(500, 32768, 128) == 128_000
    assert budget_steps(500, 200, 128) == math.ceil(500 * 200 / 128)
    assert budget_steps(1.0, 8, 128, min_steps=50) == 50
    assert budget_steps(500, 32768, 128, max_steps=10_000) == 10_000


def test_a_trial_takes_the_epoch_budget_and_evaluates_at_its_end():
    config = TrialConfig(mode="scratch", n_train=12, n_val=8, n_test=8, resolution=16, width=4, modes=3,
                         batch_size=8, epochs=5, eval_every=100)  # fmt: skip
    assert config.batch == 8 and config.total_steps == math.ceil(5 * 12 / 8) == 8
    assert config.eval_steps() == [7, 8]  # ceil(0.8 * 8) = 7, ceil(0.9 * 8) = 8, the end
    calls = []
    result = run_trial(config, report=lambda *a: calls.append(a))
    assert result.steps == 8 and [c[0] for c in calls] == [7, 8]
    assert result.eval_steps == [7, 8] and len(result.eval_val_rel_l2) == 2
    assert result.epochs == pytest.approx(8 * 8 / 12)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"steps": 100, "epochs": 5}, "exactly one of steps and epochs"),
        ({"epochs": -1.0}, "epochs must be a finite number > 0"),
        ({"epochs": float("inf")}, "epochs must be a finite number > 0"),
        ({"steps": 100, "min_steps": 10}, "min_steps applies to an epochs budget only"),
        ({"epochs": 5, "min_steps": 100, "max_steps": 10}, r"min_steps \(100\) > max_steps \(10\)"),
        ({"epochs": 5, "max_steps": 0}, "max_steps must be an integer >= 1"),
    ],
)
def test_bad_budgets_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        TrialConfig(mode="scratch", resolution=16, modes=4, **fields)


def test_a_preset_epoch_budget_replaces_its_steps_and_reaches_every_trial():
    preset = Preset.from_dict({**FIXED_STEP_PRESET, "downstream": {"epochs": 50, "batch_size": 16, "min_steps": 60}})
    downstream = [t for t in expand(preset) if t.stage == "downstream" and t.config.mode != "zeroshot"]
    for trial in downstream:
        c = trial.config
        assert c.steps is None and c.epochs == 50
        assert c.total_steps == max(60, math.ceil(50 * c.n_train / min(16, c.n_train)))
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        Preset.from_dict({**FIXED_STEP_PRESET, "downstream": {"epochs": 50, "steps": 100}})


def test_fixed_step_trials_keep_the_keys_they_had_before_epoch_budgets():
    trials = expand(Preset.from_dict(FIXED_STEP_PRESET))
    by_name = {(t.config.mode, t.config.width, t.config.n_train, t.config.lr, t.shift): t.key for t in trials}
    assert by_name[("pretrain", 8, 1024, 3e-3, "pretrain")] == "790da5122f8f04fc628c36df"
    assert by_name[("pretrain", 16, 1024, 3e-3, "pretrain")] == "862c634beeffc27489df6bb8"
    assert by_name[("finetune", 8, 8, 1e-3, "none")] == "ddbc222ebb129b3377634957"
    assert by_name[("zeroshot", 8, 1, 1e-3, "none")] == "335c02afb3eda9c765e8c4f5"


def test_budget_probes_double_the_largest_n_scratch_trials():
    preset = Preset.from_dict({**FIXED_STEP_PRESET, "budget_probe": True})
    trials = expand(preset)
    probes = [t for t in trials if t.stage == "probe"]
    base = [t for t in trials if t.stage == "downstream" and t.config.mode == "scratch" and t.config.n_train == 256]
    assert len(probes) == len(base) == 2 * 3 * 2  # sizes x shifts x lrs
    assert {t.config.total_steps for t in probes} == {400} and not any(t.pretrained_key for t in probes)
    assert len({t.key for t in trials}) == len(trials)
    epoch = TrialConfig(mode="scratch", resolution=16, modes=4, epochs=30, min_steps=10, max_steps=500)
    doubled = scaled_budget(epoch, 2)
    assert (doubled.epochs, doubled.min_steps, doubled.max_steps) == (60, 20, 1000)
    with pytest.raises(ValueError, match="budget_probe must be true or false"):
        Preset.from_dict({**FIXED_STEP_PRESET, "budget_probe": "yes"})


def test_an_override_budget_replaces_the_presets_other_budget():
    steps = Preset.load("cpu", {"downstream.steps": 10})  # cpu.toml's downstream budget is in epochs
    assert (steps.downstream.steps, steps.downstream.epochs) == (10, None)
    epochs = Preset.load("cpu", {"pretrain.epochs": 3})
    assert (epochs.pretrain.steps, epochs.pretrain.epochs) == (None, 3)
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        Preset.load("cpu", {"downstream.steps": 10, "downstream.epochs": 3})
