"""The project as users install it: a plain (non-editable) `pip install .` gives the three
packages and the three commands, and they run from any folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_plain_install_runs_the_commands_from_any_folder(tmp_path):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(ROOT)]
    had_build = (ROOT / "build").exists()
    try:
        subprocess.run(install, check=True, capture_output=True, timeout=600)
    finally:
        if not had_build:  # pip builds in the source tree; leave the checkout as it was
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the dependencies come from this interpreter
    where = "import fno, fno_sweeps, fno_analysis; print(fno.__file__, fno_sweeps.__file__, fno_analysis.__file__)"
    out = subprocess.run([sys.executable, "-c", where], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(path.startswith(str(site)) for path in out.stdout.split()), out.stdout  # not the checkout
    plan = subprocess.run(
        [str(site / "bin" / "fno-sweep"), "--dry-run", "--throughput", "1e10"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "plan for out/cpu: 86 trials" in plan.stdout  # the presets travel with the package
    for command in ("fno-hpo", "fno-report"):
        helped = subprocess.run([str(site / "bin" / command), "--help"], cwd=elsewhere, env=env, capture_output=True)
        assert helped.returncode == 0, helped.stderr[-2000:]


def test_no_module_edits_the_import_path():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("fno", "sweeps", "analysis", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if "sys.path" in path.read_text()
    ]
    assert offenders == []
