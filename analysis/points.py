"""A sweep's results table -> the points of its learning curves.

A *point* is one (family, shift, pretrain_family, architecture, mode, N). Its learning
rate is the one with the lowest mean validation error over seeds (never the test
error); its value is that rate's mean test error. A rate that lost seeds at a point
(failed, diverged or stopped) is not judged on its survivors: where another rate has
every seed ``ok``, it is excluded, and the point says how many were. A *curve* is a
point's keys without N; a model size is its architecture (SIZE_KEYS), never its
parameter count, which depends on the input layout (a mixture-pretrained model reads
the union layout and has a larger lifting layer).

Rows of one point and learning rate must come from one study: rows that differ in a
column the study's preset fixes (STUDY_COLUMNS, BUDGET_COLUMNS: 3 and 6 epochs, say) are
refused (``check_one_study``), not pooled as seeds; one study per sweep folder.

Each point also carries its *selection table* (the validation and test errors of every
eligible rate at every seed, seeds aligned), so that the bootstrap can resample seeds
and choose the rate again in every replicate (``fno_analysis.fit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fno.storage import Location, location
from fno.vocabulary import DOWNSTREAM_MODES, FITTED_MODES, SHIFTS

REQUIRED_COLUMNS = (
    "family",
    "shift",
    "pretrain_family",
    "mode",
    "width",
    "modes",
    "layers",
    "n_params",
    "n_train",
    "lr",
    "seed",
    "status",
    "val_rel_l2",
    "test_rel_l2",
)
SIZE_KEYS = ["width", "modes", "layers"]
CURVE_KEYS = ["family", "shift", "pretrain_family", *SIZE_KEYS, "mode", "finetune_strategy"]
POINT_KEYS = [*CURVE_KEYS, "n_train"]
# Recorded columns a study's preset fixes at every point (fno_sweeps.manifest): rows of one
# point and learning rate that differ in one were run by two studies (3 and 6 epochs, two
# resolutions, two pre-training recipes through pretrained_key), which select_points would
# pool as seeds. epochs and steps are what a trial ran (a diverged, failed or stopped one
# ran fewer), so they are compared among ok rows only; at one N they are fixed by the budget.
STUDY_COLUMNS = ("resolution", "param_lo", "param_hi", "weight_decay", "batch_size", "pretrained_key")
BUDGET_COLUMNS = ("epochs", "steps")


def ordered_shifts(values) -> list[str]:
    """The distinct shifts among ``values``: none, moderate, large first, then others by name."""
    values = set(values)
    return [s for s in SHIFTS if s in values] + sorted(values - set(SHIFTS))


def with_study_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the columns later tables added, as older tables mean them: data_seed 0,
    and finetune_strategy "full" for fine-tune rows ("" for the other modes)."""
    return df.assign(data_seed=df.get("data_seed", 0), finetune_strategy=finetune_strategies(df))


def finetune_strategies(rows: pd.DataFrame) -> pd.Series:
    """Each row's fine-tuning strategy: "full" for fine-tune rows of tables from before
    strategies existed, "" for the other modes."""
    given = rows["finetune_strategy"] if "finetune_strategy" in rows else pd.Series("", index=rows.index)
    given = given.fillna("").astype(str)
    return given.where((rows["mode"] != "finetune") | (given != ""), "full").where(rows["mode"] == "finetune", "")


def check_columns(df: pd.DataFrame, required: Sequence[str] = REQUIRED_COLUMNS) -> None:
    """Raise ValueError naming the missing columns of a results table."""
    required = list(dict.fromkeys(required))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"results table lacks required columns {missing}; this needs {', '.join(required)} "
            "(a sweep's table, fno.results.SCHEMA, has them all)"
        )


def read_table(path: str | Path | Location) -> pd.DataFrame:
    """A results table from a sweep folder (``<out>/<sweep>``, local or an object-store
    URI), its ``results`` folder or a Parquet file."""
    from fno.results import read_results

    path = location(path)
    if (path / "results").is_dir():
        path = path / "results"
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}: pass a sweep folder <out>/<sweep> or its results folder")
    if path.is_dir():
        return read_results(path).to_pandas()
    with path.open_input() as fh:
        return pd.read_parquet(fh)


def select_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point; see the module docstring.

    Columns: POINT_KEYS, n_params (of the model as trained), lr, val_rel_l2 and
    test_rel_l2 (means over seeds), test_std (0 with one seed), n_seeds, seed_errors
    (the chosen rate's per-seed test errors), seed_data_seeds (the data seed of each),
    mean_field_rel_l2 (the trivial mean-field predictor's test error; NaN if unrecorded),
    lr_min, lr_max, n_lrs (the rates tried, whatever their status), n_lrs_excluded (rates left out for lost seeds) and
    selection (dict of ``lrs``, ``val`` and ``test``, the latter two (rates, seeds)
    arrays, or None with fewer than two seeds). Zero-shot rows have no validation error
    and one rate; they are kept as they are. Budget probes (stage ``probe``) are checks,
    not points.
    """
    check_columns(df)
    rows = df[df["mode"].isin(DOWNSTREAM_MODES)]
    if "stage" in rows:
        rows = rows[rows["stage"] != "probe"]
    rows = with_study_columns(rows)
    check_one_study(rows)  # two studies' rows at one point would be pooled as seeds
    if "mean_field_rel_l2" not in rows:  # tables from before the trivial predictor was measured
        rows = rows.assign(mean_field_rel_l2=np.nan)
    rows = rows.assign(replicate=list(zip(rows["data_seed"], rows["seed"], strict=True)))
    grid = (
        rows.groupby(POINT_KEYS, dropna=False, sort=False)
        .agg(lr_min=("lr", "min"), lr_max=("lr", "max"), n_lrs=("lr", "nunique"))
        .reset_index()
    )
    # A rate is complete at a point when every one of its trials there is ok.
    complete = (
        rows.assign(bad=rows["status"] != "ok")
        .groupby([*POINT_KEYS, "lr"], dropna=False, sort=False)["bad"]
        .sum()
        .eq(0)
        .rename("complete")
        .reset_index()
    )
    ok = rows[rows["status"] == "ok"]
    per_lr = (
        ok.groupby([*POINT_KEYS, "lr"], dropna=False, sort=False)
        .agg(
            n_params=("n_params", "max"),
            val_rel_l2=("val_rel_l2", "mean"),
            test_rel_l2=("test_rel_l2", "mean"),
            test_std=("test_rel_l2", "std"),
            n_seeds=("replicate", "nunique"),
            seed_errors=("test_rel_l2", tuple),
            seed_data_seeds=("data_seed", tuple),  # aligned with seed_errors
            mean_field_rel_l2=("mean_field_rel_l2", "mean"),
        )
        .reset_index()
        .merge(complete, on=[*POINT_KEYS, "lr"], how="left")
    )
    per_lr["test_std"] = per_lr["test_std"].fillna(0.0)
    any_complete = per_lr.groupby(POINT_KEYS, dropna=False, sort=False)["complete"].transform("any")
    eligible = per_lr[per_lr["complete"] | ~any_complete]
    excluded = (
        per_lr.assign(out=~(per_lr["complete"] | ~any_complete))
        .groupby(POINT_KEYS, dropna=False, sort=False)["out"]
        .sum()
        .rename("n_lrs_excluded")
        .reset_index()
    )
    # Lowest validation error first (NaN, i.e. zero-shot, last), ties by learning rate.
    ranked = eligible.sort_values(["val_rel_l2", "lr"], na_position="last", kind="stable")
    points = ranked.groupby(POINT_KEYS, dropna=False, sort=False).head(1).drop(columns="complete")
    points = points.merge(grid, on=POINT_KEYS, how="left").merge(excluded, on=POINT_KEYS, how="left")
    points = points.sort_values(POINT_KEYS, kind="stable").reset_index(drop=True)
    points["selection"] = _selection_tables(ok, eligible[[*POINT_KEYS, "lr"]], points)
    return points


def check_one_study(rows: pd.DataFrame) -> None:
    """Raise ValueError where rows of one point and learning rate differ in a recorded column
    that a study fixes (STUDY_COLUMNS; BUDGET_COLUMNS among ok rows), naming the column, its
    values and the point. A column the table lacks (an older table) is not checked; nor are
    searches (stage ``hpo``), whose trials vary the recipe by design."""
    if "stage" in rows:
        rows = rows[rows["stage"] != "hpo"]
    point_ids = rows.groupby([*POINT_KEYS, "lr"], dropna=False, sort=False).ngroup()
    for column in (*STUDY_COLUMNS, *BUDGET_COLUMNS):
        if column not in rows:
            continue
        compared = rows["status"] == "ok" if column in BUDGET_COLUMNS else pd.Series(True, index=rows.index)
        counts = rows.loc[compared, column].groupby(point_ids[compared]).nunique(dropna=False)
        if (counts > 1).any():
            group = rows[compared & (point_ids == counts.index[counts > 1][0])]
            values = ", ".join(map(str, pd.unique(group[column])))
            point = ", ".join(f"{k} {group[k].iloc[0]}" for k in [*POINT_KEYS, "lr"] if group[k].iloc[0] != "")
            raise ValueError(
                f"the results table holds two studies: at one point ({point}) its rows differ in {column} "
                f"({values}), and their errors would be pooled as seeds of that point. Split the folder: one "
                "study per folder (fno-sweep --sweep NAME runs a study in a folder of its own)"
            )


def _selection_tables(ok: pd.DataFrame, eligible: pd.DataFrame, points: pd.DataFrame) -> list:
    """Per point: {lrs, val, test, unit, labels} over the eligible rates and the
    replicates every one of them has.

    The replicate unit is the data seed where the table has several (each a whole
    curve: its own training, validation and test sets, seeds averaged within it), else
    the training seed. ``labels`` names the columns, so that the bootstrap can draw the
    same units at every N of a curve.
    """
    trained = ok[ok["mode"].isin(FITTED_MODES)].merge(eligible, on=[*POINT_KEYS, "lr"], how="inner")
    if trained.empty:
        return [None] * len(points)
    unit = "data_seed" if trained["data_seed"].nunique() > 1 else "seed"
    # One pivot for the whole table: rows (point, lr), columns units; then a slice per point.
    wide = trained.pivot_table(
        index=[*POINT_KEYS, "lr"], columns=unit, values=["val_rel_l2", "test_rel_l2"], aggfunc="mean", dropna=False
    )
    val_all, test_all = wide["val_rel_l2"].to_numpy(float), wide["test_rel_l2"].to_numpy(float)
    labels_all = np.asarray(wide["val_rel_l2"].columns)
    index = wide.index.to_frame(index=False)
    tables: dict[tuple, dict] = {}
    for keys, rows in index.groupby(POINT_KEYS, dropna=False, sort=False).indices.items():  # one entry per point
        val, test = val_all[rows], test_all[rows]
        shared = np.isfinite(val).all(axis=0) & np.isfinite(test).all(axis=0)
        if shared.sum() < 2:
            continue
        lrs = tuple(index["lr"].to_numpy()[rows])
        tables[keys if isinstance(keys, tuple) else (keys,)] = {
            "lrs": lrs,
            "val": val[:, shared],
            "test": test[:, shared],
            "unit": unit.replace("_", " "),
            "labels": tuple(int(v) for v in labels_all[shared]),
        }
    return [tables.get(tuple(row)) for row in points[POINT_KEYS].itertuples(index=False)]
