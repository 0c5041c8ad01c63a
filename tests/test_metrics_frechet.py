"""Fréchet distance against the classic pytorch-fid formula (scipy.linalg.sqrtm, float64)
and against analytic answers."""

import warnings

import numpy as np
import pytest
import torch
from scipy import linalg

from genlab.errors import GenlabError
from genlab.metrics import frechet_distance, frechet_distance_from_statistics, gaussian_statistics


def sqrtm_reference(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's calculate_frechet_distance, in float64 (written out here, not imported)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on singular products
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def correlated(rng, n, f, scale=0.3):
    return rng.normal(size=(n, f)) @ rng.normal(size=(f, f)) * scale + rng.normal(size=f)


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    x = correlated(rng, 300, 12)
    mean, cov = gaussian_statistics(torch.from_numpy(x))
    assert mean.dtype == np.float64 and cov.shape == (12, 12)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_a, n_b", [(600, 500), (40, 30), (20, 50)], ids=["N>F", "N<F", "N<<F"])
def test_matches_sqrtm_reference(n_a, n_b):
    """F = 64; N < F makes both covariances singular (rank N - 1)."""
    worst = 0.0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        a = correlated(rng, n_a, 64)
        b = rng.normal(size=(n_b, 64)) * rng.uniform(0.5, 2.0, size=64)
        mu_a, sigma_a = np.mean(a, 0), np.cov(a, rowvar=False)
        mu_b, sigma_b = np.mean(b, 0), np.cov(b, rowvar=False)
        reference = sqrtm_reference(mu_a, sigma_a, mu_b, sigma_b)
        got = frechet_distance(a, b)
        worst = max(worst, abs(got - reference) / reference)
    # Well-conditioned cases agree to ~1e-12; singular ones to ~1e-8: the trace of a
    # square root is ill-conditioned at eigenvalues ~0, whichever method is used.
    assert worst < 1e-6


def test_set_against_itself_is_zero():
    rng = np.random.default_rng(1)
    for n in (500, 30):
        x = correlated(rng, n, 64)
        _, sigma = gaussian_statistics(x)
        fd = frechet_distance(x, x)
        assert 0.0 <= fd < 1e-6 * np.trace(sigma)


def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(32, 32))
    sigma = a @ a.T + 0.1 * np.eye(32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance_from_statistics(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-9)


def test_analytic_value_for_commuting_covariances():
    """Diagonal covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = Σ (sqrt(s1) - sqrt(s2))²."""
    rng = np.random.default_rng(3)
    s1, s2 = rng.uniform(0.1, 4, size=20), rng.uniform(0.1, 4, size=20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance_from_statistics(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_large_sample_estimate_of_a_known_pair():
    rng = np.random.default_rng(4)
    shift = np.full(4, 0.5)
    a, b = rng.normal(size=(50_000, 4)), rng.normal(size=(50_000, 4)) + shift
    # ‖Δμ‖² = 1; sampling error of the estimate is ~ a few 1e-2 here
    assert frechet_distance(a, b) == pytest.approx(1.0, abs=0.05)


def test_symmetric():
    rng = np.random.default_rng(5)
    a, b = correlated(rng, 200, 16), rng.normal(size=(150, 16))
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)


def test_float32_torch_input_agrees_with_float64():
    rng = np.random.default_rng(6)
    a, b = correlated(rng, 400, 16), rng.normal(size=(300, 16))
    got = frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert got == pytest.approx(frechet_distance(a, b), rel=1e-5)


def test_clipped_at_zero_and_returns_float():
    sigma = np.eye(3)
    value = frechet_distance_from_statistics(np.zeros(3), sigma, np.zeros(3), sigma * (1 + 1e-15))
    assert isinstance(value, float) and value >= 0.0


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((10, 3, 2)), np.zeros((10, 6)), "features_a: shape"),
        (np.ones((1, 4)), np.ones((5, 4)), "features_a: 1 rows"),
        (np.ones((5, 4)), np.ones((5, 3)), "features_b: 3 features"),
        (np.ones((5, 4)), np.full((5, 4), np.nan), "features_b: 5 rows hold NaN"),
        ("abc", np.ones((5, 4)), "features_a"),
    ],
)
def test_bad_features_name_the_argument(a, b, match):
    with pytest.raises(GenlabError, match=match):
        frechet_distance(a, b)


def test_bad_statistics_name_the_argument():
    with pytest.raises(GenlabError, match="sigma2: dimension 2"):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(GenlabError, match="sigma1: shape"):
        frechet_distance_from_statistics(np.zeros(3), np.zeros((3, 2)), np.zeros(3), np.eye(3))
    with pytest.raises(GenlabError, match="mu2: holds NaN"):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.array([0, np.inf, 0]), np.eye(3))
