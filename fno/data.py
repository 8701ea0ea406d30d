"""Datasets: a ``DatasetSpec`` in, float32 tensors out; generated, cached, normalised.

A dataset is a pure function of its spec. Sample i of a split is drawn from the
counter-based stream keyed by (family, parameter range, seed) at the split's own
index range (``fno.physics.streams``), so:

- the same spec gives bit-identical data on the same machine and device, whatever
  the chunk size;
- train, validation and test never share a sample;
- a train set of N samples is the first N samples of any larger one (nesting);
- the resolution is not part of the stream: one sample at n = 64 and n = 128 is the
  same function on two grids.

Tensors: inputs (batch, channels, n, n), channel 0 the source f and the rest the
constant coefficient planes of ``fno.physics.families``; targets (batch, 1, n, n),
the solution u. Array axis -2 is x, axis -1 is y. In memory and in the cache a set is
kept compact (``Fields``: f, u and one coefficient vector per sample); the constant
planes are materialised only when inputs are asked for.

CLI: ``python -m fno.data generate ...`` writes a dataset folder; ``python -m fno.data
check DIR`` re-verifies the PDE residuals of one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fno import __version__
from fno.atomic import atomic_write, write_temp
from fno.config import check_known_fields
from fno.physics import families
from fno.physics.families import CHANNELS, FAMILIES, PARAMS, PRETRAIN_RANGE, SINGLE_FAMILIES, UNION_CHANNELS
from fno.physics.streams import MAX_SAMPLES_PER_SPLIT, SPLIT_OFFSET, stream_key

DATA_VERSION = 1  # bump when generated values change; part of every cache key
SPLITS = tuple(SPLIT_OFFSET)
CHANNEL_LAYOUTS = ("native", "union")
MIN_RESOLUTION = 16
# Generation runs in chunks whose spectra hold about CHUNK_SPECTRUM_BYTES (64 samples at
# n = 128): small enough that glibc serves every temporary from its heap instead of
# fresh mmapped pages (measured: 3x faster at 1024 samples a chunk), large enough to
# amortise per-call overhead; peak memory stays near 10x that whatever the set size.
CHUNK_SPECTRUM_BYTES = 8 << 20
MAX_CHUNK_SIZE = 4096
CACHE_ENV = "FNO_DATA_CACHE"
CACHE_FORMAT = 2  # raw arrays in one file, laid out by the manifest: memory-mapped, sliced reads
ARRAYS_SUFFIX = ".bin"
ALIGN = 64  # bytes: each array of an entry starts at a multiple of this

Range = tuple[float, float]


# --------------------------------------------------------------------------- spec


def _check_range(value: Any, family: str, field: str) -> Range:
    """A validated (lo, hi) of finite floats inside the family's admissible domain."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{field} must be a pair [lo, hi] of numbers, got {value!r}")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a pair [lo, hi] of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{field} must have finite ends, got [{lo}, {hi}]")
    if lo > hi:
        raise ValueError(f"{field} must have lo <= hi, got [{lo}, {hi}]")
    bound, rule = families.PARAMETER_MIN[family]
    if lo < bound or (rule == "> 0" and lo <= bound):
        raise ValueError(f"{field}: the {families.PARAMETER[family]} of {family} must be {rule}, got lo = {lo}")
    return (lo, hi)


def _check_int(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choice(value: Any, field: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
    return value


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that defines a dataset. Validated on construction.

    family: poisson | advdiff | helmholtz | mixture.
    param_range: (lo, hi) of the family's controlled parameter (poisson: eigenvalue
        e; advdiff: ratio psi; helmholtz: omega); for the mixture a mapping
        {family: (lo, hi)} for all three members. None: the pre-training range(s).
    n_samples: samples in the set (a train subset of N is its first N samples).
    resolution: grid points per axis, even, >= 16.
    seed: selects the random stream, together with family and range.
    split: train | val | test; splits never share a sample.
    channels: native (the family's own input channels) | union (the mixture's
        layout, so a mixture-pretrained model reads single-family data).
    """

    family: str
    param_range: Any = None
    n_samples: int = 1024
    resolution: int = 128
    seed: int = 0
    split: str = "train"
    channels: str = "native"

    def __post_init__(self) -> None:
        _choice(self.family, "family", FAMILIES)
        if self.family == "mixture":
            ranges = PRETRAIN_RANGE if self.param_range is None else self.param_range
            if not isinstance(ranges, Mapping) or set(ranges) != set(SINGLE_FAMILIES):
                raise ValueError(
                    f"param_range of the mixture must map each of {', '.join(SINGLE_FAMILIES)} to [lo, hi], "
                    f"got {ranges!r}"
                )
            checked = tuple((f, _check_range(ranges[f], f, f"param_range[{f}]")) for f in SINGLE_FAMILIES)
        else:
            raw = PRETRAIN_RANGE[self.family] if self.param_range is None else self.param_range
            checked = _check_range(raw, self.family, "param_range")
        object.__setattr__(self, "param_range", checked)
        _check_int(self.n_samples, "n_samples", 1)
        if self.n_samples > MAX_SAMPLES_PER_SPLIT:
            raise ValueError(f"n_samples must be <= {MAX_SAMPLES_PER_SPLIT}, got {self.n_samples}")
        _check_int(self.resolution, "resolution", MIN_RESOLUTION)
        if self.resolution % 2:
            raise ValueError(f"resolution must be even and >= {MIN_RESOLUTION}, got {self.resolution}")
        _check_int(self.seed, "seed", 0)
        _choice(self.split, "split", SPLITS)
        _choice(self.channels, "channels", CHANNEL_LAYOUTS)

    @property
    def ranges(self) -> Range | dict[str, Range]:
        """param_range as (lo, hi), or {family: (lo, hi)} for the mixture."""
        return dict(self.param_range) if self.family == "mixture" else self.param_range

    @property
    def channel_names(self) -> tuple[str, ...]:
        return UNION_CHANNELS if self.channels == "union" else CHANNELS[self.family]

    def stream(self) -> dict[str, Any]:
        """The fields that select the random stream (not n_samples, resolution or split)."""
        ranges = self.ranges
        ranges = {f: list(r) for f, r in ranges.items()} if isinstance(ranges, dict) else list(ranges)
        return {"family": self.family, "param_range": ranges, "seed": self.seed}

    def cache_key(self) -> str:
        """Names the cache entry that holds this spec's samples (any n_samples, any channels)."""
        fields = {**self.stream(), "split": self.split, "resolution": self.resolution, "version": DATA_VERSION}
        fields["cache_format"] = CACHE_FORMAT
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return f"{self.family}-n{self.resolution}-{self.split}-" + hashlib.sha256(text.encode()).hexdigest()[:20]

    def with_samples(self, n_samples: int) -> DatasetSpec:
        return dataclasses.replace(self, n_samples=n_samples, param_range=self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.stream(),
            "n_samples": self.n_samples,
            "resolution": self.resolution,
            "split": self.split,
            "channels": self.channels,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSpec:
        check_known_fields(cls, data, "DatasetSpec")
        return cls(**data)


# ------------------------------------------------------------------------- fields


@dataclass
class Fields:
    """A compact dataset: f and u per sample, plus one coefficient vector per sample.

    source, solution: (batch, n, n); coefficients: (batch, C - 1); float32 by default.
    params: raw physical parameters, name -> (batch,) float64 numpy (see
    ``fno.physics.families.PARAMS``). channel_names: the C input channel names.
    """

    source: torch.Tensor
    solution: torch.Tensor
    coefficients: torch.Tensor
    params: dict[str, np.ndarray]
    channel_names: tuple[str, ...]

    def __len__(self) -> int:
        return self.source.shape[0]

    def inputs(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Model inputs (batch, C, n, n): f, then each coefficient as a constant plane."""
        f = self.source if index is None else self.source[index]
        c = self.coefficients if index is None else self.coefficients[index]
        planes = c[:, :, None, None].expand(-1, -1, *f.shape[-2:])  # (b, C-1, n, n) view
        return torch.cat([f[:, None], planes], dim=1)

    def targets(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Model targets (batch, 1, n, n): the solution u."""
        u = self.solution if index is None else self.solution[index]
        return u[:, None]

    def to(self, device: torch.device | str) -> Fields:
        return dataclasses.replace(
            self,
            source=self.source.to(device),
            solution=self.solution.to(device),
            coefficients=self.coefficients.to(device),
        )

    def head(self, n: int) -> Fields:
        """The first n samples."""
        return Fields(
            self.source[:n],
            self.solution[:n],
            self.coefficients[:n],
            {k: v[:n] for k, v in self.params.items()},
            self.channel_names,
        )


def _concat(parts: Sequence[Fields]) -> Fields:
    if len(parts) == 1:
        return parts[0]
    return Fields(
        torch.cat([p.source for p in parts]),
        torch.cat([p.solution for p in parts]),
        torch.cat([p.coefficients for p in parts]),
        {k: np.concatenate([p.params[k] for p in parts]) for k in PARAMS},
        parts[0].channel_names,
    )


def default_chunk_size(resolution: int) -> int:
    """Samples per generation chunk at this resolution: the power of two nearest to
    CHUNK_SPECTRUM_BYTES / (bytes of one complex128 rfft2 spectrum), at most MAX_CHUNK_SIZE."""
    per_sample = 16 * resolution * (resolution // 2 + 1)
    return min(MAX_CHUNK_SIZE, 1 << max(0, round(math.log2(CHUNK_SPECTRUM_BYTES / per_sample))))


def iter_chunks(
    spec: DatasetSpec,
    start: int = 0,
    stop: int | None = None,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[int, Fields]]:
    """Generate samples [start, stop) of ``spec`` chunk by chunk: yields (offset, Fields).

    Computation is float64 on ``device`` (default CPU); each chunk is cast to ``dtype``.
    chunk_size: samples per chunk, default ``default_chunk_size(spec.resolution)``; the
    values do not depend on it.
    """
    stop = spec.n_samples if stop is None else stop
    chunk_size = default_chunk_size(spec.resolution) if chunk_size is None else chunk_size
    if not 0 <= start <= stop:
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    _check_int(chunk_size, "chunk_size", 1)
    device = torch.device("cpu" if device is None else device)
    key = stream_key(spec.stream())
    offset = SPLIT_OFFSET[spec.split]
    union = spec.channels == "union" and spec.family != "mixture"
    for lo in range(start, stop, chunk_size):
        position = np.arange(lo, min(lo + chunk_size, stop), dtype=np.int64)
        batch = families.sample(
            spec.family,
            key,
            (position + offset).astype(np.uint64),
            position,
            spec.ranges,
            spec.resolution,
            device,
            union,
        )
        yield (
            lo,
            Fields(
                batch.source.to(dtype),
                batch.solution.to(dtype),
                batch.coefficients.to(dtype),
                batch.params,
                spec.channel_names,
            ),
        )


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, leave=False)


def generate_fields(
    spec: DatasetSpec,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    start: int = 0,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Fields:
    """Samples [start, spec.n_samples) of ``spec`` as compact ``Fields`` (no cache)."""
    parts = []
    with _progress(spec.n_samples - start, f"generate {spec.family}", progress) as bar:
        for _, part in iter_chunks(spec, start, spec.n_samples, chunk_size, device, dtype):
            parts.append(part)
            bar.update(len(part))
    return _concat(parts)


def generate(spec: DatasetSpec, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, C, n, n), targets (B, 1, n, n)), float32, generated without the cache."""
    fields = generate_fields(spec, device)
    return fields.inputs(), fields.targets()


# -------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$FNO_DATA_CACHE, else ~/.cache/fno-scaling/data (node-local)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "fno-scaling" / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class CorruptCacheError(Exception):
    """A cache entry failed verification (missing, truncated, altered or unreadable)."""


def _verify_once(path: Path, sha256: str) -> None:
    """Check ``path`` against its SHA-256, once per node: a marker beside it records the
    size and modification time it was verified at, and a later read with the same ones
    skips the hash (a 32,768-sample 128 x 128 set is 4 GiB). Raises CorruptCacheError."""
    try:
        if _marker(path).read_text() == _stamp(path, sha256):
            return
    except OSError:
        pass
    if _sha256(path) != sha256:
        raise CorruptCacheError(f"{path.name}: checksum mismatch")
    _mark_verified(path, sha256)


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path, sha256: str) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns} {sha256}"


def _mark_verified(path: Path, sha256: str) -> None:
    with contextlib.suppress(OSError):  # a read-only cache is verified at every read instead
        _marker(path).write_text(_stamp(path, sha256))


def _read_cache(directory: Path, key: str, n_samples: int | None = None) -> tuple[Fields | None, int]:
    """(the first ``n_samples`` of entry ``key`` (all if None), the samples it holds);
    (None, 0) if absent; raises CorruptCacheError if unusable.

    The arrays file is verified once per node (``_verify_once``), then memory-mapped, and
    only the samples asked for are read and copied.
    """
    manifest_path = directory / f"{key}.json"
    if not manifest_path.exists():
        return None, 0
    try:
        manifest = json.loads(manifest_path.read_text())
        arrays_path = directory / manifest["arrays"]
        _verify_once(arrays_path, manifest["sha256"])
        have = int(manifest["n_samples"])
        n = have if n_samples is None else min(n_samples, have)

        def take(name: str) -> np.ndarray:
            entry = manifest["layout"][name]
            shape = tuple(entry["shape"])
            if shape[0] != have:
                raise CorruptCacheError(f"{manifest_path.name}: {name} holds {shape[0]} samples, manifest says {have}")
            dtype = np.dtype(entry["dtype"])
            mapped = np.memmap(arrays_path, dtype=dtype, mode="r", offset=entry["offset"], shape=shape)
            return np.array(mapped[:n])  # a copy of the n samples only

        fields = Fields(
            torch.from_numpy(take("source")),
            torch.from_numpy(take("solution")),
            torch.from_numpy(take("coefficients")),
            {k: take(f"param_{k}") for k in PARAMS},
            tuple(manifest["channel_names"]),
        )
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise CorruptCacheError(f"{manifest_path.name}: {type(err).__name__}: {err}") from err
    return fields, have


STALE_GRACE_S = 60.0  # arrays newer than this may belong to a concurrent writer: kept


def _write_cache(directory: Path, key: str, spec: DatasetSpec, fields: Fields) -> None:
    """Commit ``fields`` as entry ``key``: arrays under their content hash, then the manifest.

    The arrays go raw into one file, each at an ALIGN-byte offset the manifest records
    with its dtype and shape, so that a reader maps the file and copies only the samples
    it needs. Safe with concurrent writers on one node: every writer has its own temp
    file, the arrays file is named by its SHA-256, and the manifest rename is the commit.
    """
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "source": fields.source.numpy(),
        "solution": fields.solution.numpy(),
        "coefficients": fields.coefficients.numpy(),
        **{f"param_{k}": v for k, v in fields.params.items()},
    }
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    layout, offset = {}, 0
    for name, a in arrays.items():
        layout[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        offset += -(-a.nbytes // ALIGN) * ALIGN

    def write(fh) -> None:
        for name, a in arrays.items():
            fh.seek(layout[name]["offset"])
            fh.write(a.tobytes())
        fh.truncate(offset)

    tmp = write_temp(directory, key, write)
    digest = _sha256(tmp)
    arrays_path = directory / f"{key}-{digest[:16]}{ARRAYS_SUFFIX}"
    os.replace(tmp, arrays_path)
    _mark_verified(arrays_path, digest)  # hashed as written: this node need not hash it again
    manifest = {
        "arrays": arrays_path.name,
        "sha256": digest,
        "layout": layout,
        "n_samples": len(fields),
        "spec": spec.to_dict(),
        "channel_names": list(fields.channel_names),
        "data_version": DATA_VERSION,
        "cache_format": CACHE_FORMAT,
        "code_version": __version__,
    }
    atomic_write(directory / f"{key}.json", lambda fh: fh.write(json.dumps(manifest, indent=1).encode()))
    now = time.time()
    for stale in directory.glob(f"{key}-*{ARRAYS_SUFFIX}"):  # arrays of entries this manifest replaced
        try:
            if stale != arrays_path and now - stale.stat().st_mtime > STALE_GRACE_S:
                stale.unlink()
                _marker(stale).unlink(missing_ok=True)
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def _entry_lock(directory: Path, key: str) -> Iterator[None]:
    """Hold entry ``key`` of the node's cache: trials that start together on a node wait
    for the first to generate a set instead of each generating it. Without a writable
    cache folder, no lock (and no cache)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / f"{key}.lock", "a+b")  # noqa: SIM115 (held for the block)
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(directory: Path, key: str, n_samples: int | None) -> tuple[Fields | None, int]:
    """``_read_cache`` with a corrupt entry reported and treated as absent."""
    try:
        return _read_cache(directory, key, n_samples)
    except CorruptCacheError as err:
        warnings.warn(f"data cache entry {key} is corrupt ({err}); regenerating", stacklevel=3)
        return None, 0


def load_fields(
    spec: DatasetSpec,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Fields:
    """``spec``'s samples through the node-local cache, as Fields on ``device``.

    One cache entry per (family, range, seed, split, resolution) holds the longest
    prefix generated so far: a request for fewer samples reads just those (memory-mapped),
    one for more generates only the missing tail, under a per-entry lock so that one
    process on the node generates it while the others wait. Entries are written
    atomically and verified by SHA-256 once per node; a corrupt entry is reported,
    discarded and regenerated. The cache stores native channels; the union layout is
    derived on load.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    native = dataclasses.replace(spec, channels="native", param_range=spec.ranges)
    key = native.cache_key()
    fields, have = _cached(directory, key, spec.n_samples)
    if have < spec.n_samples:
        with _entry_lock(directory, key):
            cached, have = _cached(directory, key, None)  # another process may have written it meanwhile
            if have < spec.n_samples:
                tail = generate_fields(native, start=have, progress=progress)
                cached = tail if cached is None else _concat([cached, tail])
                try:
                    _write_cache(directory, key, native.with_samples(len(cached)), cached)
                except OSError as err:  # a full or read-only disk costs the cache, not the data
                    warnings.warn(f"could not write data cache entry {key} in {directory}: {err}", stacklevel=2)
            fields = cached.head(spec.n_samples)
    if spec.channels == "union" and spec.family != "mixture":
        fields.coefficients = families.to_union(spec.family, fields.coefficients)
        fields.channel_names = UNION_CHANNELS
    return fields.to(device) if device is not None else fields


def load(
    spec: DatasetSpec, cache_dir: str | os.PathLike | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``generate(spec)`` through the cache: (inputs (B, C, n, n), targets (B, 1, n, n))."""
    fields = load_fields(spec, cache_dir, device)
    return fields.inputs(), fields.targets()


# ------------------------------------------------------------------ normalisation


@functools.lru_cache(maxsize=64)
def _stat_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) mean and std tensors, made once per statistics, dtype and device
    (building them per batch copied them to the device at every step)."""
    return (
        torch.tensor(mean, dtype=dtype, device=device)[None, :, None, None],
        torch.tensor(std, dtype=dtype, device=device)[None, :, None, None],
    )


@dataclass(frozen=True)
class Normalization:
    """Per-channel input statistics and target statistics, plain floats.

    Fitted once on the pre-training train split and stored in the model's checkpoint,
    so a fine-tuned or zero-shot model normalises downstream data with the
    pre-training statistics. Constant channels (std 0) get std 1.
    """

    channel_names: tuple[str, ...]
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    target_mean: float
    target_std: float

    @classmethod
    def fit(cls, fields: Fields, chunk: int = 1024) -> Normalization:
        """Statistics of ``fields`` (on the host), accumulated in float64 over chunks of
        samples so that no float64 copy of a large set is made."""
        if fields.source.device.type != "cpu":
            raise ValueError(f"fit the normalisation on host data, got {fields.source.device} tensors")
        sums = torch.zeros(4, dtype=torch.float64)  # sum f, sum f^2, sum u, sum u^2 over all points
        for lo in range(0, len(fields), chunk):  # chunks of samples, not samples
            f = fields.source[lo : lo + chunk].double()
            u = fields.solution[lo : lo + chunk].double()
            sums += torch.stack([f.sum(), (f * f).sum(), u.sum(), (u * u).sum()])
        f_mean, f_sq, u_mean, u_sq = (sums / fields.source.numel()).tolist()
        f_std = math.sqrt(max(f_sq - f_mean**2, 0.0))
        u_std = math.sqrt(max(u_sq - u_mean**2, 0.0))
        c = fields.coefficients.double()  # (batch, C - 1): small
        mean = [f_mean, *c.mean(dim=0).tolist()]
        std = [f_std, *c.std(dim=0, correction=0).tolist()]
        std = [s if s > 0 else 1.0 for s in std]
        return cls(tuple(fields.channel_names), tuple(mean), tuple(std), u_mean, u_std if u_std > 0 else 1.0)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != len(self.input_mean):
            raise ValueError(
                f"inputs must have shape (batch, {len(self.input_mean)}, n, n) for channels "
                f"{list(self.channel_names)}, got {tuple(x.shape)}"
            )
        return _stat_tensors(self.input_mean, self.input_std, x.dtype, x.device)

    def normalize_inputs(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def normalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.target_mean) / self.target_std

    def denormalize_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.target_std + self.target_mean

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        return cls(
            tuple(data["channel_names"]),
            tuple(data["input_mean"]),
            tuple(data["input_std"]),
            float(data["target_mean"]),
            float(data["target_std"]),
        )


# ---------------------------------------------------------------------------- CLI


def _spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    ranges: Any = None
    if args.range:
        if args.family == "mixture":
            if any(len(r) != 3 for r in args.range):
                raise ValueError("--range for the mixture takes FAMILY LO HI, once per member family")
            ranges = dict(PRETRAIN_RANGE)
            for name, lo, hi in args.range:
                _choice(name, "--range FAMILY", SINGLE_FAMILIES)
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
    with _progress(spec.n_samples, f"generate {spec.family}", True) as bar:
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
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            spec = _spec_from_args(args)
            _write_dataset(spec, args.out, args.dtype, args.chunk_size, args.device)
            return 0
        report = check_dataset(args.directory)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    print("check passed" if report["ok"] else "check FAILED", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
