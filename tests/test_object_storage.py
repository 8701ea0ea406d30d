"""Sweeps in an object store: a real S3-compatible server (moto) started on 127.0.0.1,
reached through pyarrow as a user's bucket would be (credentials and endpoint from the
usual AWS environment variables)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
from helpers import free_port, loopback_cluster, stop_group, sweep_rows, wait_for_http
from tiny_sweep import TINY, TINY_TRIALS

from fno import results
from fno.storage import Location
from fno_analysis.synthetic import Truth, law_table
from fno_sweeps import hpo
from fno_sweeps.lease import LEASE_NAME, Lease, LeaseHeldError

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "fno-test"


@pytest.fixture(scope="module")
def s3_env():
    """The AWS environment of a moto server with an empty bucket, set in os.environ for
    the module's tests (and given to the processes they start)."""
    pytest.importorskip("moto")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint}  # fmt: skip
    try:
        wait_for_http(f"{endpoint}/moto-api/", server, 60, "the moto server")
        pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir(BUCKET)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield env
    finally:
        stop_group(server)


def test_a_scheme_pyarrow_lacks_goes_through_fsspec():
    folder = Location("memory://fno-test/sweep")  # fsspec's in-process store
    df = law_table(Truth(), [1e4], [8, 64], seeds=1, noise=0.0, rng=np.random.default_rng(0))
    for row in df.to_dict("records")[:3]:
        results.write_row(folder / "results", row)
    assert results.compact(folder / "results") == 3
    assert [p.name[: len(results.PART_PREFIX)] for p in (folder / "results").files(".parquet")] == ["part-"]
    assert sorted(results.read_results(folder / "results").column("key").to_pylist()) == sorted(df["key"][:3])


def test_rows_parts_evaluations_and_the_lease_live_in_a_bucket(s3_env, capsys):
    folder = Location(f"s3://{BUCKET}/unit/sweep")
    df = law_table(Truth(), [1e4], [8, 64], seeds=1, noise=0.0, rng=np.random.default_rng(0))
    rows = df.to_dict("records")
    for row in rows[:3]:
        results.write_row(folder / "results", row)
    results.write_evaluations(folder / "evaluations", rows[1]["key"], [{"resolution": 32, "metric": "rel_l2",
                                                                         "value": 0.5}])  # fmt: skip
    assert results.compact(folder / "results") == 3
    results.write_row(folder / "results", {**rows[0], "test_rel_l2": 0.123})  # a rewrite after compaction wins
    names = [p.name for p in (folder / "results").files(".parquet")]
    assert len(names) == 2 and names[0].startswith(results.PART_PREFIX)
    table = results.read_results(f"s3://{BUCKET}/unit/sweep/results").to_pandas().set_index("key")
    assert len(table) == 3 and table.loc[rows[0]["key"], "test_rel_l2"] == 0.123
    assert results.read_evaluations(folder / "evaluations").num_rows == 1
    (folder / "results" / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=rf"results file s3://{BUCKET}/unit/sweep/results/junk.parquet is corrupt"):
        results.read_results(folder / "results")
    (folder / "results" / "junk.parquet").delete()

    # One driver per sweep, in the bucket too.
    with Lease(folder, "first"):
        holder = json.loads((folder / LEASE_NAME).read_bytes())
        assert holder["pid"] == os.getpid() and holder["command"] == "first"
        with pytest.raises(LeaseHeldError, match="another driver runs this sweep"):
            Lease(folder, "second", ttl_s=1e9).acquire()
    assert not (folder / LEASE_NAME).exists()

    # The Optuna search keeps a journal file: a bucket is refused, naming the flag.
    argv = ["--storage", f"s3://{BUCKET}/hpo", "--family", "poisson", "--size", "w8-m4", "--mode", "finetune"]
    argv += ["--n-train", "8", *TINY]
    assert hpo.main(argv) == 2
    assert "--storage s3://fno-test/hpo: the Optuna search keeps its study in a journal file" in capsys.readouterr().err


def test_a_cluster_sweep_into_a_bucket_survives_a_killed_driver(s3_env, tmp_path):
    """Two nodes on loopback write rows, checkpoints and Tune's state to the bucket; the
    driver is SIGKILLed mid-sweep and the same command completes every key exactly once."""
    import secrets

    env = {**os.environ, **s3_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    storage = f"s3://{BUCKET}/cluster"
    with loopback_cluster(env) as address:
        cmd = [sys.executable, str(ROOT / "sweeps" / "scaling.py"), "--cluster", "--address", address, "--storage",
               storage, *TINY, "--set", "downstream.steps=100"]  # fmt: skip
        driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True, env=env, cwd=tmp_path)  # fmt: skip
        try:
            for line in driver.stdout:
                if line.startswith("[2/"):
                    break
            os.killpg(driver.pid, signal.SIGKILL)  # the driver only: its trials run on the cluster's nodes
        finally:
            stop_group(driver)
        before = sweep_rows(storage)
        assert 2 <= len(before) < TINY_TRIALS, "the driver should have been killed mid-sweep"
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"skipped {len(before)} already done" in done.stdout
    assert "taking over the sweep's lease" in done.stderr  # the killed driver's, in the bucket
    df = sweep_rows(storage)
    assert len(df) == TINY_TRIALS and df["key"].is_unique and set(df["status"]) == {"ok"}
    assert df["node"].nunique() == 2, df["node"].tolist()  # trials ran on both nodes
    sweep = Location(storage) / "cpu"
    pretrain = df.loc[df["mode"] == "pretrain", "key"].item()
    assert (sweep / "checkpoints" / pretrain / "checkpoint.pt").is_file()  # read back by the fine-tune trials
    assert (sweep / "report.html").is_file() and (sweep / "summary.md").is_file()
    assert (sweep / "ray").is_dir()  # Tune's own experiment state
    assert not (sweep / LEASE_NAME).exists()  # released at the end
    assert not list(tmp_path.iterdir()), "nothing is written to the working directory"
