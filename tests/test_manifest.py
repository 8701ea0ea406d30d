"""One study per sweep folder: the manifest, its check before Ray starts (no Ray here: the
sweep itself is a stub), and the analysis's refusal to pool two studies' rows."""

import json
import math

import pandas as pd
import pytest
from synthetic import results_table
from tiny_sweep import TINY

from fno import results
from fno.config import parse_overrides
from fno_analysis.points import select_points
from fno_sweeps import scaling
from fno_sweeps.grid import Preset, expand
from fno_sweeps.manifest import MANIFEST_NAME, build_manifest, compare
from fno_sweeps.runner import result_row


@pytest.fixture
def no_ray(monkeypatch):
    """``scaling.main`` up to where Ray would start: the sweep itself (``_run``) is a stub
    that records its calls."""
    calls = []
    monkeypatch.setattr(scaling, "_run", lambda *args: calls.append(args) or 0)
    return calls


# TINY with an epochs budget instead of its 10 steps.
TINY_EPOCHS = [
    item for pair in zip(TINY[::2], TINY[1::2], strict=True) if pair[1] != "downstream.steps=10" for item in pair
]


def _args(out, *extra: str, base: list[str] = TINY) -> list[str]:
    return ["--out", str(out), "--sweep", "mix", *base, *extra]


def _write_a_row(folder, *sets: str, base: list[str] = TINY) -> None:
    """A finished trial's row in ``folder``'s results, as a run of ``base`` plus ``sets`` writes it."""
    preset = Preset.load("cpu", parse_overrides([*base, *sets][1::2]))
    results.write_row(folder / "results", result_row(expand(preset)[0], "mix", None, "stand-in"))


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _manifest(folder) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


def test_compare_splits_the_preset_into_grid_axes_and_defining_fields():
    study = build_manifest(Preset.load("cpu"))
    assert study["preset"]["downstream"]["epochs"] == 1000 and len(study["preset_sha256"]) == 64
    # The name is a label, and stage 2 takes N and lr from the grid: neither is compared.
    same = compare(study, Preset.load("cpu", {"name": "other", "downstream.lr": 0.1, "downstream.n_train": 8}))
    assert not (same.changed or same.added or same.removed)
    changed = {
        "downstream.epochs": 500,
        "resolution": 64,
        "lrs": [3e-3, 1e-2],
        "data_seeds": [1],
        "ranges.poisson.large": [10.0, 30.0],
        "eval_resolutions": [64],
        "budget_probe": True,
    }
    diff = compare(study, Preset.load("cpu", changed))
    assert diff.changed == {
        "downstream.epochs": (1000, 500),
        "resolution": (32, 64),
        "pretrain.data_seed": (0, 1),  # the first data seed is the data pre-training uses
        "ranges.poisson.large": ([10.0, 20.0], [10.0, 30.0]),
    }
    assert diff.added == {"lrs": [0.01], "data_seeds": [1], "eval_resolutions": [64], "budget_probe": [True]}
    assert diff.removed == {"lrs": [0.0003], "data_seeds": [0]}
    assert diff.axes["lrs"] == [0.0003, 0.003, 0.01] and diff.axes["budget_probe"] is True
    message = diff.refusal("out/cpu")
    assert "downstream.epochs: 1000 in the study of out/cpu, 500 now" in message
    assert "pretrain.data_seed (the first of data_seeds): 0 in the study of out/cpu, 1 now" in message
    assert "ranges.poisson.large: [10.0, 20.0] in the study of out/cpu, [10.0, 30.0] now" in message
    assert "--sweep NEW" in message
    # A field an older manifest lacks is not a change (the new version's default is the old behaviour).
    del study["defining"]["n_test"]
    assert not compare(study, Preset.load("cpu", {"n_test": 8})).changed


def test_a_changed_budget_on_a_folder_with_results_is_refused_naming_the_field(tmp_path, capsys, no_ray):
    folder = tmp_path / "mix"
    assert scaling.main(_args(tmp_path, "--set", "downstream.epochs=3", base=TINY_EPOCHS)) == 0
    assert _manifest(folder)["defining"]["downstream.epochs"] == 3
    _write_a_row(folder, "--set", "downstream.epochs=3", base=TINY_EPOCHS)
    before = _files(folder)
    capsys.readouterr()
    # Before this check both runs went into out/mix without a word, and the report pooled
    # the 3- and 6-epoch trials as seeds of one point.
    for dry_run in ([], ["--dry-run", "--throughput", "1e9"]):
        assert scaling.main(_args(tmp_path, "--set", "downstream.epochs=6", *dry_run, base=TINY_EPOCHS)) == 2
        err = capsys.readouterr().err
        assert f"downstream.epochs: 3 in the study of {folder}, 6 now" in err and "--sweep NEW" in err
    assert _files(folder) == before  # nothing written: the same files, the same manifest
    assert len(no_ray) == 1  # only the first run got as far as Ray


def test_new_n_values_extend_the_study_and_the_manifest_keeps_the_union(tmp_path, capsys, no_ray):
    folder = tmp_path / "mix"
    assert scaling.main(_args(tmp_path)) == 0  # TINY: n_train = [8]
    _write_a_row(folder)
    first = _manifest(folder)
    capsys.readouterr()
    more = ["--set", "n_train=[8,16,32]"]
    assert scaling.main(_args(tmp_path, *more, "--dry-run", "--throughput", "1e9")) == 0
    assert f"would extend the study in {folder}: n_train + [16, 32]" in capsys.readouterr().out
    assert _manifest(folder) == first  # a dry run writes nothing
    assert scaling.main(_args(tmp_path, *more)) == 0
    assert f"extending the study in {folder}: n_train + [16, 32]" in capsys.readouterr().out
    extended = _manifest(folder)
    assert extended["grid_axes"]["n_train"] == [8, 16, 32] and extended["defining"] == first["defining"]
    # Part of the study: the values left out are said, and the manifest keeps them.
    assert scaling.main(_args(tmp_path, "--set", "n_train=[16]")) == 0
    out = capsys.readouterr().out
    assert f"this run leaves out part of the study in {folder} (n_train [8, 32]): those trials are not run" in out
    assert _manifest(folder)["grid_axes"]["n_train"] == [8, 16, 32]
    assert len(no_ray) == 3


def test_a_folder_with_results_and_no_manifest_is_adopted(tmp_path, capsys, no_ray):
    folder = tmp_path / "mix"
    _write_a_row(folder)  # an older version's sweep: rows, no manifest
    assert scaling.main(_args(tmp_path, "--dry-run", "--throughput", "1e9")) == 0
    assert "this run would adopt it as one study" in capsys.readouterr().out
    assert not (folder / MANIFEST_NAME).exists()
    assert scaling.main(_args(tmp_path)) == 0
    assert f"{folder} has results but no {MANIFEST_NAME}" in capsys.readouterr().out
    preset = Preset.load("cpu", {**parse_overrides(TINY[1::2]), "name": "cpu"})
    manifest = _manifest(folder)
    assert manifest["preset_sha256"] == build_manifest(preset)["preset_sha256"]
    assert manifest["code_version"] and manifest["written_at"]
    # From now on it is a study like any other.
    assert scaling.main(_args(tmp_path, "--set", "resolution=32")) == 2
    assert f"resolution: 16 in the study of {folder}, 32 now" in capsys.readouterr().err


def test_the_analysis_refuses_a_table_that_mixes_two_epoch_budgets_at_one_point():
    # Two studies in one folder: `--set downstream.epochs=3`, then `--set downstream.epochs=6`,
    # same grid and seeds, so each point has a 3-epoch and a 6-epoch row.
    n_values = [8, 16, 32]
    three = results_table({("scratch", 8): (1.0, 0.5, 0.05)}, n_values=n_values)
    three = three.assign(epochs=3.0, steps=[math.ceil(3 * n / min(16, n)) for n in three["n_train"]])
    six = three.assign(
        key=three["key"] + "-6", epochs=6.0, steps=2 * three["steps"], test_rel_l2=three["test_rel_l2"] / 2
    )
    # Before: select_points pooled them: each point's error was the mean of its 3- and 6-epoch
    # trials (seed_errors held both, test_std their spread), and the report fitted those means.
    with pytest.raises(ValueError, match=r"n_train 8, lr 0.001\) its rows differ in epochs \(3.0, 6.0\).*Split the"):
        select_points(pd.concat([three, six], ignore_index=True))
    # One study is fine: steps that grow with N under an epochs budget, and a failed row that
    # ran fewer epochs; so is an older table without these columns (it cannot be checked).
    failed = six.iloc[[0]].assign(key="failed", seed=1, status="failed", epochs=0.0, steps=0)
    assert len(select_points(pd.concat([three, failed], ignore_index=True))) == len(n_values)
    older = pd.concat([three, six], ignore_index=True).drop(columns=["epochs", "steps"])
    assert len(select_points(older)) == len(n_values)
