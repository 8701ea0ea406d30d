"""Can these numbers be trusted? The diagnostics' flags: a count per check with what it
means (on the page and in summary.md), each flag with its curve and points (at the end),
and the budget probes."""

from __future__ import annotations

import pandas as pd

from fno_analysis.diagnostics import CHECKS
from fno_analysis.findings import mode_label

from .base import Report, Section, Table

# What a raised check means for the numbers (docs/analysis.md, "Can these numbers be trusted?").
MEANS = {
    "under-training": "a point still improved at the end of its budget: its error and its curve's floor are too high",
    "budget probe": "twice the budget improved the validation error by > 10%: the budget sets the point",
    "learning rate at the grid's edge": "the chosen rate is the grid's smallest or largest: a better one may lie "
    "outside",
    "scratch floor above the pre-trained model": "scratch levels off above what the architecture reaches: "
    "gains against it read 'not measurable with this budget'",
    "fine-tuning worse than zero-shot": "fine-tuning lost what pre-training gave (learning rate likely too high)",
    "failed trials": "a curve lost trials: it may miss its hardest points",
    "fit": "the fit warned (few points, exponent at the search edge, noisy or correlated residuals): "
    "its interval is widened",
    "no law predicts": "no curve form predicts the largest N: reading a gain beyond the data is not supported",
    "seeds without spread": "the seeds gave one result: the point has no interval from them",
    "one data seed": "one data set: the points' noise is shared along N and the intervals under-cover (widened)",
    "learned nothing": "no model beats predicting zero or the mean field by 0.8x: no verdict there",
    "mixed code versions": "rows from more than one version of the code are pooled",
}


def curve_label(row) -> str:
    if row["family"] == "":
        return "all curves"
    source = f", pre-trained on {row['pretrain_family']}" if row["pretrain_family"] else ""
    size = f"w{int(row['width'])}-m{int(row['modes'])}-l{int(row['layers'])}"
    mode = mode_label(row["mode"], row.get("finetune_strategy", ""))
    return f"{row['family']} / {row['shift']} / {size} / {mode}{source}"


def flag_counts(flags: pd.DataFrame) -> pd.DataFrame:
    """check, flags (how many), what it means: one row per check raised, in CHECKS order."""
    rows = [
        {"check": check, "flags": int((flags["check"] == check).sum()), "what it means": MEANS.get(check, "")}
        for check in CHECKS
        if (flags["check"] == check).any()
    ]
    return pd.DataFrame(rows, columns=["check", "flags", "what it means"])


def section(report: Report) -> list[Section]:
    flags = report.flags
    out = Section("flags", "Flags", "trust")
    out.paragraphs.append(
        "Checks: " + "; ".join(CHECKS) + ". Each flag names the curve and the points; a flag that could have "
        "inflated a gain keeps its 'supports' from standing, one that could have deflated it a 'contradicts'; the "
        "gain of a curve whose scratch floor is suspect reads 'not measurable with this budget', never infinite."
    )
    out.paragraphs += [f"Caveat: {c}." for c in report.findings.caveats if not c.startswith("the diagnostics raised")]
    if flags.empty:
        out.paragraphs.append("No flag raised.")
        out.summary.append("No flag raised.")
    else:
        counts = flag_counts(flags)
        out.shown.append(Table("Flags raised, by check", counts))
        out.summary.append(_markdown_counts(counts))
        for check in CHECKS:
            here = flags[flags["check"] == check]
            if here.empty:
                continue
            shown = pd.DataFrame({"curve": [curve_label(r) for _, r in here.iterrows()], "N": here["n_train"]})
            shown["flag"] = here["message"].to_numpy()
            out.tables.append(Table(f"Flags: {check} ({len(here)})", shown.reset_index(drop=True)))
    if not report.probes.empty:
        out.tables.append(
            Table(
                "Budget probes (1x vs 2x budget)",
                report.probes,
                "The largest-N scratch trials run again at twice the budget; an improvement of the validation "
                "error above 10% means the point, and the floor of its curve, is not converged.",
            )
        )
    return [out]


def _markdown_counts(counts: pd.DataFrame) -> str:
    lines = ["| check | flags | what it means |", "|---|---|---|"]
    lines += [f"| {r['check']} | {r['flags']} | {r['what it means']} |" for _, r in counts.iterrows()]
    return "\n".join(lines)
