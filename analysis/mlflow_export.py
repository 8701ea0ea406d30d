"""Export a sweep to MLflow: one run per trial, idempotent by key.

    fno-mlflow out/cpu --tracking-uri http://127.0.0.1:5000 [--experiment NAME]

Each trial of ``<sweep>/results`` becomes one run of the experiment (default: the
sweep's name):
- params: the fields that define the trial (PARAM_COLUMNS);
- metrics: the validation and test errors, training loss, timings, the validation
  curve as the history of ``val_rel_l2_curve`` (one entry per evaluation step), and
  every test evaluation of ``<sweep>/evaluations`` as ``eval_<metric>_r<resolution>``;
- tags: ``fno.key``, ``fno.sweep``, ``fno.stage``, ``fno.status`` (and the error,
  device, node, start time, code version), and ``fno.row_digest``;
- status FINISHED for ok trials, FAILED for failed and diverged ones, KILLED for
  those a scheduler stopped.

Exporting again creates runs only for new keys; a trial whose row (or evaluations)
changed, because it was run again, gets its run updated (its metrics logged anew);
unchanged trials are skipped. Credentials come from MLflow's own environment
variables (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN, or the store's), never from
flags. Needs the ``mlflow`` extra: ``pip install "fno-scaling[mlflow]"``.

A tracking server that does not answer is an error within about PROBE_TIMEOUT_S seconds,
naming its address, before anything is read or sent (``check_tracking_server``); once
exporting, each request waits MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT seconds and is retried
MLFLOW_HTTP_REQUEST_MAX_RETRIES times (defaults here 10 s and 3; MLflow's own, 120 s and
7, took minutes to give up on a dead server). Either variable, set, wins.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fno.storage import location
from fno_analysis.evaluations import read_evaluations_table
from fno_analysis.points import read_table

PARAM_COLUMNS = [
    "family", "shift", "param_lo", "param_hi", "pretrain_family", "pretrained_key", "mode", "finetune_strategy",
    "width", "modes", "layers", "n_params", "n_trainable", "n_train", "resolution", "lr", "weight_decay",
    "epochs", "steps", "batch_size", "seed", "data_seed",
]  # fmt: skip
METRIC_COLUMNS = ["val_rel_l2", "test_rel_l2", "train_loss", "best_step", "wall_s", "train_s", "samples_per_s"]
TAG_COLUMNS = ["device", "gpu_name", "node", "started_at", "code_version"]
RUN_STATUS = {"ok": "FINISHED", "stopped": "KILLED"}  # anything else (failed, diverged): FAILED
MAX_ERROR_TAG = 5000  # characters of a failed trial's error kept in its tag
PROBE_TIMEOUT_S = 5.0  # a tracking server that does not answer an HTTP request in this long is not there
# MLflow's HTTP client settings for an export, unless the environment sets them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3"}
PROXY_DOWN = (502, 503, 504)  # a proxy's answers when the server behind it is not there


def check_tracking_server(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """ConnectionError naming ``uri`` if an http(s) tracking server does not answer a GET of
    it within ``timeout_s`` (any answer but a proxy's 502-504, even 401 or 404, is a
    server); other URIs (file:, sqlite:, databricks) are left to MLflow's own client."""
    if urllib.parse.urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        urllib.request.urlopen(urllib.request.Request(uri, method="GET"), timeout=timeout_s).close()
        return
    except urllib.error.HTTPError as err:
        if err.code not in PROXY_DOWN:
            return
        reason = f"HTTP {err.code} {err.reason}"
    except (urllib.error.URLError, OSError) as err:  # refused, unknown host, timed out
        reason = str(getattr(err, "reason", err) or err)
    raise ConnectionError(
        f"--tracking-uri {uri}: no MLflow tracking server answers there within {timeout_s:g} s ({reason}); start "
        "one (`mlflow server --host 127.0.0.1 --port 5000`) or fix the address"
    )


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def run_name(row: dict) -> str:
    """A readable name, as the sweep's trial names (fno_sweeps.grid.PlannedTrial.name):
    mode-family-shift-wWmM-N-lr-seed-key6, without the fields a mode does not have
    (pre-training: shift, N, lr, seed; zero-shot: N, lr, seed)."""
    size, key = f"w{row['width']}m{row['modes']}", row["key"][:6]
    data = f"-d{row['data_seed']}" if row.get("data_seed") else ""
    if row["mode"] == "pretrain":
        return f"pretrain-{row['family']}-{size}-{key}"
    if row["mode"] == "zeroshot":
        return f"zeroshot-{row['family']}-{row['shift']}-{size}{data}-{key}"
    mode = row["mode"] if row["finetune_strategy"] in ("", "full") else f"{row['mode']}[{row['finetune_strategy']}]"
    probe = "probe-" if row.get("stage") == "probe" else ""
    point = f"N{row['n_train']}-lr{row['lr']:g}-s{row['seed']}{data}"
    return f"{probe}{mode}-{row['family']}-{row['shift']}-{size}-{point}-{key}"


def _digest(row: dict, evaluations: list[dict]) -> str:
    text = json.dumps({"row": row, "evaluations": evaluations}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _batch(row: dict, evaluations: list[dict], sweep: str, digest: str, timestamp: int):
    """(metrics, params, tags) of one trial, as MLflow entities."""
    from mlflow.entities import Metric, Param, RunTag

    params = [Param(c, str(row[c])) for c in PARAM_COLUMNS if c in row and row[c] is not None]
    metrics = [Metric(c, float(row[c]), timestamp, 0) for c in METRIC_COLUMNS if _finite(row.get(c))]
    steps, values = row.get("eval_steps"), row.get("eval_val_rel_l2")
    if steps is not None and values is not None:
        metrics += [Metric("val_rel_l2_curve", float(v), timestamp, int(s)) for s, v in zip(steps, values, strict=True)
                    if _finite(float(v))]  # fmt: skip
    metrics += [Metric(f"eval_{e['metric']}_r{int(e['resolution'])}", float(e["value"]), timestamp, 0)
                for e in evaluations if _finite(e["value"])]  # fmt: skip
    tags = {"fno.key": row["key"], "fno.sweep": sweep, "fno.stage": row["stage"], "fno.status": row["status"],
            "fno.row_digest": digest, "mlflow.runName": run_name(row)}  # fmt: skip
    tags.update({f"fno.{c}": str(row[c]) for c in TAG_COLUMNS if row.get(c)})
    if row.get("error"):
        tags["fno.error"] = str(row["error"])[:MAX_ERROR_TAG]
    return metrics, params, [RunTag(k, v) for k, v in tags.items()]


def _existing_runs(client, experiment_id: str) -> dict:
    """key -> run of every run of the experiment that carries an fno.key tag."""
    runs, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            key = run.data.tags.get("fno.key")
            if key:
                runs[key] = run
        token = page.token
        if not token:
            return runs


def _log(client, run_id: str, metrics: list, params: list, tags: list) -> None:
    """log_batch within MLflow's limits (1000 metrics, 100 params, 100 tags a call)."""
    for i in range(0, max(len(metrics), 1), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000], params=params if i == 0 else [],
                         tags=tags if i == 0 else [])  # fmt: skip


def export_sweep(sweep_dir: str | Path, tracking_uri: str, experiment: str | None = None) -> dict:
    """Export every trial of ``sweep_dir``; returns the runs created, updated and
    unchanged, and the experiment's id."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise RuntimeError('MLflow export needs the mlflow extra: pip install "fno-scaling[mlflow]"') from err
    from tqdm import tqdm

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # not two lines per run
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    sweep_dir = location(sweep_dir)
    df = read_table(sweep_dir)
    evaluations = read_evaluations_table(sweep_dir)
    by_key = {k: g.to_dict("records") for k, g in evaluations.groupby("key")} if not evaluations.empty else {}
    sweep = str(df["sweep"].iloc[0]) if len(df) else sweep_dir.name
    client = MlflowClient(tracking_uri=tracking_uri)
    name = experiment or sweep
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
    existing = _existing_runs(client, experiment_id)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "experiment_id": experiment_id}
    timestamp = int(time.time() * 1000)
    for row in tqdm(_records(df), desc="MLflow export", unit="trial", disable=None):
        evals = sorted(by_key.get(row["key"], []), key=lambda e: (e["resolution"], e["metric"]))
        digest = _digest(row, evals)
        run = existing.get(row["key"])
        if run is not None and run.data.tags.get("fno.row_digest") == digest:
            counts["unchanged"] += 1
            continue
        if run is None:
            run_id = client.create_run(experiment_id, run_name=run_name(row)).info.run_id
            counts["created"] += 1
        else:
            run_id = run.info.run_id
            counts["updated"] += 1
        _log(client, run_id, *_batch(row, evals, sweep, digest, timestamp))
        client.set_terminated(run_id, RUN_STATUS.get(row["status"], "FAILED"))
    return counts


def _records(df: pd.DataFrame) -> list[dict]:
    """Rows as plain Python values (lists for the validation curve, None for missing)."""
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    for row in records:
        for column in ("eval_steps", "eval_val_rel_l2"):
            value = row.get(column)
            row[column] = None if value is None else [v for v in value]
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep's folder, <out>/<sweep> (holds results/)")
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking server or store (default: $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: the sweep's name)")
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        print(f"{parser.prog}: error: --tracking-uri is required (or set MLFLOW_TRACKING_URI)", file=sys.stderr)
        return 2
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # export_sweep says which extra to install
        MlflowException = RuntimeError
    try:
        check_tracking_server(args.tracking_uri)
        counts = export_sweep(args.sweep_dir, args.tracking_uri, args.experiment)
    except (ValueError, FileNotFoundError, RuntimeError, ConnectionError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except (MlflowException, OSError) as err:  # the server went away or refused a request mid-export
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        print(f"{parser.prog}: error: MLflow at {args.tracking_uri}: {first}", file=sys.stderr)
        return 2
    experiment_id = counts.pop("experiment_id")
    listed = ", ".join(f"{v} runs {k}" for k, v in counts.items())
    print(f"MLflow {args.tracking_uri}, experiment {experiment_id}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
