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


@pytest.fixture(scope="session")
def zeros_and_ones(digits):
    """The digits 0 and 1 with their automatic captions: (images, labels, captions)."""
    from genlab.text import auto_captions

    keep = digits.labels < 2
    captions = [c for c, k in zip(auto_captions(digits), keep.tolist()) if k]
    return digits.images[keep], digits.labels[keep], captions


def own_and_swapped_caption_losses(model, zeros_and_ones) -> tuple[float, float]:
    """Training loss of a text-conditional U-Net model (no caption dropout) on every third
    0/1 digit with its own caption and with a caption naming the other digit, summed over
    six fixed seeds (same images, times and noise for both)."""
    X, y, captions = zeros_and_ones
    idx = torch.arange(0, len(X), 3)[:96]
    own = model.encode_prompts([captions[i] for i in idx.tolist()], len(idx))
    swapped = model.encode_prompts(
        ["a handwritten one" if y[i] == 0 else "a handwritten zero" for i in idx.tolist()], len(idx)
    )
    net = model.network_
    net.label_dropout = 0.0

    def loss(cond):
        total = 0.0
        for seed in range(6):
            torch.manual_seed(seed)
            with torch.no_grad():
                total += float(net({"images": X[idx], "cond": cond})[0])
        return total

    return loss(own), loss(swapped)


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path
