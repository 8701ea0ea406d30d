"""Sweep health: trials by status and wall time, the failed and diverged trials with their
errors, and the trial counts by stage, mode and status."""

from __future__ import annotations

import pandas as pd

from .base import Report, Section, Table

STATUS_COLOURS = {"ok": "#2ca02c", "diverged": "#ff7f0e", "failed": "#d62728"}


def figure(health: pd.DataFrame) -> tuple[str, str, object]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["trials by status", "wall time per trial"])
    counts = health.groupby(["mode", "status"]).size().unstack(fill_value=0)
    for status in counts.columns:
        fig.add_trace(
            go.Bar(
                x=list(counts.index),
                y=counts[status].tolist(),
                name=status,
                marker_color=STATUS_COLOURS.get(status),
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
    return (
        "Sweep health",
        "Left: trials per mode by status. Right: each trial's own wall time (data, training, evaluation). "
        "The failed and diverged trials, with their errors, are listed below.",
        fig,
    )


def section(report: Report) -> list[Section]:
    health = report.health
    out = Section("health", "Sweep health", "trust")
    if health.empty:
        return [out]
    out.figures.append(figure(health))
    bad = health[health["status"] != "ok"][["key", "mode", "status", "error"]].reset_index(drop=True)
    if bad.empty:
        out.paragraphs.append("No failed or diverged trials.")
    else:
        out.shown.append(Table(f"Failed and diverged trials ({len(bad)})", bad))
    counts = health.groupby(["stage", "mode", "status"]).size().reset_index(name="trials")
    out.tables.append(Table("Trials by stage, mode and status", counts))
    out.summary.append(
        f"Trials: {len(health)}, "
        + ", ".join(f"{n} {s}" for s, n in health["status"].value_counts().items())
        + (f" (failed and diverged: details.md, '{out.heading}')" if not bad.empty else "")
        + "."
    )
    return [out]
