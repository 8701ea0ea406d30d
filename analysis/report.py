"""A sweep's report: one self-contained HTML file of plotly figures, and a Markdown summary.

    python analysis/report.py <out>/<sweep> [--target-error E] [--n-boot B]

writes ``<out>/<sweep>/report.html`` (plotly.js embedded: opens offline) and
``<out>/<sweep>/summary.md`` (fit, gain and zero-shot tables, sweep health). Figures:

1. test error vs N per model size: scratch, fine-tune, zero-shot; points with the
   seeds' spread as error bars, fitted saturating curves;
2. the same across shifts, per family (largest model size);
3. data-efficiency gain and fitted exponents vs model size;
4. mixed-family vs single-family pre-training, where the sweep has both;
5. sweep health: trials by status, time per trial, failed trials with their errors.

Every trace carries ``meta`` (family, shift, mode, sizes, what it draws) so tests and
users can find a figure's data; ``build_report`` returns figures and tables without
writing anything.
"""

from __future__ import annotations

import argparse
import html
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fno.metrics import BAND_EDGES
from fno.storage import Location, location
from fno.vocabulary import FINETUNE_STRATEGIES
from fno_analysis.diagnostics import CHECKS, diagnose, floor_artefacts, probe_table
from fno_analysis.evaluations import (
    BAND_METRICS,
    EVALUATION_COLUMNS,
    coverage,
    evaluation_points,
    read_evaluations_table,
)
from fno_analysis.findings import Findings, build_findings, mode_label
from fno_analysis.fit import add_fit_arguments, fit_curves, saturating
from fno_analysis.forms import FORMS
from fno_analysis.gains import GAIN_VERDICTS, data_efficiency_gain
from fno_analysis.laws import (
    MIN_SIZES,
    SURFACE_PARAMS,
    break_even,
    fit_surface,
    point_flops,
    pretrain_flops,
    surface,
)
from fno_analysis.points import (
    CURVE_KEYS,
    REQUIRED_COLUMNS,
    SIZE_KEYS,
    check_columns,
    ordered_shifts,
    read_table,
    select_points,
)
from fno_analysis.transfer import TRANSFER_KEYS, fit_transfer
from fno_analysis.verdicts import learned_cells

HEALTH_COLUMNS = ("key", "stage", "mode", "status", "error", "wall_s")
MODE_COLOURS = {"scratch": "#d62728", "finetune": "#1f77b4", "zeroshot": "#7f7f7f"}
MIXTURE_COLOUR = "#2ca02c"
STRATEGY_COLOURS = {"head": "#9467bd", "lift-head": "#8c564b", "frozen-spectral": "#e377c2"}  # full: fine-tune's
ERROR_AXIS = "test relative L2 error"
N_AXIS = "downstream training examples N"


@dataclass
class Report:
    """Figures (in order) with their titles and captions, and the tables behind them."""

    points: pd.DataFrame
    fits: pd.DataFrame
    gains: pd.DataFrame
    health: pd.DataFrame
    flags: pd.DataFrame  # the diagnostics (fno_analysis.diagnostics.diagnose)
    findings: Findings
    probes: pd.DataFrame  # budget probes beside their base trials (empty without)
    target_error: float | None = None  # the gain's target; None: per (family, shift), fit.default_targets
    # Per-point test metrics at every test resolution (fno_analysis.evaluations.evaluation_points).
    evaluations: pd.DataFrame = field(default_factory=pd.DataFrame)
    surfaces: pd.DataFrame = field(default_factory=pd.DataFrame)  # fno_analysis.laws.fit_surface
    transfer: pd.DataFrame = field(default_factory=pd.DataFrame)  # fno_analysis.transfer.fit_transfer: the laws
    transfer_samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # ... and the (D_F, D_T) they explain
    break_even: pd.DataFrame = field(default_factory=pd.DataFrame)  # fno_analysis.laws.break_even
    # (pretrain_family, width, modes, layers) -> the pre-training's training FLOPs
    pretrain_flops: dict = field(default_factory=dict)
    figures: list[tuple[str, str, object]] = field(default_factory=list)  # (title, caption, go.Figure)
    notes: list[str] = field(default_factory=list)


def size_label(width: int, modes: int, layers: int, n_params: int) -> str:
    return f"w{width}-m{modes}-l{layers} ({_count(n_params)} parameters)"


def _count(n: float) -> str:
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def _sizes(df: pd.DataFrame) -> list[tuple[int, int, int, int]]:
    """Architectures (width, modes, layers) with their smallest parameter count (the
    single-family layout's), smallest first."""
    sizes = df.groupby(SIZE_KEYS, sort=False)["n_params"].min().reset_index().sort_values("n_params")
    return [tuple(int(v) for v in row) for row in sizes[[*SIZE_KEYS, "n_params"]].itertuples(index=False)]


def _curve_traces(points, fits, family, shift, size, pretrain_families, show_legend, strategies=("full",)):
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
            xs = [float(n_range.min()), float(n_range.max())]
            value = float(sel["test_rel_l2"].iloc[0])
            traces.append(
                go.Scatter(
                    x=xs,
                    y=[value, value],
                    mode="lines",
                    line={"color": colour, "dash": "dot" if mixture else "dash"},
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


def _panel_figure(panels, titles, height=420):
    """A row of log-log panels; panels: list of trace lists, one per column."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.04)
    for col, traces in enumerate(panels, start=1):
        for trace in traces:
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(type="log", title_text=N_AXIS, row=1, col=col)
    fig.update_xaxes(dtick="D2", minorloglabels="complete")  # N at 10, 20, 50, 100, ...
    fig.update_yaxes(type="log", minorloglabels="complete")  # 0.02, 0.03 rather than bare digits
    fig.update_yaxes(title_text=ERROR_AXIS, row=1, col=1)
    fig.update_layout(height=height, margin={"t": 60, "b": 50}, legend={"orientation": "h", "y": -0.25})
    return fig


def _add_shift_figure(report: Report, panels, shifts, title: str, heading: str, caption: str, **xaxes) -> None:
    """A row of panels, one per shift, added to the report (``xaxes``: plotly axis updates)."""
    fig = _panel_figure(panels, [f"shift '{s}'" for s in shifts])
    if xaxes:
        fig.update_xaxes(**xaxes)
    fig.update_layout(title=title)
    report.figures.append((heading, caption, fig))


def _pretrain_sets(points, family) -> list[str]:
    sources = points.loc[(points["family"] == family) & (points["mode"] != "scratch"), "pretrain_family"].unique()
    return sorted(sources, key=lambda s: (s == "mixture", s))


def _figures_error_vs_n(report: Report) -> None:
    points, fits = report.points, report.fits
    for family in sorted(points["family"].unique()):
        shifts = ordered_shifts(points.loc[points["family"] == family, "shift"])
        shift = shifts[0]
        sizes = _sizes(points[points["family"] == family])
        sources = _pretrain_sets(points, family)
        panels = [_curve_traces(points, fits, family, shift, s, sources, i == 0) for i, s in enumerate(sizes)]
        fig = _panel_figure(panels, [size_label(*s) for s in sizes])
        fig.update_layout(title=f"{family}: test error vs N, shift '{shift}', one panel per model size")
        report.figures.append(
            (
                f"Test error vs N by model size ({family}, shift '{shift}')",
                "Each panel is one model size. Markers: the test error at each N with the learning rate chosen "
                "by validation error (error bars: spread over seeds); lines: fitted a N^-b + c; dashed: zero-shot "
                "error of the pre-trained model (independent of N). Fine-tuning below scratch means pre-training "
                "helps; the horizontal gap between the curves is the data-efficiency gain.",
                fig,
            )
        )


def _figuresordered_shifts(report: Report) -> None:
    points, fits = report.points, report.fits
    for family in sorted(points["family"].unique()):
        here = points[points["family"] == family]
        shifts = ordered_shifts(here["shift"])
        size = _sizes(here)[-1]
        sources = _pretrain_sets(points, family)
        panels = [_curve_traces(points, fits, family, s, size, sources, i == 0) for i, s in enumerate(shifts)]
        _add_shift_figure(
            report,
            panels,
            shifts,
            f"{family}: test error vs N across shifts, {size_label(*size)}",
            f"Test error vs N across physics shifts ({family}, {size_label(*size)})",
            "Each panel is one downstream parameter range, from in-distribution ('none') to the largest shift. "
            "Zero-shot error grows with the shift; fine-tuning recovers most of it with few examples.",
        )


def _interval_bars(value: pd.Series, lo: pd.Series, hi: pd.Series) -> dict:
    """Plotly error bars from an interval [lo, hi] around value (an infinite end is not drawn)."""
    above = (hi - value).clip(lower=0).replace(np.inf, np.nan)
    return {"type": "data", "symmetric": False, "array": above, "arrayminus": (value - lo).clip(lower=0)}


def _figure_size_trend(report: Report) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    gains, fits = report.gains, report.fits
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["data-efficiency gain (scratch N / fine-tune N)", "fitted exponent b of err = a N^-b + c"],
    )
    for (family, shift, source), g in gains.groupby(["family", "shift", "pretrain_family"], sort=True):
        g = g[np.isfinite(g["gain"])].sort_values("n_params")
        if g.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=g["n_params"],
                y=g["gain"],
                error_y=_interval_bars(g["gain"], g["gain_lo"], g["gain_hi"]),
                mode="lines+markers",
                name=f"gain: {family}, {shift}, pre-trained on {source}",
                meta={"family": family, "shift": shift, "pretrain_family": source, "kind": "gain"},
            ),
            row=1,
            col=1,
        )
    bounded = gains[gains["verdict"].isin(("lower bound", "upper bound", "not measurable with this budget"))]
    for (family, shift, source, verdict), g in bounded.groupby(
        ["family", "shift", "pretrain_family", "verdict"], sort=True
    ):
        symbol = {"lower bound": "triangle-up", "upper bound": "triangle-down"}.get(verdict, "x-open")
        fig.add_trace(
            go.Scatter(
                x=g["n_params"],
                y=g["bound"],
                mode="markers",
                marker={"symbol": symbol, "size": 11},
                name=f"{verdict}: {family}, {shift}, pre-trained on {source}",
                meta={"family": family, "shift": shift, "pretrain_family": source, "kind": "gain bound"},
                hovertemplate=f"{verdict}: %{{y:.3g}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    for (family, shift, mode, source), f in fits.groupby(["family", "shift", "mode", "pretrain_family"], sort=True):
        f = f[np.isfinite(f["b"])].sort_values("n_params")
        if f.empty:
            continue
        label = "scratch" if mode == "scratch" else f"fine-tune ({source})"
        fig.add_trace(
            go.Scatter(
                x=f["n_params"],
                y=f["b"],
                error_y=_interval_bars(f["b"], f["b_lo"], f["b_hi"]),
                mode="lines+markers",
                line={"dash": "solid" if mode == "scratch" else "dash"},
                name=f"b: {family}, {shift}, {label}",
                meta={"family": family, "shift": shift, "mode": mode, "pretrain_family": source, "kind": "exponent"},
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="log", title_text="model parameters")
    fig.update_yaxes(type="log", minorloglabels="complete", title_text="gain (x fewer examples)", row=1, col=1)
    fig.update_yaxes(title_text="exponent b", row=1, col=2)
    fig.update_layout(height=460, title="Model-size trend", legend={"orientation": "h", "y": -0.3})
    if report.target_error is None:
        target = "per family and shift, the lowest error any fine-tune curve reaches at its smallest N"
    else:
        target = f"{report.target_error:g}"
    report.figures.append(
        (
            "Data-efficiency gain and fitted exponents vs model size",
            f"Left: how many times more examples scratch training needs than fine-tuning to reach the target "
            f"error ({target}), from the fitted curves, with 95% bootstrap intervals (points where a curve "
            f"could not be inverted are left out; see summary.md). Triangles: censored gains, drawn at their bound "
            f"(up: at least, down: at most); crosses: not measurable with this budget, drawn at the bound the "
            f"measured N would give. Right: the fitted exponent b per curve.",
            fig,
        )
    )


def _figure_mixture(report: Report) -> None:
    points, fits = report.points, report.fits
    finetune = points[points["mode"] == "finetune"]
    families = [
        f
        for f in sorted(points["family"].unique())
        if {"mixture", f} <= set(finetune.loc[finetune["family"] == f, "pretrain_family"])
    ]
    if not families:
        report.notes.append("no figure of mixed vs single-family pre-training: the sweep has no such pair")
        return
    for family in families:
        here = points[points["family"] == family]
        size = _sizes(here)[-1]
        shifts = ordered_shifts(here["shift"])
        panels = [
            _curve_traces(points, fits, family, s, size, [family, "mixture"], i == 0) for i, s in enumerate(shifts)
        ]
        _add_shift_figure(
            report,
            panels,
            shifts,
            f"{family}: pre-trained on {family} alone vs on the mixture, {size_label(*size)}",
            f"Mixed vs single-family pre-training ({family}, {size_label(*size)})",
            f"Fine-tuning (and zero-shot) from a model pre-trained on {family} alone (circles, dashed) and on "
            "the mixture of all families (diamonds, dotted), against scratch training.",
        )


def _largest_size_rows(
    table: pd.DataFrame, points: pd.DataFrame, family: str
) -> tuple[pd.DataFrame, tuple[int, int, int, int]]:
    """The rows of ``table`` of ``family`` at its largest architecture among ``points``, and that architecture."""
    here = table[table["family"] == family]
    size = _sizes(points[points["family"] == family])[-1]
    return here[(here[SIZE_KEYS] == pd.Series(dict(zip(SIZE_KEYS, size[:3], strict=True)))).all(axis=1)], size


def _figure_strategies(report: Report) -> None:
    points, fits = report.points, report.fits
    present = set(points.loc[points["mode"] == "finetune", "finetune_strategy"])
    strategies = [s for s in FINETUNE_STRATEGIES if s in present]
    if len(strategies) < 2:
        return
    for family in sorted(points["family"].unique()):
        here = points[points["family"] == family]
        size, sources = _sizes(here)[-1], _pretrain_sets(points, family)[:1]
        shifts = ordered_shifts(here["shift"])
        panels = [
            _curve_traces(points, fits, family, s, size, sources, i == 0, strategies=strategies)
            for i, s in enumerate(shifts)
        ]
        _add_shift_figure(
            report,
            panels,
            shifts,
            f"{family}: fine-tuning strategies, {size_label(*size)}",
            f"Fine-tuning strategies ({family}, {size_label(*size)}, pre-trained on {', '.join(sources)})",
            "Test error vs N of each fine-tuning strategy (full: every weight; head: the projection only; "
            "lift-head: lifting and projection; frozen-spectral: everything but the spectral weights) beside "
            "scratch training and the zero-shot error. Each strategy's learning rate is chosen by validation "
            "at each N, as for the other curves.",
        )


def _figure_resolution(report: Report) -> None:
    import plotly.graph_objects as go

    ev = report.evaluations
    if ev.empty or ev["resolution"].nunique() < 2:
        return
    rel = ev[ev["metric"] == "rel_l2"]
    for family in sorted(rel["family"].unique()):
        here, size = _largest_size_rows(rel, report.points, family)
        curve = ["pretrain_family", "mode", "finetune_strategy"]
        shifts = ordered_shifts(here["shift"])
        panels = []
        for i, shift in enumerate(shifts):
            at = here[here["shift"] == shift]
            at = at[at["n_train"] == at.groupby(curve)["n_train"].transform("max")]
            traces = []
            for (source, mode, strategy), line in at.groupby(curve, sort=True):
                line = line.sort_values("resolution")
                name = mode_label(mode, strategy) + (f" ({source})" if source else "")
                colour = STRATEGY_COLOURS.get(strategy, MODE_COLOURS[mode])
                n = "" if mode == "zeroshot" else f", N = {int(line['n_train'].iloc[0])}"
                traces.append(
                    go.Scatter(
                        x=line["resolution"].to_numpy(float),
                        y=line["value"].to_numpy(float),
                        error_y=_interval_bars(line["value"], line["lo"], line["hi"]),
                        mode="lines+markers",
                        line={"color": colour, "dash": "dash" if mode == "zeroshot" else "solid"},
                        name=name,
                        legendgroup=name,
                        showlegend=i == 0,
                        meta={"family": family, "shift": shift, "mode": mode, "finetune_strategy": strategy,
                              "pretrain_family": source, "kind": "resolution"},
                        hovertemplate=f"{name}{n}<br>%{{x}} points per axis: error %{{y:.4g}}<extra></extra>",
                    )
                )  # fmt: skip
            panels.append(traces)
        train = int(here["train_resolution"].iloc[0])
        _add_shift_figure(
            report,
            panels,
            shifts,
            f"{family}: error vs test resolution (trained at {train}), {size_label(*size)}",
            f"Resolution transfer ({family}, {size_label(*size)})",
            f"Every model trained at {train} x {train} points tested on the same test samples on each test grid; "
            "each curve at its largest N (zero-shot: the pre-trained model). Error bars: 95% t intervals over "
            "seeds. A flat line means the operator transfers across grids.",
            type="linear",
            title_text="test grid points per axis",
        )


def _figure_bands(report: Report) -> None:
    import plotly.graph_objects as go

    ev = report.evaluations
    if ev.empty:
        return
    at_train = ev[(ev["resolution"] == ev["train_resolution"]) & ev["finetune_strategy"].isin(["", "full"])]
    for family in sorted(at_train["family"].unique()):
        here, size = _largest_size_rows(at_train, report.points, family)
        source = (_pretrain_sets(report.points, family) or [""])[0]
        here = here[here["mode"].eq("scratch") | (here["mode"].eq("finetune") & here["pretrain_family"].eq(source))]
        shifts = ordered_shifts(here["shift"])
        panels = []
        for i, band in enumerate(BAND_METRICS):
            traces = []
            for (mode, shift), line in here[here["metric"] == band].groupby(["mode", "shift"], sort=True):
                line = line.sort_values("n_train")
                name = f"{'fine-tune' if mode == 'finetune' else mode}, shift {shift}"
                traces.append(
                    go.Scatter(
                        x=line["n_train"].to_numpy(float),
                        y=line["value"].to_numpy(float),
                        mode="lines+markers",
                        line={"color": MODE_COLOURS[mode], "dash": ["solid", "dash", "dot"][shifts.index(shift) % 3]},
                        name=name,
                        legendgroup=name,
                        showlegend=i == 0,
                        meta={"family": family, "shift": shift, "mode": mode, "band": band, "kind": "band"},
                        hovertemplate=f"{name}<br>N=%{{x}}: %{{y:.4g}}<extra></extra>",
                    )
                )
            panels.append(traces)
        fig = _panel_figure(panels, [f"{b.removeprefix('rel_l2_')} band" for b in BAND_METRICS])
        fig.update_yaxes(title_text="band error / ||u||", row=1, col=1)
        fig.update_layout(title=f"{family}: error by frequency band vs N, {size_label(*size)}")
        report.figures.append(
            (
                f"Error by frequency band ({family}, {size_label(*size)})",
                f"The test error split by wave number |k| as a fraction of the grid's Nyquist number K: low "
                f"|k| < {BAND_EDGES[0]:g} K, mid up to {BAND_EDGES[1]:g} K, high beyond; each is the band's error "
                "over the whole target's norm, so the squares of the three add up to the squared relative error. "
                f"Scratch and fine-tuning (pre-trained on {source or 'nothing'}), at the training resolution.",
                fig,
            )
        )


def _size_colours(n: int) -> list[str]:
    from plotly.colors import sample_colorscale

    return sample_colorscale("Viridis", [i / max(n - 1, 1) * 0.85 for i in range(n)])


def _figure_surfaces(report: Report) -> None:
    import plotly.graph_objects as go

    fitted = report.surfaces[np.isfinite(report.surfaces["alpha"].astype(float))] if not report.surfaces.empty else []
    if len(fitted) == 0:
        return
    points = report.points
    for (family, shift), cells in fitted.groupby(["family", "shift"], sort=True):
        panels, titles = [], []
        for _, fit in cells.iterrows():
            here = points[
                (points["family"] == family) & (points["shift"] == shift) & (points["mode"] == fit["mode"])
                & (points["pretrain_family"] == fit["pretrain_family"])
                & (points["finetune_strategy"] == fit["finetune_strategy"])
            ]  # fmt: skip
            sizes = sorted(here["n_params"].unique())
            colours = _size_colours(len(sizes))
            params = [fit[k] for k in SURFACE_PARAMS]
            traces = []
            for colour, p in zip(colours, sizes, strict=True):
                sel = here[here["n_params"] == p].sort_values("n_train")
                name = f"{_count(p)} parameters"
                meta = {"family": family, "shift": shift, "mode": fit["mode"], "n_params": int(p)}
                traces.append(go.Scatter(x=sel["n_train"], y=sel["test_rel_l2"], mode="markers", name=name,
                                         legendgroup=name, showlegend=not panels, marker={"color": colour},
                                         meta={**meta, "kind": "points"}))  # fmt: skip
                xs = np.geomspace(sel["n_train"].min(), sel["n_train"].max(), 40)
                traces.append(go.Scatter(x=xs, y=surface(xs, p, params), mode="lines", line={"color": colour},
                                         name=name, legendgroup=name, showlegend=False,
                                         meta={**meta, "kind": "surface"}))  # fmt: skip
            panels.append(traces)
            label = mode_label(fit["mode"], fit["finetune_strategy"])
            source = f" from {fit['pretrain_family']}" if fit["pretrain_family"] else ""
            titles.append(
                f"{label}{source}: alpha {fit['alpha']:.2f} [{fit['alpha_lo']:.2f}, {fit['alpha_hi']:.2f}], "
                f"beta {fit['beta']:.2f} [{fit['beta_lo']:.2f}, {fit['beta_hi']:.2f}]"
            )
        fig = _panel_figure(panels, titles)
        fig.update_layout(title=f"{family}, shift '{shift}': one surface E + A P^-alpha + B N^-beta over sizes")
        report.figures.append(
            (
                f"Scaling surface over model size and data ({family}, shift '{shift}')",
                "Markers: the test error of every size (colour) at every N; lines: one surface "
                "err(N, P) = E + A P^-alpha + B N^-beta fitted to all of them (Huber loss on log error, "
                "95% intervals in the panel titles).",
                fig,
            )
        )


def _figure_transfer(report: Report) -> None:
    import plotly.graph_objects as go

    if report.transfer.empty or not np.isfinite(report.transfer["beta"].astype(float)).any():
        return
    samples = report.transfer_samples
    laws = report.transfer.set_index(TRANSFER_KEYS)
    families = sorted(samples["family"].unique())
    panels = []
    for family in families:
        traces = []
        for (shift, source, p), sel in samples[samples["family"] == family].groupby(
            ["shift", "pretrain_family", "n_params"], sort=True
        ):
            name = f"{shift}, {source}, {_count(p)} parameters"
            meta = {"family": family, "shift": shift, "pretrain_family": source, "n_params": int(p)}
            traces.append(go.Scatter(x=sel["d_f"], y=sel["d_t"], mode="markers", name=name, legendgroup=name,
                                     meta={**meta, "kind": "samples"}))  # fmt: skip
            law = laws.loc[(family, shift, source)]
            if np.isfinite(law["beta"]):
                xs = np.geomspace(sel["d_f"].min(), sel["d_f"].max(), 30)
                ys = law["k"] * xs ** law["alpha"] * float(p) ** law["beta"]
                traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name, showlegend=False,
                                         meta={**meta, "kind": "law"}))  # fmt: skip
        panels.append(traces)
    fig = _panel_figure(panels, families)
    fig.update_xaxes(title_text="fine-tuning examples D_F")
    fig.update_yaxes(title_text="effective data transferred D_T", row=1, col=1)
    fig.update_layout(title="The transfer law: D_T = D_E - D_F = k D_F^alpha P^beta")
    report.figures.append(
        (
            "The transfer law",
            "Markers: the effective data transferred by pre-training, D_T = D_E - D_F, where scratch needs D_E "
            "examples to reach the error fine-tuning measured with D_F, read from the size's scratch curve (only "
            "fine-tune points above the scratch error at its largest N); lines: k D_F^alpha P^beta, fitted to "
            "the scratch and fine-tune points of all sizes at once. "
            "beta > 0: a larger model transfers more.",
            fig,
        )
    )


def _figure_compute(report: Report) -> None:
    import plotly.graph_objects as go

    points = report.points
    if "train_flops" not in points or not np.isfinite(points["train_flops"]).any():
        return
    for family in sorted(points["family"].unique()):
        here, size = _largest_size_rows(points, points, family)
        here = here[here["finetune_strategy"].isin(["", "full"]) & (here["mode"] != "zeroshot")]
        source = (_pretrain_sets(points, family) or [""])[0]
        shifts = ordered_shifts(here["shift"])
        pre = report.pretrain_flops.get((source, *size[:3]), math.nan)
        panels = []
        for i, shift in enumerate(shifts):
            at = here[here["shift"] == shift]
            traces = []
            lines = [("scratch", "", 0.0, "scratch")]
            lines += [("finetune", source, 0.0, "fine-tune"), ("finetune", source, pre, "fine-tune + pre-training")]
            for mode, src, extra, name in lines:
                sel = at[(at["mode"] == mode) & (at["pretrain_family"] == src)].sort_values("n_train")
                if sel.empty or not np.isfinite(extra):
                    continue
                traces.append(
                    go.Scatter(
                        x=sel["train_flops"] + extra, y=sel["test_rel_l2"], mode="lines+markers", name=name,
                        legendgroup=name, showlegend=i == 0,
                        line={"color": MODE_COLOURS[mode], "dash": "dot" if extra else "solid"},
                        customdata=sel["n_train"], hovertemplate="N=%{customdata}: %{x:.3g} FLOPs, error %{y:.4g}",
                        meta={"family": family, "shift": shift, "mode": mode, "kind": name},
                    )
                )  # fmt: skip
            panels.append(traces)
        _add_shift_figure(
            report,
            panels,
            shifts,
            f"{family}: test error vs training compute, {size_label(*size)}",
            f"Error vs training compute ({family}, {size_label(*size)})",
            "Each point is a downstream N; its cost is 3 x forward FLOPs per sample x steps x batch. Dotted: "
            "fine-tuning plus the whole pre-training (one task pays for it); the break-even table says after "
            "how many tasks pre-training pays for itself.",
            title_text="training FLOPs",
        )


def _figure_break_even(report: Report) -> None:
    import plotly.graph_objects as go

    table = report.break_even
    if table.empty:
        return
    fig = go.Figure()
    for (family, shift, source), rows in table.groupby(["family", "shift", "pretrain_family"], sort=True):
        rows = rows.sort_values("n_params")
        name = f"{family}, {shift}, from {source}"
        fig.add_trace(
            go.Scatter(x=rows["n_params"], y=rows["break_even_tasks"].replace(np.inf, np.nan), mode="lines+markers",
                       name=name, meta={"family": family, "shift": shift, "pretrain_family": source,
                                        "kind": "break_even"})
        )  # fmt: skip
    fig.update_xaxes(type="log", title_text="parameters")
    fig.update_yaxes(type="log", title_text="downstream tasks to break even")
    fig.update_layout(title="When pre-training pays for itself (training FLOPs)", height=420)
    report.figures.append(
        (
            "Break-even number of downstream tasks",
            "Tasks after which pre-training once plus fine-tuning each task costs fewer training FLOPs than "
            "training each from scratch to the same target error (measured gains only; missing: fine-tuning "
            "saves nothing there).",
            fig,
        )
    )


def _figure_health(report: Report) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    health = report.health
    fig = make_subplots(rows=1, cols=2, subplot_titles=["trials by status", "wall time per trial"])
    counts = health.groupby(["mode", "status"]).size().unstack(fill_value=0)
    colours = {"ok": "#2ca02c", "diverged": "#ff7f0e", "failed": "#d62728"}
    for status in counts.columns:
        fig.add_trace(
            go.Bar(
                x=list(counts.index),
                y=counts[status].tolist(),
                name=status,
                marker_color=colours.get(status),
                meta={"kind": "status", "status": status},
            ),
            row=1,
            col=1,
        )
    for mode, g in health.groupby("mode"):
        fig.add_trace(
            go.Box(y=g["wall_s"], name=mode, showlegend=False, meta={"kind": "wall_s", "mode": mode}), row=1, col=2
        )
    fig.update_layout(barmode="stack", height=400, title="Sweep health")
    fig.update_yaxes(title_text="trials", row=1, col=1)
    fig.update_yaxes(title_text="seconds", type="log", row=1, col=2)
    report.figures.append(
        (
            "Sweep health",
            "Left: trials per mode by status. Right: each trial's own wall time (data, training, evaluation). "
            "The failed and diverged trials, with their errors, are listed below.",
            fig,
        )
    )


def build_report(
    df: pd.DataFrame,
    target_error: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    evaluations: pd.DataFrame | None = None,
) -> Report:
    """Fits, gains and figures of a results table, with its evaluations table (test
    metrics per resolution; fno.results.EVALUATION_SCHEMA) where given (nothing is written)."""
    check_columns(df, [*REQUIRED_COLUMNS, *HEALTH_COLUMNS])
    points = select_points(df)
    fits = fit_curves(df, n_boot=n_boot, seed=seed, points=points)
    flags = diagnose(df, points, fits)
    gains = data_efficiency_gain(
        df, target_error, fits=fits, floor_artefacts=floor_artefacts(flags), learned=learned_cells(points)
    )
    evaluations = pd.DataFrame(columns=EVALUATION_COLUMNS) if evaluations is None else evaluations
    ev_points = evaluation_points(df, evaluations, points)
    transfer, transfer_samples = fit_transfer(points, n_boot=n_boot, seed=seed)
    findings = build_findings(points, gains, flags, ev_points, transfer)
    health = df[list(HEALTH_COLUMNS)].copy()
    report = Report(points, fits, gains, health, flags, findings, probe_table(df), target_error, ev_points)
    report.surfaces = fit_surface(df, n_boot=n_boot, seed=seed, points=points)
    report.transfer, report.transfer_samples, report.break_even = transfer, transfer_samples, break_even(df, gains)
    if {"flops_per_sample", "steps", "batch_size"} <= set(df.columns):
        report.points = points.assign(train_flops=point_flops(df, points))
        report.pretrain_flops = pretrain_flops(df)
    if target_error is not None:
        report.notes.append(f"data-efficiency gain at the target error {target_error:g}")
    if not evaluations.empty and (missing := coverage(df, evaluations)) is not None:
        report.notes.append(missing)
    if not points.empty:
        _figures_error_vs_n(report)
        _figuresordered_shifts(report)
        _figure_size_trend(report)
        _figure_mixture(report)
        _figure_surfaces(report)
        _figure_transfer(report)
        _figure_compute(report)
        _figure_break_even(report)
        _figure_strategies(report)
        _figure_resolution(report)
        _figure_bands(report)
    else:
        report.notes.append("no finished downstream trials yet: only the health figure")
    _figure_health(report)
    return report


def _failed_table_html(health: pd.DataFrame) -> str:
    bad = health[health["status"] != "ok"]
    if bad.empty:
        return "<p>No failed or diverged trials.</p>"
    rows = "".join(
        f"<tr><td><code>{html.escape(r.key)}</code></td><td>{html.escape(r.mode)}</td>"
        f"<td>{html.escape(r.status)}</td><td>{html.escape(str(r.error))}</td></tr>"
        for r in bad.itertuples()
    )
    return f"<table><tr><th>key</th><th>mode</th><th>status</th><th>error</th></tr>{rows}</table>"


def _curve_label(row) -> str:
    if row["family"] == "":
        return "all curves"
    source = f", pre-trained on {row['pretrain_family']}" if row["pretrain_family"] else ""
    size = f"w{int(row['width'])}-m{int(row['modes'])}-l{int(row['layers'])}"
    mode = mode_label(row["mode"], row.get("finetune_strategy", ""))
    return f"{row['family']} / {row['shift']} / {size} / {mode}{source}"


def text_sections(report: Report) -> list[tuple[str, list[str], list[tuple[str, pd.DataFrame]]]]:
    """The report's text, shared by the HTML page and summary.md: (heading, paragraphs, tables)."""
    findings = report.findings
    answers = [
        "Each of the paper's claims, judged from this sweep's own tables: a verdict is 'supports' or "
        "'contradicts' only where the intervals decide it; otherwise 'not decided by this sweep'.",
        *(f"Caveat: {c}." for c in findings.caveats),
        *(f"{a}." for a in findings.answers),
    ]
    tables = [("The paper's claims", findings.claims)]
    tables += [(title, table) for title, table in findings.tables.items() if not table.empty]
    flags = report.flags
    trust = [
        "Checks: " + "; ".join(CHECKS) + ". Each flag names the curve and the points; the gain of a curve whose "
        "scratch floor is suspect is reported as 'not measurable with this budget', never as infinite."
    ]
    trust_tables = []
    if flags.empty:
        trust.append("No flag raised.")
    else:
        for check in CHECKS:
            here = flags[flags["check"] == check]
            if here.empty:
                continue
            shown = pd.DataFrame({"curve": [_curve_label(r) for _, r in here.iterrows()], "N": here["n_train"]})
            shown["flag"] = here["message"].to_numpy()
            trust_tables.append((f"{check} ({len(here)})", shown))
    if not report.probes.empty:
        trust.append(
            "Budget probes: the largest-N scratch trials run again at twice the budget; an improvement of the "
            "validation error above 10% means the point, and the floor of its curve, is not converged."
        )
        trust_tables.append(("Budget probes (1x vs 2x budget)", report.probes))
    gains = report.gains.drop(columns=["boot", "boot_lower", "boot_upper"], errors="ignore")
    verdicts = [f"'{k}': {v}" for k, v in GAIN_VERDICTS.items()]
    return [
        ("What this sweep answers", answers, tables),
        ("Can these numbers be trusted?", trust, trust_tables),
        ("Data-efficiency gains", ["Verdicts: " + "; ".join(verdicts) + "."], [("Gains", gains)]),
        ("Scaling laws across model sizes, and compute", *_laws_text(report)),
    ]


def _laws_text(report: Report) -> tuple[list[str], list[tuple[str, pd.DataFrame]]]:
    paragraphs = [
        "Surface: err(N, P) = E + A P^-alpha + B N^-beta over every size at once (Huber loss on log error, "
        "95% wild-bootstrap intervals; heldout_error: the median miss on the largest size of a fit to the "
        f"smaller ones; at least {MIN_SIZES} sizes). Transfer law: D_T = k D_F^alpha P^beta, the effective data "
        "transferred by pre-training, fitted with a scratch curve per size to the scratch and fine-tune points "
        "of every size at once (Huber loss on log error, 95% wild-bootstrap intervals). Break-even: the "
        "downstream tasks after which pre-training plus fine-tuning costs fewer training FLOPs than scratch "
        "training to the same target error (measured gains only)."
    ]
    forms = report.fits.reindex(columns=[*CURVE_KEYS, *(f"heldout_{f}" for f in FORMS), "best_form"])
    tables = []
    for name, table in (
        ("Surfaces", report.surfaces),
        ("Transfer law", report.transfer),
        ("Break-even number of tasks", report.break_even),
        ("Which learning-curve form predicts the largest N (relative miss of a fit to the others)", forms),
    ):
        if not table.empty:
            tables.append((name, table))
    if not tables:
        paragraphs.append("No law fitted: the sweep has too few model sizes or no fitted curves.")
    return paragraphs, tables


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def write_html(report: Report, path: Path, title: str) -> None:
    import plotly.io as pio

    text = []
    for heading, paragraphs, tables in text_sections(report):
        text.append(f"<h2>{html.escape(heading)}</h2>")
        text += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
        text += [f"<h4>{html.escape(name)}</h4>{_html_table(table)}" for name, table in tables]
    parts = []
    for i, (heading, caption, fig) in enumerate(report.figures):
        body = pio.to_html(fig, full_html=False, include_plotlyjs=i == 0)  # plotly.js once, inline
        parts.append(f"<h2>{i + 1}. {html.escape(heading)}</h2>\n<p class='caption'>{html.escape(caption)}</p>\n{body}")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1300px;margin:auto}}"
        ".caption{color:#444;max-width:900px}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:90%}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><ul>{notes}</ul>{''.join(text)}{''.join(parts)}"
        f"<h3>Failed and diverged trials</h3>{_failed_table_html(report.health)}</body></html>"
    )
    location(path).write_bytes(page.encode("utf-8"))  # a reload mid-sweep sees a whole page


def _markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = list(df.columns) if columns is None else list(columns)

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df[columns].itertuples(index=False)]
    return "\n".join(lines)


def write_summary(report: Report, path: Path, title: str) -> None:
    fits = report.fits.sort_values(["family", "shift", "n_params", "mode"])
    zero = report.points[report.points["mode"] == "zeroshot"].sort_values(["family", "shift", "n_params"])
    health = report.health.groupby(["stage", "mode", "status"]).size().reset_index(name="trials")
    fit_cols = [*CURVE_KEYS, "n_params", "n_points", "a", "b", "b_lo", "b_hi", "c", "c_lo", "c_hi"]
    fit_cols += ["rms_log_residual", "extrapolation_error", "b_pow"]
    fit_cols += [f"heldout_{f}" for f in FORMS] + ["best_form", "warning"]
    sections = [f"# {title}", *(f"- {n}" for n in report.notes)]
    for heading, paragraphs, tables in text_sections(report):
        sections += [f"## {heading}", *paragraphs]
        for name, table in tables:
            sections += [f"### {name}", _markdown_table(table)]
    sections += [
        "## Fits: err(N) = a N^-b + c (95% bootstrap-t intervals), the pure power law's b_pow, and each "
        "form's miss predicting the largest N from the others (best_form predicts best)",
        _markdown_table(fits, fit_cols) if not fits.empty else "no curves to fit",
        "## Zero-shot test error",
        _markdown_table(zero, ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params", "test_rel_l2"]),
        "## Sweep health",
        _markdown_table(health),
    ]
    text = "\n\n".join(sections) + "\n"
    location(path).write_bytes(text.encode("utf-8"))


def write_report(
    sweep_dir: str | Path | Location, target_error: float | None = None, n_boot: int = 200
) -> tuple[Location, Location]:
    """Read ``<sweep_dir>/results``, write ``report.html`` and ``summary.md`` beside it
    (``sweep_dir``: a folder or an object-store URI)."""
    sweep_dir = location(sweep_dir)
    df = read_table(sweep_dir)
    evaluations = read_evaluations_table(sweep_dir)
    report = build_report(df, target_error=target_error, n_boot=n_boot, evaluations=evaluations)
    title = f"Sweep '{sweep_dir.name}': {len(df)} trials"
    html_path, md_path = sweep_dir / "report.html", sweep_dir / "summary.md"
    write_html(report, html_path, title)
    write_summary(report, md_path, title)
    return html_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write report.html and summary.md for a sweep.")
    parser.add_argument("sweep_dir", help="the sweep's folder, <out>/<sweep> (holds results/), or its URI")
    add_fit_arguments(parser)
    args = parser.parse_args(argv)
    try:
        html_path, md_path = write_report(args.sweep_dir, args.target_error, args.n_boot)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {html_path}\nsummary: {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
