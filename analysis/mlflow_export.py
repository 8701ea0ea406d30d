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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
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


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def run_name(row: dict) -> str:
    """A readable name: mode-family-shift-wWmM-N-lr-seed-key6, as the sweep's trial names."""
    if row["mode"] == "pretrain":
        return f"pretrain-{row['family']}-w{row['width']}m{row['modes']}-{row['key'][:6]}"
    mode = row["mode"] if row["finetune_strategy"] in ("", "full") else f"{row['mode']}[{row['finetune_strategy']}]"
    return (f"{mode}-{row['family']}-{row['shift']}-w{row['width']}m{row['modes']}-N{row['n_train']}-lr{row['lr']:g}-"
            f"s{row['seed']}-{row['key'][:6]}")  # fmt: skip


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
        print("error: --tracking-uri is required (or set MLFLOW_TRACKING_URI)", file=sys.stderr)
        return 2
    try:
        counts = export_sweep(args.sweep_dir, args.tracking_uri, args.experiment)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    experiment_id = counts.pop("experiment_id")
    listed = ", ".join(f"{v} runs {k}" for k, v in counts.items())
    print(f"MLflow {args.tracking_uri}, experiment {experiment_id}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
