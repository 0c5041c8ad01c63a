"""Precision / recall / density / coverage against a brute-force float64 reference
(scipy cdist) and against known answers."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from genlab.errors import GenlabError
from genlab.metrics import _neighbours, density_coverage, prdc, precision_recall


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """Definitions of Kynkäänniemi et al. 2019 / Naeem et al. 2020 with closed balls, float64."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    np.fill_diagonal(d_rr, np.inf)  # a point is not its own neighbour
    np.fill_diagonal(d_ff, np.inf)
    r_real = np.sort(d_rr, 1)[:, k - 1]
    r_fake = np.sort(d_ff, 1)[:, k - 1]
    in_real_ball = d_rf <= r_real[:, None]
    return {
        "precision": in_real_ball.any(0).mean(),
        "recall": (d_rf <= r_fake[None, :]).any(1).mean(),
        "density": in_real_ball.sum() / (k * fake.shape[0]),
        "coverage": in_real_ball.any(1).mean(),
    }


def digits_pixels(digits):
    return digits.images.reshape(len(digits), -1).numpy()


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_equals_bruteforce_reference_on_random_data(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(400, 32))
    fake = rng.normal(size=(300, 32)) * 1.2 + 0.2
    got = prdc(real, fake, k)
    expected = reference_prdc(real, fake, k)
    assert got == {key: float(v) for key, v in expected.items()}  # exactly equal counts


def test_equals_reference_on_tied_integer_pixels(digits):
    """Integer pixels: many distances tie exactly with a radius; the float64 re-check decides them."""
    x = digits_pixels(digits)
    real, fake = x[:500], x[500:800]
    assert prdc(real, fake, 5) == {key: float(v) for key, v in reference_prdc(real, fake, 5).items()}


def test_exact_with_tiny_chunks_and_no_spare_candidates(monkeypatch):
    """Forces many chunks, the path that adds neighbours found in the rounding band, and
    small groups of doubtful pairs."""
    monkeypatch.setattr(_neighbours, "MEMORY_BUDGET_BYTES", 4096)
    monkeypatch.setattr(_neighbours, "EXTRA_CANDIDATES", 0)
    monkeypatch.setattr(_neighbours, "MAX_PAIRS_PER_GROUP", 7)
    rng = np.random.default_rng(0)
    real = rng.integers(0, 3, size=(150, 6)).astype(np.float32)  # heavy ties
    fake = rng.integers(0, 3, size=(120, 6)).astype(np.float32)
    assert prdc(real, fake, 4) == {key: float(v) for key, v in reference_prdc(real, fake, 4).items()}
    centres = rng.normal(size=(4, 6)) * 1e3  # float32 cannot order these neighbours at all
    real = centres[rng.integers(0, 4, 150)] + 1e-3 * rng.normal(size=(150, 6))
    fake = centres[rng.integers(0, 4, 120)] + 1e-3 * rng.normal(size=(120, 6))
    assert prdc(real, fake, 4) == {key: float(v) for key, v in reference_prdc(real, fake, 4).items()}


def test_set_against_itself():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16))
    k = 5
    got = prdc(x, x, k)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    # each closed ball holds its centre and its k neighbours: density = (k + 1) / k
    assert got["density"] == pytest.approx((k + 1) / k, rel=1e-12)


def test_independent_samples_of_one_distribution():
    """E[density] = 1 and E[coverage] = 1 - Π_{i=1..k} (N - i) / (N + M - i) (Naeem et al. 2020, Lemma 1-2)."""
    n = m = 800
    k = 5
    expected_coverage = 1 - np.prod([(n - i) / (n + m - i) for i in range(1, k + 1)])
    results = [
        prdc(np.random.default_rng(s).normal(size=(n, 8)), np.random.default_rng(s + 100).normal(size=(m, 8)), k)
        for s in range(3)
    ]
    assert np.mean([r["density"] for r in results]) == pytest.approx(1.0, abs=0.05)
    assert np.mean([r["coverage"] for r in results]) == pytest.approx(expected_coverage, abs=0.015)


def test_far_away_set_scores_zero():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(200, 8))
    fake = rng.normal(size=(200, 8)) + 100.0
    assert prdc(real, fake, 5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_half_the_modes():
    """Fakes from 2 of 4 well-separated clusters: precise, but recall and coverage ~0.5."""
    rng = np.random.default_rng(3)
    centres = np.zeros((4, 8))
    centres[np.arange(4), np.arange(4)] = 30.0
    real = np.concatenate([c + rng.normal(size=(200, 8)) for c in centres])
    fake = np.concatenate([c + rng.normal(size=(200, 8)) for c in centres[:2]])
    got = prdc(real, fake, 5)
    assert got["precision"] > 0.9
    assert got["recall"] == pytest.approx(0.5, abs=0.05)
    assert got["coverage"] == pytest.approx(0.5, abs=0.05)
    assert got["density"] == pytest.approx(1.0, abs=0.15)


def test_partial_functions_agree_with_prdc():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(150, 10)), rng.normal(size=(120, 10))
    both = prdc(real, fake, 3)
    assert precision_recall(real, fake, 3) == {"precision": both["precision"], "recall": both["recall"]}
    assert density_coverage(real, fake, 3) == {"density": both["density"], "coverage": both["coverage"]}
    # density/coverage need no fake radii, so a handful of fakes is enough
    assert set(density_coverage(real, fake[:2], 3)) == {"density", "coverage"}


def test_torch_and_float32_inputs():
    rng = np.random.default_rng(5)
    real = rng.random((200, 784), dtype=np.float32) ** 4
    fake = rng.random((150, 784), dtype=np.float32) ** 4
    expected = {key: float(v) for key, v in reference_prdc(real, fake, 5).items()}
    assert prdc(torch.from_numpy(real), torch.from_numpy(fake), 5) == expected


@pytest.mark.parametrize(
    "real, fake, k, match",
    [
        (np.ones((5, 3)), np.ones((10, 3)), 5, "real: 5 rows, need at least 6"),
        (np.ones((10, 3)), np.ones((10, 4)), 2, "fake: 4 features"),
        (np.ones((10, 3)), np.ones((10, 3)), 0, "k=0"),
        (np.ones((10, 3)), np.ones((10, 3)), 2.5, "k=2.5"),
        (np.ones(10), np.ones((10, 3)), 2, "real: shape"),
    ],
)
def test_bad_input_names_the_argument(real, fake, k, match):
    with pytest.raises(GenlabError, match=match):
        prdc(real, fake, k)


def test_exact_where_float32_distances_are_useless():
    """Tight clusters (spread 1e-3) far from the origin (1e3): the float32 GEMM cannot
    order neighbours within a cluster, so every decision goes through the float64 band."""
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(8, 16)) * 1e3

    def draw(n):
        return centres[rng.integers(0, 8, n)] + 1e-3 * rng.normal(size=(n, 16))

    real, fake = draw(240), draw(200)
    for k in (1, 5):
        assert prdc(real, fake, k) == {key: float(v) for key, v in reference_prdc(real, fake, k).items()}


def test_values_too_large_for_float32_are_refused():
    rng = np.random.default_rng(7)
    with pytest.raises(GenlabError, match="fake: values too large"):
        prdc(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)) * 1e25, 3)
