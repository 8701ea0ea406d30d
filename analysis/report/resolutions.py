"""Transfer across grids and frequencies: error vs test resolution, error by wave-number
band, and their tables (where the sweep has an evaluations table)."""

from __future__ import annotations

from fno.metrics import BAND_EDGES
from fno_analysis.evaluations import BAND_METRICS
from fno_analysis.findings import BAND_TABLE, RESOLUTION_ANSWER, RESOLUTION_TABLE, mode_label
from fno_analysis.points import ordered_shifts

from .base import (
    MODE_COLOURS,
    STRATEGY_COLOURS,
    Report,
    Section,
    Table,
    largest_size_rows,
    pretrain_sets,
    size_label,
    worth_showing,
)
from .panels import interval_bars, panel_figure, shift_figure


def _resolution_figures(report: Report) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go

    ev = report.evaluations
    if ev.empty or ev["resolution"].nunique() < 2:
        return []
    rel = ev[ev["metric"] == "rel_l2"]
    figures = []
    for family in sorted(rel["family"].unique()):
        here, size = largest_size_rows(rel, report.points, family)
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
                        error_y=interval_bars(line["value"], line["lo"], line["hi"]),
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
        figures.append(
            shift_figure(
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
        )
    return figures


def _band_figures(report: Report) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go

    ev = report.evaluations
    if ev.empty:
        return []
    at_train = ev[(ev["resolution"] == ev["train_resolution"]) & ev["finetune_strategy"].isin(["", "full"])]
    figures = []
    for family in sorted(at_train["family"].unique()):
        here, size = largest_size_rows(at_train, report.points, family)
        source = (pretrain_sets(report.points, family) or [""])[0]
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
        if not any(panels):
            continue
        fig = panel_figure(panels, [f"{b.removeprefix('rel_l2_')} band" for b in BAND_METRICS])
        fig.update_yaxes(title_text="band error / ||u||", row=1, col=1)
        fig.update_layout(title=f"{family}: error by frequency band vs N, {size_label(*size)}")
        figures.append(
            (
                f"Error by frequency band ({family}, {size_label(*size)})",
                f"The test error split by wave number |k| as a fraction of the grid's Nyquist number K: low "
                f"|k| < {BAND_EDGES[0]:g} K, mid up to {BAND_EDGES[1]:g} K, high beyond; each is the band's error "
                "over the whole target's norm, so the squares of the three add up to the squared relative error. "
                f"Scratch and fine-tuning (pre-trained on {source or 'nothing'}), at the training resolution.",
                fig,
            )
        )
    return figures


def section(report: Report) -> list[Section]:
    out = Section("resolutions", "Resolutions and frequency bands", "figures")
    out.figures += _resolution_figures(report) + _band_figures(report)
    out.paragraphs += [f"{a}." for a in report.findings.answers if a.startswith(RESOLUTION_ANSWER)]
    answers = [f"- {a}." for a in report.findings.answers if a.startswith(RESOLUTION_ANSWER)]
    out.summary += ["\n".join(answers)] if answers else []
    for title in (RESOLUTION_TABLE, BAND_TABLE):
        table = worth_showing(report.findings.tables.get(title))
        if table is not None:
            out.tables.append(Table(title, table))
    return [out]
