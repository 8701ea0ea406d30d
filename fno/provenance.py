"""Which code produced a result: the package version, a digest of the three packages'
sources, the git commit where they come from a checkout, and the library versions.

The digest is of the code that ran (every ``.py`` and ``.toml`` file of ``fno``,
``fno_sweeps`` and ``fno_analysis`` as imported, by relative path), so a wheel, an
editable checkout and the copies Ray ships to workers give the same digest for the
same code, and a sweep whose rows carry two digests ran two versions of it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import subprocess
from pathlib import Path

from fno import __version__

PACKAGES = ("fno", "fno_sweeps", "fno_analysis")
SOURCE_SUFFIXES = (".py", ".toml")


def package_folders() -> dict[str, Path]:
    """The folder each of the three packages is imported from (those importable here),
    found without importing them (fno_sweeps would import Ray)."""
    folders = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders[name] = Path(next(iter(spec.submodule_search_locations))).resolve()
    return folders


def _add_sources(digest, folder: Path, prefix: str = "") -> None:
    """Feed ``digest`` every source file below ``folder``, each as its relative path (after
    ``prefix``) and its bytes, in sorted order."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()):
        digest.update(f"{prefix}{path.relative_to(folder).as_posix()}\n".encode())
        digest.update(path.read_bytes())


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 (hex, 16 characters) of the packages' source files, by import name and relative path."""
    digest = hashlib.sha256()
    for name, folder in sorted(package_folders().items()):
        _add_sources(digest, folder, f"{name}/")
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def package_digest(name: str = "fno") -> str:
    """SHA-256 (hex, 16 characters) of one package's source files ("" where it is not
    importable): ``fno`` alone is the code a training step runs."""
    folder = package_folders().get(name)
    return _folder_digest(folder)[:16] if folder is not None else ""


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit where ``fno`` is imported from a git checkout ("-dirty"
    appended when the packages' files differ from it); "" otherwise (a wheel, a worker's copy)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return ""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "fno",
                "sweeps",
                "analysis",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git on this machine, or not a repository after all
        return ""
    return commit + ("-dirty" if status else "")


def code_version() -> str:
    """'0.1.0+<source digest>': the package version and the code's digest."""
    return f"{__version__}+{source_digest()}"


def library_versions() -> dict[str, str]:
    """torch's version and the CUDA version it was built with ("" for a CPU build)."""
    import torch

    return {"torch_version": torch.__version__, "cuda_version": torch.version.cuda or ""}


CHECKOUT_FOLDERS = {"fno": "fno", "fno_sweeps": "sweeps", "fno_analysis": "analysis"}  # import name -> folder


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    _add_sources(digest, folder)
    return digest.hexdigest()


def check_one_source() -> None:
    """Refuse a mixture of the three packages from different versions of the code (say
    ``fno`` from a submitted working directory and ``fno_sweeps`` from an installed wheel
    of other code). Packages imported from different places pass only where the copy
    beside ``fno_sweeps`` (its install or checkout) holds the same sources."""
    folders = package_folders()
    if "fno_sweeps" not in folders:
        return
    home = folders["fno_sweeps"].parent
    for name, folder in folders.items():
        if folder.parent == home:
            continue
        candidates = [home / name, home / CHECKOUT_FOLDERS[name]]
        twin = next((c for c in candidates if (c / "__init__.py").is_file()), None)
        if twin is not None and _folder_digest(twin) == _folder_digest(folder):
            continue  # the same code in two places (a Ray Job's working directory of this checkout)
        where = ", ".join(f"{n} from {f}" for n, f in folders.items())
        raise RuntimeError(
            f"the packages come from different places with different code ({where}): a sweep would run a "
            "mixture of code versions. Install the project once (pip install .) or run from one checkout, and do "
            "not put another version on the import path (e.g. a Ray Job's --working-dir holding other code)"
        )
