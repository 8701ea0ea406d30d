"""Adaptive rounds: what each round after the planned grid added and why, what it held
back, and why the rounds stopped (the sweep's manifest.json, ``rounds``; sweeps/adaptive.py)."""

from __future__ import annotations

import json

import pandas as pd

from .base import Report, Section, Table


def read_rounds(sweep_dir) -> list[dict]:
    """The rounds a sweep folder's manifest records ([] without a manifest or rounds).
    ``sweep_dir``: a fno.storage Location."""
    path = sweep_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except ValueError as err:  # unreadable JSON: the report still goes on, saying so
        return [{"round": 0, "additions": [], "held": [], "stop": f"{path} is not valid JSON ({err})"}]
    rounds = manifest.get("rounds", []) if isinstance(manifest, dict) else []
    return [r for r in rounds if isinstance(r, dict) and "round" in r]


def section(report: Report) -> list[Section]:
    out = Section("rounds", "Adaptive rounds", "trust")
    rounds = report.rounds
    if not rounds:
        return [out]
    added = [
        {"round": r["round"], "axis": a["axis"], "curve": a["curve"],
         "values": ", ".join(f"{v:g}" for v in a["values"]), "trials": len(a.get("specs", [])), "why": a["reason"]}
        for r in rounds for a in r.get("additions", [])
    ]  # fmt: skip
    held = [
        {"round": r["round"], "cell": h["cell"], "why nothing": h["reason"]} for r in rounds for h in r.get("held", [])
    ]
    trials = sum(a["trials"] for a in added)
    last = rounds[-1]
    stop = last.get("stop") or "the last round's trials ran; the next run decides the next round"
    text = (
        f"After its planned grid this sweep ran {len(rounds)} adaptive round{'s' * (len(rounds) > 1)} "
        f"({trials} trials added, about {sum(float(r.get('hours', 0.0)) for r in rounds):.2g} trial-hours estimated): "
        "each round read the results through this analysis and added the trials that could decide a claim-1 cell "
        "that was not decided (docs/analysis.md, 'Adaptive rounds'). The verdicts above are judged on every row by "
        f"the same rules. Stopped: {stop}."
    )
    out.paragraphs.append(text)
    if added:
        out.shown.append(Table("Trials added by round", pd.DataFrame(added), "one row per curve and axis"))
    if held:
        out.tables.append(Table("Cells given nothing, by round", pd.DataFrame(held)))
    out.summary.append(f"Adaptive rounds: {len(rounds)}, {trials} trials added; stopped: {stop}.")
    return [out]
