"""`python -m fno.data generate` and `check`, as a user runs them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fno.data import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fno.data", *args], capture_output=True, text=True, timeout=120)


def test_generate_then_check_passes(tmp_path):
    out = tmp_path / "ds"
    r = run_cli("generate", "--family", "mixture", "--samples", "9", "--resolution", "16", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 9 mixture samples" in r.stdout
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["inputs_shape"] == [9, 8, 16, 16] and meta["spec"]["family"] == "mixture"
    assert np.load(out / "inputs.npy").shape == (9, 8, 16, 16)
    r = run_cli("check", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and {"poisson", "advdiff", "helmholtz"} <= set(report)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_check_catches_a_wrong_solution(tmp_path, dtype, capsys):
    out = tmp_path / "ds"
    assert (
        main(
            [
                "generate",
                "--family",
                "advdiff",
                "--range",
                "1",
                "2",
                "--samples",
                "6",
                "--resolution",
                "16",
                "--dtype",
                dtype,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["check", str(out)]) == 0
    targets = np.load(out / "targets.npy")
    targets[[0, 1]] = targets[[1, 0]]  # swap two solutions
    np.save(out / "targets.npy", targets)
    assert main(["check", str(out)]) == 1
    assert "check FAILED" in capsys.readouterr().err


def test_mixture_ranges_on_the_command_line(tmp_path):
    out = tmp_path / "ds"
    args = ["generate", "--family", "mixture", "--range", "poisson", "5", "10", "--samples", "6", "--resolution", "16"]
    assert main([*args, "--out", str(out)]) == 0
    spec = json.loads((out / "metadata.json").read_text())["spec"]
    assert spec["param_range"] == {"poisson": [5.0, 10.0], "advdiff": [0.2, 1.0], "helmholtz": [1.0, 10.0]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--family", "burgers"], "family must be one of"),
        (["--family", "poisson", "--range", "5", "1"], "lo <= hi"),
        (["--family", "poisson", "--samples", "0"], "n_samples must be an integer >= 1"),
        (["--family", "poisson", "--resolution", "17"], "resolution must be even"),
        (["--family", "mixture", "--range", "1", "5"], "FAMILY LO HI"),
        (["--family", "mixture", "--range", "heat", "1", "5"], "--range FAMILY must be one of"),
    ],
)
def test_generate_rejects_bad_input_before_work(tmp_path, args, message, capsys):
    out = tmp_path / "ds"
    assert main(["generate", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_check_of_a_missing_folder(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nothing")]) == 2
    assert "not a dataset written by" in capsys.readouterr().err
