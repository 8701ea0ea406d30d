"""Plotly building blocks the figure sections share: a panel's learning-curve traces, a row
of log-log panels, interval error bars. Every trace carries ``meta`` (family, shift, mode,
sizes, what it draws) so tests and users can find a figure's data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fno_analysis.fit import saturating

from .base import ERROR_AXIS, MIXTURE_COLOUR, MODE_COLOURS, N_AXIS, STRATEGY_COLOURS

LEGEND_RIGHT = {"x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top", "tracegroupgap": 2}  # outside the axes


def curve_traces(points, fits, family, shift, size, pretrain_families, show_legend, strategies=("full",)) -> list:
    """Traces of one panel: points and fits of scratch, fine-tune (each of ``strategies``)
    and zero-shot."""
    import plotly.graph_objects as go

    width, modes, layers, _ = size
    traces = []
    here = points[
        (points["family"] == family)
        & (points["shift"] == shift)
        & (points["width"] == width)
        & (points["modes"] == modes)
        & (points["layers"] == layers)
    ]
    lines = [("scratch", "", "")]
    for source in pretrain_families:
        lines += [("finetune", source, strategy) for strategy in strategies] + [("zeroshot", source, "")]
    n_range = here.loc[here["mode"] != "zeroshot", "n_train"]
    for mode, source, strategy in lines:
        chosen = (here["mode"] == mode) & (here["pretrain_family"] == source) & (here["finetune_strategy"] == strategy)
        sel = here[chosen].sort_values("n_train")
        if sel.empty:
            continue
        mixture = source == "mixture"
        colour = MIXTURE_COLOUR if mixture and mode == "finetune" else MODE_COLOURS[mode]
        name = {"scratch": "scratch", "finetune": f"fine-tune ({source})", "zeroshot": f"zero-shot ({source})"}[mode]
        if strategy not in ("", "full"):
            colour, name = STRATEGY_COLOURS[strategy], f"fine-tune {strategy} ({source})"
        n_params = int(sel["n_params"].max())  # of the model as trained (a mixture model reads more channels)
        meta = {"family": family, "shift": shift, "mode": mode, "pretrain_family": source, "n_params": n_params}
        meta["finetune_strategy"] = strategy
        if mode == "zeroshot":
            if n_range.empty:
                continue
            value = float(sel["test_rel_l2"].iloc[0])
            traces.append(
                go.Scatter(
                    x=[float(n_range.min()), float(n_range.max())],
                    y=[value, value],
                    mode="lines" if n_range.min() < n_range.max() else "lines+markers",  # one N: a marker
                    line={"color": colour, "dash": "dot" if mixture else "dash"},
                    marker={"symbol": "line-ew-open", "size": 14, "color": colour},
                    name=name,
                    legendgroup=name,
                    showlegend=show_legend,
                    meta={**meta, "kind": "zeroshot"},
                    hovertemplate=f"{name}: %{{y:.4g}}<extra></extra>",
                )
            )
            continue
        traces.append(
            go.Scatter(
                x=sel["n_train"].to_numpy(float),
                y=sel["test_rel_l2"].to_numpy(float),
                error_y={"type": "data", "array": sel["test_std"].to_numpy(float), "visible": True},
                mode="markers",
                marker={"color": colour, "symbol": "diamond" if mixture else "circle", "size": 8},
                name=name,
                legendgroup=name,
                showlegend=show_legend,
                meta={**meta, "kind": "points"},
                customdata=sel[["lr", "n_seeds"]].to_numpy(float),
                hovertemplate="N=%{x}<br>error %{y:.4g}<br>lr %{customdata[0]:g}, "
                "%{customdata[1]} seeds<extra></extra>",
            )
        )
        fit = fits[
            (fits["family"] == family)
            & (fits["shift"] == shift)
            & (fits["width"] == width)
            & (fits["modes"] == modes)
            & (fits["layers"] == layers)
            & (fits["mode"] == mode)
            & (fits["pretrain_family"] == source)
            & (fits["finetune_strategy"] == strategy)
        ]
        if len(fit) == 1 and np.isfinite(fit["b"].iloc[0]):
            f = fit.iloc[0]
            xs = np.geomspace(f["n_min"], f["n_max"], 60)
            label = f"a N^-b + c, b = {f['b']:.3g} [{f['b_lo']:.3g}, {f['b_hi']:.3g}], c = {f['c']:.3g}"
            traces.append(
                go.Scatter(
                    x=xs,
                    y=saturating(xs, f["a"], f["b"], f["c"]),
                    mode="lines",
                    line={"color": colour, "width": 1.5},
                    name=f"{name} fit",
                    legendgroup=name,
                    showlegend=False,
                    meta={**meta, "kind": "fit", "a": f["a"], "b": f["b"], "c": f["c"]},
                    hovertemplate=f"{name}: {label}<extra></extra>",
                )
            )
    return traces


def panel_figure(panels: list[list], titles: list[str], height: int = 440):
    """A row of log-log panels (one per trace list), the legend right of the axes."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.04)
    for col, traces in enumerate(panels, start=1):
        for trace in traces:
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(type="log", title_text=N_AXIS, row=1, col=col)
    fig.update_xaxes(dtick="D2", minorloglabels="complete")  # N at 10, 20, 50, 100, ...
    fig.update_yaxes(type="log", minorloglabels="complete")  # 0.02, 0.03 rather than bare digits
    fig.update_yaxes(title_text=ERROR_AXIS, row=1, col=1)
    fig.update_layout(height=height, margin={"t": 70, "b": 60}, legend=LEGEND_RIGHT)
    return fig


def shift_figure(panels, shifts, title: str, heading: str, caption: str, **xaxes) -> tuple[str, str, object]:
    """A row of panels, one per shift, as (heading, caption, figure) (``xaxes``: plotly axis updates)."""
    fig = panel_figure(panels, [f"shift '{s}'" for s in shifts])
    if xaxes:
        fig.update_xaxes(**xaxes)
    fig.update_layout(title=title)
    return heading, caption, fig


def interval_bars(value: pd.Series, lo: pd.Series, hi: pd.Series) -> dict:
    """Plotly error bars from an interval [lo, hi] around value (an infinite end is not drawn)."""
    above = (hi - value).clip(lower=0).replace(np.inf, np.nan)
    return {"type": "data", "symmetric": False, "array": above, "arrayminus": (value - lo).clip(lower=0)}


def size_colours(n: int) -> list[str]:
    """``n`` colours from small (dark) to large (light) model sizes."""
    from plotly.colors import sample_colorscale

    return sample_colorscale("Viridis", [i / max(n - 1, 1) * 0.85 for i in range(n)])


def has_traces(fig) -> bool:
    return fig is not None and len(fig.data) > 0
