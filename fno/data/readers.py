"""Lazy readers of array files as benchmarks publish them, and their content digests.

One interface over four formats: a ``Source`` names its arrays and hands out
``LazyArray``s, whose shape and dtype are known without reading data and whose
``take`` reads only the samples (first axis) asked for:

- HDF5 (``.h5``, ``.hdf5``; PDEBench, The Well): every dataset in the file, group paths
  joined by ``/``, read by h5py slice by slice;
- NumPy ``.npy``: one array named by the file's stem, memory-mapped; a folder of them;
- NumPy ``.npz``: members stored uncompressed (``np.savez``) are memory-mapped inside
  the zip; compressed ones (``np.savez_compressed``) cannot be and are read whole, once;
- PyTorch ``.pt`` / ``.pth``: a tensor or a dict of tensors (nested dicts joined by
  ``/``), loaded with ``weights_only=True`` and memory-mapped where the file allows.

A URI (``s3://...``, anything ``fno.storage`` opens) is copied once per node into the
data cache and read from there. ``file_digest`` is the SHA-256 of a file, streamed and
remembered per (path, size, modification time), so a large file is hashed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fno.atomic import atomic_write

SUFFIXES = (".h5", ".hdf5", ".npz", ".npy", ".pt", ".pth")
# Samples read in one call at most while gathering (bounds the temporary memory), and the
# gap between wanted samples below which one read spans them (fewer, larger reads).
WINDOW = 256
GAP = 8
RACY_S = 2.0  # a file modified this recently is not remembered by its size and time


class ReadError(ValueError):
    """A file that cannot be read as a dataset: missing, unsupported or damaged."""


@dataclass
class LazyArray:
    """An array whose samples (axis 0) are read on demand.

    shape, dtype: of the whole array, known without reading it; read(lo, hi): samples
    [lo, hi) as a numpy array.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[int, int], np.ndarray]

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def take(self, index: np.ndarray) -> np.ndarray:
        """The samples at ``index`` (any order, no repeats needed), in that order.

        Read in runs of nearby samples (at most WINDOW per read), so a trial that needs N
        samples of a large file reads about N samples' bytes, not the file.
        """
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        parts, lo = [], 0
        while lo < len(wanted):
            hi = lo + 1
            while hi < len(wanted) and wanted[hi] - wanted[hi - 1] <= GAP and wanted[hi] - wanted[lo] < WINDOW:
                hi += 1
            start, stop = int(wanted[lo]), int(wanted[hi - 1]) + 1
            block = np.asarray(self.read(start, stop))
            parts.append(block[wanted[lo:hi] - start])
            lo = hi
        gathered = np.concatenate(parts)
        out = np.empty_like(gathered)
        out[order] = gathered
        return out

    def chunks(self, size: int = 64) -> Iterator[np.ndarray]:
        """The whole array, ``size`` samples at a time."""
        for lo in range(0, len(self), size):
            yield np.asarray(self.read(lo, min(lo + size, len(self))))


class Source:
    """The arrays of one file (or folder of ``.npy`` files), by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._arrays: dict[str, LazyArray] | None = None
        self._close: list[Callable[[], None]] = []

    @property
    def arrays(self) -> dict[str, LazyArray]:
        if self._arrays is None:
            self._arrays = _open(self.path, self._close)
        return self._arrays

    def close(self) -> None:
        for close in self._close:
            with contextlib.suppress(Exception):  # closing a half-opened file must not hide the real error
                close()
        self._close.clear()
        self._arrays = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def files(self) -> list[Path]:
        """The files this source reads (one, or a folder's ``.npy`` files by name)."""
        return sorted(self.path.glob("*.npy")) if self.path.is_dir() else [self.path]


def _open(path: Path, close: list) -> dict[str, LazyArray]:
    if not path.exists():
        raise ReadError(f"{path} not found")
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise ReadError(f"{path} is a folder without .npy files (a folder is read as one .npy file per array)")
        return {f.stem: _npy(f) for f in files}
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ReadError(f"{path}: unsupported format {suffix or '(no suffix)'}; supported: {', '.join(SUFFIXES)}")
    try:
        if suffix in (".h5", ".hdf5"):
            return _hdf5(path, close)
        if suffix == ".npy":
            return {path.stem: _npy(path)}
        if suffix == ".npz":
            return _npz(path, close)
        return _torch(path)
    except ReadError:
        raise
    except Exception as err:  # each library raises its own types for a damaged or foreign file
        raise ReadError(f"{path} is not a readable {suffix} file ({type(err).__name__}: {err})") from err


def _npy(path: Path) -> LazyArray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # an object array, or not an .npy file
        raise ReadError(f"{path} is not a readable .npy array ({err})") from err
    return _in_memory(array)


def _in_memory(array) -> LazyArray:
    """A LazyArray over a numpy array, a memory map or a tensor (sliced on read)."""
    if hasattr(array, "numpy"):  # a torch tensor (possibly memory-mapped)
        import torch

        def read(lo: int, hi: int) -> np.ndarray:
            block = array[lo:hi]
            return (block.float() if block.dtype == torch.bfloat16 else block).numpy()

        return LazyArray(tuple(array.shape), _torch_dtype(array), read)
    return LazyArray(tuple(array.shape), array.dtype, lambda lo, hi: array[lo:hi])


def _torch_dtype(tensor) -> np.dtype:
    import torch

    try:
        return np.dtype(str(tensor.dtype).removeprefix("torch."))
    except TypeError:  # bfloat16 and other types numpy lacks
        return np.dtype("float32") if tensor.dtype == torch.bfloat16 else np.dtype("complex64")


def _hdf5(path: Path, close: list) -> dict[str, LazyArray]:
    import h5py

    handle = h5py.File(path, "r")
    close.append(handle.close)
    out: dict[str, LazyArray] = {}

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            out[name] = LazyArray(tuple(item.shape), item.dtype, lambda lo, hi, d=item: d[lo:hi] if d.shape else d[()])

    handle.visititems(visit)
    return out


def _npz(path: Path, close: list) -> dict[str, LazyArray]:
    archive = zipfile.ZipFile(path)
    close.append(archive.close)
    out: dict[str, LazyArray] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[: -len(".npy")]
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(member)
            header = member.tell()
        if dtype.hasobject:
            raise ReadError(f"{path}: array {name!r} holds Python objects; store numbers")
        if info.compress_type == zipfile.ZIP_STORED and not fortran:
            offset = _member_data_offset(path, info) + header
            mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape) if shape else None
            out[name] = _in_memory(mapped) if mapped is not None else _whole(archive, info, dtype, shape)
        else:
            out[name] = _whole(archive, info, dtype, shape)
    return out


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored zip member's bytes begin: after its local header (30 bytes, then the
    name and the extra field, whose lengths the local header gives)."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    if local[:4] != b"PK\x03\x04":
        raise ReadError(f"{path}: damaged zip member {info.filename}")
    name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def _whole(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype, shape: tuple) -> LazyArray:
    """A compressed member: decompressed whole on the first read, then kept."""
    cache: dict[str, np.ndarray] = {}

    def read(lo: int, hi: int) -> np.ndarray:
        if "a" not in cache:
            with archive.open(info) as member:
                cache["a"] = np.lib.format.read_array(member, allow_pickle=False)
        return cache["a"][lo:hi] if cache["a"].ndim else cache["a"]

    return LazyArray(tuple(shape), dtype, read)


def _torch(path: Path) -> dict[str, LazyArray]:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (pre-zip) format cannot be memory-mapped
        data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, torch.Tensor):
        return {path.stem: _in_memory(data)}
    if not isinstance(data, dict):
        raise ReadError(f"{path} holds a {type(data).__name__}; a .pt dataset is a tensor or a dict of tensors")
    out: dict[str, LazyArray] = {}

    def flatten(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            out[prefix] = _in_memory(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                flatten(f"{prefix}/{key}" if prefix else str(key), item)
        # other entries (numbers, strings: metadata) are not arrays

    flatten("", data)
    return out


# ------------------------------------------------------------------ remote files


def localize(text: str, cache_dir: Path) -> Path:
    """A local path for ``text``: itself if local, else a copy in ``cache_dir`` (one per
    node, refreshed when the object's size or modification time changes). A remote folder
    is copied file by file (its ``.npy`` files)."""
    from fno.storage import is_uri, location

    if not is_uri(text):
        return Path(text)
    remote = location(text)
    target = cache_dir / "remote" / hashlib.sha256(text.encode()).hexdigest()[:16] / remote.name
    if remote.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for item in remote.files(".npy"):
            _copy_if_changed(item, target / item.name)
        return target
    if not remote.is_file():
        raise ReadError(f"{text} not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_if_changed(remote, target)
    return target


def _copy_if_changed(remote, target: Path) -> None:
    info = remote._info()  # size and time of an object, without reading it
    stamp = f"{info.size} {info.mtime_ns}"
    marker = target.with_name(target.name + ".source")
    with contextlib.suppress(OSError):
        if target.exists() and marker.read_text() == stamp:
            return
    with remote.open_input() as src:
        atomic_write(target, lambda fh: shutil.copyfileobj(src, fh, 1 << 22))
    marker.write_text(stamp)


# ------------------------------------------------------------------ digests


def file_digest(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file's bytes, streamed; remembered in ``cache_dir`` per (absolute path,
    size, modification time), so an unchanged file is hashed once per node."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = None
    if cache_dir is not None:
        record = cache_dir / "digests" / (hashlib.sha256(str(path).encode()).hexdigest()[:24] + ".json")
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(record.read_text())
            if {k: saved.get(k) for k in stamp} == stamp:
                return saved["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    # A file changed within the clock tick of its last change keeps its size and time: one
    # modified moments ago is hashed again next time rather than remembered (git's "racy" rule).
    if record is not None and time.time() - stat.st_mtime > RACY_S:
        with contextlib.suppress(OSError):  # a read-only cache hashes again next time
            record.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({**stamp, "path": str(path), "sha256": digest}).encode()
            atomic_write(record, lambda fh: fh.write(text))
    return digest


def is_supported(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a file of a supported format (by its suffix)."""
    return Path(path).suffix.lower() in SUFFIXES
