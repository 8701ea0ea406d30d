import pytest
import torch


@pytest.fixture(autouse=True)
def _two_threads():
    # CI has 2 cores; keep runs comparable and deterministic.
    torch.set_num_threads(2)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FNO_DATA_CACHE", str(path))
    return path
