"""Scaling laws across model sizes, and compute: the surface err(N, P), the transfer law,
error vs training FLOPs, the break-even number of tasks, and which curve form predicts."""

from __future__ import annotations

import math

import numpy as np

from fno_analysis.findings import mode_label
from fno_analysis.forms import FORMS
from fno_analysis.laws import MIN_SIZES, SURFACE_PARAMS, surface
from fno_analysis.points import CURVE_KEYS, ordered_shifts
from fno_analysis.transfer import TRANSFER_KEYS

from .base import (
    MODE_COLOURS,
    Report,
    Section,
    Table,
    count,
    largest_size_rows,
    pretrain_sets,
    size_label,
    worth_showing,
)
from .panels import panel_figure, shift_figure, size_colours

EXPLAINED = (
    "Surface: err(N, P) = E + A P^-alpha + B N^-beta over every size at once (Huber loss on log error, "
    "95% wild-bootstrap intervals; heldout_error: the median miss on the largest size of a fit to the "
    f"smaller ones; at least {MIN_SIZES} sizes). Transfer law: D_T = k D_F^alpha P^beta, the effective data "
    "transferred by pre-training, fitted with a scratch curve per size to the scratch and fine-tune points "
    "of every size at once (Huber loss on log error, 95% wild-bootstrap intervals). Break-even: the "
    "downstream tasks after which pre-training plus fine-tuning costs fewer training FLOPs than scratch "
    "training to the same target error (measured gains only)."
)


def _surfaces(report: Report) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go

    if report.surfaces.empty:
        return []
    fitted = report.surfaces[np.isfinite(report.surfaces["alpha"].astype(float))]
    points = report.points
    figures = []
    for (family, shift), cells in fitted.groupby(["family", "shift"], sort=True):
        panels, titles = [], []
        for _, fit in cells.iterrows():
            here = points[
                (points["family"] == family) & (points["shift"] == shift) & (points["mode"] == fit["mode"])
                & (points["pretrain_family"] == fit["pretrain_family"])
                & (points["finetune_strategy"] == fit["finetune_strategy"])
            ]  # fmt: skip
            n_params = sorted(here["n_params"].unique())
            params = [fit[k] for k in SURFACE_PARAMS]
            traces = []
            for colour, p in zip(size_colours(len(n_params)), n_params, strict=True):
                sel = here[here["n_params"] == p].sort_values("n_train")
                name = f"{count(p)} parameters"
                meta = {"family": family, "shift": shift, "mode": fit["mode"], "n_params": int(p)}
                traces.append(go.Scatter(x=sel["n_train"], y=sel["test_rel_l2"], mode="markers", name=name,
                                         legendgroup=name, showlegend=not panels, marker={"color": colour},
                                         meta={**meta, "kind": "points"}))  # fmt: skip
                xs = np.geomspace(sel["n_train"].min(), sel["n_train"].max(), 40)
                traces.append(go.Scatter(x=xs, y=surface(xs, p, params), mode="lines", line={"color": colour},
                                         name=name, legendgroup=name, showlegend=False,
                                         meta={**meta, "kind": "surface"}))  # fmt: skip
            panels.append(traces)
            source = f" from {fit['pretrain_family']}" if fit["pretrain_family"] else ""
            titles.append(
                f"{mode_label(fit['mode'], fit['finetune_strategy'])}{source}: alpha {fit['alpha']:.2f} "
                f"[{fit['alpha_lo']:.2f}, {fit['alpha_hi']:.2f}], beta {fit['beta']:.2f} "
                f"[{fit['beta_lo']:.2f}, {fit['beta_hi']:.2f}]"
            )
        fig = panel_figure(panels, titles)
        fig.update_layout(title=f"{family}, shift '{shift}': one surface E + A P^-alpha + B N^-beta over sizes")
        fig.update_annotations(font_size=11)  # the panel titles carry the intervals
        figures.append(
            (
                f"Scaling surface over model size and data ({family}, shift '{shift}')",
                "Markers: the test error of every size (colour) at every N; lines: one surface "
                "err(N, P) = E + A P^-alpha + B N^-beta fitted to all of them (Huber loss on log error, "
                "95% intervals in the panel titles).",
                fig,
            )
        )
    return figures


def _transfer(report: Report) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go

    if report.transfer.empty or not np.isfinite(report.transfer["beta"].astype(float)).any():
        return []
    samples = report.transfer_samples
    laws = report.transfer.set_index(TRANSFER_KEYS)
    families = sorted(samples["family"].unique())
    panels = []
    for family in families:
        traces = []
        for (shift, source, p), sel in samples[samples["family"] == family].groupby(
            ["shift", "pretrain_family", "n_params"], sort=True
        ):
            name = f"{shift}, {source}, {count(p)} parameters"
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
    fig = panel_figure(panels, families, height=520)
    fig.update_xaxes(title_text="fine-tuning examples D_F")
    fig.update_yaxes(title_text="effective data transferred D_T", row=1, col=1)
    fig.update_layout(title="The transfer law: D_T = D_E - D_F = k D_F^alpha P^beta")
    return [
        (
            "The transfer law",
            "Markers: the effective data transferred by pre-training, D_T = D_E - D_F, where scratch needs D_E "
            "examples to reach the error fine-tuning measured with D_F, read from the size's scratch curve (only "
            "fine-tune points above the scratch error at its largest N); lines: k D_F^alpha P^beta, fitted to "
            "the scratch and fine-tune points of all sizes at once. beta > 0: a larger model transfers more.",
            fig,
        )
    ]


def _compute(report: Report) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go

    points = report.points
    if "train_flops" not in points or not np.isfinite(points["train_flops"]).any():
        return []
    figures = []
    for family in sorted(points["family"].unique()):
        here, size = largest_size_rows(points, points, family)
        here = here[here["finetune_strategy"].isin(["", "full"]) & (here["mode"] != "zeroshot")]
        source = (pretrain_sets(points, family) or [""])[0]
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
        figures.append(
            shift_figure(
                panels,
                shifts,
                f"{family}: test error vs training compute, {size_label(*size)}",
                f"Error vs training compute ({family}, {size_label(*size)})",
                "Each point is a downstream N; its cost is 3 x forward FLOPs per sample x steps x batch. Dotted: "
                "fine-tuning plus the whole pre-training (one task pays for it); the break-even table says after "
                "how many tasks pre-training pays for itself.",
                title_text="training FLOPs",
            )
        )
    return figures


def _break_even(report: Report) -> list[tuple[str, str, object]]:
    import plotly.graph_objects as go

    table = report.break_even
    if table.empty or not np.isfinite(table["break_even_tasks"].astype(float)).any():
        return []
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
    fig.update_layout(title="When pre-training pays for itself (training FLOPs)", height=440)
    return [
        (
            "Break-even number of downstream tasks",
            "Tasks after which pre-training once plus fine-tuning each task costs fewer training FLOPs than "
            "training each from scratch to the same target error (measured gains only; missing: fine-tuning "
            "saves nothing there).",
            fig,
        )
    ]


def _why_not(table, what: str) -> str:
    """'No surface fitted: <the notes of its rows>.'"""
    notes = sorted({str(n) for n in table["note"] if isinstance(n, str) and n}) if "note" in table else []
    return f"No {what} fitted" + (f": {'; '.join(notes)}" if notes else "") + "."


def section(report: Report) -> list[Section]:
    out = Section("laws", "Scaling laws across model sizes, and compute", "figures")
    out.figures += _surfaces(report) + _transfer(report) + _compute(report) + _break_even(report)
    forms = report.fits.reindex(columns=[*CURVE_KEYS, *(f"heldout_{f}" for f in FORMS), "best_form"])
    heldout = tuple(f"heldout_{f}" for f in FORMS)
    for title, table, values, what in (
        ("Surfaces", report.surfaces, ("alpha", "beta", "E"), "surface"),
        ("Transfer law", report.transfer, ("k", "alpha", "beta"), "transfer law"),
        ("Break-even number of tasks", report.break_even, ("break_even_tasks",), ""),
        ("Which learning-curve form predicts the largest N (relative miss of a fit to the others)", forms, heldout, ""),
    ):
        shown = worth_showing(table, values)
        if shown is not None:
            out.tables.append(Table(title, shown))
        elif what and not table.empty:
            out.paragraphs.append(_why_not(table, what))
    if out.figures or out.tables:
        out.paragraphs.insert(0, EXPLAINED)
    return [out]
