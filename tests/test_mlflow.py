"""Export to MLflow, against a real tracking server started on 127.0.0.1."""

import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import free_port, wait_for_http

from fno import results
from fno_analysis.synthetic import Truth, law_table

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = shutil.which("mlflow", path=str(sys.executable).rsplit("/", 1)[0]) or "mlflow"
    proc = subprocess.Popen(
        [server, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/store.db", "--default-artifact-root", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", proc, 90, "the MLflow server")
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _sweep(tmp_path):
    df = law_table(Truth(), [1e4, 4e4], [8, 64], seeds=1, noise=0.0, rng=np.random.default_rng(0))
    df.loc[df.index[-1], ["status", "error", "test_rel_l2"]] = ["failed", "RuntimeError: out of memory", np.nan]
    (tmp_path / "results").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(df, schema=results.SCHEMA, preserve_index=False),
                   tmp_path / "results" / "part-1.parquet")  # fmt: skip
    key = df["key"].iloc[1]
    evaluations = [{"resolution": r, "metric": "rel_l2", "value": v} for r, v in ((32, 0.5), (64, 0.6))]
    results.write_evaluations(tmp_path / "evaluations", key, evaluations)
    return df


def _runs(client, experiment_id):
    return {r.data.tags["fno.key"]: r for r in client.search_runs([experiment_id], max_results=1000)}


def test_every_trial_becomes_one_run_and_exporting_again_updates_never_duplicates(tmp_path, tracking_uri):
    from mlflow.tracking import MlflowClient

    from fno_analysis.mlflow_export import export_sweep, main

    df = _sweep(tmp_path)
    first = export_sweep(tmp_path, tracking_uri, experiment="test-export")
    assert (first["created"], first["updated"], first["unchanged"]) == (len(df), 0, 0)
    client = MlflowClient(tracking_uri)
    runs = _runs(client, first["experiment_id"])
    assert set(runs) == set(df["key"])
    row = df.iloc[1]
    run = runs[row["key"]]
    assert run.data.params["n_train"] == str(row["n_train"]) and run.data.params["mode"] == row["mode"]
    assert run.data.metrics["test_rel_l2"] == pytest.approx(row["test_rel_l2"])
    assert run.data.metrics["eval_rel_l2_r64"] == pytest.approx(0.6)
    assert run.data.tags["fno.status"] == "ok" and run.info.status == "FINISHED"
    failed = runs[df["key"].iloc[-1]]
    assert failed.info.status == "FAILED" and "out of memory" in failed.data.tags["fno.error"]
    # Again: nothing new. Then one trial run again with a new result: its run is updated.
    assert main([str(tmp_path), "--tracking-uri", tracking_uri, "--experiment", "test-export"]) == 0
    assert len(_runs(client, first["experiment_id"])) == len(df)
    rerun = {**row.to_dict(), "test_rel_l2": 0.0123}
    results.write_row(tmp_path / "results", rerun)
    again = export_sweep(tmp_path, tracking_uri, experiment="test-export")
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 1, len(df) - 1)
    runs = _runs(client, first["experiment_id"])
    assert len(runs) == len(df) and runs[row["key"]].data.metrics["test_rel_l2"] == pytest.approx(0.0123)


def test_the_cli_needs_a_tracking_uri(tmp_path, monkeypatch, capsys):
    from fno_analysis.mlflow_export import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main([str(tmp_path)]) == 2 and "--tracking-uri is required" in capsys.readouterr().err
