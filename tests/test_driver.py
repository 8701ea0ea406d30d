"""The driver's hold on a sweep folder (the lease) and the report it rewrites while running."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port, sweep_rows
from tiny_sweep import TINY

from fno import results
from fno_sweeps import scaling
from fno_sweeps.lease import LEASE_NAME, Lease, LeaseHeldError
from fno_sweeps.live import LiveReport
from fno_sweeps.runner import result_row

ROOT = Path(__file__).resolve().parent.parent


def test_a_second_driver_is_refused_with_the_holder_and_the_way_out(tmp_path):
    with Lease(tmp_path, "python sweeps/scaling.py --preset cpu"):
        holder = json.loads((tmp_path / LEASE_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "python sweeps/scaling.py --preset cpu"
        with pytest.raises(LeaseHeldError, match=rf"pid {os.getpid()}.*--take-over"):
            Lease(tmp_path, "second").acquire()
    assert not (tmp_path / LEASE_NAME).exists()  # released at exit


def test_a_stale_lease_or_a_dead_holder_is_taken_over_with_a_warning(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    now = time.time()
    for holder in (
        {"host": "elsewhere", "pid": 1, "started": now - 900, "renewed": now - 600, "command": "old"},  # stale
        {"host": socket.gethostname(), "pid": int(dead.stdout), "started": now, "renewed": now, "command": "x"},
    ):
        (tmp_path / LEASE_NAME).write_text(json.dumps(holder))
        with Lease(tmp_path, "new"):
            assert json.loads((tmp_path / LEASE_NAME).read_text())["command"] == "new"
        assert "warning: taking over the sweep's lease" in capsys.readouterr().err


def test_take_over_replaces_a_live_holder_which_then_learns_it_lost(tmp_path, capsys):
    first = Lease(tmp_path, "first", ttl_s=0.4)
    first.acquire()
    with Lease(tmp_path, "second", take_over=True):
        time.sleep(0.3)  # first's renewal (every ttl / 4) finds the lease gone
        assert first.lost and "another driver took over" in capsys.readouterr().err
    first.release()


def test_a_renewal_that_fails_once_is_retried_and_the_lease_kept(tmp_path, monkeypatch, capsys):
    # Old: one EIO killed the renewal thread; after the ttl a second driver took the lease while this one ran.
    lease = Lease(tmp_path, "me", ttl_s=0.8)
    lease.acquire()
    real_write, failures = lease._write, iter([True])

    def flaky_write(renewed: float) -> None:
        if next(failures, False):
            raise OSError(5, "Input/output error")
        real_write(renewed)

    monkeypatch.setattr(lease, "_write", flaky_write)
    time.sleep(1.2)  # one failed renewal, a retry 0.1 s later, then renewals every 0.2 s
    assert not lease.lost and "renewing the sweep's lease failed" in capsys.readouterr().err
    assert time.time() - json.loads((tmp_path / LEASE_NAME).read_text())["renewed"] < 0.5
    lease.release()


def test_a_lease_that_cannot_be_renewed_for_its_ttl_is_lost_and_says_so(tmp_path, monkeypatch):
    lease = Lease(tmp_path, "me", ttl_s=0.4)
    reasons = []
    lease.on_lost = reasons.append
    lease.acquire()

    def broken_write(renewed: float) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(lease, "_write", broken_write)
    time.sleep(1.0)
    assert lease.lost and len(reasons) == 1
    assert "could not be renewed" in reasons[0] and "Input/output error" in reasons[0]
    lease.release()


def test_the_lease_is_renewed_while_the_driver_runs(tmp_path):
    with Lease(tmp_path, "me", ttl_s=0.4):
        before = json.loads((tmp_path / LEASE_NAME).read_text())["renewed"]
        time.sleep(0.35)
        assert json.loads((tmp_path / LEASE_NAME).read_text())["renewed"] > before


def test_the_cli_refuses_a_held_sweep_before_ray_starts(tmp_path, capsys):
    with Lease(tmp_path / "cpu", "the other driver"):
        assert scaling.main(["--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err
    assert "another driver runs this sweep" in err and "the other driver" in err


def test_the_live_report_is_rewritten_in_the_background_and_replaced_whole(tmp_path):
    from fno_sweeps.grid import Preset, expand

    trials = expand(Preset.load("cpu", {}))[:3]
    for trial in trials:
        row = result_row(trial, "cpu", {"status": "ok", "val_rel_l2": 0.1, "test_rel_l2": 0.1, "wall_s": 1.0})
        results.write_row(tmp_path / "results", row)
    live = LiveReport(tmp_path, every_s=0.01)
    assert not live.maybe_refresh()  # not due yet at the start ...
    time.sleep(0.02)
    assert live.maybe_refresh() and not live.maybe_refresh()  # ... then one at a time
    assert live.process.wait(timeout=120) == 0
    assert (tmp_path / "report.html").stat().st_size > 0 and (tmp_path / "summary.md").exists()
    assert not list(tmp_path.glob(".report.html.*"))  # no temp file left
    with pytest.raises(ValueError, match="--report-every"):
        LiveReport(tmp_path, every_s=-1)


def _gauges(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one gauge in a Prometheus text page (labels as written)."""
    out = {}
    for line in text.splitlines():
        if line.startswith(f"ray_{name}{{"):
            labels, value = line[len(f"ray_{name}{{") :].rsplit("} ", 1)
            out[labels] = float(value)
    return out


def test_a_running_sweep_exports_its_state_as_ray_metrics(tmp_path):
    import re
    import urllib.request

    from tiny_sweep import TINY_TRIALS

    port = free_port()
    cmd = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--out", str(tmp_path), "--no-dashboard",
           "--no-report", "--concurrency", "1", "--metrics-port", str(port), *TINY,
           "--set", "downstream.steps=1000"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        seen = {}
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
            ok = {k: v for k, v in _gauges(page, "fno_sweep_trials").items() if 'status="ok"' in k}
            if ok and max(ok.values()) >= 2:
                seen = {name: _gauges(page, name) for name in ("fno_sweep_trials", "fno_sweep_trials_running",
                        "fno_sweep_trials_pending", "fno_sweep_trials_planned", "fno_sweep_eta_seconds",
                        "fno_sweep_best_val_rel_l2")}  # fmt: skip
                break
        rows = sweep_rows(tmp_path)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a sweep that already ended
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert seen, "the sweep's gauges never appeared on Ray's metrics endpoint"
    ((labels, planned),) = seen["fno_sweep_trials_planned"].items()
    assert 'sweep="cpu"' in labels and planned == TINY_TRIALS
    ok = max(v for k, v in seen["fno_sweep_trials"].items() if 'status="ok"' in k)
    running = max(seen["fno_sweep_trials_running"].values())
    pending = max(seen["fno_sweep_trials_pending"].values())
    assert 2 <= ok <= len(rows) and running <= 1 and ok + running + pending == planned  # --concurrency 1
    assert max(seen["fno_sweep_eta_seconds"].values()) >= 0
    best = seen["fno_sweep_best_val_rel_l2"]
    pretrain = [v for k, v in best.items() if re.search(r'curve="poisson/w8-m4/pretrain"', k)]
    assert pretrain, list(best)
    assert pretrain[0] == pytest.approx(rows[rows["mode"] == "pretrain"]["val_rel_l2"].min(), rel=1e-6)


def test_an_error_after_a_trials_row_never_overwrites_it(tmp_path):
    from types import SimpleNamespace

    from fno_sweeps.grid import Preset, expand
    from fno_sweeps.runner import DependencyOrder, Progress, Recorder, RowWriterCallback

    trials = expand(Preset.load("cpu", {}))
    planned = trials[0]  # a pre-training: its dependants wait on it
    recorder = Recorder(tmp_path / "results", "cpu", Progress(1, 1))
    order = DependencyOrder([(t, {"key": t.key}) for t in trials], {planned.key}, recorder)
    writer = RowWriterCallback(lambda t: planned, recorder, order)
    result = {"status": "ok", "val_rel_l2": 0.1, "test_rel_l2": 0.2, "wall_s": 1.0}
    trial = SimpleNamespace(last_result={"trial_result": result, "trial_status": "ok"}, error_file=None, config={})
    writer.on_trial_complete(0, [], trial)
    writer.on_trial_error(0, [], trial)  # e.g. a callback after the row raised: Tune calls the trial errored
    (row,) = results.read_results(tmp_path / "results").to_pylist()
    assert row["status"] == "ok" and row["test_rel_l2"] == 0.2
    assert planned.key not in order.waiting  # its dependants were released by its ok row, not failed


def test_the_stopper_pickles_while_handlers_that_hold_locks_are_saved():
    import threading

    from ray import cloudpickle

    from fno_sweeps.interrupt import Interrupt, tune_stopper

    lock = threading.Lock()

    def handler(signum, frame):  # like ray.init's SIGTERM handler: a closure over a lock
        with lock:
            pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with Interrupt() as interrupt:
            cloudpickle.dumps(tune_stopper(interrupt))  # Tune pickles it with the experiment state
        assert signal.getsignal(signal.SIGTERM) is handler  # restored on exit
    finally:
        signal.signal(signal.SIGTERM, previous)
