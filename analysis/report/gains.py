"""The data-efficiency gain and the fitted exponents vs model size: one panel per family
(rows) and shift (columns), so that every panel is tall enough to read and the legend
stays outside the axes; and the gain table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fno_analysis.gains import GAIN_VERDICTS
from fno_analysis.points import ordered_shifts

from .base import MIXTURE_COLOUR, MODE_COLOURS, Report, Section, Table, worth_showing
from .panels import LEGEND_RIGHT, interval_bars

PANEL_HEIGHT = 300  # px per row of panels
BOUND_SYMBOLS = {"lower bound": "triangle-up", "upper bound": "triangle-down", "not measurable with this budget": "x"}


def _grid(frames: list[pd.DataFrame]):
    """(families, shifts, figure) of a grid of panels for the families and shifts in ``frames``."""
    from plotly.subplots import make_subplots

    both = pd.concat([f[["family", "shift"]] for f in frames if not f.empty], ignore_index=True)

    families, shifts = sorted(both["family"].unique()), ordered_shifts(both["shift"])
    titles = [f"{family}, shift '{shift}'" for family in families for shift in shifts]
    fig = make_subplots(
        rows=len(families),
        cols=len(shifts),
        subplot_titles=titles,
        shared_xaxes=True,
        horizontal_spacing=0.06,
        vertical_spacing=min(0.12, 0.35 / max(len(families) - 1, 1)),
    )
    fig.update_layout(height=140 + PANEL_HEIGHT * len(families), legend=LEGEND_RIGHT, margin={"t": 90, "b": 60})
    n_params = pd.concat([f["n_params"] for f in frames if not f.empty]).astype(float)
    lo, hi = np.log10(n_params.min()), np.log10(n_params.max())
    fig.update_xaxes(type="log", range=[lo - 0.15, hi + 0.15])  # the same sizes in every panel
    fig.update_xaxes(title_text="model parameters", row=len(families))
    return families, shifts, fig


def _source_kind(family: str, source: str) -> tuple[str, str]:
    """(legend name, colour) of a pre-training set: the family alone or the mixture."""
    if source == "mixture":
        return "pre-trained on the mixture", MIXTURE_COLOUR
    return "pre-trained on the family alone", MODE_COLOURS["finetune"]


def gain_figure(report: Report) -> tuple[str, str, object] | None:
    import plotly.graph_objects as go

    gains = report.gains
    if gains.empty:
        return None
    drawn = gains[np.isfinite(gains["gain"].astype(float)) | gains["verdict"].isin(BOUND_SYMBOLS)]
    if drawn.empty:
        return None
    families, shifts, fig = _grid([drawn])
    legend = set()
    for (family, shift, source), g in drawn.groupby(["family", "shift", "pretrain_family"], sort=True):
        row, col = families.index(family) + 1, shifts.index(shift) + 1
        name, colour = _source_kind(family, source)
        measured = g[np.isfinite(g["gain"].astype(float))].sort_values("n_params")
        meta = {"family": family, "shift": shift, "pretrain_family": source}
        if not measured.empty:
            fig.add_trace(
                go.Scatter(
                    x=measured["n_params"], y=measured["gain"],
                    error_y=interval_bars(measured["gain"], measured["gain_lo"], measured["gain_hi"]),
                    mode="lines+markers", line={"color": colour}, marker={"color": colour},
                    name=name, legendgroup=name, showlegend=name not in legend, meta={**meta, "kind": "gain"},
                    hovertemplate=f"{family}, {shift}, from {source}<br>%{{x:.3g}} parameters: gain %{{y:.3g}}"
                    "<extra></extra>",
                ),
                row=row, col=col,
            )  # fmt: skip
            legend.add(name)
        for verdict, b in g[g["verdict"].isin(BOUND_SYMBOLS)].groupby("verdict", sort=True):
            label = f"{name}: {verdict}"
            fig.add_trace(
                go.Scatter(
                    x=b["n_params"], y=b["bound"], mode="markers",
                    marker={"symbol": BOUND_SYMBOLS[verdict], "size": 11, "color": colour},
                    name=label, legendgroup=label, showlegend=label not in legend,
                    meta={**meta, "kind": "gain bound", "verdict": verdict},
                    hovertemplate=f"{family}, {shift}, from {source}<br>{verdict}: %{{y:.3g}}<extra></extra>",
                ),
                row=row, col=col,
            )  # fmt: skip
            legend.add(label)
    fig.update_yaxes(type="log", minorloglabels="complete")
    fig.update_yaxes(title_text="gain (x fewer examples)", col=1)
    fig.add_hline(y=10, line={"dash": "dot", "color": "#888", "width": 1})
    fig.update_layout(title="Data-efficiency gain vs model size")
    if report.target_error is None:
        target = "per family and shift, the lowest error any fine-tune curve reaches at its smallest N"
    else:
        target = f"{report.target_error:g}"
    return (
        "Data-efficiency gain vs model size",
        f"How many times more examples scratch training needs than fine-tuning to reach the target error "
        f"({target}), from the fitted curves, with 95% bootstrap intervals; one panel per family and shift, the "
        f"dotted line at 10x (claim 1). Triangles: censored gains, drawn at their bound (up: at least, down: at "
        f"most); crosses: not measurable with this budget, drawn at the bound the measured N would give. Points "
        f"where a curve could not be inverted are left out (the gain table says why).",
        fig,
    )


def exponent_figure(report: Report) -> tuple[str, str, object] | None:
    import plotly.graph_objects as go

    fits = report.fits
    fitted = fits[np.isfinite(fits["b"].astype(float))] if len(fits) else fits
    if fitted.empty:
        return None
    families, shifts, fig = _grid([fitted])
    legend = set()
    for (family, shift, mode, source), f in fitted.groupby(["family", "shift", "mode", "pretrain_family"], sort=True):
        f = f.sort_values("n_params")
        if mode == "scratch":
            name, colour = "scratch", MODE_COLOURS["scratch"]
        else:
            name, colour = _source_kind(family, source)
            name = f"fine-tune, {name}"
        fig.add_trace(
            go.Scatter(
                x=f["n_params"], y=f["b"], error_y=interval_bars(f["b"], f["b_lo"], f["b_hi"]),
                mode="lines+markers", line={"color": colour, "dash": "solid" if mode == "scratch" else "dash"},
                name=name, legendgroup=name, showlegend=name not in legend,
                meta={"family": family, "shift": shift, "mode": mode, "pretrain_family": source, "kind": "exponent"},
            ),
            row=families.index(family) + 1, col=shifts.index(shift) + 1,
        )  # fmt: skip
        legend.add(name)
    fig.update_yaxes(title_text="exponent b", col=1)
    fig.update_layout(title="Fitted exponent b of err = a N^-b + c vs model size")
    return (
        "Fitted exponents vs model size",
        "The exponent b of each fitted curve err = a N^-b + c, with its 95% bootstrap-t interval, one panel per "
        "family and shift: a larger b means the error falls faster with more data.",
        fig,
    )


def section(report: Report) -> list[Section]:
    out = Section("gains", "Data-efficiency gain and model size", "figures")
    out.figures += [f for f in (gain_figure(report), exponent_figure(report)) if f is not None]
    gains = report.gains.drop(columns=["boot", "boot_lower", "boot_upper"], errors="ignore")
    table = worth_showing(gains)
    if table is not None:
        verdicts = "; ".join(f"'{k}': {v}" for k, v in GAIN_VERDICTS.items())
        out.tables.append(Table("Data-efficiency gains", table, f"Verdicts: {verdicts}."))
    return [out]
