"""Atomic file writes: a uniquely named temp file beside the target, fsynced, then renamed.

A reader sees the old file or the new one, never half of one; concurrent writers each
have their own temp file; a crash leaves at most a ``.NAME.*.tmp`` file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], object]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The mode an ordinary new file gets (mkstemp's own is 0600, which would hide a sweep's
# results and report from the collaborators the umask lets read them). Read once.
FILE_MODE = 0o666 & ~_umask()


def write_temp(directory: Path, prefix: str, write: Writer) -> Path:
    """Write through ``write(file)`` to a new, uniquely named temp file in ``directory``, fsynced."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{prefix}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, write: Writer) -> None:
    """Replace ``path`` atomically with what ``write(file)`` writes."""
    tmp = write_temp(path.parent, path.name, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
