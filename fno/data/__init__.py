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

A user's own dataset (HDF5, NumPy, PyTorch files) is described by an
``ExternalDataset`` (a preset's ``[datasets.NAME]``), checked and digested by
``check_external`` before any training, and read a split at a time by ``load_split``,
as the same ``Fields`` with channel axes (docs/data.md, "Your own data").

CLI: ``python -m fno.data generate ...`` writes a dataset folder; ``python -m fno.data
check DIR`` re-verifies the PDE residuals of one; ``python -m fno.data inspect PATH``
describes a dataset file and runs a sweep's checks on it.

Modules, one job each: ``spec`` (DatasetSpec), ``generation``, ``cache`` (the node-local
cache), ``normalization``, ``external`` (user datasets), ``readers`` (their file formats),
``cli``; the batch type, ``Fields``, is ``fno.physics.fields.Fields``. Everything public is
importable from ``fno.data``.
"""

from fno.data.cache import CACHE_ENV, CorruptCacheError, default_cache_dir, load, load_fields
from fno.data.cli import check_dataset, main
from fno.data.external import DatasetError, ExternalDataset, Plan, load_split
from fno.data.external import check as check_external
from fno.data.generation import default_chunk_size, generate, generate_fields, iter_chunks
from fno.data.normalization import Normalization
from fno.data.spec import CHANNEL_LAYOUTS, DATA_VERSION, MIN_RESOLUTION, SPLITS, DatasetSpec
from fno.physics.fields import Fields

__all__ = [
    "CACHE_ENV",
    "CHANNEL_LAYOUTS",
    "DATA_VERSION",
    "MIN_RESOLUTION",
    "SPLITS",
    "CorruptCacheError",
    "DatasetError",
    "DatasetSpec",
    "ExternalDataset",
    "Fields",
    "Normalization",
    "Plan",
    "check_dataset",
    "check_external",
    "default_cache_dir",
    "default_chunk_size",
    "generate",
    "generate_fields",
    "iter_chunks",
    "load",
    "load_fields",
    "load_split",
    "main",
]
