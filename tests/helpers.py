"""Helpers shared by the tests that start real servers and clusters on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from fno import results
from fno.storage import Location


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, server: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Return once ``url`` answers; fail the test if ``server`` exits or ``timeout_s`` passes."""
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                pytest.fail(f"{what} did not come up in {timeout_s:g} s")
            time.sleep(0.3)


def sweep_rows(out: Path | Location | str, sweep: str = "cpu") -> pd.DataFrame:
    """The results table of ``<out>/<sweep>`` (a folder or an object-store URI)."""
    return results.read_results(Location(str(out)) / sweep / "results").to_pandas()


def stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End a process started with start_new_session=True and its whole group: SIGTERM,
    then SIGKILL if it outlives ``grace_s`` (`ray start --block` can)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def loopback_cluster(env: dict[str, str], head_gpus: int = 0, dashboard_port: int | None = None) -> Iterator[str]:
    """A real two-node Ray cluster on this machine (one CPU per node, token auth from
    ``env``, the dashboard on ``dashboard_port`` if given); yields its address."""
    with growing_cluster(env, head_gpus, dashboard_port) as (address, add_node):
        add_node()
        yield address


@contextlib.contextmanager
def growing_cluster(
    env: dict[str, str], head_gpus: int = 0, dashboard_port: int | None = None
) -> Iterator[tuple[str, Callable[[], subprocess.Popen]]]:
    """A real Ray cluster on this machine that starts as a head node alone (one CPU, token
    auth from ``env``); yields its address and a function that adds a one-CPU worker
    node, returns once the head counts it alive, and returns its `ray start` process (the
    leader of the node's process group). Every node ends by its process group (never
    `ray stop`, which would end every Ray process on the machine)."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address", "127.0.0.1"]
    quiet = {"start_new_session": True, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    head = [ray_cli, "start", "--head", "--port", str(port), "--num-gpus", str(head_gpus), "--num-cpus", "1"]
    if dashboard_port is None:
        head.append("--include-dashboard=false")
    else:
        head += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port)]
    nodes = [subprocess.Popen([*head, *common], **quiet)]

    def add_node() -> subprocess.Popen:
        nodes.append(subprocess.Popen([ray_cli, "start", "--address", address, "--num-cpus", "1", *common], **quiet))
        count = f"import ray; ray.init(address={address!r}); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.time() + 90
        while time.time() < deadline:
            out = subprocess.run([sys.executable, "-c", count], capture_output=True, text=True, env=env, timeout=60)
            if out.stdout.strip().endswith(str(sum(n.poll() is None for n in nodes))):
                return nodes[-1]
            time.sleep(1)
        pytest.fail("the worker node did not join the head node")

    try:
        time.sleep(5)
        yield address, add_node
    finally:
        for node in nodes:  # all at once, then each waited for
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        for node in nodes:  # a SIGTERMed node drains for up to 30 s: a test has no work to save
            stop_group(node, grace_s=2)
        # A killed head leaves its address behind, where a later plain ray.init() would look.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


@contextlib.contextmanager
def autoscaling_cluster(env: dict[str, str], max_workers: int = 2) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Ray cluster on this machine whose head holds no CPU and whose autoscaler (Ray's
    own, with its fake multi-node provider, which starts real raylets here, under the
    head's process tree) adds one-CPU nodes on demand, up to ``max_workers``; yields its
    address and the head's `ray start` process. Ends by its process group."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    empty: list[str] = []
    config = {
        "cluster_name": f"fno-test-{port}",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": address,
            "disable_launch_config_check": True,
            "disable_node_updaters": True,
            "use_node_id_as_ip": True,
        },
        "auth": {"ssh_user": "nobody"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu.node": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": max_workers},
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **dict.fromkeys(
            [
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            ],
            empty,
        ),
    }
    with tempfile.TemporaryDirectory(prefix="fno-autoscaler-") as folder:
        config_path = Path(folder) / "cluster.json"
        config_path.write_text(json.dumps(config))
        head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        head = subprocess.Popen(
            [ray_cli, "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
             "--num-cpus", "0", "--include-dashboard=false", f"--autoscaling-config={config_path}"],
            start_new_session=True, env=head_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(6)
            yield address, head
        finally:
            stop_group(head, grace_s=2)
            current = Path("/tmp/ray/ray_current_cluster")
            if current.exists() and current.read_text().strip().endswith(f":{port}"):
                current.unlink()
