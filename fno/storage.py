"""Where a sweep's files live: a local folder or an object store, behind one small type.

A ``Location`` is a folder or file named by a local path or by a URI (``s3://bucket/prefix``,
``gs://bucket/prefix``, ``hdfs://...``, or any fsspec protocol whose package is installed).
It offers only what the results, checkpoints, lease and report need: join, list,
read, write whole, delete. Writes are whole or absent, on both kinds:
- local: a temp file beside the target, fsynced, then renamed (``fno.atomic``);
- object store: the bytes are built in memory and sent as one object, which an object
  store shows only once complete (S3 and GCS are strongly consistent: a listing made
  after a write sees it).

Credentials and endpoints come from each store's usual environment and files
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
instance roles ...), read by pyarrow, never from flags; they appear in no message.

An S3 store that does not answer fails within about 10 s (S3_CONNECT_TIMEOUT_S and
S3_MAX_ATTEMPTS, where pyarrow's own defaults retried for minutes); messages name the
endpoint (``describe_endpoint``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

from fno.atomic import Writer, atomic_write

URI_PATTERN = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")
# S3 requests: a connection not made in this long fails, and a request is tried this many
# times (AWS's standard retry, with backoff). pyarrow's defaults retried a store that
# accepts connections and never answers for about 100 s; these take about 11 s.
S3_CONNECT_TIMEOUT_S = 5.0
S3_MAX_ATTEMPTS = 3


class StorageError(ValueError):
    """A location that cannot be opened (unknown scheme, missing package, bad URI)."""


def is_uri(text: str) -> bool:
    """Whether ``text`` names an object-store location (``scheme://...``) rather than a local path."""
    match = URI_PATTERN.match(text)
    return bool(match) and match.group(1).lower() != "file"


def _remote_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for ``uri`` and the path inside it; fsspec's for schemes pyarrow lacks."""
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        return _bounded(filesystem), path
    except ValueError as err:  # pyarrow's ArrowInvalid: a scheme it does not know
        arrow_error = err
    except OSError as err:  # a scheme it knows, a store it cannot reach (network, region, credentials)
        raise StorageError(f"{uri}: cannot open it ({err})") from None
    scheme = URI_PATTERN.match(uri).group(1)
    try:
        import fsspec
    except ImportError:
        raise StorageError(f"{uri}: pyarrow cannot open it ({arrow_error}) and fsspec is not installed") from None
    try:
        filesystem = fsspec.filesystem(scheme)
    except (ImportError, ValueError) as err:
        raise StorageError(f"{uri}: neither pyarrow ({arrow_error}) nor fsspec ({err}) opens {scheme}://") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), filesystem._strip_protocol(uri)


def _bounded(filesystem: pafs.FileSystem) -> pafs.FileSystem:
    """``filesystem`` with a connect timeout and a bounded retry (S3; others as they are)."""
    if not isinstance(filesystem, pafs.S3FileSystem):
        return filesystem
    _, (options,) = filesystem.__reduce__()  # the options from_uri resolved (region, endpoint ...)
    if options.get("connect_timeout", -1) <= 0:
        options["connect_timeout"] = S3_CONNECT_TIMEOUT_S
    options = {k: v for k, v in options.items() if not (isinstance(v, float) and v < 0)}  # -1: pyarrow's default
    return pafs.S3FileSystem(**options, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS))


def describe_endpoint(where: Location) -> str:
    """Where an object-store location's requests go, for messages (``endpoint
    http://127.0.0.1:9000``, ``AWS's endpoint for region us-east-1``); "" for a local path
    or a store that does not say."""
    if where.is_local:
        return ""
    try:
        filesystem, _ = where.filesystem()
    except StorageError:
        return ""
    if not isinstance(filesystem, pafs.S3FileSystem):
        return ""
    _, (options,) = filesystem.__reduce__()
    if options.get("endpoint_override"):
        source = " (AWS_ENDPOINT_URL)" if os.environ.get("AWS_ENDPOINT_URL") else ""
        return f"endpoint {options['endpoint_override']}{source}"
    return f"AWS's endpoint for region {options.get('region') or 'us-east-1'}"


class Location:
    """A local path or a path inside an object store; immutable, picklable (the
    filesystem is reopened from the text after unpickling)."""

    def __init__(self, text: str | os.PathLike) -> None:
        text = os.fspath(text)
        self.text = text.rstrip("/") if is_uri(text) else text
        self._fs: pafs.FileSystem | None = None
        self._path: str | None = None

    # ---------------------------------------------------------------- naming
    @property
    def is_local(self) -> bool:
        return not is_uri(self.text)

    @property
    def local(self) -> Path:
        """The local path (only for local locations)."""
        if not self.is_local:
            raise ValueError(f"{self.text} is not a local path")
        return Path(self.text)

    def __truediv__(self, name: str) -> Location:
        if self.is_local:
            return Location(Path(self.text) / name)
        return Location(f"{self.text}/{name}")

    @property
    def name(self) -> str:
        return Path(self.text).name if self.is_local else self.text.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        if self.is_local:
            return Location(Path(self.text).parent)
        return Location(self.text.rsplit("/", 1)[0])

    def resolve(self) -> Location:
        """Absolute (local paths; URIs are already)."""
        return Location(Path(self.text).resolve()) if self.is_local else self

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Location({self.text!r})"

    def __getstate__(self) -> dict:
        return {"text": self.text}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["text"])

    # ------------------------------------------------------------ filesystem
    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """(pyarrow filesystem, path inside it) of an object-store location, opened once
        (local locations go through ``pathlib`` and ``fno.atomic``)."""
        if self.is_local:
            raise ValueError(f"{self.text} is a local path: it has no object-store filesystem")
        if self._fs is None:
            self._fs, self._path = _remote_filesystem(self.text)
        return self._fs, self._path

    def _info(self) -> pafs.FileInfo:
        fs, path = self.filesystem()
        return fs.get_file_info(path)

    def exists(self) -> bool:
        return self.local.exists() if self.is_local else self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.local.is_file() if self.is_local else self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        """A local folder; in an object store, a prefix with objects under it."""
        return self.local.is_dir() if self.is_local else self._info().type == pafs.FileType.Directory

    def mkdir(self) -> None:
        """Create the folder and its parents (object stores need none: a no-op there)."""
        if self.is_local:
            self.local.mkdir(parents=True, exist_ok=True)

    def files(self, suffix: str) -> list[Location]:
        """The files directly in this folder whose names end with ``suffix``, by name; hidden
        names (``.NAME.*.tmp`` of interrupted local writes) are left out; [] if no folder."""
        if self.is_local:
            folder = self.local
            paths = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
            return [Location(p) for p in paths if not p.name.startswith(".")]
        fs, path = self.filesystem()
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix))
        return [self / n for n in names if not n.startswith(".")]

    def open_input(self) -> BinaryIO:
        """A readable file; FileNotFoundError if it is gone (as for a local file)."""
        if self.is_local:
            return open(self.text, "rb")
        fs, path = self.filesystem()
        return fs.open_input_file(path)

    def read_bytes(self) -> bytes:
        with self.open_input() as fh:
            return fh.read()

    def write(self, write: Writer) -> None:
        """Replace this file with what ``write(file)`` writes, whole or not at all."""
        if self.is_local:
            self.parent.mkdir()
            atomic_write(self.local, write)
            return
        buffer = io.BytesIO()
        write(buffer)  # built in memory first: an error here sends nothing
        fs, path = self.filesystem()
        with fs.open_output_stream(path) as out:
            out.write(buffer.getbuffer())

    def write_bytes(self, data: bytes) -> None:
        self.write(lambda fh: fh.write(data))

    def delete(self) -> None:
        """Remove the file; no error if it is already gone."""
        if self.is_local:
            self.local.unlink(missing_ok=True)
            return
        fs, path = self.filesystem()
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(path)


def location(where: str | os.PathLike | Location) -> Location:
    """``where`` as a Location (a Location is returned as it is)."""
    return where if isinstance(where, Location) else Location(where)


def open_location(text: str, flag: str) -> Location:
    """The Location a user named with ``flag``, its filesystem opened now so that a bad
    scheme or URI is an error naming the flag before any work starts."""
    match = URI_PATTERN.match(text)
    if is_uri(text) and not match.group(2).strip("/"):
        raise StorageError(f"{flag} {text}: the URI names no bucket or folder")
    where = Location(text)
    if not where.is_local:
        try:
            where.filesystem()
        except StorageError as err:
            raise StorageError(f"{flag} {err}") from None
    return where
