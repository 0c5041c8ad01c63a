"""The latent divergences against independent float64 references (brute force loops,
SciPy's 1-D Wasserstein distance and optimal assignment, the exact ₁F₁ form of φ_D and a
numerical integral of the Cramér–Wold definition), and their behaviour on prior samples."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import hyp1f1
from scipy.stats import wasserstein_distance

from genlab import GenlabError
from genlab.divergences import (
    IMQ_SCALES,
    cramer_wold_normality,
    mmd_imq,
    pairwise_sq_distances,
    phi_d,
    random_directions,
    silverman_gamma,
    sliced_wasserstein,
)


def mmd_brute_force(x, y, scales=IMQ_SCALES):
    """Tolstikhin et al.'s unbiased estimator, one pair at a time, float64."""
    n, d = x.shape
    m = y.shape[0]
    cs = [2.0 * d * s for s in scales]

    def k(a, b):
        r = float(np.sum((a - b) ** 2))
        return sum(c / (c + r) for c in cs)

    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def cw_exact(z, gamma):
    """The CWAE closed form with the exact φ_D(s) = ₁F₁(1/2; D/2; -s), float64 NumPy."""
    n, d = z.shape
    phi = lambda s: hyp1f1(0.5, d / 2.0, -s)  # noqa: E731
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    pair = phi(d2 / (4 * gamma)).sum() / (2 * n * n * math.sqrt(math.pi * gamma))
    prior = 1 / (2 * math.sqrt(math.pi * (1 + gamma)))
    cross = phi((z**2).sum(1) / (2 + 4 * gamma)).sum() / (n * math.sqrt(math.pi * (gamma + 0.5)))
    return pair + prior - cross


def cw_by_definition(z, gamma, n_directions=3000, seed=0):
    """The definition: average over random unit directions v of ∫ (f_v - g)² dx, where f_v is
    the projected sample smoothed with N(0, γ) and g = N(0, 1) smoothed = N(0, 1 + γ);
    the 1-D integral by the trapezoid rule."""
    rng = np.random.default_rng(seed)
    n, d = z.shape
    v = rng.standard_normal((n_directions, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    proj = z @ v.T  # (n, L)
    grid = np.linspace(-12, 12, 2401)
    total = 0.0
    for j in range(n_directions):
        f = np.exp(-((grid[:, None] - proj[None, :, j]) ** 2) / (2 * gamma)).mean(1) / math.sqrt(2 * math.pi * gamma)
        g = np.exp(-(grid**2) / (2 * (1 + gamma))) / math.sqrt(2 * math.pi * (1 + gamma))
        total += np.trapezoid((f - g) ** 2, grid)
    return total / n_directions


def test_pairwise_sq_distances_match_a_loop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g) + 100.0, torch.randn(5, 3, generator=g) + 100.0
    ref = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)
    torch.testing.assert_close(pairwise_sq_distances(x, y).double(), ref, rtol=1e-4, atol=1e-3)


def test_mmd_matches_brute_force_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 4)) + 0.3, rng.standard_normal((9, 4))
    got = float(mmd_imq(torch.from_numpy(x), torch.from_numpy(y)))
    assert got == pytest.approx(mmd_brute_force(x, y), rel=1e-10, abs=1e-12)
    got32 = float(mmd_imq(torch.from_numpy(x).float(), torch.from_numpy(y).float()))
    assert got32 == pytest.approx(mmd_brute_force(x, y), abs=1e-5)


def test_mmd_is_about_zero_on_prior_samples_and_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(1)
    prior = lambda: torch.randn(400, 8, generator=g)  # noqa: E731
    values = [float(mmd_imq(prior() + shift, prior())) for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.01
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] > 20 * abs(values[0])


def test_sliced_wasserstein_in_one_dimension_is_scipys_wasserstein_distance():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(50), rng.gamma(2.0, size=50)
    one = torch.ones(1, 1, dtype=torch.float64)
    w1 = float(sliced_wasserstein(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None], p=1, directions=one))
    assert w1 == pytest.approx(wasserstein_distance(x, y), rel=1e-12)
    # W2² of equal-size samples: the optimal assignment of squared costs (Hungarian algorithm)
    w2 = float(sliced_wasserstein(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None], p=2, directions=one))
    cost = (x[:, None] - y[None, :]) ** 2
    rows, cols = linear_sum_assignment(cost)
    assert w2 == pytest.approx(cost[rows, cols].mean(), rel=1e-12)


def test_sliced_wasserstein_averages_optimal_couplings_over_the_given_directions():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) * 1.5
    dirs = random_directions(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = float(sliced_wasserstein(torch.from_numpy(x), torch.from_numpy(y), directions=dirs, p=2))
    ref = []
    for v in dirs.numpy():
        cost = (x @ v)[:, None] - (y @ v)[None, :]
        r, c = linear_sum_assignment(cost**2)
        ref.append((cost[r, c] ** 2).mean())
    assert got == pytest.approx(np.mean(ref), rel=1e-10)
    np.testing.assert_allclose(dirs.norm(dim=1).numpy(), 1.0, rtol=1e-12)


def test_sliced_wasserstein_is_small_on_prior_samples_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(4)
    vals = [
        float(
            sliced_wasserstein(
                torch.randn(512, 8, generator=g) + s, torch.randn(512, 8, generator=g), n_projections=200, generator=g
            )
        )
        for s in (0.0, 0.5, 1.0, 2.0)
    ]
    assert vals[0] < 0.02
    assert all(a < b for a, b in zip(vals, vals[1:]))


def test_silverman_gamma():
    assert silverman_gamma(64) == pytest.approx((4 / (3 * 64)) ** 0.4)
    with pytest.raises(GenlabError, match="n=0"):
        silverman_gamma(0)


@pytest.mark.parametrize("d", [20, 64])
def test_phi_d_approximation_error_is_small_for_moderate_d(d):
    s = np.concatenate([np.linspace(0, 5, 51), np.geomspace(5, 500, 30)])
    exact = hyp1f1(0.5, d / 2.0, -s)
    approx = phi_d(torch.from_numpy(s), d).numpy()
    assert approx[0] == 1.0
    err = np.max(np.abs(approx - exact))
    assert err < (0.01 if d == 20 else 0.003)


def test_cw_closed_form_with_exact_phi_matches_the_definition():
    """Independent check of the formula (constants included): numerically integrate the
    Cramér–Wold definition over random projections in D = 3."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((15, 3)) * 0.8 + 0.4
    gamma = silverman_gamma(15)
    by_definition = cw_by_definition(z, gamma)
    assert cw_exact(z, gamma) == pytest.approx(by_definition, rel=0.03)


def cw_numpy(z, gamma, phi):
    n, d = z.shape
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    pair = phi(d2 / (4 * gamma), d).sum() / (2 * n * n * math.sqrt(math.pi * gamma))
    cross = phi((z**2).sum(1) / (2 + 4 * gamma), d).sum() / (n * math.sqrt(math.pi * (gamma + 0.5)))
    return pair + 1 / (2 * math.sqrt(math.pi * (1 + gamma))) - cross


def test_cw_torch_implements_the_closed_form_with_the_papers_phi():
    rng = np.random.default_rng(6)
    approx = lambda s, d: (1 + 4 * s / (2 * d - 3)) ** -0.5  # noqa: E731
    for d, shift in ((8, 0.0), (24, 1.0)):
        z = rng.standard_normal((50, d)) + shift
        ref = cw_numpy(z, silverman_gamma(50), approx)
        assert float(cramer_wold_normality(torch.from_numpy(z))) == pytest.approx(ref, rel=1e-10)
        assert float(cramer_wold_normality(torch.from_numpy(z).float())) == pytest.approx(ref, rel=1e-4)
        assert float(cramer_wold_normality(torch.from_numpy(z), gamma=0.3)) == pytest.approx(
            cw_numpy(z, 0.3, approx), rel=1e-10
        )


@pytest.mark.parametrize(("d", "max_offset"), [(24, 0.004), (64, 0.0015)])
def test_the_phi_approximation_shifts_the_distance_by_a_small_nearly_constant_offset(d, max_offset):
    """With the exact φ_D (₁F₁) the distance differs by a small positive offset that hardly
    depends on the sample, so the ordering of samples by distance to N(0, I) is kept."""
    rng = np.random.default_rng(6)
    gamma = silverman_gamma(64)
    pairs = []
    for shift in (0.0, 0.3, 1.0):
        z = rng.standard_normal((64, d)) + shift
        pairs.append((float(cramer_wold_normality(torch.from_numpy(z))), cw_exact(z, gamma)))
    offsets = [a - e for a, e in pairs]
    assert all(0 <= o < max_offset for o in offsets)
    assert [a for a, _ in pairs] == sorted(a for a, _ in pairs) and [e for _, e in pairs] == sorted(e for _, e in pairs)


def test_cw_is_about_zero_on_prior_samples_and_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(7)
    vals = [float(cramer_wold_normality(torch.randn(256, 16, generator=g) + s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert vals[0] < 0.01  # ~0.004 of it is the φ_D approximation's offset at D = 16
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert vals[2] > 10 * vals[0]


def test_divergences_are_differentiable_and_reject_bad_shapes():
    z = torch.randn(32, 4, requires_grad=True)
    total = mmd_imq(z, torch.randn(32, 4)) + sliced_wasserstein(z, torch.randn(32, 4)) + cramer_wold_normality(z)
    total.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(GenlabError, match="same d"):
        mmd_imq(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(GenlabError, match="same number of samples"):
        sliced_wasserstein(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(GenlabError, match=r"\(n, d\)"):
        cramer_wold_normality(torch.randn(4))
