"""Latent samplers: the prior, the ex-post Gaussian mixture (against scikit-learn), state round trips."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from genlab import GenlabError
from genlab.samplers import GaussianMixtureSampler, PriorSampler, make_latent_sampler, sampler_from_state


def clusters(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-4.0, 0.0, 1.0], [3.0, 3.0, -1.0], [2.0, -4.0, 0.0]])
    weights = np.array([0.5, 0.3, 0.2])
    idx = rng.choice(3, size=n, p=weights)
    scales = np.array([0.5, 1.0, 0.7])
    return (centres[idx] + rng.standard_normal((n, 3)) * scales[idx, None]).astype(np.float32), centres, weights


def test_prior_sampler_draws_standard_normal_codes_and_scores_them_exactly():
    s = PriorSampler().fit(torch.zeros(5, 4))
    a, b = s.sample(3000, torch.Generator().manual_seed(1)), s.sample(3000, torch.Generator().manual_seed(1))
    assert a.shape == (3000, 4) and torch.equal(a, b)
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1) < 0.05
    z = np.random.default_rng(0).standard_normal((6, 4))
    np.testing.assert_allclose(
        s.log_prob(torch.from_numpy(z)).numpy(), multivariate_normal(np.zeros(4), np.eye(4)).logpdf(z), rtol=1e-12
    )


def test_gmm_sampler_recovers_a_mixture_like_scikit_learn():
    X, centres, weights = clusters()
    s = GaussianMixtureSampler(n_components=3, reg_covar=1e-6).fit(torch.from_numpy(X))
    sk = SkGaussianMixture(3, reg_covar=1e-6, random_state=0).fit(X)
    order, sk_order = np.argsort(s.means_[:, 0].numpy()), np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(s.means_.numpy()[order], sk.means_[sk_order], atol=1e-3)
    np.testing.assert_allclose(s.weights_.numpy()[order], sk.weights_[sk_order], atol=1e-3)
    np.testing.assert_allclose(s.covariances_.numpy()[order], sk.covariances_[sk_order], atol=1e-3)
    assert float(s.log_prob(torch.from_numpy(X)).mean()) == pytest.approx(sk.score(X), abs=1e-3)
    # and the truth, roughly
    np.testing.assert_allclose(np.sort(s.weights_.numpy()), np.sort(weights), atol=0.05)


def test_gmm_sampler_samples_follow_the_fitted_mixture():
    X, _, _ = clusters(2000)
    s = GaussianMixtureSampler(n_components=3).fit(torch.from_numpy(X))
    z = s.sample(20000, torch.Generator().manual_seed(0))
    assert z.dtype == torch.float32 and z.shape == (20000, 3)
    model_mean = (s.weights_[:, None] * s.means_).sum(0)
    np.testing.assert_allclose(z.mean(0).numpy(), model_mean.numpy(), atol=0.06)
    assert torch.equal(z[:10], s.sample(20000, torch.Generator().manual_seed(0))[:10])


def test_state_round_trip_gives_the_same_sampler():
    X, _, _ = clusters()
    for sampler in (GaussianMixtureSampler(n_components=2, covariance_type="diag"), PriorSampler()):
        sampler.fit(torch.from_numpy(X))
        state = sampler.get_state()
        assert state["kind"] == sampler.kind
        again = sampler_from_state(state)
        assert type(again) is type(sampler) and again.get_params() == sampler.get_params()
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert torch.equal(again.sample(50, g1), sampler.sample(50, g2))
        torch.testing.assert_close(again.log_prob(torch.from_numpy(X[:20])), sampler.log_prob(torch.from_numpy(X[:20])))


def test_bad_settings_and_inputs_raise_clear_errors():
    with pytest.raises(GenlabError, match="latent_sampler='flow'"):
        make_latent_sampler("flow")
    with pytest.raises(GenlabError, match="latent_components=50 is larger than the number of codes"):
        GaussianMixtureSampler(n_components=50).fit(torch.randn(20, 2))
    with pytest.raises(GenlabError, match="latent_components=0"):
        GaussianMixtureSampler(n_components=0).fit(torch.randn(20, 2))
    with pytest.raises(GenlabError, match="not fitted"):
        GaussianMixtureSampler().sample(3)
    with pytest.raises(GenlabError, match=r"\(N, d\)"):
        PriorSampler().fit(torch.randn(5))
    with pytest.raises(GenlabError, match="NaN"):
        PriorSampler().fit(torch.tensor([[0.0, float("nan")]]))
    s = PriorSampler().fit(torch.zeros(3, 2))
    with pytest.raises(GenlabError, match="dimension 3"):
        s.log_prob(torch.zeros(1, 3))
    with pytest.raises(GenlabError, match="expected a dict"):
        sampler_from_state({"kind": "gmm"})


def test_class_conditional_sampler_draws_each_class_from_its_own_codes():
    X, centres, _ = clusters(900)
    # label each code by its nearest centre; class 3 is never seen (falls back to all codes)
    labels = torch.from_numpy(np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), 1))
    s = make_latent_sampler("per_class", base="gmm", n_components=6).fit(torch.from_numpy(X), labels)
    assert s.kind == "per_class" and s.n_classes_ == 3
    assert [sampler_from_state(st).n_components for st in s.classes_] == [
        max(1, round(6 * int((labels == c).sum()) / 900)) for c in range(3)
    ]
    want = torch.tensor([0, 1, 2, 1, 0] * 200)
    z = s.sample(1000, torch.Generator().manual_seed(0), labels=want)
    for c in range(3):
        np.testing.assert_allclose(z[want == c].mean(0).numpy(), centres[c], atol=0.15)
    pooled = s.sample(2000, torch.Generator().manual_seed(0), labels=torch.full((2000,), 3))
    np.testing.assert_allclose(pooled.mean(0).numpy(), X.mean(0), atol=0.3)
    again = sampler_from_state(s.get_state())
    assert torch.equal(
        again.sample(20, torch.Generator().manual_seed(1), labels=want[:20]),
        s.sample(20, torch.Generator().manual_seed(1), labels=want[:20]),
    )
    with pytest.raises(GenlabError, match="pass one label per code"):
        s.sample(3)
    with pytest.raises(GenlabError, match="pass one label per code"):
        make_latent_sampler("per_class").fit(torch.from_numpy(X))
