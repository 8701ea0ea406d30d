"""Ray for both entry points (scaling.py, hpo.py): flags, start or join, resource checks.

A local run starts a private Ray instance bound to 127.0.0.1 with token authentication
on (Ray 2.60's default); its workers import the installed packages. ``--cluster`` joins
an existing cluster and ships the driver's copies of the three packages (fno,
fno_sweeps, fno_analysis) to the workers through Ray's runtime environment, so that
workers need the dependencies installed, not this project.

Everything that can be checked before Ray starts is checked here first, before any
folder is created: the flags against each other (``check_flags``), the local machine
against the resources a trial asks for (``check_local_resources``) and, with
``--cluster``, that a head answers at the address (``check_cluster``). Messages name
the command as the user ran it (``invocation``): ``fno-sweep`` from the installed
console script, ``python sweeps/scaling.py`` from a checkout.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from fno.config import TOMLDecodeError, parse_value
from fno.provenance import check_one_source
from fno.storage import Location, describe_endpoint, location, open_location
from fno_sweeps.runner import RunSettings


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that say where and how trials run (none of them changes a trial's key)."""
    p.add_argument("--cluster", action="store_true", help="connect to an existing Ray cluster")
    p.add_argument("--address", default=None, help="cluster address (default: $RAY_ADDRESS, else auto)")
    p.add_argument(
        "--storage",
        default=None,
        help="where every node reads and writes results and checkpoints on a cluster: a shared folder, or a "
        "bucket URI (s3://bucket/prefix, gs://bucket/prefix; credentials from the store's usual environment)",
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument(
        "--gpus-per-trial",
        type=_gpu_request,
        default=0.0,
        help="0 (default): trials run on CPUs; a share such as 0.25 or a whole number of GPUs; auto: each trial "
        "the smallest share 1/k of a GPU that holds its memory estimate (docs/gpu.md)",
    )
    p.add_argument(
        "--gpu-memory-gib",
        type=float,
        default=None,
        help="memory of one GPU, for --gpus-per-trial auto (default: read from this machine's GPU)",
    )
    p.add_argument("--bf16", action="store_true", help="GPU trials: bf16 autocast for the pointwise layers")
    p.add_argument("--tf32", action="store_true", help="GPU trials: TF32 matmuls")
    p.add_argument("--concurrency", type=int, default=None, help="trials at once (default: as resources allow)")
    p.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="retries of a trial that raises or loses its worker or node (default 2); a retry resumes from the "
        "trial's saved state",
    )
    p.add_argument(
        "--trial-timeout",
        type=_timeout,
        default=None,
        metavar="SECONDS",
        help="end a trial that runs longer as a timeout (0: no limit; default auto: 10x its FLOPs at the slowest "
        "rate seen in the sweep, at least 30 min)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="a trial saves its training state this often, to resume from after a lost worker (default 300)",
    )
    p.add_argument(
        "--allow-cpu-fallback",
        action="store_true",
        help="GPU trials on a node where CUDA is not available run on its CPU (default: they fail, naming the node)",
    )
    p.add_argument(
        "--autoscale",
        action="store_true",
        help="--cluster that grows on demand (KubeRay, the Ray autoscaler): accept a head without the resources "
        "a trial needs, and keep trials pending so that nodes are added; needs --storage. Detected without the flag "
        "where the cluster's autoscaler reports configured node types",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray: CPUs to use (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="local Ray: GPUs to offer (default: those it detects)")
    p.add_argument("--dashboard-host", default=None, help="local Ray dashboard bind address (default 127.0.0.1)")
    p.add_argument("--no-dashboard", action="store_true", help="local Ray without the dashboard")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="local Ray: port of the Prometheus metrics endpoint with the sweep's gauges (default: Ray's choice, "
        "printed)",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto (default): cuda when --gpus-per-trial asks for GPUs, else cpu; cpu or cuda must agree with it",
    )
    p.add_argument("--verbose", type=int, default=0, help="Ray Tune's own console output level (0-3)")


# Each entry point: its path in a checkout, its console script, its module.
ENTRY_POINTS = {
    "sweeps/scaling.py": ("fno-sweep", "fno_sweeps.scaling"),
    "sweeps/hpo.py": ("fno-hpo", "fno_sweeps.hpo"),
}


def invocation(script: str) -> list[str]:
    """The words that start the entry point ``script`` (a key of ENTRY_POINTS) the way
    this process was started: ``["fno-sweep"]`` from the installed console script,
    ``["python", "sweeps/scaling.py"]`` (the path as typed) from a checkout,
    ``["python", "-m", "fno_sweeps.scaling"]`` as a module; the console script when
    called in-process (tests, other drivers), which every installation has."""
    console, module = ENTRY_POINTS[script]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name == module:
        return [_python(), "-m", module]
    argv0 = sys.argv[0] if sys.argv else ""
    name = Path(argv0).name
    if name == Path(script).name:
        return [_python(), argv0]
    return [console]


def _python() -> str:
    """``python`` where that is this interpreter on the PATH, else this interpreter's path."""
    found = shutil.which("python")
    try:
        same = found is not None and os.path.samefile(found, sys.executable)
    except OSError:
        same = False
    return "python" if same else sys.executable


def prog(script: str) -> str:
    """argparse's ``prog`` for ``script``: how the user started it (``invocation``)."""
    return shlex.join(invocation(script))


def continue_command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that continues a sweep or search: the same one (``argv``, default
    this process's arguments) started as this process was (``invocation``), shell-quoted."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join([*invocation(script), *args])


def refuse(prog_name: str, message: str) -> int:
    """Print ``message`` as argparse prints its errors (``PROG: error: ...``, without the
    usage) and return the exit status 2, for refusals found after parsing."""
    print(f"{prog_name}: error: {message}", file=sys.stderr)
    return 2


def parse_checked(parser: argparse.ArgumentParser, argv: Sequence[str] | None, check: Callable) -> argparse.Namespace:
    """``parser.parse_args(argv)``, then ``check(args)``: a ValueError it raises is a usage
    error, reported through argparse (usage, ``PROG: error: ...``, exit status 2)."""
    args = parser.parse_args(argv)
    try:
        check(args)
    except ValueError as err:
        parser.error(str(err))
    return args


STRUCTURED_STARTS = ("[", "{", '"', "'")  # a --set value that begins so is meant as TOML/JSON


def parse_set_flags(items: Sequence[str]) -> dict:
    """``--set KEY=VALUE`` flags as a dict of dotted keys to values. A value is read as
    TOML (numbers, booleans, arrays, strings), else as JSON, else taken as a plain
    string; one that starts like an array, a table or a quoted string and parses as
    neither is a parse error naming the flag (``--set n_train=[2,``)."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        value = parse_value(text)
        if isinstance(value, str) and text.startswith(STRUCTURED_STARTS):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"--set {item}: not a valid TOML/JSON value: {_toml_error(text)}") from None
        out[key] = value
    return out


def _toml_error(text: str) -> str:
    """The TOML parser's complaint about ``text`` as a value, without its position (which
    counts a prefix the user never typed)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        tomllib.loads(f"v = {text}")
    except TOMLDecodeError as err:
        return str(err).split(" (at ")[0]
    return "not a value"


def destination_flag(args: argparse.Namespace) -> str:
    """The flag that names where results go, for messages: --storage if given, else --out."""
    return "--storage" if args.storage else "--out"


def output_base(args: argparse.Namespace) -> Location:
    """Where sweeps go: --storage on a cluster, else --out (a folder, or an object-store
    URI such as s3://bucket/prefix); checks the execution flags first (``check_flags``)."""
    check_flags(args)
    flag = destination_flag(args)
    raw = args.storage if args.storage else str(args.out or "out")
    base = open_location(raw, flag)  # on the text: Path() would collapse s3://b/p to s3:/b/p, a local folder
    if in_ray_job() and base.is_local and not base.local.is_absolute():
        raise ValueError(
            f"{flag} {raw}: inside a Ray Job the working directory is a temporary copy that Ray deletes when the job "
            "ends; pass an absolute folder (every node's, with --storage on a cluster)"
        )
    if args.gpus_per_trial is None and args.gpu_memory_gib is None:
        args.gpu_memory_gib = _local_gpu_memory_gib()
    return base


LOCAL_RAY_FLAGS = (  # (attribute, flag): they configure the Ray instance a local run starts
    ("num_cpus", "--num-cpus"),
    ("num_gpus", "--num-gpus"),
    ("dashboard_host", "--dashboard-host"),
    ("no_dashboard", "--no-dashboard"),
    ("metrics_port", "--metrics-port"),
)


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flags out of range, that contradict each other or that would do nothing
    (ValueError naming them and what is allowed); reads nothing but the flags."""
    gpus = args.gpus_per_trial
    if not (math.isfinite(args.cpus_per_trial) and args.cpus_per_trial > 0):
        raise ValueError(f"--cpus-per-trial must be a number > 0, got {args.cpus_per_trial:g}")
    if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
        raise ValueError(f"--gpus-per-trial must be 0, a share in (0, 1], 1 or auto; got {gpus:g}")
    if gpus is not None and gpus > 1:
        raise ValueError(
            f"--gpus-per-trial {gpus:g}: a trial trains on one GPU, so more would be reserved and never used; "
            "give a share in (0, 1], 1 or auto"
        )
    if getattr(args, "throughput", None) is not None and not getattr(args, "dry_run", False):
        raise ValueError(
            f"--throughput {args.throughput:g} sets the rate a --dry-run's time estimate assumes; a run measures "
            "its own: add --dry-run or drop it"
        )
    if args.max_retries < 0:
        raise ValueError(f"--max-retries must be >= 0, got {args.max_retries}")
    if not (math.isfinite(args.checkpoint_every) and args.checkpoint_every > 0):
        raise ValueError(f"--checkpoint-every must be > 0 seconds, got {args.checkpoint_every:g}")
    if args.concurrency is not None and args.concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {args.concurrency}")
    if not 0 <= args.verbose <= 3:
        raise ValueError(f"--verbose must be one of 0, 1, 2, 3 (Ray Tune's output level), got {args.verbose}")
    if args.autoscale and not (args.cluster and args.storage):
        raise ValueError(
            "--autoscale applies to --cluster and needs --storage (a folder every node sees, or a bucket URI): "
            "nodes that join must read the checkpoints others wrote"
        )
    if args.device == "cuda" and gpus == 0:
        raise ValueError(
            "--device cuda needs a GPU request: --gpus-per-trial 0.25, 1 or auto (trials without one run on CPUs)"
        )
    if args.device == "cpu" and gpus != 0:
        raise ValueError(f"--device cpu with --gpus-per-trial {gpus or 'auto'}: the GPU would be reserved and unused")
    if gpus == 0 and (args.bf16 or args.tf32):
        raise ValueError("--bf16 and --tf32 apply to GPU trials; add --gpus-per-trial")
    if gpus == 0 and args.allow_cpu_fallback:
        raise ValueError(
            "--allow-cpu-fallback applies to GPU trials; without --gpus-per-trial every trial runs on a CPU"
        )
    if args.gpu_memory_gib is not None:
        if gpus is not None:
            raise ValueError(
                f"--gpu-memory-gib applies to --gpus-per-trial auto (the memory rule picks each trial's share); with "
                f"--gpus-per-trial {gpus:g} every trial's share is fixed: drop --gpu-memory-gib or use auto"
            )
        if not (math.isfinite(args.gpu_memory_gib) and args.gpu_memory_gib > 0):
            raise ValueError(f"--gpu-memory-gib must be > 0, got {args.gpu_memory_gib:g}")
    if getattr(args, "out", None) is not None and args.storage:
        raise ValueError(f"--out {args.out} and --storage {args.storage} both name where results go; give one")
    given = [flag for name, flag in LOCAL_RAY_FLAGS if getattr(args, name) not in (None, False)]
    if args.cluster and given:
        raise ValueError(
            f"{', '.join(given)} configure the Ray instance a local run starts; with --cluster the cluster's own "
            "nodes and head decide: drop them (or --cluster)"
        )
    if args.address is not None and not args.cluster:
        raise ValueError(f"--address {args.address} applies to --cluster (joining a running cluster): add --cluster")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be at least 1, got {args.num_cpus}")
    if args.num_gpus is not None and args.num_gpus < 0:
        raise ValueError(f"--num-gpus must be >= 0, got {args.num_gpus}")
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        raise ValueError(f"--metrics-port must be a port in 1..65535, got {args.metrics_port}")
    if args.no_dashboard and args.dashboard_host is not None:
        raise ValueError("--dashboard-host and --no-dashboard contradict each other: give one")


def local_cpu_count() -> int:
    """The CPUs this process may use: its CPU affinity, capped by a cgroup v2 quota
    (a container's ``cpu.max``), as Ray counts them for a local instance."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota
    return count


def local_gpu_count() -> int:
    """The GPUs a local Ray instance would offer: those torch sees (CUDA_VISIBLE_DEVICES applies)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_local_resources(args: argparse.Namespace) -> None:
    """Without --cluster, refuse a trial the local Ray instance could never run (more CPUs
    than it offers, a GPU share where it has no GPU) before starting it."""
    if args.cluster:
        return
    cpus = args.num_cpus if args.num_cpus is not None else local_cpu_count()
    source = "--num-cpus" if args.num_cpus is not None else "this machine"
    if args.cpus_per_trial > cpus:
        raise ValueError(
            f"--cpus-per-trial {args.cpus_per_trial:g}: a local run has {cpus} CPUs ({source}), so no trial could "
            f"start; give --cpus-per-trial in (0, {cpus}], or --cluster for a larger machine"
        )
    gpus = args.gpus_per_trial
    if gpus == 0:
        return
    offered = args.num_gpus if args.num_gpus is not None else local_gpu_count()
    if offered == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "torch sees none"
        why = "--num-gpus 0" if args.num_gpus is not None else f"this machine has no GPU ({seen})"
        raise ValueError(
            f"--gpus-per-trial {'auto' if gpus is None else f'{gpus:g}'}: a local run has no GPU to give ({why}); "
            "run on the CPU (--gpus-per-trial 0, the default), or join a cluster with GPUs (--cluster)"
        )


def check_cluster(args: argparse.Namespace) -> None:
    """With --cluster: a head answers at the address, and one version of the code is
    shipped to the workers; checked before Ray starts and before any folder is created."""
    if not args.cluster:
        return
    check_head_reachable(args.address or os.environ.get("RAY_ADDRESS") or "auto")
    try:
        check_one_source()  # the workers get copies of these three packages: one code version
    except RuntimeError as err:
        raise ValueError(str(err)) from None


JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a job's entrypoint


def in_ray_job() -> bool:
    """Whether this process is a Ray Job's entrypoint (``ray job submit``)."""
    return JOB_ENV_VAR in os.environ


def check_writable(folder: Path | Location, flag: str) -> None:
    """Create ``folder`` and write (then delete) a probe file in it, or fail naming the
    flag and folder (before Ray starts, so that no trial runs into a place its row cannot
    go). In an object store this also checks the bucket, the credentials and the endpoint."""
    folder = location(folder)
    probe = folder / f".write-probe-{uuid.uuid4().hex}"
    try:
        folder.mkdir()
        probe.write_bytes(b"")
        probe.delete()
    except OSError as err:
        endpoint = describe_endpoint(folder)
        where = f" at {endpoint}" if endpoint else ""
        raise ValueError(
            f"{flag}: cannot create or write the sweep folder {folder}{where} ({err.strerror or err})"
        ) from err


def first_missing(folder: Path | Location) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (None: it exists,
    or it is in an object store, which has no folders)."""
    folder = location(folder)
    if not folder.is_local:
        return None
    path, missing = folder.local.absolute(), None
    while not path.exists():
        path, missing = path.parent, path
    return missing


def remove_if_empty(folder: Path | Location, created: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``created`` (those this run created) where
    they are empty."""
    if created is None:
        return
    path = location(folder).local.absolute()
    while True:
        try:
            path.rmdir()
        except OSError:  # not empty (or gone): the run wrote there, keep it
            return
        if path == created:
            return
        path = path.parent


def _gpu_request(text: str) -> float | None:
    """--gpus-per-trial: a number, or "auto" (None: the share follows each trial's memory)."""
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def _timeout(text: str) -> float | None:
    """--trial-timeout: seconds (0: no limit) or auto (None)."""
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (0: no limit) or auto, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0: no limit) or auto, got {text!r}")
    return value


def _local_gpu_memory_gib() -> float:
    """The memory of this machine's first GPU, for --gpus-per-trial auto without --gpu-memory-gib."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--gpus-per-trial auto needs --gpu-memory-gib (this machine has no GPU to read it from)")
    return torch.cuda.get_device_properties(0).total_memory / 2**30


def run_settings(args: argparse.Namespace, retry_failed: bool = False) -> RunSettings:
    return RunSettings(
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        verbose=args.verbose,
        retry_failed=retry_failed,
        gpu_memory_gib=args.gpu_memory_gib,
        bf16=args.bf16,
        tf32=args.tf32,
        checkpoint_every_s=args.checkpoint_every,
        trial_timeout_s=args.trial_timeout,
        allow_cpu_fallback=args.allow_cpu_fallback,
        autoscale=args.autoscale,
    )


def start_ray(args: argparse.Namespace, say: Callable[[str], None] = print) -> None:
    """Join the cluster (--cluster, checked by ``check_cluster`` first) or start a private
    local instance; ``say`` each phase (the dashboard's URL, the metrics endpoint).
    Ray's own INFO lines stay out unless --verbose."""
    import ray

    quiet = {"logging_level": logging.INFO if args.verbose else logging.WARNING}
    if args.cluster:
        # Joining an existing cluster: the driver authenticates with the cluster's token
        # (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN). A local instance
        # below gets token authentication by default and writes its own token.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        address = args.address or os.environ.get("RAY_ADDRESS") or "auto"
        say(f"joining the Ray cluster at {address}")
        with tempfile.TemporaryDirectory(prefix="fno-scaling-modules-") as stage:
            runtime_env = {"py_modules": _staged_packages(Path(stage))}
            try:
                ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, **quiet)
            except ConnectionError as err:  # the head answered, and refused or lost the driver
                raise SystemExit(
                    f"error: a Ray head answers at {address} but the driver could not join ({err}). Usual causes: "
                    "the token (this machine's ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN must hold "
                    "the cluster's, with RAY_AUTH_MODE=token), or a Ray or Python version other than the cluster's"
                ) from None
        nodes = [n for n in ray.nodes() if n["Alive"]]
        autoscaler = "" if getattr(args, "autoscale", False) else detect_autoscaler()
        if autoscaler and not args.storage:
            ray.shutdown()
            raise SystemExit(
                f"error: the cluster at {address} grows on demand ({autoscaler}); pass --storage with a folder "
                "every node sees or a bucket URI (nodes that join read the checkpoints others wrote)"
            )
        if autoscaler:
            args.autoscale = True  # as if --autoscale were given: a head without trial resources is accepted
            say(f"the cluster grows on demand ({autoscaler}): trials are kept pending so that it adds nodes")
        if len(nodes) > 1 and not args.storage:  # (--autoscale without --storage is refused before)
            ray.shutdown()
            raise SystemExit(
                f"error: the cluster at {address} has {len(nodes)} nodes; pass --storage with a folder every node "
                "sees or a bucket URI (checkpoints of stage 1 are read by stage 2 trials on any node)"
            )
        say(f"connected to the Ray cluster at {address}: {len(nodes)} nodes{_resources_text()}")
        _print_metrics_endpoint(say=say)
        return
    say("starting a local Ray instance (bound to 127.0.0.1)")
    # Ray 2.60 turns token authentication on for a new local instance and warns that it did;
    # the line below says so, with where the token is, so its warning stays out.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    context = ray.init(
        # "local": always a new, private instance. Without it, ray.init joins whatever
        # /tmp/ray/ray_current_cluster names, even a cluster that has since died.
        address="local",
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        include_dashboard=not args.no_dashboard,
        dashboard_host=args.dashboard_host or "127.0.0.1",
        _node_ip_address="127.0.0.1",
        _metrics_export_port=args.metrics_port,
        log_to_driver=False,
        **quiet,
    )
    dashboard = ""
    if not args.no_dashboard and context.dashboard_url:
        dashboard = (
            f"; dashboard http://{context.dashboard_url} (sign in with the token that `ray get-auth-token` prints; "
            "it is in ~/.ray/auth_token)"
        )
    say(f"Ray started{_resources_text()}{dashboard}")
    _print_metrics_endpoint("127.0.0.1", say=say)


def _resources_text() -> str:
    """``: 2 CPUs, 0 GPUs`` of the connected Ray instance."""
    import ray

    total = ray.cluster_resources()
    return f": {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs"


CONNECT_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection in this long is not there


def check_head_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail at once (ValueError), naming the address and the usual causes, when nothing
    accepts a connection at the head's address (Ray's own attempt retries for about two
    minutes and then says only "Timed out while waiting for GCS to become available").
    ``auto`` is the address a ``ray start --head`` on this machine recorded."""
    given = address
    if address == "auto":
        recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if not recorded.is_file():
            raise ValueError(
                "--cluster without --address or $RAY_ADDRESS, and no Ray head started on this machine "
                f"({recorded} does not exist): pass --address HEAD:PORT"
            )
        address = recorded.read_text().strip()
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {given}: expected HOST:PORT, e.g. 10.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ValueError(
            f"no Ray head answers at {address} ({err.strerror or err}). Usual causes: no head is running "
            f"there (start one with `ray start --head --port {port}`); a wrong host or port (the head prints its "
            "address when it starts; Ray's default port is 6379); a firewall between here and there. Once "
            "connected, the driver also needs the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN_PATH) and "
            "RAY_AUTH_MODE=token"
        ) from None


def _print_metrics_endpoint(host: str | None = None, say: Callable[[str], None] = print) -> None:
    """Where this driver's node exports the sweep's gauges (fno_sweeps.metrics); ``host``
    instead of the node's address (a local instance: 127.0.0.1)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node["NodeID"] == here and node.get("MetricsExportPort"):
            address = host or node["NodeManagerAddress"]
            say(f"sweep metrics (Prometheus): http://{address}:{node['MetricsExportPort']}/metrics")


def _staged_packages(stage: Path) -> list[str]:
    """Copies of the three import packages in ``stage``, each in a folder named by its
    import name (Ray's py_modules names a module by its folder, and two of the source
    folders are named otherwise: sweeps/, analysis/). Ray uploads them in ray.init."""
    import fno
    import fno_analysis
    import fno_sweeps

    paths = []
    for module in (fno, fno_sweeps, fno_analysis):
        target = stage / module.__name__
        shutil.copytree(Path(module.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        paths.append(str(target))
    return paths


def detect_autoscaler() -> str:
    """What says that the connected cluster grows on demand, or "" when nothing does.

    Ray's autoscaler monitor runs on every head and reports, under the internal key
    ``__autoscaling_status``, the node type of each live node. Without a cluster config (a
    plain ``ray start``) its read-only provider names each node by its id; the cluster
    launcher and KubeRay name them by the config's node types. Autoscaler v2 (KubeRay's
    newer default) says so under its own key. Needs ``ray.init`` first."""
    import json

    import ray
    from ray.experimental.internal_kv import _internal_kv_get, internal_kv_get_gcs_client

    try:
        client = internal_kv_get_gcs_client()
        v2 = client.internal_kv_get(
            ray._raylet.GCS_AUTOSCALER_V2_ENABLED_KEY.encode(),
            namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode(),
        )
        if v2 == b"1":
            return "autoscaler v2 enabled"
        status = _internal_kv_get("__autoscaling_status")
        report = (json.loads(status).get("autoscaler_report") or {}) if status else {}
    except (OSError, RuntimeError, ValueError, AttributeError) as err:  # an older or newer Ray: say nothing
        print(f"note: could not read the cluster's autoscaler status ({type(err).__name__}: {err})")
        return ""
    mapping = report.get("node_type_mapping") or {}
    configured = sorted({kind for node, kind in mapping.items() if kind != node})
    return f"an autoscaler with node types {', '.join(configured)}" if configured else ""


def check_resources(args: argparse.Namespace) -> None:
    """Refuse requests no node can satisfy (Tune would leave such trials PENDING forever),
    unless the cluster grows on demand (--autoscale): then say what it must add."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    gpus = args.gpus_per_trial
    wanted = "a share of a GPU (auto)" if gpus is None else f"{gpus:g} GPUs"
    fits = not ((gpus or 0) > most_gpus or (gpus is None and not most_gpus) or args.cpus_per_trial > most_cpus)
    if not fits and getattr(args, "autoscale", False):
        print(
            f"no node holds a trial yet ({args.cpus_per_trial:g} CPUs and {wanted}; the largest has {most_cpus:g} "
            f"CPUs and {most_gpus:g} GPUs): trials wait for the autoscaler to add nodes"
        )
        return
    if not fits:
        ray.shutdown()
        raise SystemExit(
            f"error: a trial asks for {args.cpus_per_trial:g} CPUs and {wanted}, but the largest "
            f"node has {most_cpus:g} CPUs and {most_gpus:g} GPUs; lower --cpus-per-trial / --gpus-per-trial"
        )
