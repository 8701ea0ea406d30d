"""The results table: one typed schema, one Parquet file per finished trial.

The table of a sweep is the folder ``<out>/<sweep>/results/`` (a local folder or an
object-store prefix: ``fno.storage``): every finished trial
is written there as ``<key>.parquet`` (one row, atomic: temp file + rename), so a
crash never loses a finished row and a re-run never duplicates one (same key, same
file). ``compact`` merges those files into one ``part-<ns>.parquet`` (written before
the merged files are removed), because opening 100,000 one-row files took over a
minute; a sweep compacts after every batch. ``read_results`` reads both kinds and
keeps one row per key: a one-row file over a part, a newer part over an older one.
This schema is the contract between the sweeps and the analysis.

Beside it, ``<out>/<sweep>/evaluations/`` holds the evaluations table
(EVALUATION_SCHEMA): a trial's test metrics at every test resolution, several rows
per key, stored the same way (one ``<key>.parquet`` per trial, written just before
its results row, so a row never lacks its evaluations; parts after compaction).
Rows of a key come from one file only, the latest, as for the results.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fno.storage import Location, location
from fno.vocabulary import STATUSES

STAGES = ("pretrain", "downstream", "hpo", "probe")  # probe: a downstream trial again at twice its budget

SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # hash of the fields that define the experiment
        ("sweep", pa.string()),
        ("stage", pa.string()),  # pretrain | downstream | hpo | probe
        ("family", pa.string()),
        ("shift", pa.string()),  # none | moderate | large | pretrain
        ("param_lo", pa.float64()),  # NaN for the mixture
        ("param_hi", pa.float64()),
        ("mode", pa.string()),  # pretrain | scratch | finetune | zeroshot
        ("width", pa.int64()),
        ("modes", pa.int64()),
        ("layers", pa.int64()),
        ("n_params", pa.int64()),
        ("n_trainable", pa.int64()),  # parameters trained (a fine-tuning strategy's); -1 in older tables
        ("finetune_strategy", pa.string()),  # "" except for fine-tune trials
        ("flops_per_sample", pa.float64()),  # forward FLOPs per sample at `resolution`
        ("n_train", pa.int64()),
        ("resolution", pa.int64()),
        ("lr", pa.float64()),
        ("weight_decay", pa.float64()),
        ("epochs", pa.float64()),
        ("steps", pa.int64()),
        ("batch_size", pa.int64()),
        ("seed", pa.int64()),
        ("data_seed", pa.int64()),  # which data (train, validation and test sets) the trial used
        ("pretrained_key", pa.string()),  # "" where the trial starts from a random init
        ("pretrain_family", pa.string()),  # "" likewise
        # A user's dataset as the family (fno.data.external): the SHA-256 of its files (a changed
        # file is other data, never pooled with the old), and how its val and test sets were
        # made; "" for a built-in family.
        ("dataset_digest", pa.string()),
        ("split_rule", pa.string()),
        ("grid_h", pa.int64()),  # the training grid: points along x (axis -2) and y; 0 in older tables
        ("grid_w", pa.int64()),  # (there: resolution x resolution)
        ("padding", pa.float64()),  # the model's domain padding, a fraction of each axis
        ("coords", pa.bool_()),  # the model read x and y as two more input channels
        ("adapted_layers", pa.string()),  # replaced to fit the data's channels: lift, projection, both or ""
        ("val_rel_l2", pa.float64()),  # best validation error
        ("test_rel_l2", pa.float64()),  # test error of the best-validation checkpoint
        ("mean_field_rel_l2", pa.float64()),  # test error of predicting the training targets' mean; NaN if none
        ("train_loss", pa.float64()),
        ("best_step", pa.int64()),  # step of the best validation error (its checkpoint is the one tested)
        ("eval_steps", pa.list_(pa.int64())),  # the validation curve: steps evaluated ...
        ("eval_val_rel_l2", pa.list_(pa.float64())),  # ... and the error after each
        ("status", pa.string()),  # ok | diverged | failed | stopped
        ("error", pa.string()),
        # Why a failed row failed (FAILURES); "" for a row that did not fail. Re-running the
        # sweep runs RETRIED_FAILURES again; the others only with --retry-failed.
        ("failure", pa.string()),
        ("resumed_step", pa.int64()),  # the step the trial resumed from after a lost worker; 0 if it never did
        ("wall_s", pa.float64()),
        ("train_s", pa.float64()),
        ("samples_per_s", pa.float64()),
        ("device", pa.string()),
        ("gpu_name", pa.string()),  # the GPU's name; "" on CPU
        ("gpu_share", pa.float64()),  # the share of it the trial was capped at; 0 on CPU
        ("bf16", pa.bool_()),  # bf16 autocast on (precision flags change the numbers)
        ("tf32", pa.bool_()),  # TF32 matmuls on
        ("node", pa.string()),
        ("started_at", pa.string()),
        ("code_version", pa.string()),  # package version + source digest (fno.provenance)
        ("source_digest", pa.string()),  # digest of the code that ran the trial; "" in older tables
        ("git_commit", pa.string()),  # the driver's checkout commit ("-dirty" if changed); "" from a wheel
        ("torch_version", pa.string()),
        ("cuda_version", pa.string()),  # CUDA torch was built with; "" for a CPU build
        ("ray_version", pa.string()),  # the driver's Ray; "" outside a sweep
    ]
)
COLUMNS = tuple(SCHEMA.names)
# One row per (trial, test resolution, metric); metric names: fno.metrics.EVAL_METRICS.
EVALUATION_SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # the trial's key in the results table
        ("resolution", pa.int64()),  # grid points per axis of the test set
        ("metric", pa.string()),  # rel_l2 | rel_l2_low | rel_l2_mid | rel_l2_high | rel_l2_p50 | rel_l2_p90
        ("value", pa.float64()),
    ]
)
# Columns added after the first tables were written, with the value older rows read as,
# so that every table this code wrote stays readable.
ADDED_COLUMNS: dict[str, Any] = {
    "n_trainable": -1,
    "finetune_strategy": "",
    "data_seed": 0,
    "gpu_name": "",
    "gpu_share": 0.0,
    "bf16": False,
    "tf32": False,
    "best_step": -1,
    "eval_steps": [],
    "eval_val_rel_l2": [],
    "mean_field_rel_l2": float("nan"),
    "source_digest": "",
    "git_commit": "",
    "torch_version": "",
    "cuda_version": "",
    "ray_version": "",
    "failure": "",
    "resumed_step": 0,
    "dataset_digest": "",
    "split_rule": "",
    "grid_h": 0,
    "grid_w": 0,
    "padding": 0.0,
    "coords": False,
    "adapted_layers": "",
}
# Why a trial failed, as its row's ``failure`` says:
# - infrastructure: its worker or node died (preemption, a lost node, a killed actor) more
#   often than the retries allowed, or the trial ended without a result;
# - out of memory: the device (or the node) ran out of memory;
# - timeout: it ran past its time limit (--trial-timeout);
# - dependency: the pre-training it fine-tunes or evaluates did not produce a checkpoint;
# - error: it raised (a bug, a bad input): the same again on a re-run.
# (A non-finite loss is not a failure: such a row has status "diverged".)
FAILURES = ("infrastructure", "out of memory", "timeout", "dependency", "error")
# Run again by a plain re-run of the sweep: causes outside the trial. A dependency
# failure is run again too: its pre-training is, and if that fails again so does it.
RETRIED_FAILURES = ("infrastructure", "timeout", "dependency")


def _check_row(row: Mapping[str, Any]) -> dict[str, Any]:
    missing = [c for c in COLUMNS if c not in row]
    extra = sorted(set(row) - set(COLUMNS))
    if missing or extra:
        raise ValueError(f"result row does not fit the schema: missing {missing}, unknown {extra}")
    if row["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {row['status']!r}")
    if row["failure"] not in ("", None, *FAILURES):
        raise ValueError(f"failure must be one of {', '.join(FAILURES)} or empty; got {row['failure']!r}")
    if row["stage"] not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {row['stage']!r}")
    return {c: row[c] for c in COLUMNS}


def write_row(results_dir: str | os.PathLike | Location, row: Mapping[str, Any]) -> Location:
    """Write one trial's row as ``<key>.parquet``, atomically; return its path."""
    checked = _check_row(row)
    table = pa.Table.from_pylist([checked], schema=SCHEMA)
    return _write_table(location(results_dir), checked["key"], table)


def write_evaluations(
    evaluations_dir: str | os.PathLike | Location, key: str, rows: list[Mapping[str, Any]]
) -> Location | None:
    """Write one trial's evaluation rows ({resolution, metric, value}) as ``<key>.parquet``,
    atomically (before its results row); None if there are none."""
    if not rows:
        return None
    for row in rows:
        if set(row) != {"resolution", "metric", "value"}:
            raise ValueError(f"an evaluation row has the fields resolution, metric and value; got {sorted(row)}")
    table = pa.Table.from_pylist([{"key": key, **row} for row in rows], schema=EVALUATION_SCHEMA)
    return _write_table(location(evaluations_dir), key, table)


def _write_table(directory: Location, key: str, table: pa.Table) -> Location:
    path = directory / f"{key}.parquet"
    path.write(lambda fh: pq.write_table(table, fh))
    return path


PART_PREFIX = "part-"  # compacted files: part-<time in ns>.parquet, so names sort by age


def _read_file(path: Location, schema: pa.Schema = SCHEMA) -> pa.Table:
    kind = "results" if schema is SCHEMA else "evaluations"
    try:
        with path.open_input() as fh:
            table = pq.read_table(fh)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{kind} file {path} is corrupt ({err}); move it aside and re-run") from err
    names, columns = set(table.schema.names), tuple(schema.names)
    added = ADDED_COLUMNS if schema is SCHEMA else {}
    missing = [c for c in columns if c not in names]
    if set(missing) - set(added) or names - set(columns):
        raise ValueError(f"{kind} file {path} does not have the {kind} schema (columns {table.schema.names})")
    for name in missing:  # an older table: the column's default
        column = pa.array([added[name]] * table.num_rows, schema.field(name).type)
        table = table.append_column(name, column)
    return table.select(list(columns)).cast(schema)


def _result_files(directory: Location) -> list[Location]:
    """Parquet files in precedence order: parts oldest first, then one-row files."""
    files = directory.files(".parquet")
    parts = [p for p in files if p.name.startswith(PART_PREFIX)]
    return parts + [p for p in files if not p.name.startswith(PART_PREFIX)]


def _latest_per_key(tables: list[pa.Table]) -> pa.Table:
    """Concatenate; where a key is in several tables, keep its rows of the last one."""
    if len(tables) < 2:
        return tables[0]
    source = [pa.array([i] * t.num_rows, pa.int64()) for i, t in enumerate(tables)]
    table = pa.concat_tables(tables)
    origin = pa.chunked_array(source)
    latest = table.select(["key"]).append_column("origin", origin).group_by("key").aggregate([("origin", "max")])
    # Each row's key's latest table, matched back row by row through a join on key.
    keyed = pa.table({"key": table.column("key"), "row": pa.array(range(table.num_rows), pa.int64())})
    keyed = keyed.join(latest, "key").sort_by("row")
    return table.filter(pc.equal(origin, keyed.column("origin_max")))


READ_ATTEMPTS = 5  # listings tried when files vanish mid-read (another process compacting)


def _read_table(directory: str | os.PathLike | Location, schema: pa.Schema) -> pa.Table:
    """Every file's rows, each key's from its latest file. A file that vanishes between
    listing and reading was merged into a newer part by a compaction (which writes the
    part before it deletes): the folder is listed and read again."""
    for _ in range(READ_ATTEMPTS):
        try:
            tables = [_read_file(path, schema) for path in _result_files(location(directory))]
        except FileNotFoundError:
            continue
        return _latest_per_key(tables) if tables else schema.empty_table()
    raise RuntimeError(f"{directory}: files kept vanishing while reading ({READ_ATTEMPTS} tries); is a compaction "
                       "looping? Try again when the sweep is idle")  # fmt: skip


def read_results(results_dir: str | os.PathLike | Location) -> pa.Table:
    """All rows under ``results_dir`` as one table of SCHEMA, one row per key (empty if none).

    A file that is not a readable table of this schema is an error naming the file
    (move it aside to go on); temp files of interrupted writes are ignored.
    """
    return _read_table(results_dir, SCHEMA)


def read_evaluations(evaluations_dir: str | os.PathLike | Location) -> pa.Table:
    """All evaluation rows under ``evaluations_dir`` (EVALUATION_SCHEMA; empty if none),
    each key's from its latest file; errors as ``read_results``."""
    return _read_table(evaluations_dir, EVALUATION_SCHEMA)


def compact(directory: str | os.PathLike | Location, schema: pa.Schema = SCHEMA) -> int:
    """Merge every file of a results (or, with EVALUATION_SCHEMA, evaluations) folder into
    one new part file; return the rows it holds.

    Safe against crashes (the part is complete on disk before any file it replaces is
    removed; a leftover duplicate is resolved by ``read_results``) and against rows
    written meanwhile (only the files read are removed). Does nothing with fewer than
    two files, or if a file vanished while reading (another process compacting).
    """
    directory = location(directory)
    files = _result_files(directory)
    if len(files) < 2:
        return 0
    try:
        table = _latest_per_key([_read_file(path, schema) for path in files])
    except FileNotFoundError:
        return 0
    (directory / f"{PART_PREFIX}{time.time_ns()}.parquet").write(lambda fh: pq.write_table(table, fh))
    for path in files:
        path.delete()
    return table.num_rows


def statuses(results_dir: str | os.PathLike | Location) -> dict[str, str]:
    """key -> status of every row under ``results_dir``; a failed row whose failure is
    one of RETRIED_FAILURES reads "failed, retried"."""
    table = read_results(results_dir)
    keys, status, failure = (table.column(c).to_pylist() for c in ("key", "status", "failure"))
    return {
        k: "failed, retried" if s == "failed" and f in RETRIED_FAILURES else s
        for k, s, f in zip(keys, status, failure, strict=True)
    }


def skip_keys(status: Mapping[str, str], include_failed: bool = True) -> set[str]:
    """Keys a run skips: those with a row, except failures a re-run retries (infrastructure,
    timeout, dependency); with ``include_failed`` False, no failed row is skipped."""
    return {k for k, s in status.items() if s != "failed, retried" and (include_failed or s != "failed")}


def finished_keys(results_dir: str | os.PathLike | Location, include_failed: bool = True) -> set[str]:
    """Keys a run skips (``skip_keys``): failed ones are run again unless ``include_failed``,
    and those whose failure a re-run retries always are."""
    return skip_keys(statuses(results_dir), include_failed)
