import os
import warnings
from pathlib import Path

import pytest
import torch

import genlab
from genlab.progress import set_quiet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

set_quiet(True)
# GENLAB_TEST_THREADS=1 on a machine shared with other jobs: two OpenMP threads competing for
# busy cores can make small convolutions tens of times slower
torch.set_num_threads(int(os.environ.get("GENLAB_TEST_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def digits():
    return genlab.load_dataset("digits")


@pytest.fixture(scope="session")
def digits_split(digits):
    return digits.split(0.2, 0)


@pytest.fixture(scope="session")
def tiny_images(digits):
    """120 digits, (120, 1, 8, 8) uint8, as a NumPy array (what scikit-learn tools index)."""
    return digits.images[:120].numpy()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's download cache from a test."""
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "cache"))


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path
