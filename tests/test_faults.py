"""Faults a long sweep on a cluster meets: lost workers, hung trials, a lost lease, nodes
that come and go. Trials resume from their saved state; the driver streams trials
without batch barriers and follows the cluster's slots."""

import contextlib
import functools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import autoscaling_cluster, growing_cluster, stop_group, sweep_rows
from tiny_sweep import TINY

from fno.train import TrialConfig, TrialControl, TrialTimeoutError, run_trial
from fno_sweeps import scaling
from fno_sweeps.lease import Lease

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_ONLY = [*TINY, "--set", 'train_modes=["scratch"]']


def _tiny_trial(**kw) -> TrialConfig:
    fields = dict(mode="scratch", n_train=8, n_val=8, n_test=8, resolution=16, width=8, modes=4, steps=40,
                  eval_every=10, seed=3, batch_size=3)  # fmt: skip
    return TrialConfig(**{**fields, **kw})


class _WorkerLostError(Exception):
    pass


def test_a_trial_resumed_from_its_saved_state_ends_exactly_as_one_never_stopped(tmp_path):
    config = _tiny_trial()
    whole = run_trial(config)
    control = TrialControl(resume_path=str(tmp_path / "resume.pt"), save_every_s=1e-9)

    def lose_the_worker_at_step_20(step, epoch, loss, val):
        if step == 20:
            raise _WorkerLostError

    with pytest.raises(_WorkerLostError):
        run_trial(config, lose_the_worker_at_step_20, control=control)
    assert (tmp_path / "resume.pt").is_file()
    resumed = run_trial(config, control=control)
    assert resumed.resumed_step == 20 and resumed.steps == whole.steps == 40
    assert resumed.eval_val_rel_l2 == whole.eval_val_rel_l2 and resumed.test_rel_l2 == whole.test_rel_l2
    assert resumed.train_loss == whole.train_loss and resumed.best_step == whole.best_step
    assert not (tmp_path / "resume.pt").exists()  # the result supersedes it


def test_a_saved_state_of_another_configuration_is_not_resumed(tmp_path, capsys):
    control = TrialControl(resume_path=str(tmp_path / "resume.pt"), save_every_s=1e-9)

    def stop(step, epoch, loss, val):
        if step == 20:
            raise _WorkerLostError

    with pytest.raises(_WorkerLostError):
        run_trial(_tiny_trial(), stop, control=control)
    other = run_trial(_tiny_trial(lr=3e-3), control=control)
    assert other.resumed_step == 0 and "belongs to another configuration" in capsys.readouterr().err


def test_a_trial_past_its_time_limit_ends_as_a_timeout():
    with pytest.raises(TrialTimeoutError, match=r"past its time limit of 0 s at step \d+ of 4000"):
        run_trial(_tiny_trial(steps=4000), control=TrialControl(timeout_s=1e-3))


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _ray_workers_under(ancestor: int) -> list[int]:
    """Pids of Ray trial workers (process title ray::ImplicitFunc) descended from ``ancestor``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"ray::ImplicitFunc" not in (entry / "cmdline").read_bytes():
                continue
            pid = int(entry.name)
            while pid > 1 and pid != ancestor:
                pid = _parent(pid)
        except (OSError, ValueError, IndexError):
            continue
        if pid == ancestor:
            pids.append(int(entry.name))
    return pids


def test_a_killed_worker_is_retried_and_its_trial_resumes_from_its_checkpoint(tmp_path):
    # One scratch trial of 600 steps saving its state at every evaluation; its worker is
    # SIGKILLed (as a preempted node's would be) once a state is saved.
    cmd = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--out", str(tmp_path), "--no-dashboard",
           "--no-report", "--concurrency", "1", "--checkpoint-every", "0.001", *SCRATCH_ONLY,
           "--set", 'shifts=["none"]', "--set", "downstream.steps=600",
           "--set", "downstream.eval_every=20"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list((tmp_path / "cpu" / "checkpoints").glob("*/resume.pt")):
            time.sleep(0.05)
        workers = _ray_workers_under(proc.pid)
        assert workers, "no trial worker found to kill"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, out[-3000:]
    row = sweep_rows(tmp_path).iloc[0]
    assert row["status"] == "ok" and row["steps"] == 600 and row["failure"] == ""
    assert 0 < row["resumed_step"] < 600, "the retry started over instead of resuming"
    assert row["eval_steps"][-1] == 600 and len(row["eval_steps"]) == 30  # the whole validation curve


def test_a_driver_that_loses_its_lease_starts_no_more_trials_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scaling, "Lease", functools.partial(Lease, ttl_s=1.0))  # renewals every 0.25 s
    results = tmp_path / "cpu" / "results"

    def take_over_after_the_first_row():
        deadline = time.time() + 180
        while time.time() < deadline and not list(results.glob("*.parquet")):
            time.sleep(0.05)
        rival = Lease(tmp_path / "cpu", "another driver", take_over=True, ttl_s=1.0)
        rival.acquire()
        done.wait(300)
        rival.release()

    done = threading.Event()
    rival = threading.Thread(target=take_over_after_the_first_row)
    rival.start()
    try:
        code = scaling.main(["--out", str(tmp_path), "--no-dashboard", "--concurrency", "1", *TINY,
                             "--set", "downstream.steps=200"])  # fmt: skip
    finally:
        done.set()
        rival.join()
    assert code == scaling.EXIT_LEASE_LOST
    err = capsys.readouterr().err
    assert "another driver took over this sweep's lease" in err and "started no trial after that" in err
    rows = sweep_rows(tmp_path)
    assert 1 <= len(rows) < 7 and set(rows["status"]) == {"ok"}  # the running trial finished with its row


def _without(args: list[str], override: str) -> list[str]:
    """``args`` without the ``--set override`` pair."""
    at = args.index(override)
    return args[: at - 1] + args[at + 1 :]


def _most_at_once(rows: pd.DataFrame) -> list[int]:
    """For each trial, how many trials (itself included) were running when it started."""
    start = pd.to_datetime(rows["started_at"], utc=True)
    end = start + pd.to_timedelta(rows["wall_s"], unit="s")
    return [int(((start <= t) & (end > t)).sum()) for t in start]


def test_trials_stream_with_the_slots_full_and_no_barrier(tmp_path):
    # 4 slots, 12 trials of uneven length (N = 4 .. 32 at an epoch budget): under batches
    # the slots emptied while a batch waited for its slowest trial.
    args = ["--out", str(tmp_path), "--no-dashboard", "--no-report", "--num-cpus", "2", "--cpus-per-trial", "0.5",
            *_without(TINY, "downstream.steps=10"), "--set", "n_train=[4,8,16,32]", "--set", "lrs=[1e-3,3e-3,1e-2]",
            "--set", "downstream.epochs=20", "--set", 'train_modes=["scratch"]', "--set", 'shifts=["none"]',
            "--set", "seeds=[0]"]  # fmt: skip
    assert scaling.main(args) == 0
    rows = sweep_rows(tmp_path)
    assert len(rows) == 12 and set(rows["status"]) == {"ok"}
    at_once = sorted(_most_at_once(rows), reverse=True)
    # Every trial but the last few (the sweep's tail) started with the other slots busy.
    assert min(at_once[:-4]) >= 3, at_once


def test_a_node_that_joins_mid_sweep_runs_trials(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONUNBUFFERED": "1"}
    with growing_cluster(env) as (address, add_node):
        sweep = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--cluster", "--address", address,
                 "--storage", str(tmp_path), "--no-report", *SCRATCH_ONLY, "--set", "n_train=[4,8]",
                 "--set", "lrs=[1e-3,3e-3,1e-2]", "--set", "downstream.steps=1500"]  # fmt: skip
        proc = subprocess.Popen(sweep, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        results = tmp_path / "cpu" / "results"
        deadline = time.time() + 180
        while time.time() < deadline and not list(results.glob("*.parquet")):
            time.sleep(0.1)
        add_node()  # a second one-CPU node joins while most trials are left
        joined = time.time()
        out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    rows = sweep_rows(tmp_path)
    assert len(rows) == 12 and set(rows["status"]) == {"ok"}
    ended = pd.to_datetime(rows["started_at"], utc=True) + pd.to_timedelta(rows["wall_s"], unit="s")
    assert (ended.map(lambda t: t.timestamp()) > joined).sum() >= 3, "the sweep ended before the node joined"
    assert rows["node"].nunique() == 2, (rows["node"].value_counts(), out[-2000:])
    assert max(_most_at_once(rows)) == 2  # the new node's slot was used beside the head's


def _cluster_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONUNBUFFERED": "1",
            **extra}  # fmt: skip


def test_a_node_killed_mid_trial_is_retried_on_another_and_resumes_from_its_checkpoint(tmp_path):
    # The head holds no CPU (--autoscale accepts it); nodes A and B hold one each and one
    # of them runs the one trial. Once the trial has saved its state, that node dies whole
    # (raylet, workers and all, SIGKILL, as a preempted machine). Ray notices within about
    # a second (health checks every 0.5 s here); the trial is retried on the other node and
    # resumes from the state the dead one saved in the shared storage.
    env = _cluster_env(RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="1000",
                       RAY_health_check_failure_threshold="3")  # fmt: skip
    with growing_cluster(env, head_cpus=0) as (address, add_node):
        nodes = [add_node(), add_node()]
        sweep = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--cluster", "--address", address,
                 "--storage", str(tmp_path), "--autoscale", "--no-report", "--concurrency", "1",
                 "--checkpoint-every", "0.001", *SCRATCH_ONLY, "--set", 'shifts=["none"]',
                 "--set", "downstream.steps=1200", "--set", "downstream.eval_every=60"]  # fmt: skip
        proc = subprocess.Popen(sweep, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and not list((tmp_path / "cpu" / "checkpoints").glob("*/resume.pt")):
                time.sleep(0.05)
            running = [(node, _ray_workers_under(node.pid)) for node in nodes]
            running = [(node, workers) for node, workers in running if workers]
            assert len(running) == 1 and proc.poll() is None, "the trial is not running on one of the nodes"
            node, workers = running[0]
            os.killpg(node.pid, signal.SIGKILL)
            for pid in workers:  # in case a worker left its node's process group
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out[-3000:]
    row = sweep_rows(tmp_path).iloc[0]
    assert row["status"] == "ok" and row["steps"] == 1200 and row["failure"] == "", out[-2000:]
    assert 0 < row["resumed_step"] < 1200, "the retry on the other node started over instead of resuming"
    assert row["eval_steps"][-1] == 1200 and len(row["eval_steps"]) == 20  # the whole validation curve


def test_a_cluster_whose_autoscaler_adds_nodes_is_detected_without_the_flag(tmp_path):
    # A head with no CPU: before detection the sweep was refused ("the largest node has 0
    # CPUs") unless --autoscale was given. Ray's autoscaler (fake multi-node provider:
    # real raylets on this machine) adds one-CPU nodes as trials wait.
    env = _cluster_env()
    with autoscaling_cluster(env) as address:
        base = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--cluster", "--address", address,
                "--no-report", *SCRATCH_ONLY, "--set", 'shifts=["none"]', "--set", "lrs=[1e-3,3e-3]"]  # fmt: skip
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        refused = subprocess.run(base, capture_output=True, text=True, env=env, timeout=120, cwd=elsewhere)
        assert not any(elsewhere.iterdir())  # refused before any folder
        assert refused.returncode != 0 and "grows on demand" in refused.stderr and "--storage" in refused.stderr, (
            refused.stdout[-1500:] + refused.stderr[-1500:]
        )
        storage = tmp_path / "storage"
        ran = subprocess.run([*base, "--storage", str(storage)], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "grows on demand (an autoscaler with node types" in ran.stdout, ran.stdout[-2000:]
    rows = sweep_rows(storage)
    assert len(rows) == 2 and set(rows["status"]) == {"ok"}


def test_a_gpu_trial_on_a_node_without_cuda_fails_naming_the_node(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--no-dashboard", "--no-report", "--num-gpus", "1", "--gpus-per-trial", "1",
            *SCRATCH_ONLY, "--set", 'shifts=["none"]']  # fmt: skip
    assert scaling.main(args) == 1
    row = sweep_rows(tmp_path).iloc[0]
    assert row["status"] == "failed" and "CUDA is not available" in row["error"]
    assert "node " in row["error"] and "--allow-cpu-fallback" in row["error"]
