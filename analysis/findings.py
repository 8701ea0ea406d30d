"""The study's answers, generated from its own tables: the paper's four claims, each with a
number, its interval and a verdict (supports / contradicts / not decided by this sweep).

Inputs are the analysis tables (``select_points``, ``fit_curves``,
``data_efficiency_gain``, ``diagnose``); nothing here reads files or draws. Conventions:

- an error at a point is the mean over seeds of the learning rate chosen by validation;
  its 95% interval is mean +- t * sd / sqrt(k) over its k seeds (no interval with one
  seed, and then no comparison of two errors is called decided);
- two quantities are "decided" only where their intervals do not overlap;
- "orders of magnitude" (claim 1) means a gain of at least ORDERS = 10, read from the
  gain's interval, or from its bound where the gain is censored;
- the trend of the gain with model size (claim 2) is the exponent beta of the transfer
  law (``fno_analysis.transfer``) where it has an interval; otherwise the least-squares
  slope of log10 gain on log10 parameters over the sizes with a measured gain (at least
  two), per bootstrap replicate; its interval is the replicates' 2.5-97.5% range.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fno.vocabulary import FINETUNE_STRATEGIES, FITTED_MODES, SHIFTS
from fno_analysis.evaluations import BAND_METRICS as BANDS
from fno_analysis.evaluations import resolution_ratios
from fno_analysis.fit import mean_interval
from fno_analysis.points import SIZE_KEYS, ordered_shifts

ORDERS = 10.0  # "orders of magnitude fewer examples": at least this gain
NO_INTERVAL = "no interval (one seed, or the seeds gave identical errors)"
SUPPORTS, CONTRADICTS, UNDECIDED = "supports", "contradicts", "not decided by this sweep"


@dataclass
class Findings:
    """Claims with verdicts, and the tables behind them."""

    claims: pd.DataFrame  # claim, statement, verdict, evidence
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # title -> table
    caveats: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # beyond the paper: strategies, resolutions, bands


def _disjoint(lo1, hi1, lo2, hi2) -> bool | None:
    """True if [lo1, hi1] lies wholly below [lo2, hi2]; False if they overlap; None if unknown."""
    if any(math.isnan(v) for v in (lo1, hi1, lo2, hi2)):
        return None
    return hi1 < lo2


def _fmt(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """'mean [lo, hi]' to ``digits`` significant digits; the mean alone without an interval."""
    if math.isnan(lo):
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def _size(row) -> str:
    return f"w{int(row['width'])}-m{int(row['modes'])}"


def smallest_n_comparison(points: pd.DataFrame) -> pd.DataFrame:
    """Per (family, shift, size, pre-training set): fine-tune vs scratch error at the smallest N."""
    trained = points[points["mode"].isin(FITTED_MODES)]
    rows = []
    for (family, shift, *size), here in trained.groupby(["family", "shift", *SIZE_KEYS], sort=True):
        n_min = here["n_train"].min()
        at = here[here["n_train"] == n_min]
        scratch = at[at["mode"] == "scratch"]
        if scratch.empty:
            continue
        s_mean, s_lo, s_hi = mean_interval(scratch["seed_errors"].iloc[0])
        for _, ft in at[at["mode"] == "finetune"].iterrows():
            f_mean, f_lo, f_hi = mean_interval(ft["seed_errors"])
            below = _disjoint(f_lo, f_hi, s_lo, s_hi)
            rows.append(
                {
                    "family": family,
                    "shift": shift,
                    **dict(zip(SIZE_KEYS, size, strict=True)),
                    "pretrain_family": ft["pretrain_family"],
                    "n_train": int(n_min),
                    "finetune": f_mean,
                    "finetune_ci": _fmt(f_mean, f_lo, f_hi),
                    "scratch": s_mean,
                    "scratch_ci": _fmt(s_mean, s_lo, s_hi),
                    "ratio": s_mean / f_mean,
                    "decided": {True: "fine-tune lower", None: NO_INTERVAL}.get(
                        below, "fine-tune higher" if _disjoint(s_lo, s_hi, f_lo, f_hi) else "intervals overlap"
                    ),
                }
            )
    return pd.DataFrame(rows)


def gain_claims(gains: pd.DataFrame) -> pd.DataFrame:
    """Per gain row: the gain (or its bound) as text, and whether it is >= ORDERS."""
    rows = []
    for _, g in gains.iterrows():
        verdict = g["verdict"]
        if verdict == "measured":
            text = f"{g['gain']:.3g} [{g['gain_lo']:.3g}, {g['gain_hi']:.3g}]"
            orders = SUPPORTS if g["gain_lo"] >= ORDERS else CONTRADICTS if g["gain_hi"] < ORDERS else UNDECIDED
        elif verdict == "lower bound":
            text = f">= {g['bound']:.3g}"
            orders = SUPPORTS if g["bound"] >= ORDERS else UNDECIDED
        elif verdict == "upper bound":
            text = f"<= {g['bound']:.3g}"
            orders = CONTRADICTS if g["bound"] < ORDERS else UNDECIDED
        else:
            text, orders = verdict, UNDECIDED
        rows.append(
            {
                **{k: g[k] for k in ["family", "shift", "pretrain_family", *SIZE_KEYS, "n_params"]},
                "finetune_strategy": g.get("finetune_strategy", "full"),
                "target_error": g["target_error"],
                "gain": text,
                "verdict": verdict,
                "at_least_10x": orders,
            }
        )
    return pd.DataFrame(rows)


def size_trend(gains: pd.DataFrame) -> pd.DataFrame:
    """Per (family, shift, pre-training set): slope of log10 gain vs log10 parameters, with interval."""
    rows = []
    for (family, shift, source), g in gains.groupby(["family", "shift", "pretrain_family"], sort=True):
        measured = g[g["verdict"] == "measured"].sort_values("n_params")
        censored = g[g["verdict"] != "measured"]
        row = {
            "family": family,
            "shift": shift,
            "pretrain_family": source,
            "sizes": len(g),
            "sizes_measured": len(measured),
        }
        if len(measured) < 2:
            why = ", ".join(f"{_size(r)}: {r['verdict']}" for _, r in censored.iterrows())
            rows.append(
                {
                    **row,
                    "slope": math.nan,
                    "slope_lo": math.nan,
                    "slope_hi": math.nan,
                    "verdict": UNDECIDED,
                    "note": f"fewer than two measured gains ({why})",
                }
            )
            continue
        x = np.log10(measured["n_params"].to_numpy(float))
        x = x - x.mean()
        k = min(len(b) for b in measured["boot"])
        boot = np.stack([np.asarray(b[:k], dtype=float) for b in measured["boot"]], axis=1)  # (k, sizes)
        usable = np.all(np.isfinite(boot) & (boot > 0), axis=1)
        slope = float((x * np.log10(measured["gain"].to_numpy(float))).sum() / (x * x).sum())
        slopes = (np.log10(boot[usable]) * x).sum(axis=1) / (x * x).sum()
        lo, hi = np.quantile(slopes, [0.025, 0.975]) if slopes.size >= 20 else (math.nan, math.nan)
        verdict = UNDECIDED if math.isnan(lo) or lo <= 0 <= hi else SUPPORTS if lo > 0 else CONTRADICTS
        note = f"{usable.mean():.0%} of replicates usable"
        if not censored.empty:
            note += "; left out (censored): " + ", ".join(f"{_size(r)} {r['verdict']}" for _, r in censored.iterrows())
        rows.append(
            {**row, "slope": slope, "slope_lo": float(lo), "slope_hi": float(hi), "verdict": verdict, "note": note}
        )
    return pd.DataFrame(rows)


def mixture_comparison(points: pd.DataFrame) -> pd.DataFrame:
    """Fine-tune error at the smallest N from the mixture vs from the family alone vs scratch."""
    table = smallest_n_comparison(points)
    if table.empty or "mixture" not in set(table["pretrain_family"]):
        return pd.DataFrame()
    rows = []
    for (family, shift, *size), here in table.groupby(["family", "shift", *SIZE_KEYS], sort=True):
        mix = here[here["pretrain_family"] == "mixture"]
        single = here[here["pretrain_family"] == family]
        if mix.empty:
            continue
        m = mix.iloc[0]
        row = {
            "family": family,
            "shift": shift,
            **dict(zip(SIZE_KEYS, size, strict=True)),
            "n_train": m["n_train"],
            "mixture": m["finetune_ci"],
            "scratch": m["scratch_ci"],
            "mixture_vs_scratch": m["decided"],
        }
        if not single.empty:
            s = single.iloc[0]
            row["single_family"] = s["finetune_ci"]
            row["mixture_over_single"] = m["finetune"] / s["finetune"]
        rows.append(row)
    return pd.DataFrame(rows)


def zero_shot_by_shift(points: pd.DataFrame) -> pd.DataFrame:
    """Zero-shot error per shift, and the fine-tune error at the largest N beside it."""
    zero = points[points["mode"] == "zeroshot"]
    ft = points[points["mode"] == "finetune"]
    rows = []
    for (family, source, *size), here in zero.groupby(["family", "pretrain_family", *SIZE_KEYS], sort=True):
        row = {"family": family, "pretrain_family": source, **dict(zip(SIZE_KEYS, size, strict=True))}
        for shift in ordered_shifts(here["shift"]):
            row[f"zeroshot_{shift}"] = float(here.loc[here["shift"] == shift, "test_rel_l2"].iloc[0])
            mask = (ft["family"] == family) & (ft["pretrain_family"] == source) & (ft["shift"] == shift)
            for k, v in zip(SIZE_KEYS, size, strict=True):
                mask &= ft[k] == v
            sel = ft[mask]
            if not sel.empty:
                row[f"finetune_{shift}_N{int(sel['n_train'].max())}"] = float(
                    sel.loc[sel["n_train"].idxmax(), "test_rel_l2"]
                )
        rows.append(row)
    return pd.DataFrame(rows)


def mode_label(mode: str, strategy: str) -> str:
    """'finetune (head)' for a fine-tune with a strategy other than the paper's; else the mode."""
    return mode if strategy in ("", "full") else f"{mode} ({strategy})"


def strategy_comparison(points: pd.DataFrame) -> pd.DataFrame:
    """Per (family, shift, size, pre-training set) at its smallest and largest N: every
    fine-tuning strategy's error and scratch's, with 95% t intervals, and the winner.

    ``decided`` says whether the winner's interval lies below every other strategy's
    (and scratch's); without intervals (one seed, or seeds that do not change the result)
    nothing is decided.
    """
    ft = points[points["mode"] == "finetune"]
    scratch = points[points["mode"] == "scratch"].set_index(["family", "shift", *SIZE_KEYS, "n_train"])
    strategies = list(dict.fromkeys(s for s in FINETUNE_STRATEGIES if s in set(ft["finetune_strategy"])))
    if len(strategies) < 2:
        return pd.DataFrame()
    rows = []
    for (family, shift, source, *size), here in ft.groupby(["family", "shift", "pretrain_family", *SIZE_KEYS]):
        for n in sorted({here["n_train"].min(), here["n_train"].max()}):
            at = here[here["n_train"] == n].set_index("finetune_strategy")
            row = {"family": family, "shift": shift, **dict(zip(SIZE_KEYS, size, strict=True))}
            row.update(pretrain_family=source, n_train=int(n))
            intervals = {}
            for strategy in strategies:
                if strategy in at.index:
                    intervals[strategy] = mean_interval(at.loc[strategy, "seed_errors"])
                    row[strategy] = _fmt(*intervals[strategy])
            key = (family, shift, *size, n)
            if key in scratch.index:
                intervals["scratch"] = mean_interval(scratch.loc[key, "seed_errors"])
                row["scratch"] = _fmt(*intervals["scratch"])
            best = min((s for s in intervals if s != "scratch"), key=lambda s: intervals[s][0])
            others = [v for s, v in intervals.items() if s != best]
            below = [_disjoint(intervals[best][1], intervals[best][2], v[1], v[2]) for v in others]
            row["best"] = best
            row["decided"] = (
                NO_INTERVAL if None in below else "best below all others" if all(below) else "intervals overlap"
            )
            rows.append(row)
    return pd.DataFrame(rows)


def resolution_growth(ratios: pd.DataFrame) -> pd.DataFrame:
    """Error at each other test resolution over the error at the training one, at each
    curve's largest N (zero-shot: its one point), with the paired 95% t interval."""
    if ratios.empty:
        return pd.DataFrame()
    curve = ["family", "shift", "pretrain_family", *SIZE_KEYS, "mode", "finetune_strategy", "resolution"]
    largest = ratios.groupby(curve, dropna=False)["n_train"].transform("max") == ratios["n_train"]
    rows = []
    for _, r in ratios[largest].sort_values(curve).iterrows():
        rows.append(
            {
                **{k: r[k] for k in ["family", "shift", "pretrain_family", *SIZE_KEYS]},
                "mode": mode_label(r["mode"], r["finetune_strategy"]),
                "n_train": "-" if r["mode"] == "zeroshot" else int(r["n_train"]),
                "trained_at": int(r["train_resolution"]),
                "tested_at": int(r["resolution"]),
                "error_trained_at": r["error_train"],
                "error_tested_at": r["error"],
                "growth": _fmt(r["ratio"], r["ratio_lo"], r["ratio_hi"], digits=4),
                "growth_mean": r["ratio"],
            }
        )
    return pd.DataFrame(rows)


def band_table(ev_points: pd.DataFrame) -> pd.DataFrame:
    """Band errors (low, mid, high) at the training resolution, at each curve's smallest
    and largest N, for scratch and the fine-tuning strategies; ``dominant`` names the band
    with most of the error."""
    here = ev_points[
        (ev_points["resolution"] == ev_points["train_resolution"]) & ev_points["mode"].isin(["scratch", "finetune"])
    ]
    if here.empty:
        return pd.DataFrame()
    keys = ["family", "shift", "pretrain_family", *SIZE_KEYS, "mode", "finetune_strategy", "n_train"]
    wide = here.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    if not set(BANDS) <= set(wide.columns):
        return pd.DataFrame()
    curve = keys[:-1]
    n = wide.groupby(curve, dropna=False)["n_train"]
    wide = wide[(wide["n_train"] == n.transform("min")) | (wide["n_train"] == n.transform("max"))]
    out = wide[keys].copy()
    out["mode"] = [mode_label(m, s) for m, s in zip(wide["mode"], wide["finetune_strategy"], strict=True)]
    out = out.drop(columns="finetune_strategy")
    for band in BANDS:
        out[band.removeprefix("rel_l2_")] = wide[band].to_numpy(float)
    out["dominant"] = [b.removeprefix("rel_l2_") for b in wide[list(BANDS)].idxmax(axis=1)]
    return out.reset_index(drop=True)


def _add_beyond_the_paper(findings: Findings, points: pd.DataFrame, evaluations: pd.DataFrame | None) -> None:
    """Tables and one-line answers on strategies, resolution transfer and band errors."""
    strategies = strategy_comparison(points)
    if not strategies.empty:
        title = "Fine-tuning strategies at the smallest and largest N (95% t intervals over seeds)"
        findings.tables[title] = strategies
        for (family, shift), here in strategies.groupby(["family", "shift"], sort=False):
            smallest = here[here["n_train"] == here["n_train"].min()]
            wins = ", ".join(f"{r['best']} {r[r['best']]} ({r['decided']})" for _, r in smallest.iterrows())
            findings.answers.append(
                f"Best fine-tuning strategy at the smallest N ({int(smallest['n_train'].iloc[0])}), "
                f"{family} / shift {shift}: {wins}"
            )
    if evaluations is None or evaluations.empty:
        return
    growth = resolution_growth(resolution_ratios(evaluations))
    if not growth.empty:
        findings.tables["Error at other test resolutions over the training resolution's (largest N)"] = growth.drop(
            columns="growth_mean"
        )
        for (r0, r1), here in growth.groupby(["trained_at", "tested_at"]):
            by_mode = here.groupby("mode")["growth_mean"].agg(["min", "max"])
            text = "; ".join(f"{m} {v['min']:.4f}-{v['max']:.4f}x" for m, v in by_mode.iterrows())
            findings.answers.append(f"Error growth from training resolution {r0} to {r1} (range over curves): {text}")
    bands = band_table(evaluations)
    if not bands.empty:
        findings.tables["Error by frequency band at the training resolution (smallest and largest N)"] = bands


def paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's study: fine-tuning of every weight ("full") and the other modes."""
    if "finetune_strategy" not in table:
        return table
    return table[table["finetune_strategy"].isin(["", "full"])]


def build_findings(
    points: pd.DataFrame,
    gains: pd.DataFrame,
    flags: pd.DataFrame,
    evaluations: pd.DataFrame | None = None,
    transfer: pd.DataFrame | None = None,
) -> Findings:
    """The four claims, judged from the tables (see the module docstring), on the paper's
    fine-tuning (all weights); then the strategies, resolutions and bands where the sweep
    has them (``evaluations``: ``fno_analysis.evaluations.evaluation_points``).
    ``transfer``: ``fno_analysis.transfer.transfer_law``, which claim 2 reads where it has
    intervals."""
    all_gains = gain_claims(gains) if not gains.empty else pd.DataFrame()
    all_points = points
    points, gains = paper_rows(points), paper_rows(gains)
    small = smallest_n_comparison(points)
    gain_rows = paper_rows(all_gains)
    trend = size_trend(gains) if not gains.empty else pd.DataFrame()
    mixture = mixture_comparison(points)
    zero = zero_shot_by_shift(points)
    claims = [
        _claim1(gain_rows),
        _claim2(trend, transfer),
        _claim3(mixture, points),
        _claim4(zero, small),
    ]
    findings = Findings(pd.DataFrame(claims, columns=["claim", "statement", "verdict", "evidence"]))
    findings.tables = {
        "Fine-tune vs scratch at the smallest N (95% t intervals over seeds)": small,
        "Data-efficiency gain at the target error": all_gains,
        "Trend of the gain with model size (slope of log10 gain on log10 parameters)": trend,
        "Mixture vs single-family pre-training at the smallest N": mixture,
        "Zero-shot error by shift, and fine-tuning at the largest N": zero,
    }
    _add_beyond_the_paper(findings, all_points, evaluations)
    if not flags.empty:
        counts = flags["check"].value_counts()
        findings.caveats.append(
            "the diagnostics raised "
            + ", ".join(f"{n} '{c}'" for c, n in counts.items())
            + " flags (section 'Can these numbers be trusted?'); read the verdicts with them"
        )
    return findings


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return UNDECIDED
    if all(v == SUPPORTS for v in verdicts):
        return SUPPORTS
    if all(v == CONTRADICTS for v in verdicts):
        return CONTRADICTS
    return UNDECIDED


def _claim1(gain_rows: pd.DataFrame) -> dict:
    statement = "fine-tuning needs orders of magnitude (>= 10x) fewer examples than scratch, in and out of distribution"
    if gain_rows.empty:
        return {"claim": 1, "statement": statement, "verdict": UNDECIDED, "evidence": "no gains"}
    parts, verdicts = [], []
    for shift in ordered_shifts(gain_rows["shift"]):
        here = gain_rows[gain_rows["shift"] == shift]
        votes = here["at_least_10x"].tolist()
        verdicts.append(_combine(votes))
        parts.append(
            f"shift {shift}: "
            + "; ".join(f"{r['family']} {_size(r)} ({r['pretrain_family']}) {r['gain']}" for _, r in here.iterrows())
        )
    verdict = _combine(verdicts)
    if verdict == UNDECIDED and SUPPORTS in verdicts:
        shifts = ordered_shifts(gain_rows["shift"])
        where = ", ".join(s for s, v in zip(shifts, verdicts, strict=True) if v == SUPPORTS)
        verdict = f"{UNDECIDED} (supported at shifts {where})"
    return {"claim": 1, "statement": statement, "verdict": verdict, "evidence": " | ".join(parts)}


def _claim2(trend: pd.DataFrame, transfer: pd.DataFrame | None = None) -> dict:
    """Through the transfer law's beta (D_T = k D_F^alpha P^beta) where it was fitted with
    an interval; else through the slope of log gain on log parameters."""
    laws = pd.DataFrame() if transfer is None else transfer[np.isfinite(transfer["beta_lo"].astype(float))]
    if not laws.empty:
        statement = "the gain grows with model size: the transfer law's beta > 0 (D_T = k D_F^alpha P^beta)"
        votes, parts = [], []
        for _, t in laws.iterrows():
            lo, hi = t["beta_lo"], t["beta_hi"]
            votes.append(SUPPORTS if lo > 0 else CONTRADICTS if hi < 0 else UNDECIDED)
            parts.append(
                f"{t['family']}/{t['shift']}/{t['pretrain_family']}: beta = {t['beta']:.2f} [{lo:.2f}, {hi:.2f}] "
                f"over {int(t['n_sizes'])} sizes, D_F {t['d_f_min']:.3g}-{t['d_f_max']:.3g} ({votes[-1]})"
            )
        return {"claim": 2, "statement": statement, "verdict": _combine(votes), "evidence": "; ".join(parts)}
    statement = "the gain grows with model size (slope of log gain on log parameters > 0)"
    if trend.empty:
        return {"claim": 2, "statement": statement, "verdict": UNDECIDED, "evidence": "no gains"}
    parts = []
    for _, t in trend.iterrows():
        value = "n/a" if math.isnan(t["slope"]) else f"{t['slope']:.2f} [{t['slope_lo']:.2f}, {t['slope_hi']:.2f}]"
        parts.append(f"{t['family']}/{t['shift']}/{t['pretrain_family']}: {value} ({t['verdict']})")
    return {
        "claim": 2,
        "statement": statement,
        "verdict": _combine(trend["verdict"].tolist()),
        "evidence": "; ".join(parts),
    }


def _claim3(mixture: pd.DataFrame, points: pd.DataFrame) -> dict:
    statement = "one model pre-trained on the mixture adapts to each family (beats scratch at the smallest N)"
    if mixture.empty:
        return {"claim": 3, "statement": statement, "verdict": UNDECIDED, "evidence": "no mixture pre-training"}
    votes = [
        SUPPORTS if d == "fine-tune lower" else CONTRADICTS if d == "fine-tune higher" else UNDECIDED
        for d in mixture["mixture_vs_scratch"]
    ]
    families = set(points.loc[points["mode"] == "scratch", "family"])
    missing = families - set(mixture["family"])
    verdict = _combine(votes) if not missing else UNDECIDED
    parts = [
        f"{r['family']}/{r['shift']} w{int(r['width'])}: mixture {r['mixture']} vs scratch {r['scratch']}"
        + (f", single-family {r['single_family']}" if isinstance(r.get("single_family"), str) else "")
        for _, r in mixture.iterrows()
    ]
    if missing:
        parts.append(f"no mixture fine-tuning for {sorted(missing)}")
    return {"claim": 3, "statement": statement, "verdict": verdict, "evidence": "; ".join(parts)}


def _claim4(zero: pd.DataFrame, small: pd.DataFrame) -> dict:
    statement = (
        "across families: zero-shot error grows with the shift, and fine-tuning recovers most of it "
        "(fine-tune error at the largest N below half the zero-shot error at the largest shift)"
    )
    if zero.empty:
        return {"claim": 4, "statement": statement, "verdict": UNDECIDED, "evidence": "no zero-shot trials"}
    votes, parts = [], []
    for _, z in zero.iterrows():
        shifts = [s for s in SHIFTS if f"zeroshot_{s}" in z and not pd.isna(z[f"zeroshot_{s}"])]
        errors = [z[f"zeroshot_{s}"] for s in shifts]
        grows = len(errors) >= 2 and all(a < b for a, b in itertools.pairwise(errors))
        last = shifts[-1] if shifts else None
        ft_cols = [c for c in z.index if last and c.startswith(f"finetune_{last}_") and not pd.isna(z[c])]
        recovers = bool(ft_cols) and z[ft_cols[0]] < 0.5 * z[f"zeroshot_{last}"]
        votes.append(SUPPORTS if grows and recovers else CONTRADICTS if len(errors) >= 2 and not grows else UNDECIDED)
        text = ", ".join(f"{s} {e:.3g}" for s, e in zip(shifts, errors, strict=True))
        if ft_cols:
            text += f"; fine-tuned at {last}: {z[ft_cols[0]]:.3g}"
        parts.append(f"{z['family']} ({z['pretrain_family']}, w{int(z['width'])}): zero-shot {text}")
    families = sorted(set(zero["family"]))
    verdict = _combine(votes)
    evidence = "; ".join(parts)
    if len(families) < 3:
        verdict = UNDECIDED if verdict == SUPPORTS else verdict
        evidence += f" (only {', '.join(families)}: 'across families' needs all three)"
    return {"claim": 4, "statement": statement, "verdict": verdict, "evidence": evidence}
