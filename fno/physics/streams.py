"""Counter-based random numbers: sample ``i`` of a stream depends on (key, i) alone.

Every random draw of a dataset comes from SplitMix64 evaluated at a counter, so a
sample's draws do not depend on how many samples are generated, in which chunks,
or on which device. That one property gives three of the data layer's guarantees
at once:

- the first N samples of a set are the same whatever N is (subsets nest);
- chunked generation is identical to one-shot generation;
- splits are disjoint by construction: each split owns its own index range.

Layout: sample ``i`` owns the ``SLOTS_PER_SAMPLE`` consecutive counters
``i * SLOTS_PER_SAMPLE + slot``; each kind of draw has a fixed slot (see ``Slot``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fno.checks import sha256_hex

SLOTS_PER_SAMPLE = 1024
# Index ranges owned by each split: sample i of split s is global index offset[s] + i.
SPLIT_OFFSET = {"train": 0, "val": 1 << 40, "test": 2 << 40}
MAX_SAMPLES_PER_SPLIT = 1 << 40

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


class Slot:
    """Fixed counter slots of one sample (all < SLOTS_PER_SAMPLE)."""

    BUMPS = 0  # 144 slots: one uniform per Gaussian bump (void test and amplitude)
    THETA = 144  # rotation angle of the diffusion tensor
    EIGENVALUE = 145  # second eigenvalue e of the diffusion tensor
    VELOCITY_ANGLE = 146  # direction of the unit advection velocity
    RATIO = 147  # target advection-to-diffusion ratio psi
    OMEGA = 256  # first of MAX_OMEGA_DRAWS slots: Helmholtz omega, redraw r uses OMEGA + r
    MAX_OMEGA_DRAWS = SLOTS_PER_SAMPLE - 256


def stream_key(fields: dict[str, Any]) -> int:
    """A 64-bit stream key from a JSON-able description (SHA-256, stable across machines)."""
    return int.from_bytes(bytes.fromhex(sha256_hex(fields))[:8], "little")


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def uniforms(key: int, sample_index: np.ndarray, slots: np.ndarray | int) -> np.ndarray:
    """Uniform draws in [0, 1), float64, of shape (len(sample_index), len(slots)).

    ``sample_index`` holds global indices (split offset already added); ``slots`` are
    counter slots within a sample. An int ``slots`` gives shape (len(sample_index),).
    """
    scalar = np.ndim(slots) == 0
    idx = np.asarray(sample_index, dtype=np.uint64)[:, None]
    slot = np.atleast_1d(np.asarray(slots, dtype=np.uint64))[None, :]
    with np.errstate(over="ignore"):
        counter = idx * np.uint64(SLOTS_PER_SAMPLE) + slot + np.uint64(1)
        bits = _splitmix64(np.uint64(key) + counter * _GAMMA)
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return u[:, 0] if scalar else u
