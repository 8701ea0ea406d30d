"""sweeps/slurm/sweep.sbatch: start-up and shutdown on this machine, with stand-ins for srun and
scontrol (tests/slurm_shims/): every "node" is this machine, so two Ray nodes share it, as the
script allows (distinct ports by rank on a host). A real SLURM run is opt-in:
FNO_TEST_REAL_SLURM=1 (docs/sweeps.md says how one was set up on one host)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_sweep import TINY, TINY_TRIALS

from fno import results

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "sweeps" / "slurm" / "sweep.sbatch"


def _job_env(tmp_path, nodes: str = "node1") -> tuple[dict, str]:
    job_id = str(random.randint(100_000, 999_999))
    env = {**os.environ, "PATH": f"{ROOT / 'tests' / 'slurm_shims'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_JOB_ID": job_id, "SLURM_JOB_NODELIST": nodes, "SLURM_CPUS_PER_TASK": "2",
           "SLURM_SUBMIT_DIR": str(ROOT), "FNO_PYTHON": sys.executable, "HOME": str(tmp_path / "home"),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    return env, job_id


def _ray_left(job_id: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"ray-fno-{job_id}"], capture_output=True).returncode == 0


def test_the_batch_script_starts_ray_on_two_nodes_runs_the_sweep_and_stops_ray(tmp_path):
    env, job_id = _job_env(tmp_path, "node1,node2")
    cmd = ["bash", str(SCRIPT), "--storage", str(tmp_path / "store"), "--no-report", *TINY]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 2 Ray nodes up" in done.stdout and "Ray stopped on 2 nodes" in done.stdout
    rows = results.read_results(tmp_path / "store" / "cpu" / "results").to_pandas()
    assert len(rows) == TINY_TRIALS and set(rows["status"]) == {"ok"}
    assert not (tmp_path / "home" / ".ray" / f"fno-sweep-{job_id}.token").exists()  # the job's token is gone
    time.sleep(2)
    assert not _ray_left(job_id), "Ray processes of the job are still running"


def test_cancelling_the_job_stops_the_sweep_cleanly_and_ray_with_it(tmp_path):
    env, job_id = _job_env(tmp_path)
    cmd = ["bash", str(SCRIPT), "--storage", str(tmp_path / "store"), "--no-report", "--concurrency", "1", *TINY,
           "--set", "downstream.steps=300"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    token = tmp_path / "home" / ".ray" / f"fno-sweep-{job_id}.token"
    try:
        for line in proc.stdout:
            if line.startswith("[2/"):
                assert oct(token.stat().st_mode & 0o777) == "0o600"  # only the job's user reads the token
                break
        proc.send_signal(signal.SIGTERM)  # scancel: SIGTERM to the batch script
        out, _ = proc.communicate(timeout=120)
    finally:
        with_group = proc.poll() is None
        if with_group:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, out[-3000:]
    assert "interrupted" in out and "Ray stopped on 1 nodes" in out
    rows = results.read_results(tmp_path / "store" / "cpu" / "results").to_pandas()
    assert 2 <= len(rows) < TINY_TRIALS and set(rows["status"]) == {"ok"}
    assert not token.exists()
    time.sleep(2)
    assert not _ray_left(job_id), "Ray processes of the job are still running"


@pytest.mark.skipif(
    os.environ.get("FNO_TEST_REAL_SLURM") != "1", reason="opt-in: FNO_TEST_REAL_SLURM=1 on a SLURM host"
)
def test_on_a_real_slurm(tmp_path):
    store = tmp_path / "store"
    submit = subprocess.run(["sbatch", "--parsable", "--wait", "--nodes=1", "--cpus-per-task=2",
                             f"--output={tmp_path}/slurm-%j.out", str(SCRIPT),
                             "--storage", str(store), "--no-report", *TINY],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)  # fmt: skip
    assert submit.returncode == 0, submit.stdout + submit.stderr
    rows = results.read_results(store / "cpu" / "results").to_pandas()
    assert len(rows) == TINY_TRIALS and set(rows["status"]) == {"ok"}
