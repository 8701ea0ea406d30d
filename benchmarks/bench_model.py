"""Training-step throughput and peak memory of FNO2d against two references of equal size.

One training step = forward, MSE loss, backward, Adam step (each implementation its own:
fused Adam for ours, as fno.train uses, plain Adam for the references), on random data. Compared,
at equal width, layers and retained modes (parameter counts printed side by side):

- fno-scaling:    ``fno.model.FNO2d``
- li-style:       the public FNO code's structure, written below: channels-first,
                  full rfft2, a zero spectrum with both corners filled, einsum contraction
- neuraloperator: ``neuralop.models.FNO`` (the ``[bench]`` extra), configured to the same
                  architecture: linear lift, no positional embedding, no channel MLP,
                  linear skip, n_modes = (2m, 2m - 2) (it keeps 2m rows and m columns)

Each (implementation, size) runs in its own process, so peak memory is that run's
(max RSS on CPU; on CUDA both the peak allocated and the peak *reserved* by the caching
allocator, which is what the GPU really gives up, beside the memory rule's estimate for
the same model and batch, ``fno.memory``, and the GPU's utilisation over the timed steps
from NVML), and implementations are interleaved round by round so that a machine's drift
hits all alike; the table gives each one's median. --tf32 and --bf16 switch the GPU's
fast paths on, as the sweeps' flags of the same names do.

    python benchmarks/bench_model.py                               # CPU: 64 x 64, batch 16
    python benchmarks/bench_model.py --device cuda --resolution 128 --batch 128 \\
        --presets w16-m4 w32-m8 w64-m16 w128-m32
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from fno.model import PRESETS, FNO2d
from fno.train import make_optimizer

IMPLEMENTATIONS = ("fno-scaling", "li-style", "neuraloperator")


class LiSpectralConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.out_channels, self.modes = out_channels, modes
        scale = 1 / (in_channels * out_channels)
        shape = (in_channels, out_channels, modes, modes)
        self.weights1 = nn.Parameter(scale * torch.rand(*shape, dtype=torch.cfloat))
        self.weights2 = nn.Parameter(scale * torch.rand(*shape, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, (nx, ny) = self.modes, x.shape[-2:]
        x_ft = torch.fft.rfft2(x)
        out = torch.zeros(x.shape[0], self.out_channels, nx, ny // 2 + 1, dtype=torch.cfloat, device=x.device)
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", x_ft[:, :, :m, :m], self.weights1)
        out[:, :, -m:, :m] = torch.einsum("bixy,ioxy->boxy", x_ft[:, :, -m:, :m], self.weights2)
        return torch.fft.irfft2(out, s=(nx, ny))


class LiFNO2d(nn.Module):
    def __init__(self, in_channels: int, width: int, modes: int, layers: int = 4) -> None:
        super().__init__()
        self.fc0 = nn.Linear(in_channels, width)
        self.convs = nn.ModuleList(LiSpectralConv2d(width, width, modes) for _ in range(layers))
        self.ws = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc0(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        for i, (conv, w) in enumerate(zip(self.convs, self.ws, strict=True)):
            x = conv(x) + w(x)
            if i < len(self.convs) - 1:
                x = F.gelu(x)
        x = self.fc2(F.gelu(self.fc1(x.permute(0, 2, 3, 1))))
        return x.permute(0, 3, 1, 2)


def build(impl: str, in_channels: int, width: int, modes: int) -> nn.Module:
    if impl == "fno-scaling":
        return FNO2d(in_channels, 1, width, modes)
    if impl == "li-style":
        return LiFNO2d(in_channels, width, modes)
    from neuralop.models import FNO

    return FNO(
        n_modes=(2 * modes, 2 * modes - 2),
        in_channels=in_channels,
        out_channels=1,
        hidden_channels=width,
        n_layers=4,
        lifting_channel_ratio=0,
        projection_channel_ratio=2,
        positional_embedding=None,
        use_channel_mlp=False,
        fno_skip="linear",
    )


def n_real_params(model: nn.Module) -> int:
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def run_one(
    impl: str,
    preset: str,
    resolution: int,
    batch: int,
    device: str,
    min_time: float,
    compile_: bool,
    tf32: bool = False,
    bf16: bool = False,
):
    """Time training steps of one model in this process; return a result dict."""
    torch.manual_seed(0)
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    width, modes = _size(preset)
    model = build(impl, 4, width, modes).to(dev)
    params = n_real_params(model)
    if compile_:
        model = torch.compile(model)
    # Each implementation's own optimizer: ours is fno.train's (fused Adam where
    # available), the references' the plain torch.optim.Adam their code uses.
    if impl == "fno-scaling":
        optimizer = make_optimizer(model, lr=1e-4)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 4, resolution, resolution, device=dev)
    y = torch.randn(batch, 1, resolution, resolution, device=dev)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and dev.type == "cuda"):
            loss = F.mse_loss(model(x).float(), y)
        loss.backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(2):  # warm-up: allocations, FFT plans, compilation
        step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_time and len(times) < 50):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    reserved_mb = estimate_mb = utilisation = float("nan")
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20
        reserved_mb = torch.cuda.max_memory_reserved(dev) / 2**20
        with contextlib.suppress(ModuleNotFoundError, RuntimeError):  # no NVML bindings: no utilisation
            utilisation = float(torch.cuda.utilization(dev))  # kernel-busy share of NVML's last sample period
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if impl == "fno-scaling":
        from fno import memory

        activations = batch * memory.activation_bytes_per_sample(4, width, modes, 4, resolution)
        inputs = (x.numel() + y.numel()) * 4
        workspace = memory.WORKSPACE_FACTOR * activations + memory.FIXED_WORKSPACE
        estimate = memory.OPTIMIZER_BYTES_PER_PARAMETER * params + inputs + activations + workspace
        estimate_mb = estimate / 2**20
    return {
        "impl": impl,
        "preset": preset,
        "params": params,
        "step_s": statistics.median(times),
        "samples_per_s": batch / statistics.median(times),
        "peak_mb": peak_mb,
        "reserved_mb": reserved_mb,
        "estimate_mb": estimate_mb,
        "utilisation": utilisation,
    }


def _size(name: str) -> tuple[int, int]:
    """(width, modes) of a size named wWIDTH-mMODES."""
    if name in PRESETS:
        return PRESETS[name]
    width, modes = name.removeprefix("w").split("-m")
    return int(width), int(modes)


def _size_name(text: str) -> str:
    try:
        _size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size wWIDTH-mMODES such as w32-m16, got {text!r}") from None
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        type=_size_name,
        default=["w16-m4", "w32-m8", "w32-m16", "w64-m16"],
        help=f"sizes wWIDTH-mMODES (named: {', '.join(PRESETS)})",
    )
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats of every measurement")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of steps per measurement")
    parser.add_argument("--compile", action="store_true", help="torch.compile fno-scaling's model")
    parser.add_argument("--tf32", action="store_true", help="CUDA: TF32 matmuls")
    parser.add_argument("--bf16", action="store_true", help="CUDA: bf16 autocast (the FFTs stay float32)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        result = run_one(
            args.impls[0],
            args.presets[0],
            args.resolution,
            args.batch,
            args.device,
            args.min_time,
            args.compile and args.impls[0] == "fno-scaling",
            args.tf32,
            args.bf16,
        )
        print(json.dumps(result))
        return
    print(
        f"device {args.device}, torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
        f"{args.resolution}x{args.resolution}, batch {args.batch}, {args.rounds} interleaved rounds, "
        f"training step = forward + backward + Adam"
    )
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for preset in args.presets:
            for impl in args.impls:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    "--impls",
                    impl,
                    "--presets",
                    preset,
                    "--resolution",
                    str(args.resolution),
                    "--batch",
                    str(args.batch),
                    "--device",
                    args.device,
                    "--min-time",
                    str(args.min_time),
                ]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                cmd += [
                    flag
                    for flag, on in (("--compile", args.compile), ("--tf32", args.tf32), ("--bf16", args.bf16))
                    if on
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(f"{impl} {preset}: failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                runs.setdefault((preset, impl), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    cuda = args.device.startswith("cuda")
    header = f"{'size':<9} {'implementation':<15} {'params':>11} {'samples/s':>10} {'peak MB':>8} {'ours x':>7}"
    if cuda:
        header += f" {'reserved MB':>11} {'estimate MB':>11} {'GPU util %':>10}"
    print(header)
    print("-" * len(header))
    for preset in args.presets:
        ours = runs.get((preset, "fno-scaling"))
        ours_rate = statistics.median(r["samples_per_s"] for r in ours) if ours else float("nan")
        for impl in args.impls:
            rs = runs.get((preset, impl))
            if not rs:
                continue
            rate = statistics.median(r["samples_per_s"] for r in rs)
            peak = statistics.median(r["peak_mb"] for r in rs)
            line = (
                f"{preset:<9} {impl:<15} {rs[0]['params']:>11,} {rate:>10,.1f} {peak:>8,.0f} {ours_rate / rate:>7.2f}"
            )
            if cuda:
                reserved, estimate, util = (
                    statistics.median(r[k] for r in rs) for k in ("reserved_mb", "estimate_mb", "utilisation")
                )
                line += f" {reserved:>11,.0f} {estimate:>11,.0f} {util:>10.0f}"
            print(line)
        print()


if __name__ == "__main__":
    main()
