"""Datasets of the user's own: a non-periodic benchmark set, the padding and coordinate
defaults measured on it, and this tool's FNO side by side with neuraloperator's.

    python benchmarks/bench_external.py darcy --out data/darcy --resolution 32 --train 1000 --test 200
    python benchmarks/bench_external.py padding --data data/darcy --n-train 256 --steps 1500
    python benchmarks/bench_external.py compare --data data/darcy --n-train 900 --steps 3000

``darcy`` writes a 2-D Darcy flow set in neuraloperator's file layout (darcy_train_R.pt,
darcy_test_R.pt: dicts {"x": (N, R, R), "y": (N, R, R)}): the FNO paper's problem,
-div(a grad u) = 1 on the unit square with u = 0 on the boundary, a = 12 where a Gaussian
random field ((-lap + 9)^-2 covariance) is positive and 3 elsewhere, solved by second-order
finite differences (harmonic means of a on cell faces) on an R x R grid whose edges are the
boundary. Non-periodic, with piecewise-constant, integer-valued inputs: data as benchmarks
publish it, made here because this machine reaches no download.

``padding`` trains this tool's scratch FNO (through ``fno.train.run_trial`` with the
dataset's record, as a sweep does) for every (padding, coords) pair and seed, and prints
the test errors: the measurement behind ``fno.data.external.DEFAULT_PADDING`` and
``DEFAULT_COORDS``.

``compare`` trains both FNOs on the same split, the same normalisation (per-channel
mean and std of the training samples), the same Adam and cosine schedule, steps, batch
order, MSE on normalised targets and best-validation checkpoint, for each learning rate,
and prints each one's best test error (relative L2): this tool's by ``run_trial``,
neuraloperator's (``neuralop.models.FNO``, its defaults) by the same loop written out here.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

# ----------------------------------------------------------------------------- data


def random_field(n: int, count: int, rng: np.random.Generator, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """(count, n, n) samples of a Gaussian random field with covariance (-lap + tau^2)^-alpha
    on the unit square (periodic spectral synthesis on a grid twice as fine, cropped, so the
    field itself does not wrap)."""
    m = 2 * n
    k = np.fft.fftfreq(m, 1.0 / m)
    k2 = (2 * np.pi) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2)
    amplitude = (k2 + tau**2) ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    noise = rng.standard_normal((count, m, m)) + 1j * rng.standard_normal((count, m, m))
    return np.fft.ifft2(noise * amplitude).real[:, :n, :n]


def solve_darcy(a: np.ndarray) -> np.ndarray:
    """u of -div(a grad u) = 1 on the unit square, u = 0 on the boundary, for a (n, n) on the
    grid whose first and last rows and columns are the boundary: the 5-point scheme with
    harmonic means of a on the faces, solved sparse."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    n = a.shape[0]
    h = 1.0 / (n - 1)
    inner = n - 2
    index = np.arange(inner * inner).reshape(inner, inner)

    def face(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return 2 * p * q / (p + q)

    rows, cols, vals = [], [], []
    centre = np.zeros((inner, inner))
    core = a[1:-1, 1:-1]
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = a[1 + di : n - 1 + di, 1 + dj : n - 1 + dj]
        weight = face(core, neighbour) / h**2
        centre += weight
        i, j = np.meshgrid(np.arange(inner), np.arange(inner), indexing="ij")
        ni, nj = i + di, j + dj
        inside = (ni >= 0) & (ni < inner) & (nj >= 0) & (nj < inner)
        rows.append(index[i[inside], j[inside]])
        cols.append(index[ni[inside], nj[inside]])
        vals.append(-weight[inside])
    rows.append(index.reshape(-1))
    cols.append(index.reshape(-1))
    vals.append(centre.reshape(-1))
    matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), (inner**2,) * 2)
    u = np.zeros((n, n))
    u[1:-1, 1:-1] = spla.spsolve(matrix, np.ones(inner * inner)).reshape(inner, inner)
    return u


def darcy_samples(n: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, u), (count, n, n) float32: coefficients 12 / 3 and their solutions."""
    rng = np.random.default_rng(seed)
    a = np.where(random_field(n, count, rng) > 0, 12.0, 3.0)
    u = np.stack([solve_darcy(sample) for sample in a])
    return torch.from_numpy(a.astype(np.float32)), torch.from_numpy(u.astype(np.float32))


def write_darcy(out: Path, resolution: int, n_train: int, n_test: int, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split, count, offset in (("train", n_train, 0), ("test", n_test, 1)):
        started = time.perf_counter()
        x, y = darcy_samples(resolution, count, seed * 2 + offset)
        torch.save({"x": x, "y": y}, out / f"darcy_{split}_{resolution}.pt")
        print(f"wrote {out / f'darcy_{split}_{resolution}.pt'}: {count} samples, {time.perf_counter() - started:.1f} s")


# ----------------------------------------------------------------------------- trials


def dataset_record(data: Path, resolution: int, n_train: int, n_val: int, n_test: int):
    """The checked record of the Darcy set, as a sweep builds it (``fno.data.external.check``)."""
    from fno.data.external import ExternalDataset, Plan, check

    table = {"path": str(data), "inputs": "x", "outputs": "y"}
    table["splits"] = {"train": f"darcy_train_{resolution}.pt", "test": f"darcy_test_{resolution}.pt"}
    return check(ExternalDataset.from_dict("darcy", table), Plan(n_train, n_val, n_test))


def ours(record, args, lr: float, seed: int, padding: float | None = None, coords: bool | None = None):
    """This tool's scratch trial on the dataset: its TrialResult."""
    from fno.train import TrialConfig, run_trial

    config = TrialConfig(
        mode="scratch",
        family="darcy",
        dataset=record.to_dict(),
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        width=args.width,
        modes=args.modes,
        lr=lr,
        batch_size=args.batch,
        steps=args.steps,
        eval_every=args.eval_every,
        seed=seed,
        device="cpu",
        threads=args.threads,
        padding=padding,
        coords=coords,
    )
    return run_trial(config)


def theirs(record, args, lr: float, seed: int) -> tuple[float, int, float]:
    """neuraloperator's FNO trained as ``run_trial`` trains: (test rel L2, parameters, seconds)."""
    from neuralop.models import FNO

    from fno.data.external import load_split
    from fno.data.normalization import Normalization
    from fno.metrics import relative_l2
    from fno.train import _cosine_lr, _epoch_order

    torch.set_num_threads(args.threads)
    load = {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test, "data_seed": 0, "param_range": None}
    train, val, test = (load_split(record, split, **load) for split in ("train", "val", "test"))
    norm = Normalization.fit(train)
    torch.manual_seed(seed)
    model = FNO(n_modes=(2 * args.modes, 2 * args.modes), in_channels=1, out_channels=1, hidden_channels=args.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)  # fused Adam takes no complex weights; same update
    generator = torch.Generator().manual_seed(seed)
    batch = min(args.batch, args.n_train)
    order, cursor = _epoch_order(args.n_train, generator, torch.device("cpu")), 0

    @torch.no_grad()
    def error(fields) -> float:
        model.eval()
        pred = norm.denormalize_targets(model(norm.normalize_inputs(fields.inputs())))
        model.train()
        return relative_l2(pred, fields.targets()).mean().item()

    best, best_state, started = math.inf, None, time.perf_counter()
    for step in range(1, args.steps + 1):
        if cursor + batch > args.n_train:
            order, cursor = _epoch_order(args.n_train, generator, torch.device("cpu")), 0
        index = order[cursor : cursor + batch]
        cursor += batch
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step - 1, args.steps, lr)
        x, y = norm.normalize_inputs(train.inputs(index)), norm.normalize_targets(train.targets(index))
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            value = error(val)
            if value < best:
                best, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    n_params = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())  # real numbers, as ours
    return error(test), n_params, time.perf_counter() - started


# ----------------------------------------------------------------------------- commands


def padding_grid(args) -> None:
    record = dataset_record(args.data, args.resolution, args.n_train, args.n_val, args.n_test)
    print(
        f"Darcy {args.resolution} x {args.resolution}, N = {args.n_train}, w{args.width}-m{args.modes}, "
        f"{args.steps} steps, lr {args.lr:g}, seeds {args.seeds}; test rel L2 (mean over seeds, each seed)"
    )
    for padding in args.paddings:
        for coords in (False, True):
            errors = [ours(record, args, args.lr, seed, padding, coords).test_rel_l2 for seed in range(args.seeds)]
            each = ", ".join(f"{e:.4f}" for e in errors)
            print(f"  padding {padding:<6g} coords {coords!s:<5}  {statistics.mean(errors):.4f}  ({each})", flush=True)


def compare(args) -> None:
    record = dataset_record(args.data, args.resolution, args.n_train, args.n_val, args.n_test)
    print(
        f"Darcy {args.resolution} x {args.resolution}, N = {args.n_train}, val {args.n_val}, test {args.n_test}; "
        f"width {args.width}, {args.modes} modes per corner; {args.steps} steps at batch {args.batch}, "
        f"{args.threads} threads"
    )
    best = {}
    for lr in args.lrs:
        for seed in range(args.seeds):
            mine = ours(record, args, lr, seed)
            error, n_params, seconds = theirs(record, args, lr, seed)
            print(
                f"  lr {lr:<7g} seed {seed}: this tool {mine.test_rel_l2:.4f} ({mine.n_params:,} parameters, "
                f"{mine.train_s:.0f} s); neuraloperator {error:.4f} ({n_params:,} parameters, {seconds:.0f} s)",
                flush=True,
            )
            best.setdefault(lr, []).append((mine.test_rel_l2, error))
    ours_best = min(statistics.mean(e[0] for e in v) for v in best.values())
    theirs_best = min(statistics.mean(e[1] for e in v) for v in best.values())
    print(
        f"best over learning rates (mean over seeds): this tool {ours_best:.4f}, neuraloperator {theirs_best:.4f}, "
        f"ratio {ours_best / theirs_best:.3f}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    make = sub.add_parser("darcy", help="write the Darcy set (neuraloperator's .pt layout)")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--resolution", type=int, default=32)
    make.add_argument("--train", type=int, default=1000)
    make.add_argument("--test", type=int, default=200)
    make.add_argument("--seed", type=int, default=0)
    for name in ("padding", "compare"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--data", type=Path, required=True)
        cmd.add_argument("--resolution", type=int, default=32)
        cmd.add_argument("--n-train", type=int, default=256)
        cmd.add_argument("--n-val", type=int, default=100)
        cmd.add_argument("--n-test", type=int, default=200)
        cmd.add_argument("--width", type=int, default=32)
        cmd.add_argument("--modes", type=int, default=8)
        cmd.add_argument("--batch", type=int, default=20)
        cmd.add_argument("--steps", type=int, default=1500)
        cmd.add_argument("--eval-every", type=int, default=100)
        cmd.add_argument("--seeds", type=int, default=2)
        cmd.add_argument("--threads", type=int, default=2)
        if name == "padding":
            cmd.add_argument("--lr", type=float, default=3e-3)
            cmd.add_argument("--paddings", type=float, nargs="+", default=[0.0, 0.125, 0.25])
        else:
            cmd.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3])
    args = p.parse_args(argv)
    if args.command == "darcy":
        write_darcy(args.out, args.resolution, args.train, args.test, args.seed)
    elif args.command == "padding":
        padding_grid(args)
    else:
        compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
