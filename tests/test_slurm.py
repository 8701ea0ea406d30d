"""sweeps/slurm/sweep.sbatch: start-up and shutdown on this machine, with stand-ins for srun and
scontrol (tests/slurm_shims/): every "node" is this machine, so two Ray nodes share it, as the
script allows (distinct ports by rank on a host). What the script asks of SLURM and Ray (steps,
ports, temp folders) is checked in seconds with Ray and the sweep stood in for too
(tests/slurm_shims/dry/). A real SLURM run is opt-in: FNO_TEST_REAL_SLURM=1 (docs/sweeps.md says
how one was set up on one host)."""

import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_sweep import TINY, TINY_TRIALS

import fno_sweeps
from fno import results

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "sweeps" / "slurm" / "sweep.sbatch"
DRY = ROOT / "tests" / "slurm_shims" / "dry"


def _job_env(tmp_path, nodes: str = "node1", job_id: str | None = None) -> tuple[dict, str]:
    job_id = job_id or str(random.randint(100_000, 999_999))
    env = {**os.environ, "PATH": f"{ROOT / 'tests' / 'slurm_shims'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_JOB_ID": job_id, "SLURM_JOB_NODELIST": nodes, "SLURM_CPUS_PER_TASK": "2",
           "SLURM_SUBMIT_DIR": str(ROOT), "FNO_PYTHON": sys.executable, "HOME": str(tmp_path / "home"),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    return env, job_id


def _ray_left(job_id: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"ray-fno-{job_id}"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """One tiny sweep through the script on two Ray nodes, submitted under umask 077."""
    tmp_path = tmp_path_factory.mktemp("two-nodes")
    env, job_id = _job_env(tmp_path, "node1,node2")
    env["FNO_SRUN_LOG"] = str(tmp_path / "srun.log")
    cmd = ["bash", str(SCRIPT), "--storage", str(tmp_path / "store"), "--no-report", *TINY]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400, umask=0o077)
    return tmp_path, job_id, done


def test_the_batch_script_starts_ray_on_two_nodes_runs_the_sweep_and_stops_ray(two_nodes):
    tmp_path, job_id, done = two_nodes
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 2 Ray nodes up" in done.stdout and "Ray stopped on 2 nodes" in done.stdout
    rows = results.read_results(tmp_path / "store" / "cpu" / "results").to_pandas()
    assert len(rows) == TINY_TRIALS and set(rows["status"]) == {"ok"}
    assert not (tmp_path / "home" / ".ray" / f"fno-sweep-{job_id}.token").exists()  # the job's token is gone
    assert not list(Path("/tmp").glob(f"ray-fno-{job_id}-*"))  # each node removed its Ray temp folder
    time.sleep(2)
    assert not _ray_left(job_id), "Ray processes of the job are still running"


def test_results_are_readable_by_the_group_under_a_private_umask(two_nodes):
    # The script used to set umask 077 for everything, so collaborators could not read a
    # sweep's rows; now the user's umask (here 077) is kept but for the group's read.
    tmp_path, _, done = two_nodes
    assert done.returncode == 0, done.stderr[-2000:]
    written = [p for p in (tmp_path / "store").rglob("*") if not p.is_symlink()]
    assert any(p.suffix == ".parquet" for p in written)
    for path in written:
        mode = path.stat().st_mode
        wanted = 0o050 if path.is_dir() else 0o040  # folders: read and enter
        assert mode & wanted == wanted and not mode & 0o007, f"{path}: {oct(mode & 0o777)}"
    for line in (tmp_path / "srun.log").read_text().splitlines():  # the real run's steps too
        assert "--cpus-per-task=2" in shlex.split(line), line


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
    assert not list(Path("/tmp").glob(f"ray-fno-{job_id}-*"))  # its node removed its Ray temp folder


def _dry_run(tmp_path, *args: str, nodes: str = "node1", job_id: str | None = None, **env_extra: str):
    """The script with Ray and the sweep stood in for (tests/slurm_shims/dry/). Returns its output
    (.out), its srun calls (.sruns), its Ray starts (.starts: each the start's arguments after
    "yes" or "no", whether its --temp-dir existed then) and the sweep's command line (.sweep)."""
    env, job_id = _job_env(tmp_path, nodes, job_id)
    records = tmp_path / f"dry-{job_id}-{random.randint(0, 10**9)}"
    records.mkdir()
    env.update(FNO_PYTHON=str(DRY / "python"), FNO_DRY_PYTHON=sys.executable, FNO_DRY_DIR=str(records),
               FNO_SRUN_LOG=str(records / "srun"), FNO_RAY_TEMP_ROOT=str(tmp_path / "tmp"), **env_extra)  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT), "--storage", str(tmp_path / "store"), *args],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not list((tmp_path / "tmp").glob("*"))  # every node's temp folder removed
    return SimpleNamespace(
        out=done.stdout + done.stderr,
        sruns=[shlex.split(line) for line in (records / "srun").read_text().splitlines()],
        starts=[shlex.split(p.read_text()) for p in sorted(records.glob("ray-start.*"))],
        sweep=shlex.split((records / "sweep").read_text()),
    )


def _flags(start: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in start if arg.startswith("--") and "=" in arg)


def _ports(starts: list[list[str]]) -> set[int]:
    """Every port the job's Ray nodes were given, worker ranges in full."""
    ports = set()
    for flags in map(_flags, starts):
        ports |= {int(v) for k, v in flags.items() if k.endswith("port") and not k.endswith("worker-port")}
        ports |= set(range(int(flags["min-worker-port"]), int(flags["max-worker-port"]) + 1))
    return ports


def test_a_node_of_64_trial_slots_gets_worker_ports_for_64_workers(tmp_path):
    # 8 GPUs at 1/8 share: 64 trials at once, 64 Ray workers; the script gave 50 ports, and
    # Ray left the actors beyond the range pending, without an error. (64 real actors take
    # about a minute to start on a 2-core machine, so the range is checked, not used.)
    run = _dry_run(tmp_path, "--gpus-per-trial", "0.125", "--cpus-per-trial=0.1",
                   SLURM_CPUS_PER_TASK="16", SLURM_GPUS_ON_NODE="8")  # fmt: skip
    (flags,) = map(_flags, run.starts)
    assert (flags["num-gpus"], flags["num-cpus"]) == ("8", "16")
    assert "64 trials at once per node" in run.out  # by the GPUs: 16 CPUs at 0.1 would allow 160
    assert int(flags["max-worker-port"]) - int(flags["min-worker-port"]) + 1 >= 2 * 64


def test_every_srun_step_gets_the_jobs_cpus_per_task(tmp_path):
    # Slurm 22.05+: a step without --cpus-per-task gets one core, however many Ray is told.
    run = _dry_run(tmp_path, nodes="node1,node2")
    assert len(run.sruns) == 5 and len(run.starts) == 2  # 2 addresses, 1 port check, 2 Ray nodes
    for call in run.sruns:
        assert "--cpus-per-task=2" in call, call


def test_each_node_gets_its_own_temp_dir_removed_at_the_end(tmp_path):
    run = _dry_run(tmp_path, nodes="node1,node2", job_id="123456")
    dirs = {_flags(start)["temp-dir"] for start in run.starts}
    assert dirs == {str(tmp_path / "tmp" / "ray-fno-123456-0"), str(tmp_path / "tmp" / "ray-fno-123456-1")}
    assert all(start[0] == "yes" for start in run.starts)  # created (on the node) before Ray started
    # and none is left: _dry_run checks that FNO_RAY_TEMP_ROOT is empty again


def test_jobs_whose_ids_are_equal_mod_200_get_different_ports(tmp_path):
    first = _dry_run(tmp_path, job_id="424242", nodes="node1,node2")
    second = _dry_run(tmp_path, job_id="424442", nodes="node1,node2")
    assert not _ports(first.starts) & _ports(second.starts)


def test_a_job_whose_ports_are_taken_on_a_node_moves_to_free_ones(tmp_path):
    (start,) = _dry_run(tmp_path, job_id="515151").starts
    taken = int(_flags(start)["min-worker-port"]) + 3  # a port of the job's block, in use
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        again = _dry_run(tmp_path, job_id="515151")
    assert "taken on a node" in again.out and f"1 in use ({taken}" in again.out
    assert not _ports(again.starts) & _ports([start])


def test_outside_a_checkout_the_installed_sweep_runs(tmp_path):
    # The script ships in the package (fno_sweeps/slurm/); submitted from another folder,
    # there is no sweeps/scaling.py to run.
    installed = Path(fno_sweeps.__file__).parent / "slurm" / "sweep.sbatch"  # where docs/sweeps.md says
    assert installed.read_text() == SCRIPT.read_text()
    run = _dry_run(tmp_path, SLURM_SUBMIT_DIR=str(tmp_path))
    assert run.sweep[:2] == ["-m", "fno_sweeps.scaling"] and "--cluster" in run.sweep
    assert _dry_run(tmp_path).sweep[0] == "sweeps/scaling.py"  # from the checkout, its own


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
