"""The bottom line and the paper's four claims: one paragraph that answers the study's
question for this run, a short table (verdict, one number with its interval, why not
decided), and one evidence section per claim with its full text and tables.

Nothing here judges: the verdicts are ``fno_analysis.findings``'; this module picks the
number to show and says in a few words why a claim is not decided."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd

from fno_analysis.findings import (
    GAIN_TABLE,
    MIXTURE_TABLE,
    SMALLEST_N_TABLE,
    TRANSFER_ANSWER,
    TREND_TABLE,
    ZERO_SHOT_TABLE,
    paper_rows,
    smallest_n_comparison,
)
from fno_analysis.points import ordered_shifts
from fno_analysis.verdicts import CELL_KEYS, CONTRADICTS, NO_INTERVAL, NOT_LEARNED, SUPPORTS, learned_cells

from .base import Report, Section, Table, shorten, worth_showing
from .tables import markdown_table

NAMES = {
    1: "Fine-tuning needs >= 10x fewer examples than scratch",
    2: "The gain grows with model size",
    3: "A mixture-pretrained model adapts to each family",
    4: "Zero-shot error grows with the shift; fine-tuning recovers it",
}
TABLES = {1: (GAIN_TABLE, SMALLEST_N_TABLE), 2: (TREND_TABLE,), 3: (MIXTURE_TABLE,), 4: (ZERO_SHOT_TABLE,)}
# A cell the intervals do not decide, in a few words, per claim.
WIDE = {
    1: "the gain's interval reaches both sides of 10x",
    2: "the slope's interval includes 0",
    3: "the ratio's interval includes 1",
    4: "the ratios' intervals overlap their thresholds",
}
NOT_LEARNED_WHY = "cells where no model learned the task"
COLUMNS = ["claim", "verdict", "this run's number [95% interval]", "why not decided"]
DECIDED = (SUPPORTS, CONTRADICTS)


def _number(text) -> float:
    """The leading number of a formatted value ('0.83 [0.7, 0.95]', '>= 16 [4.8, inf]'); NaN if none."""
    found = re.match(r"\s*(?:>=|<=)?\s*(-?(?:inf|[0-9.]+(?:e[-+]?[0-9]+)?))", str(text))
    return float(found.group(1)) if found else math.nan


def _interval_low(text) -> float:
    """The lower end of '[lo, hi]' in ``text``; NaN if none."""
    found = re.search(r"\[(-?[0-9.e+-]+|-?inf), ", str(text))
    return float(found.group(1)) if found else math.nan


def _size(row) -> str:
    return f"w{int(row['width'])}-m{int(row['modes'])}"


def _learned(cells: pd.DataFrame | None) -> pd.DataFrame:
    if cells is None or cells.empty or "verdict" not in cells:
        return pd.DataFrame()
    return cells[cells["verdict"] != NOT_LEARNED]


def _median_row(rows: pd.DataFrame, values: pd.Series) -> pd.Series | None:
    """The row whose value is the median (the lower middle one) of the finite ``values``."""
    finite = values[np.isfinite(values)]
    if finite.empty:
        return None
    ordered = finite.sort_values(kind="stable")
    return rows.loc[ordered.index[(len(ordered) - 1) // 2]]


def best_gain(cells: pd.DataFrame | None, shift: str | None = None) -> pd.Series | None:
    """Claim 1's strongest learned cell (at ``shift``, or any): the highest decision
    interval's lower end, then the highest gain or bound."""
    rows = _learned(cells)
    if rows.empty:
        return None
    rows = rows[rows["gain_kind"].isin(["measured", "lower bound", "upper bound"])]
    if shift is not None:
        rows = rows[rows["shift"] == shift]
    if rows.empty:
        return None
    low = rows["decision_interval"].map(_interval_low).fillna(-math.inf)
    value = rows["gain"].map(_number).fillna(-math.inf)
    order = pd.DataFrame({"low": low, "value": value}).sort_values(["low", "value"], ascending=False, kind="stable")
    return rows.loc[order.index[0]]


def _gain_text(row: pd.Series) -> str:
    """'>= 15.1 [12.3, 5.49e+03] (poisson/none w8-m4); widened [10.1, 1.99e+06]'."""
    text = f"{row['gain']} ({row['family']}/{row['shift']} {_size(row)})"
    if "widened" in str(row["decision_interval"]):
        text += f"; widened {row['decision_interval'].split(' (')[0]}"
    return text


def _gain_phrase(row: pd.Series) -> str:
    """'>= 15.1 times (poisson w8-m4; 95% interval [12.3, 5.49e+03], widened for known under-coverage to ...)'."""
    value, _, interval = str(row["gain"]).partition(" [")
    detail = [f"95% interval [{interval}" if interval else "no interval"]
    if "widened" in str(row["decision_interval"]):
        detail.append(f"widened for known under-coverage to {row['decision_interval'].split(' (')[0]}")
    return f"{value} times ({row['family']} {_size(row)}; {', '.join(detail)})"


def claim_number(claim: int, cells: pd.DataFrame | None) -> str:
    """The one number a claim is read from, with its interval and the cell it comes from."""
    rows = _learned(cells)
    if claim == 1:
        best = best_gain(cells)
        return _gain_text(best) if best is not None else "no gain or bound measured"
    if rows.empty:
        return "-"
    if claim == 2:
        bounded = rows[rows["slope_lo"].notna() & rows["slope_hi"].notna()]
        if bounded.empty:
            return "no size trend with two sizes of gains"
        width = (bounded["slope_hi"] - bounded["slope_lo"]).astype(float).fillna(math.inf)
        t = bounded.loc[width.sort_values(kind="stable").index[0]]
        where = f"{t['family']}/{t['shift']}/{t['pretrain_family']}"
        if not np.isfinite(width[t.name]):
            return f"slope [{t['slope_lo']:.2f}, {t['slope_hi']:.2f}] in every cell (censored sizes leave it open)"
        return f"slope [{t['slope_lo']:.2f}, {t['slope_hi']:.2f}] ({where}, the narrowest of {len(bounded)})"
    if claim == 3:
        row = _median_row(rows, rows["mixture_over_scratch"].map(_number))
        if row is None:
            return "-"
        return (
            f"mixture / scratch error {row['mixture_over_scratch']} ({row['family']}/{row['shift']} {_size(row)}, "
            f"N = {int(row['n_train'])}; the median of {len(rows)} cells)"
        )
    recovery = rows.apply(lambda r: next((r[c] for c in rows.columns if c.startswith("finetune_N") and
                                          isinstance(r[c], str) and r[c]), ""), axis=1)  # fmt: skip
    row = _median_row(rows, recovery.map(_number))
    if row is None:
        return "-"
    column = next(c for c in rows.columns if c.startswith("finetune_N") and row[c] == recovery[row.name])
    n, _, shift = column.removeprefix("finetune_N").partition("_over_zeroshot_")
    return (
        f"fine-tuned (N = {n}) / zero-shot error at shift {shift}: {recovery[row.name]} ({row['family']} "
        f"{_size(row)} from {row['pretrain_family']}; the median of {len(rows)} cells)"
    )


def _why(claim: int, verdict: str) -> str:
    """A cell's undecided verdict in a few words."""
    if verdict == NO_INTERVAL:
        return "no interval (fewer than 2 data seeds, or 3 training seeds with spread)"
    if verdict == NOT_LEARNED:
        return "learned nothing (no model beats predicting zero or the mean field by the margin)"
    if verdict.startswith("not decided (") or "(flags that move gains" in verdict:
        return verdict.removeprefix("not decided ").strip("()").replace("): ", ": ")
    return WIDE[claim]


def claim_reason(claim: int, verdict: str, cells: pd.DataFrame | None, evidence: str) -> str:
    """Why a claim is not decided, from its cells' verdicts (empty where it is decided)."""
    if verdict in DECIDED:
        return ""
    if cells is None or cells.empty or "verdict" not in cells:
        return shorten(evidence)
    counts = cells["verdict"].map(lambda v: _why(claim, v) if v not in DECIDED else "").value_counts()
    parts = [f"{n} of {len(cells)} cells: {why}" for why, n in counts.items() if why]
    if claim == 3 and "no mixture fine-tuning for" in evidence:
        parts.append(evidence[evidence.index("no mixture fine-tuning for") :])
    if claim == 4 and len(set(cells["family"])) < 3:
        parts.append(f"only {', '.join(sorted(set(cells['family'])))}: 'across families' needs all three")
    if claim == 1 and "supported at shifts" in verdict:
        parts.insert(0, "supported at some shifts only")
    return shorten("; ".join(parts))


def claim_rows(report: Report) -> pd.DataFrame:
    """The short claims table: claim number and name, verdict, number, reason."""
    findings = report.findings
    rows = []
    for _, c in findings.claims.iterrows():
        k = int(c["claim"])
        cells = findings.cells.get(k)
        rows.append(
            {
                "claim": k,
                "name": NAMES[k],
                "verdict": c["verdict"],
                "number": shorten(claim_number(k, cells)),
                "reason": claim_reason(k, c["verdict"], cells, c["evidence"]),
            }
        )
    return pd.DataFrame(rows)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _beats_scratch(report: Report) -> str:
    """Does fine-tuning beat scratch at the smallest N, in the learned cells?"""
    points = report.points
    table = smallest_n_comparison(paper_rows(points)) if not points.empty else pd.DataFrame()
    if table.empty:
        return "This run cannot say whether pre-training beats scratch training: it has no fine-tune and scratch pair."
    learned = learned_cells(points)
    if not learned.empty:
        table = table.merge(learned[[*CELL_KEYS, "learned"]], on=CELL_KEYS, how="left")
        table = table[table["learned"].fillna(True).astype(bool)]
    if table.empty:
        return (
            "This run cannot say whether pre-training beats scratch training: in no cell does a model beat "
            "predicting zero or the mean field (the models learn nothing at these sizes and budgets)."
        )
    ratio = table["ratio"].astype(float)
    lower, k = int((ratio < 1).sum()), len(table)
    won = int((table["ratio_hi"].astype(float) < 1).sum())
    lost = int((table["ratio_lo"].astype(float) > 1).sum())
    if won and not lost:
        answer = "Yes, where this run can tell"
    elif lost and not won:
        answer = "No: scratch training is better where this run can tell"
    elif won and lost:
        answer = "In some cells and not in others"
    elif lower >= 0.75 * k:
        answer = "Probably, but this run cannot decide it"
    elif lower <= 0.25 * k:
        answer = "Probably not, but this run cannot decide it"
    else:
        answer = "Not clearly"
    ns = sorted({int(n) for n in table["n_train"]})
    decided = (
        f"{_plural(won, 'cell', 'cells')} decided for fine-tuning and {lost} for scratch by their intervals"
        if won or lost
        else "no cell decided by its interval"
    )
    return (
        f"Does pre-training beat training from scratch here? {answer}. At the smallest N "
        f"({', '.join(map(str, ns))}), fine-tuning has the lower test error in {lower} of "
        f"{_plural(k, 'cell', 'cells')} that learned (family, shift, size, pre-training set; fine-tune / scratch "
        f"error ratio median {np.median(ratio):.2f}, range {ratio.min():.2f}-{ratio.max():.2f}); {decided}."
    )


def _by_how_much(report: Report) -> str:
    cells = _learned(report.findings.cells.get(1))
    if cells.empty:
        return ""
    shifts = ordered_shifts(cells["shift"])
    places = [("in distribution" if shifts[0] == "none" else f"at shift '{shifts[0]}'", shifts[0])]
    if len(shifts) > 1:
        places.append((f"under the largest shift ('{shifts[-1]}')", shifts[-1]))
    parts = []
    for where, shift in places:
        best = best_gain(cells, shift)
        if best is not None:
            parts.append(f"{where}, {_gain_phrase(best)}")
        else:
            kinds = cells.loc[cells["shift"] == shift, "gain_kind"].value_counts()
            parts.append(f"{where}, no measurable gain (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
    return (
        "By how much: at best, scratch training needs this many times the examples fine-tuning needs to reach "
        "the same error: " + "; ".join(parts) + "."
    )


def _what_is_open(report: Report, rows: pd.DataFrame) -> str:
    decided = rows[rows["verdict"].isin(DECIDED)]
    said = ", ".join(f"{v}s claim {c}" for c, v in zip(decided["claim"], decided["verdict"], strict=True))
    head = f"This run decides {len(decided) if len(decided) else 'none'} of the paper's four claims" + (
        f" ({said})" if said else ""
    )
    if len(decided) == len(rows):
        return head + "."
    tally: dict[str, int] = {}
    for k, cells in report.findings.cells.items():
        verdict = rows.loc[rows["claim"] == k, "verdict"]
        if cells is None or cells.empty or "verdict" not in cells or verdict.isin(DECIDED).all():
            continue
        for v in cells["verdict"]:
            if v in DECIDED:
                continue
            if v == NO_INTERVAL:
                why = "points without an interval (one data seed, or seeds that gave one result: use data_seeds)"
            elif v == NOT_LEARNED:
                why = NOT_LEARNED_WHY
            elif v.startswith("not decided (") or "flags that move gains" in v:
                why = "flags that could have moved a gain (see 'Can these numbers be trusted?')"
            else:
                why = "intervals too wide to decide"
            tally[why] = tally.get(why, 0) + 1
    reasons = [why for why, _ in sorted(tally.items(), key=lambda kv: -kv[1])]
    if NOT_LEARNED_WHY in reasons:
        nothing = pd.concat([c for c in report.findings.cells.values() if c is not None and "shift" in c])
        nothing = nothing[nothing["verdict"] == NOT_LEARNED]
        where = sorted({f"{r['family']}/{r['shift']}" for _, r in nothing.iterrows()})
        if where:
            reasons[reasons.index(NOT_LEARNED_WHY)] += f" ({', '.join(where)})"
    for _, r in rows[~rows["verdict"].isin(DECIDED)].iterrows():
        cells = report.findings.cells.get(int(r["claim"]))
        if (cells is None or cells.empty) and r["reason"]:
            reasons.append(f"claim {r['claim']}: {r['reason']}")
    return head + ". What keeps " + ("the others" if len(decided) else "them") + " open: " + "; ".join(reasons) + "."


def bottom_line(report: Report, rows: pd.DataFrame | None = None) -> str:
    """One paragraph: does pre-training beat scratch here, by how much, and what this run cannot say, and why."""
    rows = claim_rows(report) if rows is None else rows
    parts = [_beats_scratch(report), _by_how_much(report), _what_is_open(report, rows)]
    return " ".join(p for p in parts if p)


def _claims_html(rows: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr><td><a href='#claim-{r['claim']}'>{r['claim']}. {html.escape(r['name'])}</a></td>"
        f"<td class='verdict'>{html.escape(r['verdict'])}</td><td>{html.escape(r['number'])}</td>"
        f"<td>{html.escape(r['reason'])}</td></tr>"
        for _, r in rows.iterrows()
    )
    return f"<table class='claims'><tr>{head}</tr>{body}</table>"


def _claims_markdown(rows: pd.DataFrame) -> str:
    shown = pd.DataFrame(
        {
            COLUMNS[0]: [f"[{r['claim']}. {r['name']}](details.md#claim-{r['claim']})" for _, r in rows.iterrows()],
            COLUMNS[1]: rows["verdict"],
            COLUMNS[2]: rows["number"],
            COLUMNS[3]: rows["reason"],
        }
    )
    return markdown_table(shown)


def section(report: Report) -> list[Section]:
    findings = report.findings
    rows = claim_rows(report)
    line = bottom_line(report, rows)
    top = Section("bottom-line", "Bottom line", "answer", paragraphs=[line])
    top.html.append(_claims_html(rows))
    top.summary += [line, "### The paper's claims", _claims_markdown(rows)]
    out = [top]
    for _, c in findings.claims.iterrows():
        k = int(c["claim"])
        evidence = Section(f"claim-{k}", f"Claim {k}: {NAMES[k]}", "tables")
        evidence.paragraphs += [f"Statement: {c['statement']}.", f"Verdict: {c['verdict']}."]
        evidence.paragraphs.append(f"Evidence: {c['evidence']}.")
        if k == 2:
            evidence.paragraphs += [f"{a}." for a in findings.answers if a.startswith(TRANSFER_ANSWER)]
        for title in TABLES[k]:
            table = worth_showing(findings.tables.get(title))
            if table is not None:
                evidence.tables.append(Table(title, table))
        out.append(evidence)
    return out


def full_claims(report: Report) -> pd.DataFrame:
    """The claims table with the full evidence (details.md)."""
    return report.findings.claims[["claim", "statement", "verdict", "evidence"]]
