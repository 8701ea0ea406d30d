"""Sweeps: grid expansion and keys, the results table, and whole sweeps on local Ray."""

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import loopback_cluster, sweep_rows
from tiny_sweep import TINY, TINY_TRIALS

from fno import results
from fno.metrics import EVAL_METRICS
from fno_sweeps import cluster, scaling
from fno_sweeps.grid import Preset, expand, trial_flops, trial_key
from fno_sweeps.runner import result_row

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_preset_expands_to_the_documented_grid():
    trials = expand(Preset.load("cpu"))
    by_mode = {m: sum(t.config.mode == m for t in trials) for m in ("pretrain", "scratch", "finetune", "zeroshot")}
    # 2 sizes; downstream: 2 shifts x 5 N x 2 lr for scratch and finetune, 2 shifts for zeroshot
    assert by_mode == {"pretrain": 2, "scratch": 40, "finetune": 40, "zeroshot": 4}
    assert len({t.key for t in trials}) == len(trials) == 86
    assert [t.stage for t in trials[:2]] == ["pretrain", "pretrain"]


def test_keys_are_stable_and_follow_defining_fields():
    trials = expand(Preset.load("cpu"))
    again = expand(Preset.load("cpu"))
    assert [t.key for t in trials] == [t.key for t in again]
    # Pinned: the same key on every machine (a change here re-runs every stored sweep).
    assert trials[0].key == PINNED_FIRST_KEY
    config = trials[5].config
    assert trial_key(config, trials[5].pretrained_key) == trials[5].key
    import dataclasses

    assert trial_key(dataclasses.replace(config, device="cuda", threads=8), trials[5].pretrained_key) == trials[5].key
    assert trial_key(dataclasses.replace(config, lr=config.lr * 2), trials[5].pretrained_key) != trials[5].key
    assert trial_key(config, "another-pretrained-model") != trials[5].key


def test_data_seeds_repeat_the_downstream_grid_on_fresh_data():
    one = expand(Preset.load("cpu"))
    three = expand(Preset.load("cpu", {"data_seeds": [0, 1, 2], "budget_probe": True}))
    downstream = [t for t in three if t.stage == "downstream"]
    assert {t.config.data_seed for t in downstream} == {0, 1, 2}
    assert len(downstream) == 3 * sum(t.stage == "downstream" for t in one)
    assert all(t.config.data_seed == 0 for t in three if t.stage in ("pretrain", "probe"))  # one model, one probe
    assert {t.key for t in one} <= {t.key for t in three}  # data seed 0 keeps its keys
    assert result_row(downstream[-1], "s", None, "boom")["data_seed"] == 2  # the table says which data
    with pytest.raises(ValueError, match="data_seeds must be a non-empty list"):
        Preset.load("cpu", {"data_seeds": []})


def test_the_grid_is_expanded_once_and_downstream_trials_hold_their_pre_training():
    preset = Preset.load("cpu")
    assert expand(preset) == expand(preset) and expand(preset) is not expand(preset)  # copies of one expansion
    finetune = next(t for t in expand(preset) if t.config.mode == "finetune")
    assert finetune.config.pretrained is None and finetune.pretrained_key  # no placeholder path
    with pytest.raises(ValueError, match="'modes' is now 'train_modes'"):
        Preset.load("cpu", {"modes": ["scratch"]})


def test_fine_tuning_strategies_are_a_grid_axis_and_full_keeps_its_keys():
    one = expand(Preset.load("cpu"))
    four = expand(Preset.load("cpu", {"finetune_strategies": ["full", "head", "lift-head", "frozen-spectral"]}))
    finetune = [t for t in four if t.config.mode == "finetune"]
    assert len(finetune) == 4 * sum(t.config.mode == "finetune" for t in one)
    assert {t.key for t in one} <= {t.key for t in four}  # full: the keys it always had
    assert len({t.key for t in four}) == len(four)
    assert {t.config.finetune_strategy for t in four if t.config.mode != "finetune"} == {"full"}
    head = next(t for t in finetune if t.config.finetune_strategy == "head")
    row = result_row(head, "s", None, "boom")
    assert row["finetune_strategy"] == "head" and "finetune[head]" in head.name
    with pytest.raises(ValueError, match=r"finetune_strategies: \['lora'\] not allowed"):
        Preset.load("cpu", {"finetune_strategies": ["lora"]})


PINNED_FIRST_KEY = "1db96222c321ab7edd8f66af"  # fixed-step budgets keep older keys: tests/test_budget.py


def test_the_strategies_preset_runs_every_strategy_at_two_test_resolutions():
    trials = expand(Preset.load("strategies"))
    assert len(trials) == 303  # the count docs/sweeps.md gives
    finetune = [t for t in trials if t.config.mode == "finetune"]
    assert {t.config.finetune_strategy for t in finetune} == {"full", "head", "lift-head", "frozen-spectral"}
    assert all(t.config.test_resolutions == (32, 64) for t in trials)


def test_paper_preset_is_the_full_grid():
    trials = expand(Preset.load("paper"))
    assert sum(t.stage == "pretrain" for t in trials) == 16  # 4 sizes x 4 pre-training sets
    assert len(trials) == 7108


def test_pre_training_is_planned_only_for_modes_that_load_a_checkpoint():
    full = expand(Preset.load("cpu"))
    scratch = expand(Preset.load("cpu", {"train_modes": ["scratch"]}))
    assert {t.stage for t in scratch} == {"downstream"} and {t.config.mode for t in scratch} == {"scratch"}
    assert [t.key for t in scratch] == [t.key for t in full if t.config.mode == "scratch"]  # keys unchanged
    for modes in (["scratch", "zeroshot"], ["finetune"]):
        trials = expand(Preset.load("cpu", {"train_modes": modes}))
        assert [t.key for t in trials if t.stage == "pretrain"] == [t.key for t in full if t.stage == "pretrain"]
        downstream = [t for t in trials if t.stage == "downstream" and t.config.mode != "scratch"]
        assert downstream and all(t.pretrained_key in {p.key for p in trials} for t in downstream)


def test_the_gpu_preset_is_the_documented_grid():
    from fno_sweeps.runner import RunSettings

    trials = expand(Preset.load("gpu"))
    assert len(trials) == len({t.key for t in trials}) == 2064  # the count docs/gpu.md gives
    by_mode = {m: sum(t.config.mode == m for t in trials) for m in ("pretrain", "scratch", "finetune", "zeroshot")}
    # 3 sizes x 3 families x 2 shifts x 4 N x 3 lrs x 3 data seeds for scratch; fine-tuning
    # twice that (the family's own model and the mixture's); zero-shot once per model, shift and data seed.
    assert by_mode == {"pretrain": 12, "scratch": 648, "finetune": 1296, "zeroshot": 108}
    pretrain = [t for t in trials if t.stage == "pretrain"]
    assert {t.config.n_train for t in pretrain} == {4096} and {t.config.resolution for t in trials} == {64}
    assert min(t.config.modes for t in trials) >= 8  # Helmholtz peaks at |k| 5 to 7 (sweeps/presets/gpu.toml)
    downstream = [t for t in trials if t.stage == "downstream"]
    assert max(t.config.n_train for t in downstream) == 1024 and {t.config.data_seed for t in trials} == {0, 1, 2}
    assert {t.config.lr for t in downstream if t.config.mode != "zeroshot"} == {3e-4, 1e-3, 3e-3}
    # The largest trials fit 1/8 of an 80 GiB GPU by the memory rule, so every trial does.
    settings = RunSettings(gpus_per_trial=None, gpu_memory_gib=80.0)
    largest = [t for t in trials if t.config.width == 48 and t.config.n_train in (1024, 4096)]
    assert {settings.gpu_share(t) for t in largest[:8]} == {1 / 8}


@pytest.mark.parametrize(
    "override, match",
    [
        ('families=["burgers"]', r"families: \['burgers'\] not allowed"),
        ('sizes=["big"]', "sizes: 'big' is not a size"),
        ('shifts=["huge"]', r"shifts: \['huge'\] not allowed"),
        ("n_train=[0]", "n_train must be an integer >= 1, got 0"),
        ("lrs=[-1.0]", "lrs: lr must be > 0"),
        ("n_train=[]", "n_train must be a non-empty list"),
        ("epochs=3", r"unknown preset fields \['epochs'\]"),
        ("pretrain.warmup=3", r"unknown \[pretrain\] fields \['warmup'\]"),
        ('sizes=["w8-m9"]', "modes=9 is too many for a 16 x 16 grid"),
    ],
)
def test_bad_presets_fail_before_ray_starts(override, match, capsys, tmp_path):
    import ray

    args = ["--out", str(tmp_path), "--set", "resolution=16", "--set", override]
    assert scaling.main(args) == 2
    assert not ray.is_initialized()
    import re

    assert re.search(match, capsys.readouterr().err)


def test_unknown_preset_names_the_available_ones(capsys):
    assert scaling.main(["--preset", "nope"]) == 2
    assert "named presets: cpu, gpu, paper, smoke, strategies, study" in capsys.readouterr().err


def test_dry_run_prints_the_plan(capsys, tmp_path):
    assert scaling.main(["--preset", "paper", "--dry-run", "--throughput", "1e14", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "7108 trials" in out and "stage pretrain: 16 trials" in out and "trial-hours" in out
    # The paper's recipe: 500 epochs at batch min(128, N), so 500 steps at N = 8 and 128,000 at N = 32,768.
    assert "500 .. 128000 steps (500 epochs at batch min(128, N))" in out


def test_the_study_preset_covers_every_family_and_the_mixture(capsys, tmp_path):
    assert scaling.main(["--preset", "study", "--dry-run", "--throughput", "1e10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pre-training sets poisson, advdiff, helmholtz, mixture" in out
    assert "downstream families poisson, advdiff, helmholtz" in out and "shifts none, moderate, large" in out
    assert "sizes w4-m2, w6-m3, w8-m4" in out and "N 4, 8, 16, 32, 64" in out and "seeds 0, 1" in out
    assert "stage probe: 27 trials" in out


# ---------------------------------------------------------------------------- results


def _row(key="k1", **kw):
    row = {c: None for c in results.COLUMNS}
    row.update(
        key=key,
        sweep="s",
        stage="downstream",
        family="poisson",
        shift="none",
        param_lo=1.0,
        param_hi=5.0,
        mode="scratch",
        width=8,
        modes=4,
        layers=4,
        n_params=10,
        flops_per_sample=1.0,
        n_train=8,
        resolution=16,
        lr=1e-3,
        weight_decay=0.0,
        epochs=1.0,
        steps=10,
        batch_size=8,
        seed=0,
        pretrained_key="",
        pretrain_family="",
        val_rel_l2=0.5,
        test_rel_l2=0.6,
        train_loss=0.1,
        best_step=10,
        eval_steps=[5, 10],
        eval_val_rel_l2=[0.6, 0.5],
        status="ok",
        error="",
        wall_s=1.0,
        train_s=0.5,
        samples_per_s=10.0,
        device="cpu",
        node="n",
        started_at="t",
        code_version="0",
    )
    row.update(kw)
    return row


def test_a_table_written_before_the_budget_columns_stays_readable(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = {k: v for k, v in _row("old").items() if k not in results.ADDED_COLUMNS}
    old_schema = pa.schema([f for f in results.SCHEMA if f.name not in results.ADDED_COLUMNS])
    pq.write_table(pa.Table.from_pylist([old], schema=old_schema), tmp_path / "old.parquet")
    results.write_row(tmp_path, _row("new"))
    table = results.read_results(tmp_path).to_pandas().set_index("key")
    assert table.loc["old", "best_step"] == -1 and list(table.loc["old", "eval_steps"]) == []
    assert list(table.loc["new", "eval_steps"]) == [5, 10] and table.loc["new", "best_step"] == 10


def test_results_round_trip_and_rewrite_by_key(tmp_path):
    results.write_row(tmp_path, _row("a"))
    results.write_row(tmp_path, _row("b", status="failed", test_rel_l2=math.nan, error="boom"))
    results.write_row(tmp_path, _row("a", test_rel_l2=0.4))  # same key: replaces, never duplicates
    # Failures outside the trial (a lost node, a time limit, a failed pre-training) are run again by a re-run.
    for key, failure in (("c", "infrastructure"), ("d", "timeout"), ("e", "dependency"), ("f", "out of memory")):
        results.write_row(tmp_path, _row(key, status="failed", error="x", failure=failure))
    table = results.read_results(tmp_path)
    assert table.schema == results.SCHEMA and table.num_rows == 6
    rows = {r["key"]: r for r in table.to_pylist()}
    assert rows["a"]["test_rel_l2"] == 0.4 and rows["b"]["error"] == "boom"
    assert results.finished_keys(tmp_path) == {"a", "b", "f"}
    assert results.finished_keys(tmp_path, include_failed=False) == {"a"}
    with pytest.raises(ValueError, match="failure must be one of infrastructure, out of memory"):
        results.write_row(tmp_path, _row("g", status="failed", failure="cosmic rays"))
    assert not list(tmp_path.glob(".*tmp"))


def test_reading_while_another_process_compacts_loses_no_row(tmp_path, monkeypatch):
    for key in "abcd":
        results.write_row(tmp_path, _row(key))
    real_read, calls = results._read_file, []

    def read_during_compaction(path, schema=results.SCHEMA):
        calls.append(path)
        if len(calls) == 2:  # the folder was listed; now another process compacts it
            results.compact(tmp_path)
        return real_read(path, schema)

    monkeypatch.setattr(results, "_read_file", read_during_compaction)
    assert sorted(results.read_results(tmp_path).column("key").to_pylist()) == list("abcd")


def test_compaction_merges_rows_into_one_file_and_later_rows_win(tmp_path):
    for key in "abc":
        results.write_row(tmp_path, _row(key))
    before = results.read_results(tmp_path).to_pylist()
    assert results.compact(tmp_path) == 3
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) == 1 and files[0].name.startswith(results.PART_PREFIX)
    assert sorted(results.read_results(tmp_path).to_pylist(), key=lambda r: r["key"]) == before
    # A row written after compaction (a retried key) wins over the part's row.
    results.write_row(tmp_path, _row("b", test_rel_l2=0.1))
    results.write_row(tmp_path, _row("d"))
    rows = {r["key"]: r for r in results.read_results(tmp_path).to_pylist()}
    assert len(rows) == 4 and rows["b"]["test_rel_l2"] == 0.1
    # A crash between writing a part and removing what it merged leaves duplicates: resolved.
    import shutil

    old_part = next(tmp_path.glob(f"{results.PART_PREFIX}*"))
    keep = tmp_path / "saved"
    keep.mkdir()
    shutil.copy(old_part, keep / old_part.name)
    assert results.compact(tmp_path) == 4
    shutil.copy(keep / old_part.name, tmp_path / old_part.name)  # the older part comes back
    rows = {r["key"]: r for r in results.read_results(tmp_path).to_pylist()}
    assert len(rows) == 4 and rows["b"]["test_rel_l2"] == 0.1  # the newer part wins
    assert results.compact(tmp_path / "nothing-here") == 0


def test_bad_rows_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"missing \['status'\]"):
        results.write_row(tmp_path, {k: v for k, v in _row().items() if k != "status"})
    with pytest.raises(ValueError, match="status must be one of ok, diverged, failed"):
        results.write_row(tmp_path, _row(status="crashed"))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"results file .*junk.parquet is corrupt"):
        results.read_results(tmp_path)
    (tmp_path / "junk.parquet").unlink()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="does not have the results schema"):
        results.read_results(tmp_path)


# ------------------------------------------------------------------------ whole sweeps


def test_a_tiny_sweep_end_to_end_then_resume(tmp_path, capsys):
    # With two fine-tuning strategies and a second test resolution: 2 fine-tunes per shift.
    extra = ["--set", 'finetune_strategies=["full","head"]', "--set", "eval_resolutions=[16,32]"]
    trials = TINY_TRIALS + 2
    assert scaling.main(["--out", str(tmp_path), "--no-dashboard", *TINY, *extra]) == 0
    df = sweep_rows(tmp_path)
    assert len(df) == trials and df["key"].is_unique and set(df["status"]) == {"ok"}
    assert set(df["mode"]) == {"pretrain", "scratch", "finetune", "zeroshot"}
    finetune = df[df["mode"] == "finetune"]
    assert sorted(finetune["finetune_strategy"]) == ["full", "full", "head", "head"]
    assert (finetune["n_trainable"] < df.loc[df["mode"] == "scratch", "n_params"].max()).any()
    pretrain_key = df[df["mode"] == "pretrain"]["key"].item()
    assert (finetune["pretrained_key"] == pretrain_key).all()
    assert (tmp_path / "cpu" / "checkpoints" / pretrain_key / "checkpoint.pt").is_file()
    # Every ok trial has every metric at both test resolutions; rel_l2 at 16 is its test error.
    evaluations = results.read_evaluations(tmp_path / "cpu" / "evaluations").to_pandas()
    assert len(list((tmp_path / "cpu" / "evaluations").glob("*.parquet"))) == 1  # compacted
    per_key = evaluations.groupby("key").apply(lambda e: set(zip(e["resolution"], e["metric"], strict=True)))
    assert set(per_key.index) == set(df["key"])
    assert all(pairs == {(r, m) for r in (16, 32) for m in EVAL_METRICS} for pairs in per_key)
    at_16 = evaluations[(evaluations["resolution"] == 16) & (evaluations["metric"] == "rel_l2")]
    merged = df.merge(at_16, on="key")
    np.testing.assert_allclose(merged["value"], merged["test_rel_l2"], rtol=1e-12)
    # The report is written at the end, also when every curve has too few points to fit.
    assert (tmp_path / "cpu" / "report.html").is_file() and (tmp_path / "cpu" / "summary.md").is_file()
    capsys.readouterr()
    assert scaling.main(["--out", str(tmp_path), "--no-dashboard", *TINY, *extra]) == 0  # nothing left to run
    assert f"all {trials} trials already done" in capsys.readouterr().out
    assert len(sweep_rows(tmp_path)) == trials


def test_a_failing_trial_is_recorded_and_the_sweep_finishes(tmp_path, capsys):
    # A file where the checkpoints folder should be: pre-training raises when it saves its
    # checkpoint (after training), its dependants cannot run, scratch trials are unaffected.
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "checkpoints").write_text("not a folder")
    code = scaling.main(["--out", str(tmp_path), "--no-dashboard", "--max-retries", "1", *TINY])
    assert code == 1  # the sweep ran to its end, and trials failed
    assert "5 trials failed" in capsys.readouterr().err  # the pre-training, 2 fine-tunes, 2 zero-shots
    df = sweep_rows(tmp_path)
    assert len(df) == TINY_TRIALS
    status = df.groupby("mode")["status"].agg(set).to_dict()
    assert status == {"pretrain": {"failed"}, "finetune": {"failed"}, "zeroshot": {"failed"}, "scratch": {"ok"}}
    pretrain = df[df["mode"] == "pretrain"].iloc[0]
    assert "checkpoints" in pretrain["error"] and pretrain["failure"] == "error"
    finetune = df[df["mode"] == "finetune"].iloc[0]
    assert "pre-training trial" in finetune["error"] and "failed" in finetune["error"]
    assert set(df.loc[df["mode"].isin(["finetune", "zeroshot"]), "failure"]) == {"dependency"}
    # A plain re-run does not repeat a deterministic error (its dependants fail again at once, without running).
    assert scaling.main(["--out", str(tmp_path), "--no-dashboard", "--no-report", *TINY]) == 1
    assert set(sweep_rows(tmp_path).query("mode == 'pretrain'")["wall_s"]) == set(
        df.query("mode == 'pretrain'")["wall_s"]
    )
    (tmp_path / "cpu" / "checkpoints").unlink()
    # Once the cause is fixed, --retry-failed runs exactly the failed keys again.
    assert scaling.main(["--out", str(tmp_path), "--no-dashboard", "--retry-failed", *TINY]) == 0
    df = sweep_rows(tmp_path)
    assert len(df) == TINY_TRIALS and df["key"].is_unique and set(df["status"]) == {"ok"}


def test_requests_that_fit_no_node_are_refused(tmp_path, capsys, monkeypatch):
    # Locally, before Ray starts (more in tests/test_cli.py); on a cluster, by check_resources below.
    import ray

    monkeypatch.setattr(cluster, "local_gpu_count", lambda: 0)
    assert scaling.main(["--out", str(tmp_path), "--no-dashboard", "--gpus-per-trial", "1", *TINY]) == 2
    assert "--gpus-per-trial 1: a local run has no GPU to give" in capsys.readouterr().err
    assert not ray.is_initialized() and not list(tmp_path.iterdir())


def test_half_gpu_trials_pack_four_to_two_logical_gpus_and_fall_back_to_the_cpu(tmp_path, capsys):
    # Ray's GPUs are logical: a node offering 2 lets a CPU machine check what a GPU node does.
    args = ["--out", str(tmp_path), "--no-dashboard", "--no-report", "--num-gpus", "2", "--gpus-per-trial", "0.5",
            "--cpus-per-trial", "0.5", "--allow-cpu-fallback", *TINY, "--set", "downstream.steps=200"]  # fmt: skip
    assert scaling.main(args) == 0
    df = sweep_rows(tmp_path)
    assert len(df) == TINY_TRIALS and set(df["status"]) == {"ok"}
    assert set(df["device"]) == {"cpu"}  # no CUDA here: each trial ran on the CPU (and its log says so)
    start = pd.to_datetime(df["started_at"], utc=True)
    end = start + pd.to_timedelta(df["wall_s"], unit="s")
    overlap = max(int(((start <= t) & (end > t)).sum()) for t in start)
    assert overlap >= 3, f"at most {overlap} trials ran at once; 4 slots of half a GPU were free"
    # More CPUs than the local instance has, and more than one GPU per trial (a trial trains on
    # one), are refused before Ray starts.
    assert scaling.main([*args, "--num-cpus", "2", "--cpus-per-trial", "64", "--set", "n_train=[16]"]) == 2
    assert "--cpus-per-trial 64: a local run has 2 CPUs (--num-cpus)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        scaling.main([*args, "--gpus-per-trial", "3"])
    assert "a trial trains on one GPU" in capsys.readouterr().err


def test_a_wrong_cluster_address_fails_fast_naming_it_and_the_usual_causes(tmp_path, capsys):
    started = time.perf_counter()
    assert scaling.main(["--out", str(tmp_path), "--cluster", "--address", "127.0.0.1:1", *TINY]) == 2
    assert re.search(r"no Ray head answers at 127.0.0.1:1 .*ray start --head --port 1.*6379", capsys.readouterr().err)
    assert time.perf_counter() - started < 15  # Ray's own retries took about two minutes
    assert scaling.main(["--out", str(tmp_path), "--cluster", "--address", "nonsense", *TINY]) == 2
    assert "--address nonsense: expected HOST:PORT" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any folder


def test_auto_gpu_shares_on_nodes_without_gpus_are_refused(monkeypatch):
    import argparse

    import ray

    from fno_sweeps.cluster import check_resources

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    args = argparse.Namespace(gpus_per_trial=None, cpus_per_trial=1.0)
    with pytest.raises(SystemExit, match=r"asks for 1 CPUs and a share of a GPU \(auto\), but the largest node"):
        check_resources(args)


def test_killed_driver_resumes_without_duplicates(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "sweeps" / "scaling.py"),
        "--out",
        str(tmp_path),
        "--no-dashboard",
        "--concurrency",
        "1",
        *TINY,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    results_dir = tmp_path / "cpu" / "results"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(results_dir.glob("*.parquet"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    before = len(list(results_dir.glob("*.parquet")))
    assert 2 <= before < TINY_TRIALS, "the driver should have been killed mid-sweep"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    df = sweep_rows(tmp_path)
    assert len(df) == TINY_TRIALS and df["key"].is_unique and set(df["status"]) == {"ok"}
    assert f"skipped {before} already done" in done.stdout


def test_an_interrupted_sweep_says_so_exits_130_and_the_same_command_continues(tmp_path):
    cmd = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--out", str(tmp_path), "--no-dashboard",
           "--concurrency", "1", "--no-report", *TINY, "--set", "downstream.steps=100"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)  # fmt: skip
    for line in proc.stdout:
        if line.startswith("[2/"):
            break
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the driver and the Ray processes it started
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    # The command as it was run (python, or this interpreter's path, and the script's path as given).
    assert "interrupted" in err and re.search(rf"continue with: \S*python\S* {re.escape(cmd[1])} --out", err), err
    assert "Tuner.restore" not in out + err and "sweep cpu: ran" not in out
    rows = sweep_rows(tmp_path)
    assert 2 <= len(rows) < TINY_TRIALS and set(rows["status"]) == {"ok"}  # cut-short trials got no row
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    df = sweep_rows(tmp_path)
    assert len(df) == TINY_TRIALS and df["key"].is_unique and set(df["status"]) == {"ok"}
    assert f"skipped {len(rows)} already done" in done.stdout


def test_a_destination_that_cannot_be_written_or_reached_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert scaling.main(["--out", str(blocker / "sub"), *TINY]) == 2
    assert f"--out: cannot create or write the sweep folder {blocker / 'sub' / 'cpu'}" in capsys.readouterr().err
    # A bucket whose endpoint does not answer: an error naming the flag and URI, and no local
    # folder "s3:" (Path() would collapse s3://bucket/prefix to s3:/bucket/prefix).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert scaling.main(["--storage", "s3://bucket/prefix", *TINY]) == 2
    assert "--storage: cannot create or write the sweep folder s3://bucket/prefix/cpu" in capsys.readouterr().err
    assert not (Path.cwd() / "s3:").exists()
    assert scaling.main(["--storage", "nosuchscheme://bucket/prefix", *TINY]) == 2
    assert "--storage nosuchscheme://bucket/prefix: neither pyarrow" in capsys.readouterr().err


def test_two_node_cluster_on_loopback(tmp_path):
    """--cluster against a real two-node Ray cluster (both nodes on this machine)."""
    import secrets

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONUNBUFFERED": "1"}
    with loopback_cluster(env, head_gpus=1) as address:
        # A logical GPU on the head: 0.2 GPU per trial packs 5 on it (not 1.0 // 0.2 = 4), and Ray
        # runs 5 such tasks at once.
        packing = f"""
import time, ray
from fno_sweeps.runner import RunSettings, resource_slots
ray.init(address={address!r})
print(resource_slots(RunSettings(cpus_per_trial=0.1, gpus_per_trial=0.2)))

@ray.remote(num_cpus=0)
class Barrier:
    def __init__(self):
        self.n = 0
    def arrive(self):
        self.n += 1
    def count(self):
        return self.n

@ray.remote(num_cpus=0.1, num_gpus=0.2)
def meet(barrier):  # True only if all five run at the same time
    ray.get(barrier.arrive.remote())
    deadline = time.time() + 60
    while ray.get(barrier.count.remote()) < 5 and time.time() < deadline:
        time.sleep(0.1)
    return ray.get(barrier.count.remote()) >= 5

barrier = Barrier.remote()
print(all(ray.get([meet.remote(barrier) for _ in range(5)])))
"""
        packed = subprocess.run(
            [sys.executable, "-c", packing], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
        )
        assert packed.stdout.split() == ["5", "True"], packed.stderr[-2000:]
        sweep = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--cluster", "--address", address, *TINY]
        refused = subprocess.run(
            [*sweep, "--out", str(tmp_path / "local")], capture_output=True, text=True, env=env, timeout=120
        )
        assert refused.returncode != 0 and "pass --storage" in refused.stderr
        done = subprocess.run(
            [*sweep, "--storage", str(tmp_path / "shared")], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 nodes" in done.stdout
        df = sweep_rows(tmp_path / "shared")
        assert len(df) == TINY_TRIALS and set(df["status"]) == {"ok"}
        assert df["node"].nunique() == 2, df["node"].tolist()  # trials ran on both nodes
        assert set(df["device"]) == {"cpu"}  # no GPU request: the CPU, though the head offers a GPU
        # The Optuna search joins the same cluster the same way.
        search = [sys.executable, str(ROOT / "sweeps" / "hpo.py"), "--cluster", "--address", address, *TINY]
        search += ["--family", "poisson", "--size", "w8-m4", "--mode", "finetune", "--n-train", "8", "--trials", "2"]
        searched = subprocess.run(
            [*search, "--steps", "10", "20", "--storage", str(tmp_path / "shared")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert searched.returncode == 0, searched.stderr[-3000:]
        rows = sweep_rows(tmp_path / "shared", "hpo-poisson-none-w8-m4-finetune-n8")
        assert (rows["stage"] == "hpo").sum() == 2


def _order_of_cpu_preset(tmp_path):
    from fno_sweeps.runner import DependencyOrder, Progress, Recorder

    trials = expand(Preset.load("cpu"))
    recorder = Recorder(tmp_path, "cpu", Progress(len(trials), 2))
    pretrains = {t.key for t in trials if t.stage == "pretrain"}
    return trials, DependencyOrder([(t, {"key": t.key}) for t in trials], pretrains, recorder)


def test_dependency_order_starts_pretraining_first_and_holds_fine_tuning_until_its_checkpoint(tmp_path):
    trials, order = _order_of_cpu_preset(tmp_path)
    by_key = {t.key: t for t in trials}
    handed = [by_key[order.next_trial(f"t{i}")["trial"]["key"]] for i in range(2)]
    assert {t.stage for t in handed} == {"pretrain"}
    # Until a pre-training ends, only scratch trials come, the most expensive first.
    scratch = [by_key[order.next_trial(f"s{i}")["trial"]["key"]] for i in range(40)]
    assert {t.config.mode for t in scratch} == {"scratch"}
    cost = [trial_flops(t) for t in scratch]
    assert cost == sorted(cost, reverse=True) and cost[0] > cost[-1]
    assert order.next_trial("wait") is None  # fine-tune and zero-shot wait for their checkpoints
    order.trial_finished("t0", {"trial_status": "ok"}, error=False)
    released = [by_key[order.next_trial(f"r{i}")["trial"]["key"]] for i in range(22)]
    assert {t.pretrained_key for t in released} == {handed[0].key}
    assert order.next_trial("wait") is None
    # The other pre-training raises: Tune tells the order, the row writer settles it as failed
    # (it alone knows whether the trial runs again), and its 22 dependents (20 fine-tune,
    # 2 zero-shot) are recorded as failed for want of a checkpoint.
    order.trial_finished("t1", None, error=True)
    assert order.next_trial("wait") is None
    order.settle(handed[1].key, "failed")
    assert order.next_trial("running") is None  # 62 trials still in flight: one of them could come back
    for trial_id in [f"s{i}" for i in range(40)] + [f"r{i}" for i in range(22)]:
        order.trial_finished(trial_id, {"trial_status": "ok"}, error=False)
    assert order.next_trial("end") == "FINISHED"
    df = results.read_results(tmp_path).to_pandas()
    assert len(df) == 22 and set(df["status"]) == {"failed"} and set(df["pretrained_key"]) == {handed[1].key}
    assert df["error"].str.contains(f"pre-training trial {handed[1].key} is failed").all()
    assert set(df["failure"]) == {"dependency"}


def test_dependency_order_keeps_trials_in_flight_at_the_slots_and_follows_them(tmp_path):
    _, order = _order_of_cpu_preset(tmp_path)
    slots = [3]
    order.capacity = lambda: slots[0]
    handed = [order.next_trial(f"t{i}") for i in range(3)]
    assert all(isinstance(h, dict) for h in handed) and order.next_trial("t3") is None  # 3 slots, 3 in flight
    order.trial_finished("t0", {"trial_status": "ok"}, error=False)
    assert isinstance(order.next_trial("t3"), dict) and order.next_trial("t4") is None
    slots[0] = 5  # a node joined
    assert isinstance(order.next_trial("t4"), dict) and isinstance(order.next_trial("t5"), dict)
    assert order.next_trial("t6") is None


def test_dependency_order_stops_handing_out_trials_once_halted(tmp_path):
    _, order = _order_of_cpu_preset(tmp_path)
    reason = [""]
    order.halted = lambda: reason[0]
    assert isinstance(order.next_trial("t0"), dict)
    reason[0] = "taken over by another driver"
    assert order.next_trial("t1") == "FINISHED"  # Tune then lets the running trial finish


def test_an_out_of_memory_trial_comes_back_once_at_twice_its_automatic_share(tmp_path):
    trials, order = _order_of_cpu_preset(tmp_path)
    trial = next(t for t in trials if t.config.mode == "scratch")
    spec = {"key": trial.key, "gpus": 0.25, "auto_share": True, "config": {"gpu_share": 0.25}}
    assert order.retry_larger(trial, spec)
    again = []
    while isinstance(handed := order.next_trial(f"t{len(again)}"), dict):  # every ready trial
        again.append(handed["trial"])
    larger = next(s for s in again if s["key"] == trial.key and s.get("enlarged"))
    assert larger["gpus"] == 0.5 and larger["config"]["gpu_share"] == 0.5
    assert not order.retry_larger(trial, larger)  # once only
    assert not order.retry_larger(trial, {**spec, "auto_share": False})  # a fixed share is the user's


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        ("ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.", "infrastructure"),
        ("RuntimeError: out of GPU memory within this trial's share (0.25 of the GPU, 19.6 GiB)", "out of memory"),
        ("fno.train.TrialTimeoutError: trial ran past its time limit of 60 s at step 10 of 100", "timeout"),
        ("ValueError: n_train must be an integer >= 1, got 0", "error"),
    ],
)
def test_failures_are_classed_by_their_error(error, failure):
    from fno_sweeps.runner import failure_class

    assert failure_class(error) == failure


def test_dependency_order_treats_a_diverged_pretraining_as_unusable(tmp_path):
    _, order = _order_of_cpu_preset(tmp_path)
    first = order.next_trial("t0")["trial"]["key"]
    order.trial_finished("t0", {"trial_status": "diverged"}, error=False)
    df = results.read_results(tmp_path).to_pandas()
    assert len(df) == 22 and set(df["pretrained_key"]) == {first}
    assert df["error"].str.contains("is diverged").all()


def test_rows_and_reports_get_the_modes_the_umask_gives_ordinary_files(tmp_path):
    from fno.atomic import FILE_MODE, atomic_write

    path = tmp_path / "report.html"
    atomic_write(path, lambda fh: fh.write(b"<html></html>"))
    results.write_row(tmp_path / "results", _row("a"))
    for written in (path, *(tmp_path / "results").glob("*.parquet")):
        assert written.stat().st_mode & 0o777 == FILE_MODE
