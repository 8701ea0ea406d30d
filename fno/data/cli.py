"""``python -m fno.data generate ...`` writes a dataset folder; ``python -m fno.data check
DIR`` re-verifies the PDE residuals of one; ``python -m fno.data inspect PATH ...`` describes
a dataset file of any supported format and runs a sweep's checks on it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fno import __version__
from fno.atomic import atomic_write
from fno.checks import check_choice
from fno.data.generation import iter_chunks, progress_bar
from fno.data.spec import CHANNEL_LAYOUTS, DATA_VERSION, SPLITS, DatasetSpec
from fno.physics import families
from fno.physics.families import FAMILIES, PARAMS, PRETRAIN_RANGE, SINGLE_FAMILIES


def _spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    ranges: Any = None
    if args.range:
        if args.family == "mixture":
            if any(len(r) != 3 for r in args.range):
                raise ValueError("--range for the mixture takes FAMILY LO HI, once per member family")
            ranges = dict(PRETRAIN_RANGE)
            for name, lo, hi in args.range:
                check_choice(name, "--range FAMILY", SINGLE_FAMILIES)
                ranges[name] = (float(lo), float(hi))
        else:
            if len(args.range) != 1 or len(args.range[0]) != 2:
                raise ValueError(f"--range for {args.family} takes two numbers, LO HI, once")
            ranges = tuple(float(x) for x in args.range[0])
    return DatasetSpec(args.family, ranges, args.samples, args.resolution, args.seed, args.split, args.channels)


def _write_dataset(spec: DatasetSpec, out: Path, dtype: str, chunk_size: int | None, device: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n, c = spec.resolution, len(spec.channel_names)
    np_dtype = np.dtype(dtype)
    inputs = np.lib.format.open_memmap(out / "inputs.npy.tmp", "w+", np_dtype, (spec.n_samples, c, n, n))
    targets = np.lib.format.open_memmap(out / "targets.npy.tmp", "w+", np_dtype, (spec.n_samples, 1, n, n))
    params = {k: np.empty(spec.n_samples) for k in PARAMS}
    torch_dtype = torch.float64 if np_dtype == np.float64 else torch.float32
    started = time.perf_counter()
    with progress_bar(spec.n_samples, f"generate {spec.family}", True) as bar:
        for lo, part in iter_chunks(spec, 0, None, chunk_size, device, torch_dtype):
            hi = lo + len(part)
            inputs[lo:hi] = part.inputs().cpu().numpy()
            targets[lo:hi] = part.targets().cpu().numpy()
            for k in PARAMS:
                params[k][lo:hi] = part.params[k]
            bar.update(len(part))
    elapsed = time.perf_counter() - started
    inputs.flush(), targets.flush()
    del inputs, targets
    os.replace(out / "inputs.npy.tmp", out / "inputs.npy")
    os.replace(out / "targets.npy.tmp", out / "targets.npy")
    atomic_write(out / "params.npz", lambda fh: np.savez(fh, **params))
    metadata = {
        "spec": spec.to_dict(),
        "channel_names": list(spec.channel_names),
        "dtype": dtype,
        "inputs_shape": [spec.n_samples, c, n, n],
        "targets_shape": [spec.n_samples, 1, n, n],
        "axes": "inputs[b, c, i, j] at (x, y) = (i/n, j/n): axis 2 is x, axis 3 is y",
        "s": families.S,
        "data_version": DATA_VERSION,
        "code_version": __version__,
        "generated_s": round(elapsed, 3),
    }
    atomic_write(out / "metadata.json", lambda fh: fh.write(json.dumps(metadata, indent=1).encode()))
    rate = spec.n_samples / max(elapsed, 1e-9)
    print(f"wrote {spec.n_samples} {spec.family} samples at {n}x{n} to {out} ({elapsed:.2f} s, {rate:,.0f} samples/s)")


# Residual tolerances of `check`, in units of the stored dtype's machine epsilon, on
# the normalised residual (backward error) of fno.physics.operators.residual.
CHECK_EPS_FACTOR = 8.0
CHECK_PSI_RTOL = {"float64": 1e-6, "float32": 1e-4}


def check_dataset(directory: str | os.PathLike, chunk_size: int = 64) -> dict[str, Any]:
    """Re-verify a dataset written by ``generate``: PDE residuals, psi, |u| bound, channels.

    Returns a report {family: {...worst values...}, "ok": bool}.
    """
    from fno.physics import advdiff, operators

    directory = Path(directory)
    meta_path = directory / "metadata.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: not a dataset written by 'python -m fno.data generate'")
    meta = json.loads(meta_path.read_text())
    spec = DatasetSpec.from_dict(meta["spec"])
    inputs = np.load(directory / "inputs.npy", mmap_mode="r")
    targets = np.load(directory / "targets.npy", mmap_mode="r")
    with np.load(directory / "params.npz", allow_pickle=False) as z:
        params = {k: z[k] for k in PARAMS}
    if inputs.shape != tuple(meta["inputs_shape"]) or targets.shape != tuple(meta["targets_shape"]):
        raise ValueError(f"{directory}: array shapes {inputs.shape}, {targets.shape} differ from metadata")
    eps = float(np.finfo(np.dtype(meta["dtype"])).eps)
    report: dict[str, Any] = {}
    for lo in range(0, spec.n_samples, chunk_size):
        hi = min(lo + chunk_size, spec.n_samples)
        f = torch.from_numpy(np.array(inputs[lo:hi, 0], dtype=np.float64))
        u = torch.from_numpy(np.array(targets[lo:hi, 0], dtype=np.float64))
        chunk = {k: v[lo:hi] for k, v in params.items()}
        for which, name in enumerate(SINGLE_FAMILIES):
            rows = np.flatnonzero(chunk["family"] == which)
            if len(rows) == 0:
                continue
            sub = {k: v[rows] for k, v in chunk.items()}
            rel, normalised = operators.residual(name, f[rows], u[rows], sub)
            entry = report.setdefault(
                name, {"samples": 0, "max_relative_residual": 0.0, "max_normalised_residual": 0.0}
            )
            entry["samples"] += len(rows)
            entry["max_relative_residual"] = max(entry["max_relative_residual"], float(rel.max()))
            entry["max_normalised_residual"] = max(entry["max_normalised_residual"], float(normalised.max()))
            if name == "advdiff":
                K = np.stack([sub["k11"], sub["k22"], sub["k12"]], 1)
                v = np.stack([sub["v1"], sub["v2"]], 1)
                psi = advdiff.ratio(f[rows].numpy(), K, v, sub["lam"])
                err = float(np.max(np.abs(psi / sub["psi"] - 1)))
                entry["max_psi_relative_error"] = max(entry.get("max_psi_relative_error", 0.0), err)
            if name == "helmholtz":
                entry["max_abs_u"] = max(entry.get("max_abs_u", 0.0), float(u[rows].abs().max()))
    ok = True
    for entry in report.values():
        entry["ok"] = entry["max_normalised_residual"] <= CHECK_EPS_FACTOR * eps
        if "max_psi_relative_error" in entry:
            entry["ok"] &= entry["max_psi_relative_error"] <= CHECK_PSI_RTOL[meta["dtype"]]
        if "max_abs_u" in entry:
            entry["ok"] &= entry["max_abs_u"] <= families.HELMHOLTZ_MAX_ABS_U
        ok &= entry["ok"]
    report["ok"] = ok
    return report


def _pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _inspected_dataset(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """(ExternalDataset, Plan) described by ``inspect``'s flags or ``--preset``/``--dataset``;
    None when only the arrays are asked for."""
    from fno.config import load_toml
    from fno.data.external import ExternalDataset, Plan

    defaults = {"n_train": 256, "n_val": 64, "n_test": 64}
    if args.preset:
        data = load_toml(args.preset)
        tables = data.get("datasets", {})
        if args.dataset not in tables:
            raise ValueError(f"--dataset {args.dataset}: {args.preset} declares {sorted(tables) or 'no datasets'}")
        ds = ExternalDataset.from_dict(args.dataset, tables[args.dataset])
        n_train = data.get("n_train", [defaults["n_train"]])
        sizes = {"n_train": max(n_train), "n_val": data.get("n_val", 64), "n_test": data.get("n_test", 64)}
    elif args.inputs or args.outputs:
        if not (args.inputs and args.outputs):
            raise ValueError("inspect: give both --inputs and --outputs to describe a dataset (or neither)")
        table: dict[str, Any] = {"path": str(args.path), "inputs": args.inputs, "outputs": args.outputs}
        table["layout"] = args.layout
        if args.param:
            table["param"] = args.param
        shifts = {k: [float(x) for x in v.split(",")] for k, v in _pairs(args.shift, "--shift").items()}
        if shifts:
            table["shifts"] = shifts
        if args.split:
            table["splits"] = _pairs(args.split, "--split")
        if args.test_resolution:
            table["test_resolutions"] = _pairs(args.test_resolution, "--test-resolution")
        ds = ExternalDataset.from_dict("inspected", table)
        sizes = dict(defaults)
    else:
        return None
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    return ds, Plan(sizes["n_train"], sizes["n_val"], sizes["n_test"], ds.shift_names, tuple(args.modes or ()))


def inspect(args: argparse.Namespace) -> int:
    """Print every array of the file, then (with a dataset description) the dataset as a
    sweep reads it, its splits and param histogram, and the result of a sweep's checks."""
    from fno.data.external import DatasetError, check, describe, param_histogram, source_paths, split_sizes

    described = _inspected_dataset(args)
    if described is None and args.path is None:
        raise ValueError("inspect: give PATH, or --preset FILE --dataset NAME")
    paths = [args.path] if described is None else source_paths(described[0])
    for path in paths:
        print(f"{path}:")
        for row in describe(path):
            stats = ""
            if "nan" in row:
                stats = f"  range [{row['min']:.4g}, {row['max']:.4g}]  NaN {row['nan']}  inf {row['inf']}"
            print(f"  {row['array']:<24} {tuple(row['shape'])!s:<22} {row['dtype']:<9}{stats}")
    if described is None:
        return 0
    ds, plan = described
    try:
        checked = check(ds, plan)
    except DatasetError as err:
        print(f"dataset {ds.name}: checks FAILED", file=sys.stderr)
        print(str(err), file=sys.stderr)
        return 1
    h, w = checked.grid
    print(
        f"dataset {checked.name}: grid {h} x {w}; inputs {list(checked.channel_names)} -> {checked.out_channels} "
        f"output channel(s); digest {checked.digest[:16]}"
    )
    for label, (th, tw) in checked.test_grids.items():
        print(f"  test set at {label}: grid {th} x {tw}")
    print(f"  splits ({checked.split_rule}), at N = {plan.n_train}, n_val = {plan.n_val}, n_test = {plan.n_test}:")
    for shift, sizes in split_sizes(checked, plan).items():
        rng = checked.shift_range(shift) if checked.shifts else None
        where = f" {checked.param} in [{rng[0]:g}, {rng[1]:g}]" if rng else " every sample"
        print(
            f"    {shift:<9}{where}: {sizes['in range']} samples; train {sizes['train']}, val {sizes['val']}, "
            f"test {sizes['test']}"
        )
    histogram = param_histogram(checked)
    if histogram:
        peak = max(count for _, _, count in histogram) or 1
        print(f"  {checked.param} (training data):")
        for lo, hi, count in histogram:
            print(f"    [{lo:10.4g}, {hi:10.4g})  {count:6d} {'#' * round(40 * count / peak)}")
    print("checks passed", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fno.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate", help="generate a dataset folder (inputs.npy, targets.npy, params.npz, metadata.json)"
    )
    gen.add_argument("--family", required=True, help=f"one of {', '.join(FAMILIES)}")
    gen.add_argument(
        "--range",
        nargs="+",
        action="append",
        metavar="V",
        help="LO HI of the family's parameter; for the mixture FAMILY LO HI, repeatable "
        "(default: the pre-training range)",
    )
    gen.add_argument("--samples", type=int, default=1024)
    gen.add_argument("--resolution", type=int, default=128)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--split", default="train", help=f"one of {', '.join(SPLITS)}")
    gen.add_argument("--channels", default="native", help=f"one of {', '.join(CHANNEL_LAYOUTS)}")
    gen.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    gen.add_argument("--chunk-size", type=int, default=None, help="samples per chunk (default: by resolution)")
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default cpu)")
    gen.add_argument("--out", required=True, type=Path)
    chk = sub.add_parser("check", help="re-verify the PDE residuals of a dataset folder")
    chk.add_argument("directory", type=Path)
    ins = sub.add_parser(
        "inspect",
        help="describe a dataset file (arrays, shapes, dtypes, ranges, NaN/inf) and, given its fields, run a "
        "sweep's checks on it",
    )
    ins.add_argument("path", nargs="?", help="a .h5, .hdf5, .npz, .npy, .pt or .pth file, or a folder of .npy files")
    ins.add_argument("--inputs", nargs="+", help="input array name(s)")
    ins.add_argument("--outputs", nargs="+", help="output array name(s)")
    ins.add_argument("--layout", default="NHW", help="NHW, NCHW or NHWC (of 4-D arrays)")
    ins.add_argument("--param", help="the per-sample parameter array that shifts select by")
    ins.add_argument("--shift", action="append", metavar="NAME=LO,HI", help="a shift's param range; repeatable")
    ins.add_argument("--split", action="append", metavar="SPLIT=FILE", help="train/val/test file or {name} template")
    ins.add_argument("--test-resolution", action="append", metavar="GRID=FILE", help="a test set on another grid")
    ins.add_argument("--preset", type=Path, help="a TOML file with [datasets.NAME] (instead of PATH and the flags)")
    ins.add_argument("--dataset", help="with --preset: the dataset's NAME")
    ins.add_argument("--n-train", type=int, help="the largest N to check for (default 256, or the preset's)")
    ins.add_argument("--n-val", type=int, help="validation samples (default 64, or the preset's)")
    ins.add_argument("--n-test", type=int, help="test samples (default 64, or the preset's)")
    ins.add_argument("--modes", type=int, nargs="+", help="Fourier modes of the model sizes to check the grid for")
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            spec = _spec_from_args(args)
            _write_dataset(spec, args.out, args.dtype, args.chunk_size, args.device)
            return 0
        if args.command == "inspect":
            return inspect(args)
        report = check_dataset(args.directory)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    print("check passed" if report["ok"] else "check FAILED", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
