"""The results table: one typed schema, one Parquet file per finished trial.

The table of a sweep is the folder ``<out>/<sweep>/results/``: every finished trial
is written there as ``<key>.parquet`` (one row, atomic: temp file + rename), so a
crash never loses a finished row, a re-run never duplicates one (same key, same
file), and the folder reads as one dataset with ``pandas.read_parquet(folder)``.
This schema is the contract between the sweeps and the analysis.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

STATUSES = ("ok", "diverged", "failed")
STAGES = ("pretrain", "downstream", "hpo")

SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # hash of the fields that define the experiment
        ("sweep", pa.string()),
        ("stage", pa.string()),  # pretrain | downstream | hpo
        ("family", pa.string()),
        ("shift", pa.string()),  # none | moderate | large | pretrain
        ("param_lo", pa.float64()),  # NaN for the mixture
        ("param_hi", pa.float64()),
        ("mode", pa.string()),  # pretrain | scratch | finetune | zeroshot
        ("width", pa.int64()),
        ("modes", pa.int64()),
        ("layers", pa.int64()),
        ("n_params", pa.int64()),
        ("flops_per_sample", pa.float64()),  # forward FLOPs per sample at `resolution`
        ("n_train", pa.int64()),
        ("resolution", pa.int64()),
        ("lr", pa.float64()),
        ("epochs", pa.float64()),
        ("steps", pa.int64()),
        ("batch_size", pa.int64()),
        ("seed", pa.int64()),
        ("pretrained_key", pa.string()),  # "" where the trial starts from a random init
        ("pretrain_family", pa.string()),  # "" likewise
        ("val_rel_l2", pa.float64()),  # best validation error
        ("test_rel_l2", pa.float64()),  # test error of the best-validation checkpoint
        ("train_loss", pa.float64()),
        ("status", pa.string()),  # ok | diverged | failed
        ("error", pa.string()),
        ("wall_s", pa.float64()),
        ("train_s", pa.float64()),
        ("samples_per_s", pa.float64()),
        ("device", pa.string()),
        ("node", pa.string()),
        ("started_at", pa.string()),
        ("code_version", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def _check_row(row: Mapping[str, Any]) -> dict[str, Any]:
    missing = [c for c in COLUMNS if c not in row]
    extra = sorted(set(row) - set(COLUMNS))
    if missing or extra:
        raise ValueError(f"result row does not fit the schema: missing {missing}, unknown {extra}")
    if row["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {row['status']!r}")
    if row["stage"] not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {row['stage']!r}")
    return {c: row[c] for c in COLUMNS}


def write_row(results_dir: str | os.PathLike, row: Mapping[str, Any]) -> Path:
    """Write one trial's row as ``<key>.parquet``, atomically; return its path."""
    checked = _check_row(row)
    directory = Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([checked], schema=SCHEMA)
    path = directory / f"{checked['key']}.parquet"
    tmp = directory / f".{checked['key']}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_results(results_dir: str | os.PathLike) -> pa.Table:
    """All rows under ``results_dir`` as one table of SCHEMA (empty if there are none).

    A file that is not a readable row of this schema is an error naming the file
    (move it aside to go on); temp files of interrupted writes are ignored.
    """
    directory = Path(results_dir)
    tables = []
    for path in sorted(directory.glob("*.parquet")) if directory.exists() else []:
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"results file {path} is corrupt ({err}); move it aside and re-run") from err
        if set(table.schema.names) != set(COLUMNS):
            raise ValueError(f"results file {path} does not have the results schema (columns {table.schema.names})")
        tables.append(table.select(list(COLUMNS)).cast(SCHEMA))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def statuses(results_dir: str | os.PathLike) -> dict[str, str]:
    """key -> status of every row under ``results_dir``."""
    table = read_results(results_dir)
    return dict(zip(table.column("key").to_pylist(), table.column("status").to_pylist(), strict=True))


def skip_keys(status: Mapping[str, str], include_failed: bool = True) -> set[str]:
    """Keys a run skips: those with a row (failed ones too, unless ``include_failed`` is False)."""
    return {k for k, s in status.items() if include_failed or s != "failed"}


def finished_keys(results_dir: str | os.PathLike, include_failed: bool = True) -> set[str]:
    """Keys with a row (optionally leaving out failed ones, so they are run again)."""
    return skip_keys(statuses(results_dir), include_failed)
