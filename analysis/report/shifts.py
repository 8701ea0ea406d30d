"""Zero-shot and fine-tuned error by shift (claim 4): one panel per family at its largest
model size, and the zero-shot table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fno_analysis.points import SIZE_KEYS, ordered_shifts
from fno_analysis.verdicts import point_interval

from .base import MIXTURE_COLOUR, MODE_COLOURS, Report, Section, Table, largest_size_rows, pretrain_sets, size_label
from .panels import LEGEND_RIGHT

# (mode, which N) -> (label, dash); colours by pre-training set
LINES = {
    ("zeroshot", ""): ("zero-shot", "dash"),
    ("finetune", "min"): ("fine-tuned at the smallest N", "dot"),
    ("finetune", "max"): ("fine-tuned at the largest N", "solid"),
    ("scratch", "max"): ("scratch at the largest N", "solid"),
}


def _line(rows: pd.DataFrame, shifts: list[str], which: str) -> pd.DataFrame:
    """One row per shift: the point at the smallest or largest N (``which``; '' for zero-shot's one point)."""
    out = []
    for shift in shifts:
        at = rows[rows["shift"] == shift]
        if at.empty:
            continue
        n = at["n_train"].min() if which == "min" else at["n_train"].max()
        out.append(at[at["n_train"] == n].iloc[0])
    return pd.DataFrame(out)


def _intervals(line: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(above, below) error bars of each point's 95% interval (0 where it has none)."""
    above, below = [], []
    for _, p in line.iterrows():
        mean, lo, hi = point_interval(p["seed_errors"], p.get("seed_data_seeds"))
        above.append(0.0 if math.isnan(hi) else hi - mean)
        below.append(0.0 if math.isnan(lo) else mean - lo)
    return np.array(above), np.array(below)


def figure(report: Report) -> tuple[str, str, object] | None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    points = report.points
    paper = points[points["finetune_strategy"].isin(["", "full"])] if not points.empty else points
    if paper.empty or paper["shift"].nunique() < 2 or not (paper["mode"] == "zeroshot").any():
        return None
    families = sorted(paper.loc[paper["mode"] == "zeroshot", "family"].unique())
    shifts = ordered_shifts(paper["shift"])
    titles = []
    for family in families:
        _, size = largest_size_rows(paper, paper, family)
        titles.append(f"{family}, {size_label(*size)}")
    fig = make_subplots(rows=1, cols=len(families), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.05)
    legend = set()
    for col, family in enumerate(families, start=1):
        here, _ = largest_size_rows(paper, paper, family)
        for source in pretrain_sets(paper, family):
            mixture = source == "mixture"
            for (mode, which), (label, dash) in LINES.items():
                if mode == "scratch":
                    if mixture:
                        continue
                    rows, colour, name = here[here["mode"] == "scratch"], MODE_COLOURS["scratch"], label
                else:
                    rows = here[(here["mode"] == mode) & (here["pretrain_family"] == source)]
                    colour = (MIXTURE_COLOUR if mixture else MODE_COLOURS[mode]) if mode == "finetune" else (
                        MIXTURE_COLOUR if mixture else MODE_COLOURS["zeroshot"])  # fmt: skip
                    name = f"{label} ({'mixture' if mixture else 'family alone'})"
                line = _line(rows, shifts, which)
                if line.empty or (which == "min" and rows["n_train"].nunique() < 2):  # one N: the largest N's line
                    continue
                above, below = _intervals(line)
                fig.add_trace(
                    go.Scatter(
                        x=line["shift"].tolist(), y=line["test_rel_l2"].to_numpy(float),
                        error_y={"type": "data", "symmetric": False, "array": above, "arrayminus": below},
                        mode="lines+markers", line={"color": colour, "dash": dash},
                        marker={"symbol": "diamond" if mixture else "circle", "size": 8, "color": colour},
                        name=name, legendgroup=name, showlegend=name not in legend,
                        customdata=line["n_train"].to_numpy(float),
                        hovertemplate=f"{name}<br>shift %{{x}}, N=%{{customdata}}: error %{{y:.4g}}<extra></extra>",
                        meta={"family": family, "mode": mode, "pretrain_family": "" if mode == "scratch" else source,
                              "n": which, "kind": "by shift",
                              **{k: int(line[k].iloc[0]) for k in SIZE_KEYS}},
                    ),
                    row=1, col=col,
                )  # fmt: skip
                legend.add(name)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=shifts, title_text="downstream shift")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="test relative L2 error", col=1)
    fig.update_layout(title="Zero-shot and fine-tuned error by shift", height=460, legend=LEGEND_RIGHT)
    return (
        "Zero-shot and fine-tuned error by shift",
        "Per family at its largest model size: the pre-trained model's zero-shot error at each shift (dashed), the "
        "error after fine-tuning at the smallest and the largest N, and scratch training at the largest N, with "
        "95% intervals over data seeds or seeds where the point has them. Claim 4: zero-shot error grows with the "
        "shift, and fine-tuning at the largest N falls below half of the zero-shot error at the largest shift.",
        fig,
    )


def section(report: Report) -> list[Section]:
    out = Section("shifts", "Error by shift", "figures")
    drawn = figure(report)
    if drawn is not None:
        out.figures.append(drawn)
    points = report.points
    zero = points[points["mode"] == "zeroshot"] if not points.empty else points
    if not zero.empty:
        zero = zero.sort_values(["family", "shift", "n_params"])
        columns = ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params", "test_rel_l2"]
        out.tables.append(Table("Zero-shot test error", zero[columns].reset_index(drop=True)))
    return [out]
