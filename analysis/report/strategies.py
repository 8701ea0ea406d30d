"""Which weights to fine-tune: test error vs N of each fine-tuning strategy, per family and
shift, and the table that says which strategy wins at the smallest and largest N."""

from __future__ import annotations

from fno.vocabulary import FINETUNE_STRATEGIES
from fno_analysis.findings import STRATEGY_ANSWER, STRATEGY_TABLE
from fno_analysis.points import ordered_shifts

from .base import Report, Section, Table, pretrain_sets, size_label, sizes, worth_showing
from .panels import curve_traces, shift_figure


def section(report: Report) -> list[Section]:
    points, fits = report.points, report.fits
    out = Section("strategies", "Fine-tuning strategies", "figures")
    present = set(points.loc[points["mode"] == "finetune", "finetune_strategy"]) if not points.empty else set()
    strategies = [s for s in FINETUNE_STRATEGIES if s in present]
    if len(strategies) >= 2:
        for family in sorted(points["family"].unique()):
            here = points[points["family"] == family]
            size, sources = sizes(here)[-1], pretrain_sets(points, family)[:1]
            shifts = ordered_shifts(here["shift"])
            panels = [
                curve_traces(points, fits, family, s, size, sources, i == 0, strategies=strategies)
                for i, s in enumerate(shifts)
            ]
            out.figures.append(
                shift_figure(
                    panels,
                    shifts,
                    f"{family}: fine-tuning strategies, {size_label(*size)}",
                    f"Fine-tuning strategies ({family}, {size_label(*size)}, pre-trained on {', '.join(sources)})",
                    "Test error vs N of each fine-tuning strategy (full: every weight; head: the projection only; "
                    "lift-head: lifting and projection; frozen-spectral: everything but the spectral weights) "
                    "beside scratch training and the zero-shot error. Each strategy's learning rate is chosen by "
                    "validation at each N, as for the other curves.",
                )
            )
    out.paragraphs += [f"{a}." for a in report.findings.answers if a.startswith(STRATEGY_ANSWER)]
    answers = [f"- {a}." for a in report.findings.answers if a.startswith(STRATEGY_ANSWER)]
    out.summary += ["\n".join(answers)] if answers else []
    table = worth_showing(report.findings.tables.get(STRATEGY_TABLE))
    if table is not None:
        out.tables.append(Table(STRATEGY_TABLE, table))
    return [out]
