"""The validation curve of every trial (the results table's ``eval_steps`` and
``eval_val_rel_l2``): one figure, a dropdown to pick the curve (family, shift, size, mode,
pre-training set), one colour per N, every learning rate and seed of that N drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fno_analysis.findings import mode_label
from fno_analysis.points import CURVE_KEYS, POINT_KEYS, with_study_columns

from .base import Report, Section
from .panels import LEGEND_RIGHT, size_colours

TRIAL_COLUMNS = ["key", "stage", *CURVE_KEYS, "n_train", "lr", "seed", "data_seed", "steps"]
MAX_POINTS = 60_000  # curve points drawn at most; beyond, only the trials of each point's chosen learning rate


def trial_curves(df: pd.DataFrame) -> pd.DataFrame:
    """The trials with a recorded validation curve: TRIAL_COLUMNS, eval_steps and
    eval_val_rel_l2 (as lists); empty where the table records none."""
    if not {"eval_steps", "eval_val_rel_l2", "steps"} <= set(df.columns):
        return pd.DataFrame(columns=[*TRIAL_COLUMNS, "eval_steps", "eval_val_rel_l2"])
    recorded = df["eval_steps"].map(lambda s: s is not None and not isinstance(s, float) and len(s) > 0)
    rows = with_study_columns(df[recorded & (df["status"] == "ok")])
    return rows[[*TRIAL_COLUMNS, "eval_steps", "eval_val_rel_l2"]].reset_index(drop=True)


def _label(curve: pd.Series) -> str:
    size = f"w{int(curve['width'])}-m{int(curve['modes'])}-l{int(curve['layers'])}"
    if curve["mode"] == "pretrain":
        return f"pre-training on {curve['family']}, {size}"
    source = f" from {curve['pretrain_family']}" if curve["pretrain_family"] else ""
    probe = " (budget probes)" if curve["stage"] == "probe" else ""
    mode = mode_label(curve["mode"], curve["finetune_strategy"])
    return f"{curve['family']} / {curve['shift']} / {size} / {mode}{source}{probe}"


def _chosen_only(trials: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """The pre-training trials, and the downstream trials of each point's chosen learning rate."""
    chosen = points[[*POINT_KEYS, "lr"]].drop_duplicates()
    downstream = trials[trials["stage"] != "pretrain"].merge(chosen, on=[*POINT_KEYS, "lr"])
    return pd.concat([trials[trials["stage"] == "pretrain"], downstream], ignore_index=True)


def figure(report: Report) -> tuple[str, str, object] | None:
    import plotly.graph_objects as go

    trials = report.trials
    if trials.empty:
        return None
    thinned = int(trials["eval_steps"].map(len).sum()) > MAX_POINTS and not report.points.empty
    if thinned:
        trials = _chosen_only(trials, report.points)
    keys = ["stage", *CURVE_KEYS]
    curves = trials[keys].drop_duplicates().sort_values(keys, key=lambda c: c.map(str)).reset_index(drop=True)
    fig = go.Figure()
    owner: list[int] = []  # the curve of each trace
    for index, curve in curves.iterrows():
        here = trials[(trials[keys] == curve[keys]).all(axis=1)]
        n_values = sorted(here["n_train"].unique())
        for colour, n in zip(size_colours(len(n_values)), n_values, strict=True):
            xs, ys, custom = [], [], []
            for _, trial in here[here["n_train"] == n].sort_values(["lr", "seed", "data_seed"]).iterrows():
                steps = np.asarray(trial["eval_steps"], dtype=int)
                xs += [*np.round(steps / max(float(trial["steps"]), 1.0), 4).tolist(), None]  # 4 digits: a small page
                ys += [float(f"{v:.4g}") for v in trial["eval_val_rel_l2"]] + [None]
                run = [float(trial["lr"]), int(trial["seed"]), int(trial["data_seed"])]
                custom += [[*run, int(s)] for s in steps] + [[None] * 4]
            name = "pre-training" if curve["mode"] == "pretrain" else f"N = {int(n)}"
            fig.add_trace(
                go.Scatter(
                    x=xs, y=ys, customdata=custom, mode="lines+markers", connectgaps=False,
                    line={"color": colour, "width": 1.2}, marker={"size": 4, "color": colour},
                    name=name, visible=index == 0,
                    meta={**{k: curve[k] for k in keys}, "n_train": int(n), "kind": "validation"},
                    hovertemplate=f"{name}<br>step %{{customdata[3]}} (%{{x:.0%}} of the budget): val error "
                    "%{y:.4g}<br>lr %{customdata[0]:g}, seed %{customdata[1]}, data seed %{customdata[2]}"
                    "<extra></extra>",
                )
            )  # fmt: skip
            owner.append(index)
    buttons = [
        {"label": _label(curve), "method": "update",
         "args": [{"visible": [o == index for o in owner]}, {"title.text": f"Validation curves: {_label(curve)}"}]}
        for index, curve in curves.iterrows()
    ]  # fmt: skip
    fig.update_layout(
        title={"text": f"Validation curves: {_label(curves.iloc[0])}", "y": 0.98, "yanchor": "top"},
        height=560,
        margin={"t": 130},
        legend=LEGEND_RIGHT,
        updatemenus=[{"buttons": buttons, "x": 0.0, "xanchor": "left", "y": 1.03, "yanchor": "bottom"}],
    )
    fig.update_xaxes(title_text="fraction of the trial's training budget", tickformat=".0%", range=[0, 1.02])
    fig.update_yaxes(type="log", minorloglabels="complete", title_text="validation relative L2 error")
    caption = (
        "Every trial's validation error at each evaluation, against the share of its training budget spent; pick "
        "the curve (family / shift / size / mode / pre-training set) in the menu. One colour per N; the lines of "
        "one colour are its learning rates and seeds (hover: which). A curve still falling at 100% means the "
        "budget, not the data, sets that point (the under-training and budget-probe checks)."
    )
    if thinned:
        caption += f" Over {MAX_POINTS:,} evaluations: only each point's chosen learning rate is drawn."
    return "Validation curves per trial", caption, fig


def section(report: Report) -> list[Section]:
    out = Section("validation", "Validation curves", "trust")
    drawn = figure(report)
    if drawn is not None:
        out.figures.append(drawn)
    return [out]
