"""Decided claim verdicts per CPU-hour of an adaptive sweep, after its grid and after
each recorded round: the table in docs/study.md ("A slice of the study preset").

    python benchmarks/adaptive_rounds_table.py OUT/SWEEP PRESET [KEY=VALUE ...]

PRESET and the KEY=VALUE overrides (as `--set` takes them) must be the sweep's, so that
the grid's trials are told apart from the rounds' (the rounds are read from the
sweep's manifest). CPU-hours are the sum of the rows' ``wall_s`` (one CPU per trial);
a cell is decided where its verdict is "supports" or "contradicts".
"""

from __future__ import annotations

import argparse
from collections import Counter

from fno.storage import location
from fno_analysis.points import read_table
from fno_analysis.verdicts import CONTRADICTS, SUPPORTS
from fno_sweeps import adaptive, scaling
from fno_sweeps.grid import Preset, expand, spec_trials
from fno_sweeps.manifest import read_rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep's folder, OUT/SWEEP")
    parser.add_argument("preset", help="the preset it ran (a name or a TOML path)")
    parser.add_argument("overrides", nargs="*", help="its --set overrides, KEY=VALUE")
    args = parser.parse_args(argv)
    folder = location(args.sweep_dir)
    preset = Preset.load(args.preset, scaling.parse_set_flags(args.overrides))
    rows = read_table(folder)
    rows = rows[rows["status"] == "ok"]
    keys = {t.key for t in expand(preset)}
    stages = [("grid", set(keys))]
    for entry in read_rounds(folder):
        added = {t.key for t in spec_trials(preset, adaptive.Decision.from_json(entry).specs)}
        if added:
            keys |= added
            stages.append((f"+ round {entry['round']} ({len(added)} trials)", set(keys)))
    print("| after | trials | CPU-hours | claim-1 cells decided (supports / contradicts) | claims 2-4 cells decided "
          "| decided per CPU-hour |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, stage_keys in stages:
        part = rows[rows["key"].isin(stage_keys)]
        cells = adaptive.analyse(part).findings.cells
        verdicts = {c: Counter(cells[c]["verdict"]) if c in cells and not cells[c].empty else Counter()
                    for c in (1, 2, 3, 4)}  # fmt: skip
        supports, contradicts = verdicts[1][SUPPORTS], verdicts[1][CONTRADICTS]
        rest = sum(verdicts[c][SUPPORTS] + verdicts[c][CONTRADICTS] for c in (2, 3, 4))
        hours = float(part["wall_s"].sum()) / 3600
        decided = supports + contradicts + rest
        print(f"| {name} | {len(part)} | {hours:.3f} | {supports} / {contradicts} of {sum(verdicts[1].values())} "
              f"| {rest} | {decided / hours:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
