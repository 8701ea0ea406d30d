"""build_report: the analysis tables of a results table, then each section in page order.
A new section is a module with ``section(report) -> list[Section]``, listed in SECTIONS."""

from __future__ import annotations

import pandas as pd

from fno_analysis.diagnostics import diagnose, floor_artefacts, probe_table
from fno_analysis.evaluations import EVALUATION_COLUMNS, coverage, evaluation_points
from fno_analysis.findings import build_findings
from fno_analysis.fit import fit_curves
from fno_analysis.gains import data_efficiency_gain
from fno_analysis.laws import break_even, fit_surface, point_flops, pretrain_flops
from fno_analysis.points import REQUIRED_COLUMNS, check_columns, select_points
from fno_analysis.transfer import fit_transfer
from fno_analysis.verdicts import learned_cells

from . import claims, curves, gains, health, laws, resolutions, rounds, shifts, strategies, trust, validation
from .base import HEALTH_COLUMNS, Report, Table, worth_showing

# Page order: the answer, the figures that carry it, the checks; each section's long tables go to the end.
SECTIONS = (claims, curves, gains, shifts, strategies, resolutions, laws, trust, rounds, validation, health)


def _signature(fig) -> frozenset:
    """What a figure draws: its traces' names and data, wherever they sit."""

    def values(v) -> tuple:
        return () if v is None else tuple(round(float(x), 12) if isinstance(x, int | float) else x for x in v)

    return frozenset((t.name, values(t.x), values(t.y)) for t in fig.data)


def drop_repeated_figures(report: Report) -> None:
    """Leave out a figure that draws nothing, or nothing an earlier figure does not."""
    seen: list[frozenset] = []
    for section in report.sections:
        kept = []
        for figure in section.figures:
            drawn = _signature(figure[2])
            if drawn and not any(drawn <= earlier for earlier in seen):
                kept.append(figure)
                seen.append(drawn)
        section.figures = kept


def drop_empty_tables(report: Report) -> None:
    """Leave out every table with no rows, and every column that holds nothing."""
    for section in report.sections:
        for kind in ("shown", "tables"):
            kept = []
            for table in getattr(section, kind):
                frame = worth_showing(table.frame)
                if frame is not None:
                    kept.append(Table(table.title, frame.reset_index(drop=True), table.note))
            setattr(section, kind, kept)


def build_report(
    df: pd.DataFrame,
    target_error: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    evaluations: pd.DataFrame | None = None,
    adaptive_rounds: list[dict] | None = None,
) -> Report:
    """Fits, gains, findings and the page's sections of a results table, with its
    evaluations table (test metrics per resolution; fno.results.EVALUATION_SCHEMA) where
    given, and the adaptive rounds of its manifest (``rounds.read_rounds``) (nothing is written)."""
    check_columns(df, [*REQUIRED_COLUMNS, *HEALTH_COLUMNS])
    points = select_points(df)
    fits = fit_curves(df, n_boot=n_boot, seed=seed, points=points)
    flags = diagnose(df, points, fits)
    gains_table = data_efficiency_gain(
        df, target_error, fits=fits, floor_artefacts=floor_artefacts(flags), learned=learned_cells(points)
    )
    evaluations = pd.DataFrame(columns=EVALUATION_COLUMNS) if evaluations is None else evaluations
    ev_points = evaluation_points(df, evaluations, points)
    transfer, transfer_samples = fit_transfer(points, n_boot=n_boot, seed=seed)
    findings = build_findings(points, gains_table, flags, ev_points, transfer)
    report = Report(
        points, fits, gains_table, df[list(HEALTH_COLUMNS)].copy(), flags, findings, probe_table(df), target_error,
        ev_points,
    )  # fmt: skip
    report.surfaces = fit_surface(df, n_boot=n_boot, seed=seed, points=points)
    report.transfer, report.transfer_samples = transfer, transfer_samples
    report.break_even = break_even(df, gains_table)
    report.trials = validation.trial_curves(df)
    report.rounds = list(adaptive_rounds or [])
    if {"flops_per_sample", "steps", "batch_size"} <= set(df.columns):
        report.points = points.assign(train_flops=point_flops(df, points))
        report.pretrain_flops = pretrain_flops(df)
    if target_error is not None:
        report.notes.append(f"data-efficiency gain at the target error {target_error:g}")
    if not evaluations.empty and (missing := coverage(df, evaluations)) is not None:
        report.notes.append(missing)
    if points.empty:
        report.notes.append("no finished downstream trials yet: only the trials' health and validation curves")
    for module in SECTIONS:
        report.sections += module.section(report)
    drop_repeated_figures(report)
    drop_empty_tables(report)
    report.figures = [f for s in report.sections for f in s.figures]
    return report


def text_sections(report: Report) -> list[tuple[str, list[str], list[tuple[str, pd.DataFrame]]]]:
    """Each section's text as (heading, paragraphs, [(table title, table)]), in page order."""
    return [
        (s.heading, list(s.paragraphs), [(t.title, t.frame) for t in [*s.shown, *s.tables]])
        for s in report.sections
        if not s.empty
    ]
