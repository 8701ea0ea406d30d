"""Small shared checks and digests: one place for each rule that several modules apply."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def canonical_json(value: Any, compact: bool = True, **dumps: Any) -> str:
    """``value`` as JSON with sorted keys (compact separators unless ``compact`` is False):
    the same text on every machine, for hashing."""
    separators = (",", ":") if compact else None
    return json.dumps(value, sort_keys=True, separators=separators, **dumps)


def sha256_hex(value: Any, compact: bool = True, **dumps: Any) -> str:
    """The SHA-256 hex digest of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value, compact, **dumps).encode()).hexdigest()


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) >= minimum, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``, else ValueError naming ``name`` and the choices."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def check_subset(values: Iterable[Any], name: str, allowed: Sequence[Any]) -> None:
    """ValueError naming ``name``, the values not in ``allowed`` and the choices, if any."""
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{name}: {bad} not allowed; choose from {', '.join(map(str, allowed))}")
