"""sweeps/hpo.py: bad input refused before Ray starts; a tiny search killed, continued and summarised."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_sweep import TINY

from fno import results
from fno_sweeps import hpo
from fno_sweeps.grid import Preset

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SETTING = ["--family", "poisson", "--size", "w8-m4", "--mode", "finetune", "--n-train", "8"]
FAST = [*TINY, "--steps", "10", "30", "--batch-sizes", "4", "8", "--no-dashboard"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "1e-2", "1e-4"], "--lr 0.01 0.0001: lo > hi"),
        (["--weight-decay", "0", "1e-3"], "both ends must be positive"),
        (["--steps", "100", "10"], "--steps 100 10: lo > hi"),
        (["--batch-sizes", "8", "0"], "--batch-sizes"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--shift", "huge"], "--shift must be one of none, moderate, large; got 'huge'"),
        (["--set", "resolution=-4"], "resolution"),
    ],
)
def test_bad_input_is_refused_before_ray_starts(tmp_path, capsys, flags, message):
    import ray

    assert hpo.main([*SETTING, "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not ray.is_initialized() and not list(tmp_path.iterdir())


def test_unknown_family_and_size_are_named():
    with pytest.raises(ValueError, match="--family must be one of poisson, advdiff, helmholtz; got 'heat'"):
        hpo.plan(hpo.parse_args(["--family", "heat", "--size", "w8-m4", "--mode", "scratch", "--n-train", "8"]))
    with pytest.raises(ValueError, match="--size big: 'big' is not a size"):
        hpo.plan(hpo.parse_args(["--family", "poisson", "--size", "big", "--mode", "scratch", "--n-train", "8"]))


def _hpo_rows(sweep_dir: Path):
    df = results.read_results(sweep_dir / "results").to_pandas()
    return df[df["stage"] == "hpo"]


def test_an_interrupted_search_continues_the_same_study_and_its_best_config_feeds_a_preset(tmp_path):
    cmd = [sys.executable, str(ROOT / "sweeps" / "hpo.py"), *SETTING, "--trials", "8", "--out", str(tmp_path), *FAST]
    sweep_dir = tmp_path / "hpo-poisson-none-w8-m4-finetune-n8"
    run = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and run.poll() is None:
            if (sweep_dir / "results").exists() and len(_hpo_rows(sweep_dir)) >= 2:
                break
            time.sleep(0.5)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    before = set(_hpo_rows(sweep_dir)["key"])
    assert 2 <= len(before) < 8, "the search should have been interrupted part-way"
    study, _ = hpo.open_study(hpo.plan(hpo.parse_args([*SETTING, "--trials", "8", "--out", str(tmp_path), *FAST])))
    finished_before = len(hpo.finished_trials(study))
    assert finished_before < 8
    assert hpo.main([*SETTING, "--trials", "8", "--out", str(tmp_path), *FAST]) == 0
    study, _ = hpo.open_study(hpo.plan(hpo.parse_args([*SETTING, "--trials", "8", "--out", str(tmp_path), *FAST])))
    assert len(hpo.finished_trials(study)) == 8  # the same study, grown to the total asked for
    after = _hpo_rows(sweep_dir)
    assert before <= set(after["key"]) and after["key"].is_unique  # nothing lost, nothing twice
    assert len(after) >= 8
    # The rows and the best configuration, end to end (the continuation ran in-process).
    assert set(after["status"]) <= {"ok", "stopped", "failed"} and "ok" in set(after["status"])
    assert after["lr"].between(1e-4, 1e-2).all() and after["weight_decay"].between(1e-8, 1e-3).all()
    assert set(after["batch_size"]) <= {4, 8} and (after["mode"] == "finetune").all()
    assert (after["pretrained_key"] != "").all()
    text = (sweep_dir / "best.toml").read_text()
    best, best_value = tomllib.loads(text), float(re.search(r"val_rel_l2 = (\S+)", text).group(1))
    ok = after[after["status"] == "ok"]
    best_row = ok.loc[ok["val_rel_l2"].idxmin()]
    # The study's best is at most the best row (a trial the killed driver completed may lack its row).
    assert best_value <= best_row["val_rel_l2"] * (1 + 1e-5)
    if best_value == pytest.approx(best_row["val_rel_l2"], rel=1e-5):
        assert best["lrs"][0] == pytest.approx(best_row["lr"], rel=1e-5)
    preset = Preset.load("cpu", {"lrs": best["lrs"], **{f"downstream.{k}": v for k, v in best["downstream"].items()}})
    assert preset.downstream.steps == best["downstream"]["steps"]
