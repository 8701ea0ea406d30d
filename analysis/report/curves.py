"""Learning curves: test error vs N per model size, and across shifts (with the mixture's
fine-tuning where the sweep pre-trained on it); the fit table behind them."""

from __future__ import annotations

from fno_analysis.forms import FORMS
from fno_analysis.points import CURVE_KEYS, ordered_shifts

from .base import Report, Section, Table, pretrain_sets, size_label, sizes, worth_showing
from .panels import curve_traces, panel_figure, shift_figure

FIT_COLUMNS = [*CURVE_KEYS, "n_params", "n_points", "a", "b", "b_lo", "b_hi", "c", "c_lo", "c_hi"]
FIT_COLUMNS += ["rms_log_residual", "extrapolation_error", "b_pow", *(f"heldout_{f}" for f in FORMS), "best_form"]
FIT_COLUMNS += ["warning"]


def _by_size(report: Report, family: str) -> tuple[str, str, object]:
    points, fits = report.points, report.fits
    shift = ordered_shifts(points.loc[points["family"] == family, "shift"])[0]
    family_sizes = sizes(points[points["family"] == family])
    sources = pretrain_sets(points, family)
    panels = [curve_traces(points, fits, family, shift, s, sources, i == 0) for i, s in enumerate(family_sizes)]
    fig = panel_figure(panels, [size_label(*s) for s in family_sizes])
    fig.update_layout(title=f"{family}: test error vs N, shift '{shift}', one panel per model size")
    return (
        f"Test error vs N by model size ({family}, shift '{shift}')",
        "Each panel is one model size. Markers: the test error at each N with the learning rate chosen "
        "by validation error (error bars: spread over seeds); lines: fitted a N^-b + c; dashed: zero-shot "
        "error of the pre-trained model (independent of N). Fine-tuning below scratch means pre-training "
        "helps; the horizontal gap between the curves is the data-efficiency gain.",
        fig,
    )


def _across_shifts(report: Report, family: str) -> tuple[str, str, object]:
    points, fits = report.points, report.fits
    here = points[points["family"] == family]
    shifts = ordered_shifts(here["shift"])
    size = sizes(here)[-1]
    sources = pretrain_sets(points, family)
    panels = [curve_traces(points, fits, family, s, size, sources, i == 0) for i, s in enumerate(shifts)]
    mixture = "mixture" in sources and len(sources) > 1
    caption = (
        "Each panel is one downstream parameter range, from in-distribution ('none') to the largest shift. "
        "Zero-shot error grows with the shift; fine-tuning recovers most of it with few examples."
    )
    if mixture:
        caption += (
            f" Fine-tuning (and zero-shot) from a model pre-trained on {family} alone (circles, dashed) and on the "
            "mixture of all families (diamonds, dotted), against scratch training."
        )
    return shift_figure(
        panels,
        shifts,
        f"{family}: test error vs N across shifts, {size_label(*size)}",
        f"Test error vs N across physics shifts ({family}, {size_label(*size)}"
        + (", single-family vs mixture pre-training)" if mixture else ")"),
        caption,
    )


def section(report: Report) -> list[Section]:
    points = report.points
    out = Section("curves", "Learning curves", "figures")
    if not points.empty:
        for family in sorted(points["family"].unique()):
            here = points[points["family"] == family]
            several_sizes, several_shifts = len(sizes(here)) > 1, here["shift"].nunique() > 1
            if several_sizes or not several_shifts:  # one size: the panel is the across-shifts figure's first
                out.figures.append(_by_size(report, family))
            if several_shifts:
                out.figures.append(_across_shifts(report, family))
        finetune = points[points["mode"] == "finetune"]
        sources = finetune.groupby("family")["pretrain_family"].agg(set)
        if not any({"mixture", family} <= used for family, used in sources.items()):
            report.notes.append("no comparison of mixed vs single-family pre-training: the sweep has no such pair")
    fits = report.fits.sort_values(["family", "shift", "n_params", "mode"]) if not report.fits.empty else report.fits
    table = worth_showing(fits.reindex(columns=FIT_COLUMNS), values=("b", "c", "a"))
    if table is not None:
        out.tables.append(
            Table(
                "Fits: err(N) = a N^-b + c (95% bootstrap-t intervals), the pure power law's b_pow, and each "
                "form's miss predicting the largest N from the others (best_form predicts best)",
                table,
            )
        )
    return [out]
