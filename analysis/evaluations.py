"""A sweep's evaluations table -> per-point test metrics at every test resolution.

The evaluations table (``fno.results.EVALUATION_SCHEMA``) holds, per trial, its test
metrics (fno.metrics.EVAL_METRICS) at every test resolution. Here they are joined to
the points of the learning curves (``fno_analysis.points.select_points``): a point's
value of a metric at a resolution is the mean over its replicates (data seed, seed) of
the trials at the learning rate chosen by validation, so that it is the same trial set
as the point's test error. Trials without evaluations (tables from before them, or run
before the resolution was added) are counted, not guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fno.storage import Location, location
from fno.vocabulary import DOWNSTREAM_MODES
from fno_analysis.fit import mean_interval
from fno_analysis.points import POINT_KEYS, with_study_columns

EVALUATION_COLUMNS = ["key", "resolution", "metric", "value"]
BAND_METRICS = ("rel_l2_low", "rel_l2_mid", "rel_l2_high")


def read_evaluations_table(path: str | Path | Location) -> pd.DataFrame:
    """The evaluations of a sweep folder (``<out>/<sweep>``); empty if it has none."""
    from fno.results import read_evaluations

    folder = location(path) / "evaluations"
    if not folder.is_dir():
        return pd.DataFrame(columns=EVALUATION_COLUMNS)
    return read_evaluations(folder).to_pandas()


def evaluation_points(df: pd.DataFrame, evaluations: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, resolution, metric).

    Columns: POINT_KEYS, train_resolution, resolution, metric, value (mean over
    replicates), lo, hi (95% t interval; NaN with one replicate), n (replicates),
    replicates (tuple of (data_seed, seed)) and values (aligned with them).
    """
    columns = [*POINT_KEYS, "train_resolution", "resolution", "metric", "value", "lo", "hi", "n"]
    if evaluations.empty or points.empty or "key" not in df:
        return pd.DataFrame(columns=[*columns, "replicates", "values"])
    rows = df[(df["status"] == "ok") & df["mode"].isin(DOWNSTREAM_MODES)]
    if "stage" in rows:
        rows = rows[rows["stage"] != "probe"]
    rows = with_study_columns(rows).rename(columns={"resolution": "train_resolution"})
    chosen = rows.merge(points[[*POINT_KEYS, "lr"]], on=[*POINT_KEYS, "lr"], how="inner")
    keep = [*POINT_KEYS, "train_resolution", "key", "data_seed", "seed"]
    joined = chosen[keep].merge(evaluations[EVALUATION_COLUMNS], on="key", how="inner")
    if joined.empty:
        return pd.DataFrame(columns=[*columns, "replicates", "values"])
    joined = joined.sort_values(["data_seed", "seed"], kind="stable")
    joined["replicate"] = list(zip(joined["data_seed"], joined["seed"], strict=True))
    grouped = (
        joined.groupby([*POINT_KEYS, "train_resolution", "resolution", "metric"], sort=True, dropna=False)
        .agg(replicates=("replicate", tuple), values=("value", tuple))
        .reset_index()
    )
    stats = np.array([mean_interval(v) for v in grouped["values"]]).reshape(-1, 3)
    grouped["value"], grouped["lo"], grouped["hi"] = stats[:, 0], stats[:, 1], stats[:, 2]
    grouped["n"] = grouped["values"].map(len)
    return grouped[[*columns, "replicates", "values"]]


def resolution_ratios(ev_points: pd.DataFrame, metric: str = "rel_l2") -> pd.DataFrame:
    """Per (point, test resolution other than the training one): the error there over the
    error at the training resolution, replicate by replicate (paired).

    Columns: POINT_KEYS, train_resolution, resolution, error_train, error (means),
    ratio (mean of the per-replicate ratios), ratio_lo, ratio_hi (95% t interval), n.
    """
    here = ev_points[ev_points["metric"] == metric]
    at_train = here[here["resolution"] == here["train_resolution"]].set_index(POINT_KEYS)
    rows = []
    for _, other in here[here["resolution"] != here["train_resolution"]].iterrows():
        key = tuple(other[k] for k in POINT_KEYS)
        if key not in at_train.index:
            continue
        base = at_train.loc[key]
        base = base.iloc[0] if isinstance(base, pd.DataFrame) else base
        paired = dict(zip(base["replicates"], base["values"], strict=True))
        ratios = [v / paired[r] for r, v in zip(other["replicates"], other["values"], strict=True) if r in paired]
        if not ratios:
            continue
        ratio, lo, hi = mean_interval(ratios)
        rows.append(
            {
                **{k: other[k] for k in POINT_KEYS},
                "train_resolution": int(other["train_resolution"]),
                "resolution": int(other["resolution"]),
                "error_train": float(base["value"]),
                "error": float(other["value"]),
                "ratio": ratio,
                "ratio_lo": lo,
                "ratio_hi": hi,
                "n": len(ratios),
            }
        )
    columns = [*POINT_KEYS, "train_resolution", "resolution", "error_train", "error", "ratio", "ratio_lo", "ratio_hi"]
    return pd.DataFrame(rows, columns=[*columns, "n"])


def coverage(df: pd.DataFrame, evaluations: pd.DataFrame) -> str | None:
    """A sentence on ok downstream trials that lack evaluations, or None if none do."""
    ok = df[(df["status"] == "ok") & df["mode"].isin(DOWNSTREAM_MODES)]
    if ok.empty:
        return None
    missing = ~ok["key"].isin(set(evaluations["key"]))
    if not missing.any():
        return None
    return (
        f"{int(missing.sum())} of {len(ok)} finished downstream trials have no evaluations (run before the "
        "evaluations table existed, or before eval_resolutions was set): resolution and band results leave them out"
    )
