"""Which code produced a row: every row carries the source digest (and the git commit and
library versions where known), a mixture of versions is flagged, and a cluster run
refuses a mixture of packages from different places."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from synthetic import result_row

from fno import __version__
from fno.provenance import code_version, git_commit, source_digest
from fno.results import COLUMNS
from fno_analysis.diagnostics import diagnose
from fno_analysis.fit import fit_curves
from fno_analysis.points import select_points

ROOT = Path(__file__).resolve().parent.parent


def test_the_digest_is_of_the_sources_and_the_version_names_it():
    assert len(source_digest()) == 16 and code_version() == f"{__version__}+{source_digest()}"
    if (ROOT / ".git").exists():  # a checkout: the commit, and whether the packages differ from it
        assert git_commit() == "" or len(git_commit().removesuffix("-dirty")) == 40


def test_a_sweep_row_records_the_code_and_libraries():
    from fno_sweeps.grid import Preset, expand
    from fno_sweeps.runner import result_row as sweep_row

    trial = expand(Preset.load("cpu"))[0]
    row = sweep_row(trial, "cpu", None, "boom")
    assert set(COLUMNS) <= set(row)
    assert row["source_digest"] == source_digest() and row["ray_version"] and row["torch_version"]


def test_rows_from_two_code_versions_are_flagged():
    rows = []
    for n in (4, 8, 16, 32):
        for mode in ("scratch", "finetune"):
            row = result_row(mode, 8, n, 1e-3, 0, 0.5 * n**-0.5, 0.55 * n**-0.5)
            digest = "aaaa" if n < 16 else "bbbb"  # the code changed half-way through the sweep
            rows.append({**row, "source_digest": digest, "code_version": f"0.1.0+{digest}"})
    df = pd.DataFrame(rows)
    points = select_points(df)
    flags = diagnose(df, points, fit_curves(df, n_boot=20, points=points))
    mixed = flags[flags["check"] == "mixed code versions"]
    assert len(mixed) == 1 and "0.1.0+aaaa (4 trials)" in mixed["message"].iloc[0]


def test_packages_from_two_places_are_refused(tmp_path):
    # Old: a Ray Job with --working-dir imported fno from the submitted folder and fno_sweeps
    # from the head's install, and shipped that mixture to the workers.
    other = tmp_path / "submitted"
    other.mkdir()
    subprocess.run(["cp", "-r", str(ROOT / "fno"), str(other / "fno")], check=True)
    env = {**os.environ, "PYTHONPATH": str(other)}
    check = "from fno.provenance import check_one_source; check_one_source()"
    same = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr  # the same code in two places (a Ray Job's copy) is no mixture
    (other / "fno" / "changed.py").write_text("CHANGED = True\n")
    env = {**os.environ, "PYTHONPATH": str(other)}
    check = "from fno.provenance import check_one_source; check_one_source()"
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "come from different places" in done.stderr and "fno_sweeps from" in done.stderr
    alone = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
