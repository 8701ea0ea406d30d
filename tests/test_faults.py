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
from helpers import autoscaling_cluster, stop_group, sweep_rows
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


def _cluster_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "PYTHONUNBUFFERED": "1",
            **extra}  # fmt: skip


def _descendants(root: int) -> list[int]:
    """Pids of every process under ``root`` (itself excluded)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(_parent(int(entry.name)), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _worker_raylets(head: int) -> dict[int, list[int]]:
    """Under the head's process tree: each worker node's raylet pid -> its trial workers'
    pids (the fake provider starts worker nodes from the head's autoscaler monitor)."""
    raylets = {}
    for pid in _descendants(head):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"/raylet/raylet" in cmdline and b"--head" not in cmdline:
                raylets[pid] = _ray_workers_under(pid)
    return raylets


def test_an_autoscaling_cluster_is_detected_grows_and_a_node_killed_mid_trial_is_resumed_elsewhere(tmp_path):
    # Ray's own autoscaler (its fake multi-node provider starts real raylets on this
    # machine) on a head with no CPU, and no --autoscale: before detection the sweep was
    # refused ("the largest node has 0 CPUs"). Without --storage it is refused, before any
    # folder. With it, the autoscaler adds two one-CPU nodes as trials wait and both run
    # trials at once (concurrency follows the nodes that join). Once both running trials
    # have saved their state, one node dies whole (raylet, workers and agents, SIGKILL, as
    # a preempted machine); Ray notices within about a second (health checks every 0.5 s
    # here) and the trial is retried on the other node, from the state the dead one saved.
    # Before the node faults were handled the retry started over at step 0.
    env = _cluster_env(RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="1000",
                       RAY_health_check_failure_threshold="3")  # fmt: skip
    with autoscaling_cluster(env, max_workers=2) as (address, head):
        base = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--cluster", "--address", address,
                "--no-report", *SCRATCH_ONLY, "--set", 'shifts=["none"]', "--set", "n_train=[4,8]",
                "--set", "lrs=[1e-3,1e-2]", "--set", "downstream.steps=1200",
                "--set", "downstream.eval_every=100", "--checkpoint-every", "0.001"]  # fmt: skip
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        refused = subprocess.run(base, capture_output=True, text=True, env=env, timeout=120, cwd=elsewhere)
        assert not any(elsewhere.iterdir())  # refused before any folder
        assert refused.returncode != 0 and "grows on demand" in refused.stderr and "--storage" in refused.stderr, (
            refused.stdout[-1500:] + refused.stderr[-1500:]
        )
        storage = tmp_path / "storage"
        proc = subprocess.Popen([*base, "--storage", str(storage)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)  # fmt: skip
        try:
            saved = storage / "cpu" / "checkpoints"
            deadline = time.time() + 240
            while time.time() < deadline and len(list(saved.glob("*/resume.pt"))) < 2:
                time.sleep(0.05)
            busy = {r: w for r, w in _worker_raylets(head.pid).items() if w}
            # Both nodes the autoscaler added run a trial at once, each with its state saved.
            assert len(busy) == 2 and proc.poll() is None, ("two nodes should each run a trial", busy)
            raylet = min(busy)
            for pid in [*_descendants(raylet), raylet]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "grows on demand (an autoscaler with node types" in out, out[-2000:]
    rows = sweep_rows(storage)
    assert len(rows) == 4 and set(rows["status"]) == {"ok"} and (rows["failure"] == "").all(), out[-2000:]
    resumed = rows[rows["resumed_step"] > 0]
    assert len(resumed) == 1, "the killed node's trial should have resumed, once"
    whole = rows[rows["resumed_step"] == 0]["eval_steps"].iloc[0]  # an uninterrupted trial's evaluations
    assert resumed["resumed_step"].iloc[0] < 1200 and list(resumed["eval_steps"].iloc[0]) == list(whole)


def test_a_gpu_trial_on_a_node_without_cuda_fails_naming_the_node(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--no-dashboard", "--no-report", "--num-gpus", "1", "--gpus-per-trial", "1",
            *SCRATCH_ONLY, "--set", 'shifts=["none"]']  # fmt: skip
    assert scaling.main(args) == 1
    row = sweep_rows(tmp_path).iloc[0]
    assert row["status"] == "failed" and "CUDA is not available" in row["error"]
    assert "node " in row["error"] and "--allow-cpu-fallback" in row["error"]
