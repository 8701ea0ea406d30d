"""The command lines: each refusal before Ray starts and before anything is written, the
commands they name, trial names, and the progress a sweep prints (issue 26)."""

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from pathlib import Path

import pytest
from tiny_sweep import TINY

from fno_analysis import mlflow_export
from fno_sweeps import cluster, hpo, live, runner, scaling
from fno_sweeps.grid import Preset, expand

ROOT = Path(__file__).resolve().parents[1]
SETTING = ["--family", "poisson", "--size", "w8-m4", "--mode", "finetune", "--n-train", "8"]


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every test here must be refused (or finish) without starting Ray."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("ray.init was called: this check must come before Ray starts")

    monkeypatch.setattr(ray, "init", refuse)
    yield
    assert not ray.is_initialized()


@pytest.fixture
def installed(monkeypatch):
    """As if run through the console script (how the tests call main() reads the same)."""
    monkeypatch.setattr(sys, "argv", [str(Path(sys.prefix) / "bin" / "fno-sweep")])


def _refused(capsys, out: Path, code: int) -> str:
    """The one error line of a refusal (exit 2) that wrote nothing."""
    assert code == 2
    err = capsys.readouterr().err
    assert not out.exists(), f"{out} was created"
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------- the command the user ran


def test_the_continue_command_names_the_command_as_it_was_run(monkeypatch):
    argv = ["--out", "my out", "--set", "n_train=[16,64]"]
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fno-sweep"])
    assert cluster.continue_command("sweeps/scaling.py", argv) == "fno-sweep --out 'my out' --set 'n_train=[16,64]'"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fno-hpo"])
    assert cluster.continue_command("sweeps/hpo.py", ["--family", "poisson"]) == "fno-hpo --family poisson"
    monkeypatch.setattr(shutil, "which", lambda name: sys.executable)  # `python` is this interpreter
    monkeypatch.setattr(sys, "argv", ["sweeps/scaling.py"])
    assert cluster.continue_command("sweeps/scaling.py", argv).startswith("python sweeps/scaling.py --out 'my out'")
    assert cluster.prog("sweeps/scaling.py") == "python sweeps/scaling.py"
    main = types.SimpleNamespace(__spec__=types.SimpleNamespace(name="fno_sweeps.hpo"))
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "sweeps" / "hpo.py")])
    assert cluster.continue_command("sweeps/hpo.py", []) == "python -m fno_sweeps.hpo"
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no `python` on the PATH: this interpreter's path
    assert cluster.prog("sweeps/hpo.py") == f"{sys.executable} -m fno_sweeps.hpo"


def test_usage_names_the_console_script_and_the_checkout_script():
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command, usage in (
        ([str(bin_dir / "fno-sweep"), "--help"], "usage: fno-sweep "),
        ([str(bin_dir / "fno-hpo"), "--help"], "usage: fno-hpo "),
        (["python", "sweeps/scaling.py", "--help"], "usage: python sweeps/scaling.py "),
    ):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0 and done.stdout.startswith(usage), (command, done.stdout[:200], done.stderr)


def test_the_lease_and_failure_lines_carry_the_continue_command(tmp_path, capsys, installed, monkeypatch):
    from fno.results import write_row

    trials = expand(Preset.load("cpu", {}))[:2]
    write_row(tmp_path / "results", runner.result_row(trials[0], "cpu", None, "boom", "error"))
    scaling.print_failures(cluster.location(tmp_path), trials, ["--out", "o"])
    assert capsys.readouterr().err.rstrip().endswith("run every failed trial again: fno-sweep --out o")


# ------------------------------------------------------- flags refused through argparse


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--no-report", "--report-every", "10"], "--no-report and --report-every 10 contradict each other"),
        (["--report-every", "-5"], "--report-every must be a number of seconds >= 0 (0: only at the end), got -5"),
        (["--cluster", "--num-cpus", "2"], "--num-cpus configure the Ray instance a local run starts"),
        (["--cluster", "--no-dashboard", "--metrics-port", "9000"], "--no-dashboard, --metrics-port configure"),
        (["--gpu-memory-gib", "80"], "--gpu-memory-gib applies to --gpus-per-trial auto"),
        (["--gpus-per-trial", "0.5", "--gpu-memory-gib", "80"], "--gpu-memory-gib applies to --gpus-per-trial auto"),
        (["--address", "10.0.0.1:6379"], "--address 10.0.0.1:6379 applies to --cluster"),
        (["--allow-cpu-fallback"], "--allow-cpu-fallback applies to GPU trials"),
        (["--no-dashboard", "--dashboard-host", "0.0.0.0"], "--dashboard-host and --no-dashboard contradict"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be a number > 0, got 0"),
        (["--max-retries", "-1"], "--max-retries must be >= 0, got -1"),
        (["--num-cpus", "0"], "--num-cpus must be at least 1, got 0"),
        (["--metrics-port", "70000"], "--metrics-port must be a port in 1..65535"),
        (["--verbose", "7"], "--verbose must be one of 0, 1, 2, 3"),
        (["--throughput", "5e8"], "--throughput 5e+08 sets the rate a --dry-run's time estimate assumes"),
        (["--out", "a", "--storage", "/tmp/b"], "--out a and --storage /tmp/b both name where results go"),
    ],
)
def test_meaningless_or_conflicting_flags_are_usage_errors(flags, message, tmp_path, capsys, installed):
    out = tmp_path / "out"
    args = [*flags] if "--out" in flags else ["--out", str(out), *flags]
    with pytest.raises(SystemExit) as exit_:
        scaling.main([*args, *TINY])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fno-sweep ") and f"fno-sweep: error: {message}" in err
    assert not out.exists() and not (tmp_path / "a").exists()


def test_hpo_flags_are_usage_errors_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fno-hpo"])
    with pytest.raises(SystemExit) as exit_:
        hpo.main([*SETTING, "--out", str(tmp_path / "out"), "--cluster", "--num-gpus", "1"])
    assert exit_.value.code == 2 and "fno-hpo: error: --num-gpus configure" in capsys.readouterr().err


# ---------------------------------------------------- refusals that need the plan or the machine


def test_trial_resources_the_local_machine_lacks_are_refused_before_ray(tmp_path, capsys, installed, monkeypatch):
    monkeypatch.setattr(cluster, "local_gpu_count", lambda: 0)
    monkeypatch.setattr(cluster, "local_cpu_count", lambda: 2)
    out = tmp_path / "out"
    err = _refused(capsys, out, scaling.main(["--out", str(out), "--gpus-per-trial", "0.25", *TINY]))
    assert "fno-sweep: error: --gpus-per-trial 0.25: a local run has no GPU to give" in err
    err = _refused(capsys, out, scaling.main(["--out", str(out), "--cpus-per-trial", "64", *TINY]))
    assert "--cpus-per-trial 64: a local run has 2 CPUs (this machine)" in err and "(0, 2]" in err
    err = _refused(capsys, out, scaling.main(["--out", str(out), "--num-cpus", "4", "--cpus-per-trial", "8", *TINY]))
    assert "a local run has 4 CPUs (--num-cpus)" in err
    # Ray's logical GPUs (--num-gpus) count as GPUs: no refusal, the run would go on to Ray.
    args = cluster.parse_checked(_ray_parser(), ["--num-gpus", "2", "--gpus-per-trial", "0.5"], cluster.check_flags)
    cluster.check_local_resources(args)


def _ray_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="fno-sweep")
    cluster.add_ray_arguments(parser)
    return parser


def test_an_unreachable_cluster_is_refused_within_seconds_before_any_folder(tmp_path, capsys, installed):
    out = tmp_path / "out"
    started = time.perf_counter()
    err = _refused(capsys, out, scaling.main(["--out", str(out), "--cluster", "--address", "127.0.0.1:1", *TINY]))
    assert time.perf_counter() - started < 10
    assert "fno-sweep: error: no Ray head answers at 127.0.0.1:1" in err
    err = _refused(capsys, out, hpo.main([*SETTING, "--out", str(out), "--cluster", "--address", "nonsense"]))
    assert "--address nonsense: expected HOST:PORT" in err


def test_an_unreachable_object_store_is_refused_within_seconds_naming_the_endpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens on port 1
    started = time.perf_counter()
    code = scaling.main(["--storage", "s3://bucket/prefix", *TINY])
    assert code == 2 and time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert "--storage: cannot create or write the sweep folder s3://bucket/prefix/cpu at endpoint " in err
    assert "http://127.0.0.1:1 (AWS_ENDPOINT_URL)" in err


def test_an_object_store_that_never_answers_gives_up_in_seconds(monkeypatch):
    from fno import storage

    server = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(storage, "S3_MAX_ATTEMPTS", 1)  # 3 s a try (curl's low-speed limit); 3 tries take about 11 s
    try:
        where = storage.open_location("s3://bucket/prefix", "--storage")
        _, (options,) = where.filesystem()[0].__reduce__()
        assert options["connect_timeout"] == storage.S3_CONNECT_TIMEOUT_S
        started = time.perf_counter()
        with pytest.raises(OSError, match="Timeout was reached"):
            (where / "probe").write_bytes(b"")
        assert time.perf_counter() - started < 6  # pyarrow's own retries took about 100 s
    finally:
        server.close()


def test_hpo_step_ranges_below_the_grace_period_are_refused_naming_both(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fno-hpo"])
    out = tmp_path / "out"
    err = _refused(capsys, out, hpo.main([*SETTING, "--out", str(out), "--steps", "10", "40"]))
    assert "fno-hpo: error: --steps 10 40: ASHA's grace period would be 100 steps" in err
    assert "downstream.eval_every (100" in err and "--grace-steps in [1, 40]" in err
    err = _refused(capsys, out, hpo.main([*SETTING, "--out", str(out), "--steps", "10", "40", "--grace-steps", "50"]))
    assert "--grace-steps must be in [1, 40] (HI of --steps 10 40), got 50" in err
    setting = hpo.plan(hpo.parse_args([*SETTING, "--out", str(out), "--steps", "10", "40", "--grace-steps", "20"]))
    assert setting.grace_steps == 20 and not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "downstream.epochs=-5"], "downstream.epochs must be a finite number > 0, got -5"),
        (["--set", "pretrain.lr=0"], "pretrain.lr must be > 0, got 0"),
        (["--set", "lrs=[-1.0]"], "lrs: lr must be > 0, got -1.0"),
        (["--set", "seeds=[-1]"], "seeds: seed must be an integer >= 0, got -1"),
        (["--set", "n_train=[2,"], "--set n_train=[2,: not a valid TOML/JSON value: "),
        (["--set", 'families=["poisson"'], '--set families=["poisson": not a valid TOML/JSON value'),
    ],
)
def test_preset_errors_name_the_full_field_and_parse_errors_say_so(argv, message, tmp_path, capsys, installed):
    out = tmp_path / "out"
    pairs = zip(TINY[::2], TINY[1::2], strict=True)  # no fixed step budget beside --set downstream.epochs
    epochs_budget = [item for pair in pairs if pair[1] != "downstream.steps=10" for item in pair]
    err = _refused(capsys, out, scaling.main(["--out", str(out), *epochs_budget, *argv]))
    assert f"fno-sweep: error: {message}" in err


def test_hpo_names_the_flag_the_user_typed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fno-hpo"])
    out = tmp_path / "out"
    args = ["--size", "w8-m4", "--mode", "finetune", "--n-train", "8", "--out", str(out)]
    err = _refused(capsys, out, hpo.main(["--family", "burgers", *args]))
    assert "fno-hpo: error: --family must be one of poisson, advdiff, helmholtz; got 'burgers'" in err
    assert "mixture" not in err and "pretrain_families" not in err
    err = _refused(capsys, out, hpo.main(["--family", "poisson", "--pretrain-family", "heat", *args]))
    assert "--pretrain-family must be one of poisson, advdiff, helmholtz, mixture; got 'heat'" in err
    err = _refused(capsys, out, hpo.main(["--family", "poisson", "--shift", "huge", *args]))
    assert "--shift must be one of none, moderate, large; got 'huge'" in err


def test_a_run_whose_ray_start_fails_leaves_no_folder(tmp_path, capsys, monkeypatch, installed):
    def refused_by_head(args, say=print):
        raise SystemExit("error: a Ray head answers at 10.0.0.1:6379 but the driver could not join")

    monkeypatch.setattr(scaling, "start_ray", refused_by_head)
    out = tmp_path / "deep" / "out"
    with pytest.raises(SystemExit, match="could not join"):
        scaling.main(["--out", str(out), "--no-report", *TINY])
    assert not (tmp_path / "deep").exists()  # the folders this run created are gone; tmp_path stays


# --------------------------------------------------------------------- MLflow


def test_mlflow_export_to_a_server_that_is_not_there_fails_in_one_line(tmp_path, capsys):
    pytest.importorskip("mlflow")
    started = time.perf_counter()
    assert mlflow_export.main([str(tmp_path), "--tracking-uri", "http://127.0.0.1:1"]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--tracking-uri http://127.0.0.1:1: no MLflow tracking server answers there" in err


def test_mlflow_probe_times_out_on_a_server_that_never_answers():
    server = socket.create_server(("127.0.0.1", 0))
    started = time.perf_counter()
    try:
        with pytest.raises(ConnectionError, match=r"no MLflow tracking server answers there within 0.5 s"):
            mlflow_export.check_tracking_server(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=0.5)
    finally:
        server.close()
    assert time.perf_counter() - started < 5
    mlflow_export.check_tracking_server("file:///tmp/mlruns")  # local stores are MLflow's own business


def test_mlflow_probe_takes_any_answer_but_a_proxys_for_a_server():
    import http.server

    codes = iter([404, 502])

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(next(codes))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        mlflow_export.check_tracking_server(uri)  # 404: a server is there
        with pytest.raises(ConnectionError, match="HTTP 502"):
            mlflow_export.check_tracking_server(uri)  # a proxy whose server is down
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------ names


def test_trial_names_carry_only_the_fields_their_mode_has():
    trials = expand(Preset.load("cpu", {"budget_probe": True}))
    names = {t.key: t.name for t in trials}
    assert len(set(names.values())) == len(trials)  # still one name per trial
    for t in trials:
        mode = t.config.mode
        has_point = re.search(r"-N\d+-lr[\d.e-]+-s\d+", t.name) is not None
        assert has_point == (mode in ("scratch", "finetune")), t.name
        assert t.name.endswith(t.key[:6]) and t.name.startswith("probe-" if t.stage == "probe" else mode)
    # The MLflow export names runs the same way, from the rows.
    for t in trials[:: max(1, len(trials) // 12)]:
        row = runner.result_row(t, "cpu", None, "x", "error")
        assert mlflow_export.run_name(row) == t.name


def test_names_are_not_part_of_keys():
    trials = expand(Preset.load("cpu", {}))
    keys = [t.key for t in trials]
    from fno_sweeps.grid import trial_key

    assert keys == [trial_key(t.config, t.pretrained_key) for t in trials]  # a key is the config's, nothing else


# --------------------------------------------------------------------- progress


def _planned(n: int = 3):
    return [t for t in expand(Preset.load("cpu", {})) if t.config.mode != "zeroshot"][:n]


def _row(status="ok", wall_s=1.0):
    return {"status": status, "wall_s": wall_s, "test_rel_l2": 0.1, "error": ""}


def test_time_left_is_estimating_until_measured_and_never_zero_while_trials_remain(monkeypatch):
    trials = _planned(4)
    clock = [100.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    progress = runner.Progress(4, 2, {t.key: runner.trial_flops(t) for t in trials}, board=live.TrialBoard(stream))
    progress.started(trials[0])
    progress.started(trials[1])
    assert "time left: estimating..." in progress.header() and progress.estimate_left() is None
    clock[0] += 30.0
    progress.finished(trials[0], _row(wall_s=30.0))
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("[1/4 done (ok 1), 1 running, 2 pending, about ") and "estimating" not in line
    assert progress.estimate_left() >= 1.0
    for t in trials[1:]:
        progress.finished(t, _row(wall_s=0.01))
        assert "0.0" not in stream.getvalue().splitlines()[-1].split("]")[0]
    assert progress.estimate_left() == 0.0 and stream.getvalue().splitlines()[-1].startswith("[4/4 done (ok 4), 0")


def test_trial_times_are_fitted_as_an_overhead_and_a_rate():
    assert runner.fit_trial_times([(1e9, 12.0), (2e9, 22.0), (4e9, 42.0)]) == pytest.approx((2.0, 1e-8))
    assert runner.fit_trial_times([(1e9, 10.0)]) == pytest.approx((0.0, 1e-8))
    assert runner.fit_trial_times([(0.0, 3.0), (0.0, 5.0)]) == pytest.approx((4.0, 0.0))
    assert runner.fit_trial_times([(1e9, 10.0), (2e9, 5.0)]) == pytest.approx((7.5, 0.0))  # no growth: overhead


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_board_redraws_running_trials_in_place_on_a_terminal_only(monkeypatch):
    trials = _planned(2)
    clock = [0.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    terminal = _Terminal()
    progress = runner.Progress(2, 2, board=live.TrialBoard(terminal))
    progress.started(trials[0])
    progress.reported(trials[0], {"step": 40, "val_rel_l2": 0.25})
    clock[0] += 1.0
    progress.tick()  # within BOARD_REFRESH_S: not redrawn
    clock[0] += live.BOARD_REFRESH_S
    progress.tick()
    screen = terminal.getvalue()
    total = trials[0].config.total_steps
    assert re.search(rf"{trials[0].name}  step +40/{total}  val 0.2500  0:03\n", screen), screen
    assert "\x1b[1A\x1b[2K" in screen
    progress.finished(trials[0], _row())
    progress.close()
    after = re.sub(r"(\x1b\[1A\x1b\[2K)+", "", terminal.getvalue().rsplit("\x1b[2K", 1)[-1])
    assert after == ""  # the block is gone at the end; the finished line stayed above it
    assert "[1/2 done (ok 1), 0 running, 1 pending, about " in terminal.getvalue()

    plain = io.StringIO()  # a log file: the finished lines only
    progress = runner.Progress(2, 2, board=live.TrialBoard(plain))
    progress.started(trials[1])
    progress.reported(trials[1], {"step": 40, "val_rel_l2": 0.25})
    clock[0] += 10 * live.BOARD_REFRESH_S
    progress.tick()
    progress.finished(trials[1], _row())
    assert plain.getvalue().count("\n") == 1 and "\x1b" not in plain.getvalue()


def test_first_trial_and_startup_phases_carry_their_elapsed_time(capsys):
    watch = live.Stopwatch()
    watch.say("plan: 7 trials")
    progress = runner.Progress(1, 1, stopwatch=watch)
    progress.started(_planned(1)[0])
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\[ +\d+\.\d s\] plan: 7 trials", out[0])
    assert re.fullmatch(r"\[ +\d+\.\d s\] first trial running: .+", out[1])


def test_tunes_own_output_is_off_at_verbosity_zero(monkeypatch):
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    assert runner.tune_output(0) == {"RAY_AIR_NEW_OUTPUT": "0"}  # the older engine prints nothing at 0
    assert runner.tune_output(1) == {"RAY_AIR_NEW_OUTPUT": None}
    with runner.environment(RAY_AIR_NEW_OUTPUT="0"):
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ


def test_progress_survives_the_pickling_tune_does():
    import pickle

    progress = runner.Progress(2, 1, board=live.TrialBoard(_Terminal()), stopwatch=live.Stopwatch())
    progress.started(_planned(1)[0])
    copy = pickle.loads(pickle.dumps(runner.Recorder(cluster.location("/tmp/x"), "cpu", progress)))
    assert copy.progress.total == 2 and isinstance(copy.progress.counts, Counter)


def test_an_interrupted_sweep_says_how_to_continue_with_the_command_that_was_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fno-sweep"])
    monkeypatch.setattr(scaling, "start_ray", lambda args, say=print: say("Ray started (stand-in)"))
    monkeypatch.setattr(scaling, "check_resources", lambda args: None)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scaling, "run_trials", ctrl_c)
    argv = ["--out", str(tmp_path / "my out"), "--no-report", *TINY]
    assert scaling.main(argv) == 130
    err = capsys.readouterr().err
    assert f"continue with: fno-sweep --out '{tmp_path / 'my out'}' --no-report --set resolution=16" in err
