"""Intrinsic dimension: the exact estimator formula, known dimensions, and the
lecture's point that real images use far fewer dimensions than noise."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from genlab.errors import GenlabError
from genlab.metrics import intrinsic_dimension_report, mle_intrinsic_dimension, pca_dimension


def reference_mle(x: np.ndarray, k: int) -> float:
    """Levina–Bickel per point, averaged as MacKay–Ghahramani (mean of inverses), float64."""
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    t = np.sort(d, 1)[:, :k]
    inverse = np.log(t[:, -1:] / t[:, :-1]).sum(1) / (k - 1)
    return 1.0 / inverse.mean()


def on_subspace(rng, n, d, ambient):
    """n Gaussian points on a random d-dimensional affine subspace of R^ambient."""
    basis, _ = np.linalg.qr(rng.normal(size=(ambient, d)))
    return rng.normal(size=(n, d)) @ basis.T + rng.normal(size=ambient)


def test_mle_matches_formula():
    x = np.random.default_rng(0).normal(size=(300, 7))
    for k in (2, 5, 20):
        assert mle_intrinsic_dimension(x, k) == pytest.approx(reference_mle(x, k), rel=1e-10)


def test_pca_matches_sklearn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 30)) * np.linspace(0.1, 3, 30)
    for share in (0.5, 0.8, 0.95, 0.99):
        assert pca_dimension(x, share) == PCA(n_components=share, svd_solver="full").fit(x).n_components_


@pytest.mark.parametrize("ambient", [64, 784])
@pytest.mark.parametrize("d", [2, 5, 10])
def test_linear_subspace_dimension_is_recovered(d, ambient):
    x = on_subspace(np.random.default_rng(d), 1500, d, ambient)
    assert mle_intrinsic_dimension(x, k=20) == pytest.approx(d, rel=0.15)
    assert pca_dimension(x, 0.95) == pytest.approx(d, rel=0.15)


def test_isotropic_gaussian_in_20_dimensions():
    """PCA needs 19-20 components for 95 %; the MLE is biased low in 20-d (measured ~15 at N = 2000)."""
    x = np.random.default_rng(2).normal(size=(2000, 20))
    assert 14.0 <= mle_intrinsic_dimension(x, k=20) <= 20.0
    assert pca_dimension(x, 0.95) in (19, 20)


def test_digits_use_far_fewer_dimensions_than_noise(digits):
    pixels = digits.images.reshape(len(digits), -1).numpy() / 255.0
    noise = np.random.default_rng(3).random(pixels.shape)
    real = intrinsic_dimension_report(pixels)
    uniform = intrinsic_dimension_report(noise)
    assert real["ambient_dimension"] == uniform["ambient_dimension"] == 64
    # measured: digits MLE ~7, PCA 29; uniform MLE ~32, PCA 60
    assert real["mle"] < 12 and uniform["mle"] > 25
    assert real["mle"] * 2.5 < uniform["mle"]
    assert real["pca"] < 35 and uniform["pca"] > 55


def test_duplicates_are_dropped_not_infinite():
    x = np.random.default_rng(4).normal(size=(300, 5))
    tripled = np.concatenate([x, x, x])
    with np.errstate(divide="ignore"):
        assert reference_mle(tripled, 5) == 0.0  # the naive formula collapses: log(T_k / 0) = inf
    report = intrinsic_dimension_report(tripled, k=5)
    assert report["n_duplicates"] == 600
    assert np.isfinite(report["mle"])
    assert report["mle"] == pytest.approx(reference_mle(x, 5), rel=1e-10)


def test_subsample_is_seeded_and_bounded():
    x = on_subspace(np.random.default_rng(5), 3000, 3, 16)
    a = intrinsic_dimension_report(x, max_samples=500, random_state=1)
    b = intrinsic_dimension_report(x, max_samples=500, random_state=1)
    c = intrinsic_dimension_report(x, max_samples=500, random_state=2)
    assert a == b and a["n_used"] == 500 and a["n_rows"] == 3000
    assert a["mle"] != c["mle"]
    assert a["mle"] == pytest.approx(3, rel=0.15)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mle_intrinsic_dimension(np.ones((30, 4)), k=5), "X: 1 distinct rows"),
        (lambda: mle_intrinsic_dimension(np.random.rand(30, 4), k=1), "k=1"),
        (lambda: pca_dimension(np.random.rand(30, 4), variance=1.5), "variance=1.5"),
        (lambda: pca_dimension(np.random.rand(30), variance=0.9), "X: shape"),
        (lambda: mle_intrinsic_dimension(np.random.rand(30, 4), max_samples=1), "max_samples=1"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(GenlabError, match=match):
        call()
