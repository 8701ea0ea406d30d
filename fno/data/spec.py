"""``DatasetSpec``: what defines a dataset, validated; its random stream and cache key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fno.checks import check_choice, check_int, sha256_hex
from fno.config import check_known_fields
from fno.physics import families
from fno.physics.families import CHANNELS, FAMILIES, PRETRAIN_RANGE, SINGLE_FAMILIES, UNION_CHANNELS
from fno.physics.streams import MAX_SAMPLES_PER_SPLIT, SPLIT_OFFSET

DATA_VERSION = 1  # bump when generated values change; part of every cache key
CACHE_FORMAT = 2  # raw arrays in one file, laid out by the manifest; part of every cache key
SPLITS = tuple(SPLIT_OFFSET)
CHANNEL_LAYOUTS = ("native", "union")
MIN_RESOLUTION = 16

Range = tuple[float, float]


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
        check_choice(self.family, "family", FAMILIES)
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
        check_int(self.n_samples, "n_samples", 1)
        if self.n_samples > MAX_SAMPLES_PER_SPLIT:
            raise ValueError(f"n_samples must be <= {MAX_SAMPLES_PER_SPLIT}, got {self.n_samples}")
        check_int(self.resolution, "resolution", MIN_RESOLUTION)
        if self.resolution % 2:
            raise ValueError(f"resolution must be even and >= {MIN_RESOLUTION}, got {self.resolution}")
        check_int(self.seed, "seed", 0)
        check_choice(self.split, "split", SPLITS)
        check_choice(self.channels, "channels", CHANNEL_LAYOUTS)

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
        return f"{self.family}-n{self.resolution}-{self.split}-" + sha256_hex(fields)[:20]

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
