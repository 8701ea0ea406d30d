"""The node-local cache: one entry per (family, range, seed, split, resolution) holding
the longest prefix generated so far, memory-mapped, verified once per node."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fno import __version__
from fno.atomic import atomic_write, write_temp
from fno.data.generation import generate_fields
from fno.data.spec import CACHE_FORMAT, DATA_VERSION, DatasetSpec
from fno.physics import families
from fno.physics.families import PARAMS, UNION_CHANNELS
from fno.physics.fields import Fields

CACHE_ENV = "FNO_DATA_CACHE"
ARRAYS_SUFFIX = ".bin"
ALIGN = 64  # bytes: each array of an entry starts at a multiple of this


BATCH_JOB_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")  # set inside a batch job
LOCK_STALE_S = 900.0  # an exclusive-create lock file older than this was left by a dead process


def default_cache_dir() -> Path:
    """The node's cache folder: $FNO_DATA_CACHE; else, inside a batch job (SLURM, PBS,
    LSF, SGE) with $TMPDIR set, $TMPDIR/fno-scaling-data, the node-local scratch (the home
    folder is usually NFS on a cluster); else ~/.cache/fno-scaling/data."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    if os.environ.get("TMPDIR") and any(os.environ.get(v) for v in BATCH_JOB_VARIABLES):
        return Path(os.environ["TMPDIR"]) / "fno-scaling-data"
    return Path.home() / ".cache" / "fno-scaling" / "data"


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
    (None, 0) if absent, (None, held) if it holds fewer than ``n_samples`` (nothing is
    read then: the caller extends the entry and reads it whole); raises
    CorruptCacheError if unusable.

    The arrays file is verified once per node (``_verify_once``), then memory-mapped, and
    only the samples asked for are read and copied.
    """
    manifest_path = directory / f"{key}.json"
    if not manifest_path.exists():
        return None, 0
    try:
        manifest = json.loads(manifest_path.read_text())
        have = int(manifest["n_samples"])
        if n_samples is not None and have < n_samples:
            return None, have
        arrays_path = directory / manifest["arrays"]
        _verify_once(arrays_path, manifest["sha256"])
        n = have if n_samples is None else n_samples

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
    cache folder, no lock (and no cache). Where the file system has no ``flock``
    (ENOSYS, ENOLCK, EOPNOTSUPP: some Lustre and NFS mounts), an exclusive-create lock
    file instead (``_exclusive_lock``)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / f"{key}.lock", "a+b")  # noqa: SIM115 (held for the block)
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # no flock on this file system
            with _exclusive_lock(directory / f"{key}.lock.excl"):
                yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _exclusive_lock(path: Path, poll_s: float = 0.2) -> Iterator[None]:
    """A lock held by creating ``path`` with O_CREAT | O_EXCL (atomic on every POSIX file
    system), waited for by polling; a lock file older than LOCK_STALE_S is removed as
    left behind by a dead process."""
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime > LOCK_STALE_S:
                    path.unlink(missing_ok=True)
                    continue
            except FileNotFoundError:
                continue
            time.sleep(poll_s)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


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
                cached = tail if cached is None else Fields.concat([cached, tail])
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
