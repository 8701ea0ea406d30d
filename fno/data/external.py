"""Datasets of the user's own: any PDE data set as a downstream task or a pre-training set.

A preset declares one as ``[datasets.NAME]`` (``ExternalDataset.from_dict``) and uses NAME
wherever a family goes. Before any training, ``check`` opens it, reads every array's
shape and dtype, counts NaN and inf values, digests its files and checks it against
the plan (samples per shift, grid against modes), raising one ``DatasetError`` that
names the dataset, each bad array and its fix. A trial then reads only its samples
(``load_split``).

Arrays: 3-D arrays are (N, H, W), one channel; 4-D arrays are (N, C, H, W) or (N, H, W,
C) by ``layout`` (with layout NHW, a 4-D array with a single channel axis of size 1,
as PDEBench's (N, 1, H, W), is read as one channel). Several input (or output) arrays
are concatenated on the channel axis. Everything is read as float32 (bool and integer
fields too).

Splits: train, val and test come from files (or arrays) named in ``splits`` where the
dataset has them; each one not named is carved from the train data by a seeded rule:
the (shift-filtered) samples in an order drawn by ``data_seed`` (a counter-based stream,
so a sample's place does not depend on the filter or on numpy's version), test first,
then validation, and the training set is the rest in that order, so the training sets
of growing N nest. Named val and test sets use their first samples (in the shift's range)
in file order. Test sets at other grids (``test_resolutions``) are used whole, the
first n_test samples of each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fno.atomic import atomic_write
from fno.checks import check_choice, sha256_hex
from fno.data.readers import ReadError, Source, file_digest, is_supported, localize
from fno.physics.fields import Fields
from fno.physics.streams import stream_key, uniforms
from fno.storage import is_uri

LAYOUTS = ("NHW", "NCHW", "NHWC")
SPLIT_NAMES = ("train", "val", "test")
# The fields a preset's [datasets.NAME] table takes; the others are recorded by ``check``.
USER_FIELDS = ("path", "inputs", "outputs", "layout", "param", "shifts", "splits", "test_resolutions")
RECORDED_FIELDS = ("digest", "grid", "channel_names", "out_channels", "test_grids", "split_rule")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
SPLIT_STREAM = "external-split"  # names the stream of the seeded split order
# Defaults for a dataset's model, where the preset sets none, chosen by measurement on
# non-periodic data (docs/data.md, "Padding and coordinates"); the built-in families are
# periodic and keep no padding and no coordinates.
DEFAULT_PADDING = 0.125
DEFAULT_COORDS = True
STATS_CHUNK = 64  # samples per chunk of the NaN/inf pass


class DatasetError(ValueError):
    """A dataset that a sweep cannot use: each line names the dataset, the array and the fix."""


def _strings(value: Any, name: str, label: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise DatasetError(f"{label}: {name} must be an array name or a list of them, got {value!r}")
    return tuple(items)


def _range(value: Any, label: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DatasetError(f"{label} must be a pair [lo, hi] of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise DatasetError(f"{label} must be finite with lo <= hi, got [{lo}, {hi}]")
    return (lo, hi)


@dataclass(frozen=True)
class ExternalDataset:
    """A dataset of the user's, as a preset declares it; validated on construction.

    path: a file (.h5, .hdf5, .npz, .npy, .pt, .pth) or a folder of .npy files (an array
        per file, named by its stem), or a folder that only holds the split files; local
        (relative paths are taken from the working directory) or a URI (s3://...).
    inputs, outputs: the array name(s) of the input and output fields.
    layout: NHW, NCHW or NHWC (see the module docstring).
    param: the array (N,) of a per-sample scalar that ``shifts`` select by; None: none.
    shifts: shift name (none, moderate, large) -> [lo, hi] of param (inclusive); empty:
        one shift, none, using every sample.
    splits: train / val / test -> a file (relative to path's folder) or an array-name
        template in path's file containing {name} ("train/{name}", "{name}_test").
    test_resolutions: grid label (the larger side of its grid) -> a test file or template.

    Recorded by ``check`` (not for presets to set): digest (SHA-256 of every file's bytes),
    grid (H, W), channel_names (the input channels), out_channels, test_grids, split_rule.
    """

    name: str
    path: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    layout: str = "NHW"
    param: str | None = None
    shifts: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    splits: Mapping[str, str] = field(default_factory=dict)
    test_resolutions: Mapping[int, str] = field(default_factory=dict)
    digest: str = ""
    grid: tuple[int, int] | None = None
    channel_names: tuple[str, ...] = ()
    out_channels: int = 0
    test_grids: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    split_rule: str = ""

    def __post_init__(self) -> None:
        from fno.physics.families import FAMILIES
        from fno.vocabulary import SHIFTS

        label = f"dataset {self.name}"
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name) or self.name in FAMILIES:
            raise DatasetError(
                f"dataset name {self.name!r}: use letters, digits, - and _ (a letter first), not a built-in family "
                f"({', '.join(FAMILIES)})"
            )
        if not isinstance(self.path, str) or not self.path:
            raise DatasetError(f"{label}: path must name a file or folder, got {self.path!r}")
        object.__setattr__(self, "inputs", _strings(self.inputs, "inputs", label))
        object.__setattr__(self, "outputs", _strings(self.outputs, "outputs", label))
        check_choice(self.layout, f"{label}: layout", LAYOUTS)
        if self.param is not None and (not isinstance(self.param, str) or not self.param):
            raise DatasetError(f"{label}: param must be an array name, got {self.param!r}")
        if not isinstance(self.shifts, Mapping):
            raise DatasetError(f"{label}: shifts must be a table shift -> [lo, hi], got {self.shifts!r}")
        if self.shifts and self.param is None:
            raise DatasetError(f"{label}: shifts select samples by param; set param (the per-sample array) too")
        bad = [s for s in self.shifts if s not in SHIFTS]
        if bad:
            raise DatasetError(f"{label}: shifts {bad} not allowed; choose from {', '.join(SHIFTS)}")
        shifts = {s: _range(self.shifts[s], f"{label}: shifts.{s}") for s in SHIFTS if s in self.shifts}
        object.__setattr__(self, "shifts", shifts)
        if not isinstance(self.splits, Mapping) or set(self.splits) - set(SPLIT_NAMES):
            raise DatasetError(
                f"{label}: splits takes {', '.join(SPLIT_NAMES)} -> a file or template, got {self.splits!r}"
            )
        for split, where in self.splits.items():
            _check_where(where, f"{label}: splits.{split}")
        object.__setattr__(self, "splits", {s: self.splits[s] for s in SPLIT_NAMES if s in self.splits})
        if not isinstance(self.test_resolutions, Mapping):
            raise DatasetError(f"{label}: test_resolutions must be a table grid -> file, got {self.test_resolutions!r}")
        tests = {}
        for key, where in self.test_resolutions.items():
            try:
                resolution = int(key)
            except (TypeError, ValueError):
                raise DatasetError(f"{label}: test_resolutions keys are grid sizes (integers), got {key!r}") from None
            if resolution < 1:
                raise DatasetError(f"{label}: test_resolutions keys are grid sizes >= 1, got {key!r}")
            tests[resolution] = _check_where(where, f"{label}: test_resolutions.{key}")
        object.__setattr__(self, "test_resolutions", dict(sorted(tests.items())))
        if self.grid is not None:
            object.__setattr__(self, "grid", tuple(int(v) for v in self.grid))
        object.__setattr__(self, "channel_names", tuple(self.channel_names))
        object.__setattr__(self, "test_grids", {int(k): tuple(v) for k, v in self.test_grids.items()})

    # ------------------------------------------------------------------ forms
    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], base: str | os.PathLike | None = None) -> ExternalDataset:
        """From a preset's ``[datasets.NAME]`` table; unknown keys (and the recorded ones)
        are refused, naming them. A relative path is taken from ``base`` (default: the
        working directory) and made absolute, so Ray workers read the same file."""
        if not isinstance(data, Mapping):
            raise DatasetError(f"dataset {name}: [datasets.{name}] must be a table, got {data!r}")
        unknown = sorted(set(data) - set(USER_FIELDS))
        if unknown:
            raise DatasetError(f"dataset {name}: unknown fields {unknown}; allowed: {', '.join(USER_FIELDS)}")
        for key in ("path", "inputs", "outputs"):
            if key not in data:
                raise DatasetError(f"dataset {name}: {key} is required ({key} = ...)")
        path = data["path"]
        if isinstance(path, str) and path and not is_uri(path):
            path = os.path.abspath(Path(base or Path.cwd()) / Path(path).expanduser())
        return cls(name=name, **{**data, "path": path})

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> ExternalDataset:
        """From ``to_dict()`` (a trial's ``dataset`` field): every field, checked again."""
        known = {"name", *USER_FIELDS, *RECORDED_FIELDS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(f"dataset record: unknown fields {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON (lists; grid keys as strings)."""
        out = json.loads(json.dumps(dataclasses.asdict(self)))
        out["test_resolutions"] = {str(k): v for k, v in self.test_resolutions.items()}
        out["test_grids"] = {str(k): list(v) for k, v in self.test_grids.items()}
        return out

    def identity(self) -> dict[str, Any]:
        """What defines the data, for trial keys: everything but where it lies (the path)
        and what only adds evaluations (the other test grids); the digest names the content."""
        out = self.to_dict()
        for name in ("path", "shifts", "test_resolutions", "test_grids"):
            del out[name]
        return out

    # ------------------------------------------------------------------ facts
    @property
    def checked(self) -> bool:
        return bool(self.digest) and self.grid is not None

    @property
    def in_channels(self) -> int:
        return len(self.channel_names)

    @property
    def resolution(self) -> int:
        """The grid's label: its larger side (the side of a square grid)."""
        return max(self.grid)

    @property
    def shift_names(self) -> tuple[str, ...]:
        """The shifts this dataset offers: its shifts table's, or "none" (every sample)."""
        return tuple(self.shifts) or ("none",)

    def shift_range(self, shift: str) -> tuple[float, float] | None:
        """The param range of ``shift``; None for every sample (a dataset without shifts)."""
        if not self.shifts:
            if shift != "none":
                raise DatasetError(f"dataset {self.name} has no shifts table: only shift none (every sample)")
            return None
        if shift not in self.shifts:
            raise DatasetError(f"dataset {self.name} has no shift {shift!r}; its shifts: {', '.join(self.shifts)}")
        return self.shifts[shift]


def _check_where(where: Any, label: str) -> str:
    if not isinstance(where, str) or not where:
        raise DatasetError(f"{label} must be a file name or an array-name template with {{name}}, got {where!r}")
    if "{name}" not in where and not is_supported(where):
        raise DatasetError(
            f"{label} = {where!r} is neither a supported file (.h5, .hdf5, .npz, .npy, .pt, .pth) nor an array-name "
            "template with {name} (e.g. 'train/{name}')"
        )
    return where


# ---------------------------------------------------------------------- opening


def default_cache() -> Path:
    from fno.data.cache import default_cache_dir

    return default_cache_dir() / "external"


@dataclass(frozen=True)
class Plan:
    """What a sweep (or one trial) asks of a dataset: the largest N, the validation and
    test sizes, its shifts, and the Fourier modes of its model sizes."""

    n_train: int
    n_val: int
    n_test: int
    shifts: tuple[str | None, ...] = ("none",)  # None: every sample (pre-training on a dataset without "none")
    modes: tuple[int, ...] = ()
    data_seeds: tuple[int, ...] = (0,)


class _Opened:
    """A dataset's files, opened lazily, by role: pool (path's arrays), train, val, test
    and test@LABEL; each a (source, array-name template or None)."""

    def __init__(self, ds: ExternalDataset, cache_dir: Path) -> None:
        self.ds, self.cache_dir = ds, cache_dir
        self.base_path = localize(ds.path, cache_dir)
        if not self.base_path.exists():
            raise DatasetError(
                f"dataset {ds.name}: path {ds.path} not found (relative paths are taken from the "
                "working directory); fix path"
            )
        self.base = self.base_path if self.base_path.is_dir() else self.base_path.parent
        has_arrays = self.base_path.is_file() or any(self.base_path.glob("*.npy"))
        self.pool = Source(self.base_path) if has_arrays else None
        self.roles: dict[str, tuple[Source, str | None]] = {}
        named = {**ds.splits, **{f"test@{k}": v for k, v in ds.test_resolutions.items()}}
        for role, where in named.items():
            self.roles[role] = self._resolve(role, where)
        if "train" not in self.roles:
            if self.pool is None:
                raise DatasetError(
                    f"dataset {ds.name}: path {ds.path} is a folder without .npy files; name the training file in "
                    "splits.train (and the others in splits.val, splits.test)"
                )
            self.roles["train"] = (self.pool, None)

    def _resolve(self, role: str, where: str) -> tuple[Source, str | None]:
        if "{name}" in where:
            if self.pool is None:
                raise DatasetError(
                    f"dataset {self.ds.name}: {role} = {where!r} is an array template, but path "
                    f"{self.ds.path} holds no arrays; name a file instead"
                )
            return self.pool, where
        path = where if is_uri(where) or Path(where).is_absolute() else str(self.base / where)
        return Source(localize(path, self.cache_dir)), None

    def close(self) -> None:
        for source in {id(s): s for s, _ in self.roles.values()}.values():
            source.close()
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def where(self, role: str) -> str:
        source, template = self.roles[role]
        name = source.path.name
        return f"{name} ({template})" if template else name

    def array(self, role: str, name: str):
        source, template = self.roles[role]
        key = template.format(name=name) if template else name
        try:
            arrays = source.arrays
        except ReadError as err:
            raise DatasetError(f"dataset {self.ds.name}: {err}; fix the file or the path") from None
        if key not in arrays:
            shown = ", ".join(sorted(arrays)[:20]) + (" ..." if len(arrays) > 20 else "")
            raise DatasetError(
                f"dataset {self.ds.name}: array {key!r} not found in {self.where(role)} (arrays there: "
                f"{shown or 'none'}); fix inputs, outputs, param or the split's template"
            )
        return arrays[key]

    def files(self) -> list[tuple[str, Path]]:
        """(role, file) of every file the dataset reads, roles in a fixed order."""
        out, seen = [], set()
        sources = [("pool", self.pool)] if self.pool is not None else []
        sources += [(role, s) for role, (s, template) in sorted(self.roles.items()) if template is None]
        for role, source in sources:
            for path in source.files():
                if path not in seen:
                    seen.add(path)
                    out.append((role, path))
        return out


def _geometry(shape: tuple[int, ...], layout: str, label: str) -> tuple[int, int, tuple[int, int], str]:
    """(samples, channels, (H, W), the layout the array is read with) of a field array."""
    if len(shape) == 3:
        return shape[0], 1, (shape[1], shape[2]), "NHW"
    if len(shape) == 4:
        if layout == "NCHW" or (layout == "NHW" and shape[1] == 1 and shape[3] != 1):
            return shape[0], shape[1], (shape[2], shape[3]), "NCHW"
        if layout == "NHWC" or (layout == "NHW" and shape[3] == 1 and shape[1] != 1):
            return shape[0], shape[3], (shape[1], shape[2]), "NHWC"
        raise DatasetError(f"{label} has shape {shape}, 4 axes: set layout = NCHW or NHWC for it")
    raise DatasetError(
        f"{label} has shape {shape}: fields must be (N, H, W), (N, C, H, W) or (N, H, W, C) (time series and 3-D "
        "fields are not supported: select one time step or slice into a file of its own)"
    )


def _check_dtype(array, label: str) -> None:
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{label} has dtype {array.dtype}: fields must be bool, integer or float; convert it")


@dataclass(frozen=True)
class _RoleInfo:
    n: int
    grid: tuple[int, int]
    channels: tuple[str, ...]
    out_channels: int


def _role_info(opened: _Opened, role: str, problems: list[str]) -> _RoleInfo | None:
    """The shape facts of one role's arrays; problems appended (None if unusable)."""
    ds = opened.ds
    before = len(problems)
    counts, grids, names, out_channels = {}, {}, [], 0
    for kind, arrays in (("input", ds.inputs), ("output", ds.outputs)):
        for name in arrays:
            label = f"dataset {ds.name}: {kind} array {name!r} of {opened.where(role)}"
            try:
                array = opened.array(role, name)
                _check_dtype(array, label)
                n, c, grid, _ = _geometry(array.shape, ds.layout, label)
            except DatasetError as err:
                problems.append(str(err))
                continue
            counts[name], grids[name] = n, grid
            if kind == "input":
                names += [name] if c == 1 else [f"{name}[{i}]" for i in range(c)]
            else:
                out_channels += c
    if ds.param is not None:
        label = f"dataset {ds.name}: param array {ds.param!r} of {opened.where(role)}"
        try:
            array = opened.array(role, ds.param)
            _check_dtype(array, label)
            if len(array.shape) not in (1, 2) or (len(array.shape) == 2 and array.shape[1] != 1):
                raise DatasetError(f"{label} has shape {array.shape}: param must be one number per sample, (N,)")
            counts[ds.param] = array.shape[0]
        except DatasetError as err:
            problems.append(str(err))
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        problems.append(
            f"dataset {ds.name}: arrays of {opened.where(role)} hold different sample counts ({listed}); "
            "fix: inputs, outputs and param need one entry per sample"
        )
    if len(set(grids.values())) > 1:
        listed = ", ".join(f"{k} {h}x{w}" for k, (h, w) in grids.items())
        problems.append(
            f"dataset {ds.name}: arrays of {opened.where(role)} are on different grids ({listed}); fix: "
            "resample them onto one grid"
        )
    if len(problems) > before:
        return None
    return _RoleInfo(next(iter(counts.values())), next(iter(grids.values())), tuple(names), out_channels)


def _stats(array, path: Path, name: str, cache_dir: Path) -> dict[str, Any]:
    """NaN and inf counts (and the first samples holding them), min and max of one array;
    remembered per (file digest, array), so an unchanged file is scanned once per node."""
    digest = file_digest(path, cache_dir)
    record = cache_dir / "stats" / f"{digest[:32]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        pass
    nan = inf = 0
    bad: list[int] = []
    lo, hi = math.inf, -math.inf
    for start in range(0, max(len(array), 1), STATS_CHUNK):
        block = np.asarray(array.read(start, min(start + STATS_CHUNK, len(array))))
        if block.dtype.kind == "f":
            isnan, isinf = np.isnan(block), np.isinf(block)
            nan, inf = nan + int(isnan.sum()), inf + int(isinf.sum())
            if block.ndim > 1 and (isnan.any() or isinf.any()):
                rows = np.flatnonzero((isnan | isinf).reshape(len(block), -1).any(axis=1))
                bad += [start + int(r) for r in rows[: max(0, 5 - len(bad))]]
            finite = block[np.isfinite(block)]
        else:
            finite = block.reshape(-1)
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    stats = {"nan": nan, "inf": inf, "bad_samples": bad, "min": lo, "max": hi}
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(stats).encode()
        atomic_write(record, lambda fh: fh.write(text))
    except OSError:  # a read-only cache scans again next time
        pass
    return stats


def _array_file(opened: _Opened, role: str, name: str) -> Path:
    source, _ = opened.roles[role]
    return source.path / f"{name}.npy" if source.path.is_dir() else source.path


def check(ds: ExternalDataset, plan: Plan | None = None, cache_dir: str | os.PathLike | None = None) -> ExternalDataset:
    """``ds`` opened and checked, with its recorded fields filled in (digest, grid, channels,
    test grids, split rule); DatasetError listing every problem found otherwise.

    Checks: readable files of a supported format; every named array present, numeric,
    (N, H, W) or (N, C, H, W) / (N, H, W, C); inputs, outputs and param of one sample count
    and grid per file; one grid across train, val and test; no NaN or inf; and, with a
    ``plan``: every shift's range holds samples, enough of them for the largest N plus
    validation and test, and the grid holds the modes of every model size.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    problems: list[str] = []
    try:
        opened = _Opened(ds, cache)
    except ReadError as err:
        raise DatasetError(f"dataset {ds.name}: {err}; fix path") from None
    with opened:
        infos = {role: _role_info(opened, role, problems) for role in sorted(opened.roles)}
        if problems:
            raise DatasetError("\n".join(problems))
        train = infos["train"]
        for role, info in infos.items():
            if info.channels != train.channels or info.out_channels != train.out_channels:
                problems.append(
                    f"dataset {ds.name}: {opened.where(role)} has {len(info.channels)} input and "
                    f"{info.out_channels} output channels, the training data {len(train.channels)} and "
                    f"{train.out_channels}; fix: the same fields in every split"
                )
            if role in ("val", "test") and info.grid != train.grid:
                problems.append(
                    f"dataset {ds.name}: the {role} data of {opened.where(role)} is on a {info.grid[0]}x"
                    f"{info.grid[1]} grid, the training data on {train.grid[0]}x{train.grid[1]}; fix: put "
                    "other grids under test_resolutions"
                )
        test_grids = {}
        for label in ds.test_resolutions:
            grid = infos[f"test@{label}"].grid
            test_grids[label] = grid
            if max(grid) != label:
                problems.append(
                    f"dataset {ds.name}: test_resolutions.{label} ({opened.where(f'test@{label}')}) is on "
                    f"a {grid[0]}x{grid[1]} grid; fix: label it {max(grid)} (its larger side)"
                )
            if label == max(train.grid):
                problems.append(
                    f"dataset {ds.name}: test_resolutions.{label} is the training grid's label; fix: "
                    "name that test set in splits.test instead"
                )
        for role in sorted(opened.roles):
            for name in (*ds.inputs, *ds.outputs, *([ds.param] if ds.param else [])):
                stored = _template(opened, role, name)
                stats = _stats(opened.array(role, name), _array_file(opened, role, stored), stored, cache)
                if stats["nan"] or stats["inf"]:
                    problems.append(
                        f"dataset {ds.name}: array {name!r} of {opened.where(role)} holds {stats['nan']} NaN and "
                        f"{stats['inf']} inf values (samples {stats['bad_samples']}...); fix: drop or repair those "
                        "samples in the file"
                    )
        if problems:
            raise DatasetError("\n".join(problems))
        digest = sha256_hex([[role, path.name, file_digest(path, cache)] for role, path in opened.files()])
        resolved = dataclasses.replace(
            ds,
            digest=digest,
            grid=train.grid,
            channel_names=train.channels,
            out_channels=train.out_channels,
            test_grids=test_grids,
            split_rule=_split_rule(ds),
        )
        if plan is not None:
            _check_plan(resolved, opened, plan, problems)
        if problems:
            raise DatasetError("\n".join(problems))
    return resolved


def _template(opened: _Opened, role: str, name: str) -> str:
    _, template = opened.roles[role]
    return template.format(name=name) if template else name


def _split_rule(ds: ExternalDataset) -> str:
    """How the splits were made, for the results row."""
    named = [s for s in ("val", "test") if s in ds.splits]
    carved = [s for s in ("test", "val") if s not in ds.splits]
    parts = [f"{s} named" for s in named]
    if carved:
        parts.append(f"{' and '.join(carved)} carved from train by data_seed")
    return "; ".join(parts)


def _check_plan(ds: ExternalDataset, opened: _Opened, plan: Plan, problems: list[str]) -> None:
    from fno.model import max_modes

    grids = {"training": ds.grid, **{f"test_resolutions.{k}": g for k, g in ds.test_grids.items()}}
    for modes in sorted(set(plan.modes)):
        for what, (h, w) in grids.items():
            if modes > max_modes(h, w):
                problems.append(
                    f"dataset {ds.name}: the {what} grid {h}x{w} holds at most {max_modes(h, w)} Fourier "
                    f"modes, a model size asks {modes}; fix: sizes with modes <= {max_modes(h, w)}"
                )
    for shift in plan.shifts:
        try:
            param_range = None if shift is None else ds.shift_range(shift)
            for seed in plan.data_seeds:
                split_indices(ds, opened, plan.n_train, plan.n_val, plan.n_test, seed, param_range)
        except DatasetError as err:
            problems.append(f"{err} (shift {shift or 'all samples'})")


def _param_values(ds: ExternalDataset, opened: _Opened, role: str) -> np.ndarray | None:
    if ds.param is None:
        return None
    return np.asarray(opened.array(role, ds.param).read(0, len(opened.array(role, ds.param))), np.float64).reshape(-1)


def _in_range(ds: ExternalDataset, opened: _Opened, role: str, param_range) -> np.ndarray:
    """The sample indices of ``role`` whose param lies in ``param_range`` (all if None)."""
    n = len(opened.array(role, ds.outputs[0]))
    if param_range is None or ds.param is None:
        return np.arange(n)
    values = _param_values(ds, opened, role)
    lo, hi = param_range
    keep = np.flatnonzero((values >= lo) & (values <= hi))
    if len(keep) == 0:
        finite = values[np.isfinite(values)]
        spans = f"[{finite.min():g}, {finite.max():g}]" if finite.size else "no finite values"
        raise DatasetError(
            f"dataset {ds.name}: the range [{lo:g}, {hi:g}] of param {ds.param!r} holds no samples of "
            f"{opened.where(role)} ({ds.param} spans {spans}); fix: change that shift's range in "
            f"[datasets.{ds.name}.shifts] or leave the shift out"
        )
    return keep


def split_indices(
    ds: ExternalDataset,
    opened: _Opened,
    n_train: int,
    n_val: int,
    n_test: int,
    data_seed: int,
    param_range: tuple[float, float] | None,
) -> dict[str, tuple[str, np.ndarray]]:
    """split -> (role, sample indices): the samples of the train, val and test sets (see
    the module docstring for the rule); DatasetError if the range holds too few."""
    pool = _in_range(ds, opened, "train", param_range)
    key = stream_key({"stream": SPLIT_STREAM, "data_seed": data_seed})
    order = pool[np.argsort(uniforms(key, pool, 0), kind="stable")]
    out, used, need = {}, 0, n_train
    for split, n in (("test", n_test), ("val", n_val)):
        if split in ds.splits:
            named = _in_range(ds, opened, split, param_range)
            if len(named) < n:
                raise DatasetError(
                    f"dataset {ds.name}: the {split} data {opened.where(split)} holds {len(named)} samples in range, "
                    f"n_{split} is {n}; fix: lower n_{split} or add samples"
                )
            out[split] = (split, named[:n])
        else:
            out[split] = ("train", order[used : used + n])
            used += n
            need += n
    if len(order) < need:
        carved = " plus ".join(
            f"{s} ({n})"
            for s, n in (("validation", n_val), ("test", n_test))
            if ("val" if s == "validation" else "test") not in ds.splits
        )
        raise DatasetError(
            f"dataset {ds.name}: {opened.where('train')} holds {len(order)} samples in range; the largest N "
            f"({n_train}){' plus ' + carved if carved else ''} needs {need}; fix: lower n_train, n_val or n_test, "
            "or add samples"
        )
    out["train"] = ("train", order[used : used + n_train])
    return out


def _fields(ds: ExternalDataset, opened: _Opened, role: str, index: np.ndarray) -> Fields:
    """The samples ``index`` of ``role`` as Fields: source (n, C_in, H, W), solution
    (n, C_out, H, W), float32; no coefficient planes."""

    def stack(names: Sequence[str]) -> torch.Tensor:
        parts = []
        for name in names:
            array = opened.array(role, name)
            _, _, _, layout = _geometry(array.shape, ds.layout, name)
            block = np.asarray(array.take(index), dtype=np.float32)
            block = block[:, None] if layout == "NHW" else block.transpose(0, 3, 1, 2) if layout == "NHWC" else block
            parts.append(torch.from_numpy(np.ascontiguousarray(block)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    source, solution = stack(ds.inputs), stack(ds.outputs)
    params = {}
    if ds.param is not None:
        params["param"] = np.asarray(opened.array(role, ds.param).take(index), np.float64).reshape(-1)
    coefficients = torch.zeros(len(index), 0, dtype=torch.float32)
    return Fields(source, solution, coefficients, params, ds.channel_names)


def load_split(
    record: Mapping[str, Any] | ExternalDataset,
    split: str,
    n_train: int,
    n_val: int,
    n_test: int,
    data_seed: int,
    param_range: tuple[float, float] | None,
    resolution: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Fields:
    """One split of a checked dataset (``ExternalDataset`` or its ``to_dict()``) as Fields on
    the host, reading only its samples. ``resolution``: a test_resolutions label, for the
    test set on that grid (its first n_test samples in range). The files' digest must be
    the recorded one: a file changed since the sweep was planned is an error."""
    ds = record if isinstance(record, ExternalDataset) else ExternalDataset.from_record(record)
    check_choice(split, "split", SPLIT_NAMES)
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    with _Opened(ds, cache) as opened:
        digest = sha256_hex([[role, path.name, file_digest(path, cache)] for role, path in opened.files()])
        if ds.digest and digest != ds.digest:
            raise DatasetError(
                f"dataset {ds.name}: its files changed since the sweep was planned (digest {digest[:12]}, planned "
                f"{ds.digest[:12]}); fix: run the sweep again (a changed dataset is a new study: --sweep NEW)"
            )
        if resolution is not None and resolution != ds.resolution:
            if split != "test" or resolution not in ds.test_resolutions:
                raise DatasetError(
                    f"dataset {ds.name} has no test set at {resolution}; its test_resolutions: "
                    f"{sorted(ds.test_resolutions) or 'none'}"
                )
            role = f"test@{resolution}"
            keep = _in_range(ds, opened, role, param_range)[:n_test]
            return _fields(ds, opened, role, keep)
        role, index = split_indices(ds, opened, n_train, n_val, n_test, data_seed, param_range)[split]
        return _fields(ds, opened, role, index)


# ---------------------------------------------------------------------- inspect


def describe(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every array of a file (or folder of .npy files): name, shape, dtype, min, max, NaN
    and inf counts (one chunked pass; remembered per file digest)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    local = localize(os.fspath(path), cache)
    rows = []
    with Source(local) as source:
        try:
            arrays = source.arrays
        except ReadError as err:
            raise DatasetError(str(err)) from None
        for name, array in sorted(arrays.items()):
            row = {"array": name, "shape": list(array.shape), "dtype": str(array.dtype)}
            if array.dtype.kind in "biuf" and array.shape:
                file = local / f"{name}.npy" if local.is_dir() else local
                row.update(_stats(array, file, name, cache))
            rows.append(row)
    return rows


def source_paths(ds: ExternalDataset, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """The files (or .npy folders) a dataset reads: path's, then each split's and test set's."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    with _Opened(ds, cache) as opened:
        sources = [opened.pool] if opened.pool is not None else []
        sources += [source for _, (source, _) in sorted(opened.roles.items())]
        return list(dict.fromkeys(source.path for source in sources))


def param_histogram(
    ds: ExternalDataset, role: str = "train", bins: int = 10, cache_dir: str | os.PathLike | None = None
) -> list[tuple[float, float, int]]:
    """(lo, hi, count) bins of the param's values in ``role``'s data; [] without a param."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    with _Opened(ds, cache) as opened:
        values = _param_values(ds, opened, role)
    if values is None:
        return []
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    counts, edges = np.histogram(finite, bins=bins)
    return [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(len(counts))]


def split_sizes(
    ds: ExternalDataset, plan: Plan, cache_dir: str | os.PathLike | None = None
) -> dict[str, dict[str, int]]:
    """shift -> {samples in range, train, val, test}: what each shift offers and what the
    plan would use (the largest N)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    out = {}
    with _Opened(ds, cache) as opened:
        for shift in plan.shifts:
            param_range = None if shift is None else ds.shift_range(shift)
            available = len(_in_range(ds, opened, "train", param_range))
            splits = split_indices(ds, opened, plan.n_train, plan.n_val, plan.n_test, plan.data_seeds[0], param_range)
            out[shift or "all"] = {"in range": available, **{s: len(i) for s, (_, i) in splits.items()}}
    return out
