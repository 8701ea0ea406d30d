"""A sweep submitted as a Ray Job to a two-node loopback cluster with token authentication:
progress in the job's logs, `ray job stop` ends it cleanly, resubmitting continues it."""

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, loopback_cluster
from tiny_sweep import TINY, TINY_TRIALS

from fno import results

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def cluster():
    """(dashboard URL, env with the token) of a head and a worker node on 127.0.0.1."""
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "PYTHONUNBUFFERED": "1",
        "RAY_JOB_STOP_WAIT_TIME_S": "60",
    }  # RAY_JOB_STOP_WAIT_TIME_S: time for the driver's graceful stop before SIGKILL
    dashboard_port = free_port()
    with loopback_cluster(env, dashboard_port=dashboard_port):
        yield f"http://127.0.0.1:{dashboard_port}", env


def _job(dashboard: str, env: dict, *args: str) -> str:
    out = subprocess.run([RAY, "job", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout + out.stderr


def _wait_status(client, job_id: str, wanted: set[str], timeout_s: float = 240) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = str(client.get_job_status(job_id))
        if any(status.endswith(w) for w in wanted):
            return status
        time.sleep(1)
    pytest.fail(f"job {job_id} still {status} after {timeout_s:.0f} s; logs: {client.get_job_logs(job_id)[-2000:]}")


def test_a_sweep_as_a_ray_job_logs_progress_stops_cleanly_and_continues(cluster, tmp_path):
    from ray.job_submission import JobSubmissionClient

    dashboard, env = cluster
    with pytest.raises(urllib.error.HTTPError) as refused:  # the job API without the token
        urllib.request.urlopen(f"{dashboard}/api/jobs/", timeout=10)
    assert refused.value.code == 401
    client = JobSubmissionClient(dashboard, headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    sweep = ["python", "sweeps/scaling.py", "--cluster", "--storage", str(tmp_path), "--no-report",
             "--concurrency", "1", *TINY, "--set", "downstream.steps=300"]  # fmt: skip
    submit = ["submit", "--address", dashboard, "--working-dir", ".", "--no-wait"]
    _job(dashboard, env, *submit, "--submission-id", "sweep-1", "--", *sweep)
    first = "sweep-1"
    deadline = time.time() + 240
    while "[2/" not in client.get_job_logs(first):  # the sweep's progress lines are the job's log
        assert time.time() < deadline, client.get_job_logs(first)[-2000:]
        time.sleep(1)
    _job(dashboard, env, "stop", "--address", dashboard, first)
    assert _wait_status(client, first, {"STOPPED", "SUCCEEDED", "FAILED"}).endswith("STOPPED")
    logs = client.get_job_logs(first)
    assert "SIGTERM: stopping the sweep" in logs and "interrupted" in logs, logs[-2000:]
    rows = results.read_results(tmp_path / "cpu" / "results").to_pandas()
    assert 2 <= len(rows) < TINY_TRIALS and set(rows["status"]) == {"ok"}
    # The same job again continues the sweep by key.
    _job(dashboard, env, *submit, "--submission-id", "sweep-2", "--", *sweep)
    second = "sweep-2"
    assert _wait_status(client, second, {"STOPPED", "SUCCEEDED", "FAILED"}).endswith("SUCCEEDED")
    assert f"skipped {len(rows)} already done" in client.get_job_logs(second)
    df = results.read_results(tmp_path / "cpu" / "results").to_pandas()
    assert len(df) == TINY_TRIALS and df["key"].is_unique and set(df["status"]) == {"ok"}
