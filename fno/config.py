"""TOML reading for configs: parsed, never evaluated."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; a syntax error names the file."""
    with open(path, "rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: invalid TOML: {err}") from err


def parse_value(text: str) -> Any:
    """A command-line override's value as a TOML value (number, boolean, array, string);
    text that is not a TOML value is taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (from ``--set``) as a dict; a malformed item is an error."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def check_known_fields(cls: type, data: Mapping[str, Any], label: str) -> None:
    """Refuse keys of ``data`` that are not fields of the dataclass ``cls``, naming both sets."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {label} fields {unknown}; allowed: {sorted(known)}")
