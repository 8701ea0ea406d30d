"""The dry run's time estimate (fno_sweeps.estimate): its arithmetic, its scheduling, and the printed plan."""

import dataclasses
import itertools
import json
import math
import sys

import pytest
import torch
from tiny_sweep import TINY

from fno_sweeps import estimate as est
from fno_sweeps import scaling
from fno_sweeps.grid import Preset, expand


@pytest.fixture(autouse=True)
def _private_step_cache(tmp_path_factory, monkeypatch):
    """Each test its own cache of timed steps, never the temp folder's."""
    monkeypatch.setenv("FNO_STEP_CACHE", str(tmp_path_factory.mktemp("steps") / "steps.json"))


def _tiny(**fields) -> Preset:
    return Preset.from_dict(
        {
            "name": "tiny",
            "resolution": 16,
            "sizes": ["w8-m4"],
            "shifts": ["none", "moderate"],
            "n_train": [8, 16],
            "lrs": [1e-3],
            "n_val": 8,
            "n_test": 8,
            "pretrain": {"n_train": 32, "steps": 20, "eval_every": 10, "batch_size": 8},
            "downstream": {"steps": 10, "eval_every": 5, "batch_size": 4},
            **fields,
        }
    )


def test_a_trial_is_fixed_cost_plus_steps_plus_evaluation_passes_at_a_flop_rate():
    rate = est.FlopRate(1e9)
    trial = next(t for t in expand(_tiny()) if t.config.mode == "scratch")
    c = trial.config
    per_sample = est.Shape(est.in_channels(c), c.width, c.modes, c.layers, c.resolution, 1, False).flops
    steps_s = c.total_steps * 3 * c.batch * per_sample / 1e9
    # validation: 8 samples in batches of 4, at steps 5, 8, 9, 10; test: 8 samples, 2 batches
    evals_s = (len(c.eval_steps()) * 2 + 2) * 4 * per_sample / 1e9
    got = est.trial_seconds(c, rate, fixed_s=0.5)
    assert c.eval_steps() == [5, 8, 9, 10]
    assert got.steps_s == pytest.approx(steps_s) and got.evals_s == pytest.approx(evals_s)
    assert got.total == pytest.approx(0.5 + steps_s + evals_s)


def test_more_steps_cost_more_and_zero_shot_trials_cost_only_their_evaluation():
    rate = est.FlopRate(1e9)
    trials = expand(_tiny())
    scratch = next(t.config for t in trials if t.config.mode == "scratch")
    longer = dataclasses.replace(scratch, steps=scratch.total_steps * 2)
    assert est.trial_seconds(longer, rate).total > est.trial_seconds(scratch, rate).total
    zeroshot = next(t.config for t in trials if t.config.mode == "zeroshot")
    time = est.trial_seconds(zeroshot, rate, fixed_s=0.25)
    test_pass = 2 * est.Shape(4, 8, 4, 4, 16, 4, False).flops / 1e9  # 8 test samples in batches of 4
    assert time.steps_s == 0 and time.evals_s == pytest.approx(test_pass)
    assert time.total == pytest.approx(0.25 + test_pass)
    with pytest.raises(ValueError, match="--throughput must be a positive FLOP/s"):
        est.FlopRate(0)


def test_more_slots_never_take_longer_and_one_slot_runs_everything_in_turn():
    trials = expand(_tiny())
    seconds = {t.key: 1.0 + i % 5 for i, t in enumerate(trials)}
    one = est.wall_clock_seconds(trials, seconds, 1, start_s=10, stop_s=5, dispatch_s=0.5)
    assert one == pytest.approx(10 + sum(seconds.values()) + 0.5 * len(trials) + 5)
    walls = [est.wall_clock_seconds(trials, seconds, n) for n in (1, 2, 4, 8, 64)]
    assert all(a >= b for a, b in itertools.pairwise(walls)) and walls[0] > walls[-1]
    # with a slot for everyone, the longest chain: the pre-training, then its longest dependent
    pretrain = next(t for t in trials if t.stage == "pretrain")
    chain = seconds[pretrain.key] + max(seconds[t.key] for t in trials if t.pretrained_key == pretrain.key)
    assert est.wall_clock_seconds(trials, seconds, 64, 0, 0, 0) == pytest.approx(chain)
    assert est.wall_clock_seconds([], {}, 2) == 0
    with pytest.raises(ValueError, match="slots must be at least 1"):
        est.wall_clock_seconds(trials, seconds, 0)


def test_a_trial_whose_pretraining_is_done_is_ready_at_once():
    trials = [t for t in expand(_tiny()) if t.stage != "pretrain"]  # its pre-training already has a row
    seconds = dict.fromkeys((t.key for t in trials), 2.0)
    assert est.wall_clock_seconds(trials, seconds, len(trials), 0, 0, 0) == pytest.approx(2.0)


def test_estimate_totals_by_mode_and_part():
    trials = expand(_tiny())
    result = est.estimate(trials, est.FlopRate(1e8), slots=2)
    assert result.trial_hours == pytest.approx(sum(result.hours_by_mode().values()))
    assert result.trial_hours == pytest.approx(sum(result.hours_by_part().values()))
    assert set(result.hours_by_mode()) == {"finetune", "pretrain", "scratch", "zeroshot"}
    assert result.hours_by_part()["fixed"] == pytest.approx(len(trials) * est.FIXED_TRIAL_S / 3600)
    assert result.wall_clock_s > result.trial_hours * 3600 / 2


def test_affine_fit_recovers_overhead_and_rate_and_never_goes_negative():
    a, b = est.affine_fit([(x, 0.01 + 2e-9 * x) for x in (1e6, 1e7, 1e8)])
    assert a == pytest.approx(0.01) and b == pytest.approx(2e-9)
    a, b = est.affine_fit([(1e6, 0.0), (2e6, 1.0)])  # a line through a negative intercept
    assert a == 0 and b > 0
    assert est.affine_fit([(4.0, 2.0)]) == (0.0, 0.5)


def test_a_shape_is_timed_by_its_fast_steps_not_by_others_load():
    laps = [0.010] * 9 + [0.050] * 11  # over half the steps slowed by another process
    assert est.lap_quantile(laps) == pytest.approx(0.010) and est.lap_quantile(laps, 0.5) == pytest.approx(0.05)
    assert est.lap_quantile([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == pytest.approx(1.0)
    assert est.lap_quantile([3.0]) == 3.0 and est.lap_quantile([1.0, 2.0], 0.5) == 1.5


def test_measured_steps_time_real_shapes_and_extrapolate_the_rest():
    small = est.Shape(4, 4, 2, 4, 16, 2, True)
    larger = dataclasses.replace(small, batch=8)
    evaluation = dataclasses.replace(small, train=False)
    threads = torch.get_num_threads()
    measured = est.measure_steps([larger, small, evaluation], "cpu", threads=1, budget_s=30, per_shape_s=0.01)
    assert torch.get_num_threads() == threads  # restored
    assert measured.timed == 3 and all(t > 0 for t in measured.times.values())
    huge = dataclasses.replace(small, width=64, modes=8, resolution=64, batch=64)
    overhead, per_flop = measured.fits[True]
    assert measured.seconds(huge) == pytest.approx(overhead + per_flop * huge.flops)
    # a budget that holds only the first shape: the rest come from it
    first = est.measure_steps([larger, small], "cpu", budget_s=1e-6, per_shape_s=0.01)
    assert first.timed == 1 and small.group in first.times
    assert first.seconds(larger) == pytest.approx(first.times[small.group] * larger.flops / small.flops)


def test_timed_steps_are_kept_a_day_and_a_second_dry_run_times_only_new_shapes(tmp_path, monkeypatch):
    small = est.Shape(4, 4, 2, 4, 16, 2, True)
    other = dataclasses.replace(small, batch=4)
    cache = tmp_path / "steps.json"
    first = est.cached_measure_steps([small], path=cache, per_shape_s=0.01)
    assert first.timed == 1 and first.cached == 0 and cache.is_file()
    timed = []
    real = est._time_shape
    monkeypatch.setattr(est, "_time_shape", lambda shape, *a: timed.append(shape) or real(shape, *a))
    second = est.cached_measure_steps([small, other], path=cache, per_shape_s=0.01)
    assert timed == [other] and second.cached == 1 and second.times[small.group] == first.times[small.group]
    est.cached_measure_steps([small], path=cache, max_age_s=0.0, per_shape_s=0.01)  # too old: timed again
    assert timed == [other, small]
    cache.write_text("not json")
    assert est.cached_measure_steps([small], path=cache, per_shape_s=0.01).cached == 0  # unreadable: ignored
    assert timed == [other, small, small] and any(repr(small.group) in k for k in json.loads(cache.read_text()))
    unwritable = tmp_path / "missing" / "steps.json"
    assert est.cached_measure_steps([small], path=unwritable, per_shape_s=0.01).timed == 1  # not kept, no error
    assert not unwritable.parent.exists()


def test_plan_shapes_measure_each_group_once_at_its_widest_input():
    shapes = est.plan_shapes(expand(_tiny(pretrain_families=["poisson", "mixture"])))
    groups = [s.group for s in shapes]
    assert len(groups) == len(set(groups))
    pretrain = next(s for s in shapes if s.train and s.batch == 8)
    assert pretrain.in_channels == 8  # the mixture's union layout, wider than Poisson's 4


def test_local_slots_pack_cpus_and_gpu_shares():
    assert est.local_slots(2, 1) == 2
    assert est.local_slots(16, 1, gpus=1, smallest_share=0.25) == 4
    assert est.local_slots(16, 1, gpus=1, smallest_share=0.2) == 5  # not 4: 1.0 // 0.2
    assert est.local_slots(16, 2, concurrency=3) == 3
    with pytest.raises(ValueError, match="--cpus-per-trial"):
        est.local_slots(2, 0)


def test_durations_read_in_the_unit_that_fits():
    assert est.duration_text(42) == "42 s"
    assert est.duration_text(9.1 * 60) == "9.1 min"
    assert est.duration_text(3.4 * 3600) == "3.4 h"
    assert est.duration_text(12 * 86400) == "12 days"
    assert est.duration_text(2300 * 365 * 86400) == "2.3e+03 years"
    assert est.hours_text(48_092_680.4) == "48,092,680" and est.hours_text(0.2812) == "0.281"
    assert est.hours_text(7.25e-5) == "<0.001"


def test_cpu_dry_run_prints_trial_hours_and_wall_clock_without_ray(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # any `import ray` fails
    assert scaling.main(["--dry-run", "--out", str(tmp_path), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "plan for" in out and "86 trials" in out
    hours = next(line for line in out.splitlines() if line.startswith("  time to run: "))
    assert "trial-hours (steps timed here on this CPU, 1 thread:" in hours and "by mode: finetune" in hours
    assert float(hours.split()[3]) > 0
    wall = next(line for line in out.splitlines() if line.startswith("  wall-clock: "))
    assert "on 2 slots (this machine: 2 CPUs at --cpus-per-trial 1; Ray's start and stop included)" in wall
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing there
    assert scaling.main(["--dry-run", "--out", str(tmp_path), "--num-cpus", "2"]) == 0
    assert "0 shapes in 0.0 s, 14 timed in the last day (" in capsys.readouterr().out  # the second: from the cache


def test_slots_flag_plans_another_machine_and_only_for_a_dry_run(capsys, tmp_path):
    args = ["--dry-run", "--out", str(tmp_path), "--throughput", "1e9", *TINY]
    assert scaling.main([*args, "--slots", "1"]) == 0
    one = capsys.readouterr().out
    assert scaling.main([*args, "--slots", "7"]) == 0
    seven = capsys.readouterr().out
    assert "on 1 slots (--slots;" in one and "on 7 slots (--slots;" in seven
    assert "their FLOPs at 1e+09 FLOP/s per trial, --throughput" in one
    assert scaling.main(["--out", str(tmp_path), "--slots", "2", *TINY]) == 2
    assert "--slots plans a --dry-run's wall-clock" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        scaling.parse_args(["--slots", "0"])
    assert "expected at least 1 trial at once, got 0" in capsys.readouterr().err


def test_cluster_dry_run_reads_the_clusters_slots_and_leaves(capsys, tmp_path, monkeypatch):
    import types

    from fno_sweeps import cluster

    calls = []
    fake = types.SimpleNamespace(
        init=lambda **kw: calls.append(("init", kw["address"])),
        cluster_resources=lambda: {"CPU": 64.0, "GPU": 8.0},
        shutdown=lambda: calls.append(("shutdown",)),
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    # Joining a cluster sets RAY_AUTH_MODE=token for the process; scoped here, or a later
    # test's local Ray would start with token auth under a client that read it as disabled.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setattr(cluster, "check_head_reachable", lambda address: calls.append(("reachable", address)))
    args = ["--dry-run", "--out", str(tmp_path), "--throughput", "1e9", "--cluster", "--address", "10.0.0.1:6379"]
    assert scaling.main([*args, *TINY]) == 0
    assert calls == [("reachable", "10.0.0.1:6379"), ("init", "10.0.0.1:6379"), ("shutdown",)]
    assert "on 64 slots (the cluster at 10.0.0.1:6379: 64 CPUs at --cpus-per-trial 1;" in capsys.readouterr().out
    assert scaling.main([*args, "--slots", "3", *TINY]) == 0  # --slots: the cluster is not asked
    assert len(calls) == 3 and "on 3 slots (--slots;" in capsys.readouterr().out


def test_a_plan_too_long_for_cpus_is_given_on_the_reference_gpu(capsys, tmp_path):
    assert scaling.main(["--preset", "paper", "--dry-run", "--throughput", "1e10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "too long for CPUs; on one H200 at the measured 8.41e+11 FLOP/s per trial" in out
    assert "wall-clock at 4 trials at once" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU to time steps on")
def test_gpu_trials_without_a_gpu_here_are_estimated_on_the_reference_gpu(capsys, tmp_path):
    assert scaling.main(["--dry-run", "--out", str(tmp_path), "--gpus-per-trial", "0.25"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("  time to run:"))
    hours = float(line.split("(docs/gpu.md): ")[1].split()[0])
    flops = est.estimate(expand(Preset.load("cpu")), est.FlopRate(est.REFERENCE_GPU_RATE), 4)
    assert math.isclose(hours, flops.trial_hours, rel_tol=0.01) and "at 4 trials at once" in line
