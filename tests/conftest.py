import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory):
    """Keep every test's data cache out of the user's home folder."""
    previous = os.environ.get("FNO_DATA_CACHE")
    os.environ["FNO_DATA_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))
    yield
    if previous is None:
        os.environ.pop("FNO_DATA_CACHE", None)
    else:
        os.environ["FNO_DATA_CACHE"] = previous


@pytest.fixture(autouse=True)
def _two_threads():
    # CI has 2 cores; keep runs comparable and deterministic.
    torch.set_num_threads(2)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh, empty cache for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("FNO_DATA_CACHE", str(path))
    return path
