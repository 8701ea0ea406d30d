"""The project as users install it: a wheel built from the checkout, installed into a fresh
virtual environment that cannot see the checkout, gives the three packages and the four
commands, and they run from any folder.

The dependencies (torch, Ray, ...) come from this interpreter's site-packages through a
`.pth` line, so nothing is downloaded; `.pth` files inside a folder added that way are not
run, so this interpreter's editable install (whose import finder would supply any module
from the checkout, and hid a missing `fno.data` from the old test) stays out.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"fno": "fno", "fno_sweeps": "sweeps", "fno_analysis": "analysis"}  # import name -> source folder
# Top-level folders of a working checkout that a source distribution does not have.
LEFT_OUT = {".git", ".venv", ".ci", "build", "dist", "fno_scaling.egg-info", "out", "data", "docs", ".devpack"}
COMMANDS = ("fno-sweep", "fno-hpo", "fno-report", "fno-mlflow")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # From a copy without build outputs: setuptools reuses a stale build/lib of the source
    # tree, which would put a package in the wheel that the package list leaves out.
    source = tmp_path_factory.mktemp("source") / "fno-scaling"
    shutil.copytree(ROOT, source, ignore=lambda folder, names: LEFT_OUT & set(names) if Path(folder) == ROOT else [])
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.glob("fno_scaling-*.whl")
    return found


def source_packages() -> set[str]:
    """Every package folder of the checkout, by the name it installs under."""
    return {
        ".".join([name, *init.parent.relative_to(ROOT / folder).parts])
        for name, folder in FOLDERS.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }


def test_the_wheel_holds_every_package_and_the_presets(wheel):
    # Old pyproject.toml listed packages by hand: fno.data was missing from this set.
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {str(Path(name).parent).replace("/", ".") for name in names if name.endswith("/__init__.py")}
    assert source_packages() <= packaged, sorted(source_packages() - packaged)
    assert {"fno_sweeps/presets/cpu.toml", "fno_sweeps/presets/paper.toml", "fno_sweeps/presets/gpu.toml"} <= set(names)
    assert "fno_sweeps/slurm/sweep.sbatch" in names  # the batch script, for users of the wheel


def test_the_wheel_in_a_fresh_venv_runs_the_commands_from_any_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(venv_site, "dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = "import fno.data as d, fno_sweeps as s, fno_analysis as a; print(d.__file__, s.__file__, a.__file__)"
    out = subprocess.run([str(python), "-c", where], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(path.startswith(str(venv)) for path in out.stdout.split()), out.stdout  # never the checkout

    bin_dir = venv / "bin"
    plan = subprocess.run(
        [str(bin_dir / "fno-sweep"), "--dry-run", "--throughput", "1e10"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "plan for out/cpu: 86 trials" in plan.stdout  # the presets travel with the package
    for command in COMMANDS[1:]:
        helped = subprocess.run(
            [str(bin_dir / command), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )
        assert helped.returncode == 0, f"{command}: {helped.stderr[-3000:]}"
        assert "usage:" in helped.stdout
    assert list(elsewhere.iterdir()) == []  # a dry run and --help write nothing
    # The same code installed as a wheel has the digest the checkout has (rows compare across installs).
    digest = "from fno.provenance import source_digest; print(source_digest())"
    installed = subprocess.run([str(python), "-c", digest], cwd=elsewhere, env=env, capture_output=True, text=True)
    here = subprocess.run([sys.executable, "-c", digest], cwd=ROOT, capture_output=True, text=True)
    assert installed.stdout.strip() == here.stdout.strip() != "", (installed.stderr, here.stderr)


def test_no_module_edits_the_import_path():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("fno", "sweeps", "analysis", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if "sys.path" in path.read_text()
    ]
    assert offenders == []
