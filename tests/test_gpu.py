"""Ready for GPU workers, checked on the CPU: device assignment, the memory rule and GPU
shares, the packing arithmetic, precision flags, and a training loop without host syncs.
(The CUDA-only checks are in tests/test_model.py and run where a GPU is present.)"""

import argparse
import math

import pytest
import torch

from fno import memory
from fno.model import FNO2d
from fno.train import TrialConfig, run_trial

TINY = {"resolution": 16, "width": 8, "modes": 4, "n_val": 8, "n_test": 8, "threads": 1}


def _planned(**kw):
    from fno_sweeps.grid import PlannedTrial, trial_key

    config = TrialConfig(**{**TINY, "mode": "scratch", "n_train": 16, "steps": 4, **kw})
    return PlannedTrial(trial_key(config), "downstream", "none", config)


def test_trials_without_a_gpu_request_run_on_the_cpu_even_where_cuda_is_visible(monkeypatch, tmp_path):
    from fno_sweeps.runner import RunSettings, worker_config

    # What a worker of a GPU node sees under Ray 2.60 when it asked for no GPU.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = worker_config(_planned(), tmp_path, RunSettings(gpus_per_trial=0.0))
    assert config["device"] == "cpu" and config["gpu_share"] is None
    result = run_trial(TrialConfig.from_dict(config))
    assert result.status == "ok" and result.device == "cpu" and result.gpu_name == "" and result.gpu_share == 0.0
    shared = worker_config(_planned(), tmp_path, RunSettings(gpus_per_trial=0.25, bf16=True, tf32=True))
    assert (shared["device"], shared["gpu_share"], shared["bf16"], shared["tf32"]) == ("cuda", 0.25, True, True)
    assert worker_config(_planned(), tmp_path, RunSettings(gpus_per_trial=2.0))["gpu_share"] == 1.0


def _args(**kw) -> argparse.Namespace:
    from fno_sweeps.cluster import add_ray_arguments

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="out")
    add_ray_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(kw)
    return args


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"device": "cuda"}, "--device cuda needs a GPU request"),
        ({"device": "cpu", "gpus_per_trial": 0.5}, "would be reserved and unused"),
        ({"bf16": True}, "apply to GPU trials"),
        ({"gpus_per_trial": 1.5}, "a trial trains on one GPU"),
        ({"gpus_per_trial": 2.0}, "a trial trains on one GPU"),
        ({"gpus_per_trial": None, "gpu_memory_gib": -1.0}, "--gpu-memory-gib must be > 0"),
        ({"gpus_per_trial": 0.5, "gpu_memory_gib": 80.0}, "--gpu-memory-gib applies to --gpus-per-trial auto"),
    ],
)
def test_contradictory_device_flags_are_refused(kw, match):
    from fno_sweeps.cluster import output_base

    with pytest.raises(ValueError, match=match):
        output_base(_args(**kw))


@pytest.mark.skipif(torch.cuda.is_available(), reason="reads the GPU memory where there is a GPU")
def test_auto_shares_need_the_gpu_memory_where_the_driver_has_no_gpu():
    from fno_sweeps.cluster import _gpu_request, output_base

    assert _gpu_request("auto") is None and _gpu_request("0.25") == 0.25
    with pytest.raises(ValueError, match="needs --gpu-memory-gib"):
        output_base(_args(gpus_per_trial=None))


@pytest.mark.parametrize("width", [3, 16, 40])
@pytest.mark.parametrize("resolution,modes", [(16, 4), (17, 5), (32, 8)])
def test_activation_memory_extends_exactly_to_any_width(width, resolution, modes):
    direct = memory._saved_bytes(4, width, modes, 3, resolution)
    assert memory.activation_bytes_per_sample(4, width, modes, 3, resolution) == direct


def test_trial_memory_follows_model_batch_and_data():
    config = TrialConfig(mode="pretrain", resolution=32, width=16, modes=8, n_train=256, batch_size=32, steps=1)
    parts = memory.trial_memory(config)
    assert parts.parameters == 16 * FNO2d(4, 1, 16, 8).config.n_params
    assert parts.data == (256 + 64 + 64) * (2 * 32 * 32 + 4) * 4  # f and u floats, 3 coefficients + f channel
    doubled = memory.trial_memory(TrialConfig(**{**config.to_dict(), "batch_size": 64}))
    assert doubled.activations == 2 * parts.activations and doubled.parameters == parts.parameters
    assert parts.workspace == math.ceil(memory.WORKSPACE_FACTOR * parts.activations) + memory.FIXED_WORKSPACE
    assert parts.evaluation_workspace == math.ceil(memory.WORKSPACE_FACTOR * parts.evaluation) + memory.FIXED_WORKSPACE
    assert parts.training_peak > parts.evaluation_peak  # N >= batch: training is the larger phase here
    assert parts.total == parts.parameters + parts.data + parts.activations + parts.workspace
    # A second test grid: its test set is resident too, and tested on its own larger grid.
    twice = memory.trial_memory(TrialConfig(**{**config.to_dict(), "eval_resolutions": (32, 64)}))
    assert twice.data == parts.data + 64 * (2 * 64 * 64 + 4) * 4
    assert twice.evaluation > parts.evaluation


def _small_fields(n: int, channels: int, resolution: int, device: str = "cpu"):
    from fno.data import Fields, Normalization

    names = tuple(f"c{i}" for i in range(channels))
    torch.manual_seed(0)
    fields = Fields(
        torch.randn(n, resolution, resolution, device=device),
        torch.randn(n, resolution, resolution, device=device),
        torch.randn(n, channels - 1, device=device),
        {},
        names,
    )
    return fields, Normalization(names, (0.0,) * channels, (1.0,) * channels, 0.0, 1.0)


def _cpu_allocator_peak(fn, *args, **kwargs) -> int:
    """Peak bytes the CPU allocator handed out during ``fn`` (a second call, after a
    warm-up that builds cached constants), from torch.profiler's memory events: an
    accounting independent of memory._LiveTensors."""
    from torch.profiler import ProfilerActivity, profile

    fn(*args, **kwargs)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(*args, **kwargs)
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    assert events, "the profiler recorded no allocations"
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("width,modes,resolution,batch,bands", [(8, 4, 32, 16, True), (12, 5, 34, 7, False)])
def test_the_evaluation_count_equals_the_allocators_own_peak(width, modes, resolution, batch, bands):
    from fno.train import per_sample_errors

    torch.manual_seed(0)
    model = FNO2d(4, 1, width, modes)
    fields, norm = _small_fields(batch, 4, resolution)
    measured = _cpu_allocator_peak(per_sample_errors, model, norm, fields, batch, bands=bands)
    # The counting method, on the same CPU run, finds exactly what the allocator handed out...
    assert memory.live_peak(per_sample_errors, model, norm, fields, batch, bands=bands) == measured
    # ... and the rule's count (meta device, the GPU's code path, which also copies the
    # spectrum's edge bins before each inverse FFT) is at least that.
    assert memory.evaluation_bytes(4, width, modes, 4, resolution, batch, batch, bands) >= measured


def test_the_rule_counts_evaluation_at_the_presets_batch_not_the_trials():
    from fno.train import per_sample_errors

    # N = 4 trains at batch 4 but evaluates 256 samples at the preset's batch of 128.
    config = TrialConfig(
        mode="scratch", resolution=32, width=16, modes=8, n_train=4, n_val=256, n_test=256, batch_size=128, steps=1
    )
    parts = memory.trial_memory(config)
    torch.manual_seed(0)
    fields, norm = _small_fields(256, 4, 32)
    measured = _cpu_allocator_peak(per_sample_errors, FNO2d(4, 1, 16, 8), norm, fields, 128, bands=True)
    assert parts.evaluation >= measured  # the largest evaluation, measured on the CPU
    training_only = parts.parameters + parts.data + parts.activations + parts.workspace  # the rule before
    assert parts.evaluation_peak > parts.training_peak and parts.total > training_only
    assert parts.total == parts.parameters + parts.data + parts.evaluation + parts.evaluation_workspace


def test_the_papers_largest_model_at_n_8_asks_for_what_its_evaluation_needs():
    # The case that ran out of memory: w128-m32 at 128 x 128, N = 8, the paper's batch of
    # 128 and 4,096 validation samples. Training needs about 6.4 GiB, the evaluation
    # more than 5 GiB of live tensors on top of 4 GiB of weights and optimizer state.
    config = TrialConfig(
        mode="scratch", resolution=128, width=128, modes=32, n_train=8, n_val=4096, n_test=4096, batch_size=128, steps=1
    )
    parts = memory.trial_memory(config)
    gib = 2**30
    assert parts.parameters + parts.data + parts.training_peak < 6.5 * gib
    assert parts.evaluation > 5 * gib
    assert memory.gpu_share(parts.total, 80 * gib) > 1 / 8  # it was given 1/8 (9 GiB usable) before
    assert memory.gpu_share(parts.total, 40 * gib) >= 1 / 2


def test_gpu_shares_follow_the_memory_rule():
    gib = 2**30
    assert memory.gpu_share(1 * gib, 80 * gib) == 1 / 8
    assert memory.gpu_share(30 * gib, 80 * gib) == 1 / 2  # 30 > 0.9 * 80 / 3
    assert memory.gpu_share(70 * gib, 80 * gib) == 1.0
    with pytest.raises(ValueError, match=r"needs about 75\.0 GiB .* 80 GiB GPU"):
        memory.gpu_share(75 * gib, 80 * gib)
    from fno_sweeps.runner import RunSettings

    small, large = _planned(), _planned(width=16, batch_size=16, resolution=64, modes=16)
    settings = RunSettings(gpus_per_trial=None, gpu_memory_gib=1.0)
    assert settings.gpu_share(small) < settings.gpu_share(large)  # the share grows with the trial
    with pytest.raises(ValueError, match="needs the GPU memory"):
        RunSettings(gpus_per_trial=None).gpu_share(small)


def test_fractional_gpus_pack_as_ray_packs_them():
    from fno_sweeps.runner import packed_slots

    assert 1.0 // 0.2 == 4.0  # the floating-point trap
    assert packed_slots(cpus=16, gpus=1, cpus_per_trial=1, gpus_per_trial=0.2) == 5
    assert packed_slots(cpus=16, gpus=2, cpus_per_trial=1, gpus_per_trial=0.1) == 16  # CPUs bind first
    assert packed_slots(cpus=2.0, gpus=0, cpus_per_trial=0.3, gpus_per_trial=0) == 6
    assert packed_slots(cpus=8, gpus=1, cpus_per_trial=1, gpus_per_trial=1 / 3) == 3


SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


def _host_syncs(monkeypatch, config: TrialConfig) -> int:
    """How often ``run_trial`` reads a tensor's value on the host: every method that
    would wait for a GPU (and torch.cuda.synchronize) is counted."""
    count = {"n": 0}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: count.__setitem__("n", count["n"] + 1))
    run_trial(config)
    monkeypatch.undo()
    return count["n"]


def test_the_training_loop_makes_no_host_sync_between_evaluations(monkeypatch):
    # Evaluations only at 80%, 90% and 100% of the budget: the same three for 20 and 200
    # steps. Any per-step sync would add 180 reads.
    common = {**TINY, "mode": "scratch", "n_train": 8, "batch_size": 4, "device": "cpu"}
    run_trial(TrialConfig(**common, steps=2, eval_every=2))  # data cached: both runs below read alike
    short = _host_syncs(monkeypatch, TrialConfig(**common, steps=20, eval_every=1000))
    long = _host_syncs(monkeypatch, TrialConfig(**common, steps=200, eval_every=1000))
    assert short == long, (short, long)
    assert short < 100  # setup, three evaluations and the test: a handful, not per step


def test_a_diverging_trial_stops_at_the_next_evaluation():
    config = TrialConfig(
        **TINY, mode="scratch", n_train=8, batch_size=4, steps=60, eval_every=10, lr=1e12, device="cpu"
    )
    result = run_trial(config)
    assert result.status == "diverged" and "non-finite training loss between steps" in result.error, result
    assert result.steps in config.eval_steps()  # found at an evaluation, not at the step


def test_the_normalisation_is_fitted_on_the_host_in_float64_chunks():
    from fno.data import DatasetSpec, Normalization, generate_fields

    fields = generate_fields(DatasetSpec("advdiff", None, 40, 16, 0, "train"))
    chunked = Normalization.fit(fields, chunk=7)
    whole = Normalization.fit(fields, chunk=10_000)
    u = fields.solution.double()
    assert chunked.target_mean == pytest.approx(u.mean().item(), rel=1e-12)
    assert chunked.target_std == pytest.approx(u.std(correction=0).item(), rel=1e-9)
    assert chunked.input_std == pytest.approx(whole.input_std, rel=1e-12)
    with pytest.raises(ValueError, match="fit the normalisation on host data"):
        Normalization.fit(fields.to("meta"))


def test_the_dry_run_prints_each_trials_gpu_request(capsys, tmp_path):
    from fno_sweeps import scaling

    code = scaling.main(["--dry-run", "--out", str(tmp_path), "--gpus-per-trial", "auto", "--gpu-memory-gib", "80"])
    out = capsys.readouterr().out
    assert code == 0 and "GPU requests (by the memory rule, fno.memory): 0.125 GPU for 86" in out
    if not torch.cuda.is_available():
        assert "no GPU here to measure a rate on: pass --throughput" in out
    too_small = ["--dry-run", "--out", str(tmp_path), "--gpus-per-trial", "auto", "--gpu-memory-gib", "0.01"]
    assert scaling.main(too_small) == 2  # refused before anything runs
    assert "more than 90% of one 0.01 GiB GPU" in capsys.readouterr().err
