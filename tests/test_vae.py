"""VAE / CVAE: decoder likelihoods (normalised, against SciPy), the ELBO/IWAE math on a
linear-Gaussian model with a known log p(x), training behaviour, conditioning,
persistence of the latent sampler, resume and hyper-parameter errors."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import logistic, multivariate_normal, truncnorm
from torch import nn

import genlab
from genlab import GenlabError
from genlab.likelihood import dequantize, score_generator
from genlab.models.vae import VAE
from genlab.nn.likelihoods import ContinuousBernoulli, DiscretizedLogistic, TruncatedGaussian, make_likelihood
from genlab.training import load_latest


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kw):
    params = dict(
        latent_dim=2,
        width=8,
        n_blocks=0,
        latent_components=2,
        preset="quick",
        max_steps=20,
        batch_size=32,
        device="cpu",
    )
    params.update(kw)
    return VAE(**params)


# ---------------------------------------------------------------------- likelihoods
ETAS = [-300.0, -40.0, -3.0, -1e-3, 0.0, 2e-3, 1.5, 25.0, 300.0]


def raw(eta):
    """Decoder output r with sinh(r) = η (the continuous Bernoulli's parameterisation)."""
    return torch.asinh(torch.as_tensor(eta, dtype=torch.float64))


def test_continuous_bernoulli_is_a_normalised_density_matching_its_definition():
    cb = ContinuousBernoulli()
    for eta in ETAS:
        r = raw([eta])
        torch.testing.assert_close(cb.natural(r), torch.tensor([eta], dtype=torch.float64))
        p = lambda u: math.exp(float(cb.log_density(torch.tensor([u], dtype=torch.float64), r)))  # noqa: E731
        total = integrate.quad(p, 0, 1, points=[1e-3, 1 - 1e-3], limit=200)[0]
        assert total == pytest.approx(1.0, abs=1e-6), eta
        mean = integrate.quad(lambda u: u * p(u), 0, 1, points=[1e-3, 1 - 1e-3], limit=200)[0]
        assert float(cb.mean(r)) == pytest.approx(mean, abs=1e-6)
    # Loaiza-Ganem & Cunningham's form C(λ) λ^u (1-λ)^(1-u), λ = sigmoid(η), away from λ = 1/2
    u = np.linspace(0.01, 0.99, 7)
    for eta in (-3.0, 1.5):
        lam = 1 / (1 + math.exp(-eta))
        c = 2 * math.atanh(1 - 2 * lam) / (1 - 2 * lam)
        ref = np.log(c) + u * np.log(lam) + (1 - u) * np.log(1 - lam)
        got = cb.log_density(torch.from_numpy(u), raw([eta] * 7)).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    # float32 stays finite at extreme logits
    assert torch.isfinite(cb.log_density(torch.rand(100), torch.linspace(-50, 50, 100))).all()


def test_continuous_bernoulli_samples_follow_the_cdf():
    cb = ContinuousBernoulli()
    g = torch.Generator().manual_seed(0)
    for eta in (-30.0, 0.0, 4.0):
        x = cb.sample(raw([eta] * 20000), g).numpy()
        assert x.min() >= 0 and x.max() <= 1
        assert x.mean() == pytest.approx(float(cb.mean(raw([eta]))), abs=0.01)


def two_params(a, b, n=1):
    """(n, 2): the two parameter "channels" of one pixel (dim 1 holds mean, log-scale)."""
    return torch.tensor([[a, b]], dtype=torch.float64).expand(n, 2)


def test_truncated_gaussian_matches_scipy_and_integrates_to_one():
    tg = TruncatedGaussian()
    for mu, log_sigma in ((0.5, -2.0), (-0.3, -3.0), (1.4, -1.0), (0.02, -6.5), (0.9, 1.0)):
        sigma = math.exp(log_sigma)
        ref = truncnorm((0 - mu) / sigma, (1 - mu) / sigma, loc=mu, scale=sigma)
        u = np.linspace(0.001, 0.999, 9)
        got = tg.log_density(torch.from_numpy(u)[:, None], two_params(mu, log_sigma, 9)).numpy()[:, 0]
        np.testing.assert_allclose(got, ref.logpdf(u), rtol=1e-8, atol=1e-8)

        def p(x):
            return math.exp(float(tg.log_density(torch.tensor([[x]], dtype=torch.float64), two_params(mu, log_sigma))))

        assert integrate.quad(p, 0, 1, points=[min(max(mu, 0.0), 1.0)], limit=200)[0] == pytest.approx(1.0, abs=1e-6)
        assert float(tg.mean(two_params(mu, log_sigma))) == pytest.approx(ref.mean(), abs=1e-7)
    draws = tg.sample(two_params(0.2, -1.0, 20000), torch.Generator().manual_seed(0))
    ref = truncnorm(-0.2 / math.exp(-1), 0.8 / math.exp(-1), loc=0.2, scale=math.exp(-1))
    assert float(draws.mean()) == pytest.approx(ref.mean(), abs=0.01)


def test_discretized_logistic_bins_sum_to_one_and_match_scipy():
    dl = DiscretizedLogistic()
    x = torch.arange(256, dtype=torch.float64)[:, None]
    for mu, log_s in ((0.5, -3.0), (0.001, -6.0), (0.999, -5.0), (-2.0, 0.5), (0.3, -7.0)):
        params = two_params(mu, log_s, 256)
        logp = dl.log_bin_prob(x, params)[:, 0]
        assert float(torch.logsumexp(logp, 0).exp()) == pytest.approx(1.0, abs=1e-9)
        edges = np.arange(257) / 256.0
        cdf, sf = logistic.cdf(edges, loc=mu, scale=math.exp(log_s)), logistic.sf(edges, loc=mu, scale=math.exp(log_s))
        cdf[0], cdf[-1], sf[0], sf[-1] = 0.0, 1.0, 1.0, 0.0
        ref = np.where(edges[:-1] < mu, np.diff(cdf), -np.diff(sf))  # no cancellation in either tail
        mask = ref > 1e-200
        np.testing.assert_allclose(np.exp(logp.numpy())[mask], ref[mask], rtol=1e-6, atol=1e-300)
        # the unit-cube density is 256 P(x) anywhere inside the pixel's cell
        u = (x + torch.rand(256, 1, dtype=torch.float64)) / 256
        torch.testing.assert_close(dl.log_density(u, params)[:, 0], logp + math.log(256))
    # sampling then quantising gives every cell its probability
    params = two_params(0.5, -3.5, 50000)
    cells = torch.floor(dl.sample(params, torch.Generator().manual_seed(0))[:, 0] * 256).clamp(0, 255)
    p = dl.log_bin_prob(torch.tensor([[128.0]], dtype=torch.float64), params[:1]).exp()
    assert float((cells == 128).double().mean()) == pytest.approx(float(p), abs=0.01)


def test_unknown_likelihood_names_the_parameter():
    with pytest.raises(GenlabError, match="decoder_likelihood='poisson'"):
        make_likelihood("poisson")


# ---------------------------------------------------------------------- ELBO / IWAE math
class LinearGaussianNetwork(nn.Module):
    """z ~ N(0, I_2), u | z ~ N(W z + b, s² I) (its mass outside [0, 1] is ~1e-30), and a
    Gaussian q(z | u) = N(A (u - b) + shift, diag var): with A, var set to the exact
    posterior every importance weight equals p(u)."""

    def __init__(self, W, b, s, A, var, shift):
        super().__init__()
        self.W, self.b, self.s = W, b, s
        self.A, self.var, self.shift = A, var, shift
        self.lik = TruncatedGaussian()
        self.anchor = nn.Parameter(torch.zeros(1))

    def posterior(self, u, onehot):
        r = u.flatten(1).double() - self.b
        mean = r @ self.A.T + self.shift
        return mean, torch.log(self.var).expand_as(mean)

    def decode_raw(self, z, onehot):
        mean = z.double() @ self.W.T + self.b
        log_s = torch.full_like(mean, math.log(self.s))
        return torch.cat([mean, log_s], 1).reshape(len(z), 2, 8, 8)


def linear_gaussian_case(exact_posterior, seed=0):
    rng = np.random.default_rng(seed)
    D, d, s = 64, 2, 0.02
    W = torch.from_numpy(rng.standard_normal((D, d)) * 0.03)
    if exact_posterior:  # orthogonal columns: the exact posterior covariance is diagonal, so q can equal it
        q, _ = torch.linalg.qr(W)
        W = q * torch.tensor([0.24, 0.16], dtype=torch.float64)
    b = torch.from_numpy(0.5 + 0.1 * rng.standard_normal(D))
    # exact posterior of the linear-Gaussian model: cov = (I + WᵀW/s²)⁻¹, mean = cov Wᵀ (u - b) / s²
    cov = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + W.T @ W / s**2)
    A = cov @ W.T / s**2
    std = torch.diagonal(cov).sqrt()
    if exact_posterior:
        var, shift = torch.diagonal(cov).clone(), torch.zeros(d, dtype=torch.float64)
    else:  # a wrong q: too wide and shifted by half a posterior standard deviation
        var, shift = torch.diagonal(cov) * 2.0, 0.5 * std * torch.tensor([1.0, -1.0], dtype=torch.float64)
    # images drawn from the model itself (so log p is moderate), quantised to uint8
    z = torch.from_numpy(rng.standard_normal((12, d)))
    u = z @ W.T + b + s * torch.from_numpy(rng.standard_normal((12, D)))
    images = torch.clamp(torch.floor(u * 256), 0, 255).to(torch.uint8).reshape(12, 1, 8, 8)
    return W, b, s, A, var, shift, cov, images


def make_linear_model(exact_posterior, digits):
    W, b, s, A, var, shift, cov, images = linear_gaussian_case(exact_posterior)
    model = tiny(max_steps=1).fit(digits.images[:40])
    model.network_ = LinearGaussianNetwork(W, b, s, A, var, shift)
    return model, W, b, s, cov, images


def exact_log_p(images, W, b, s):
    # the model sees float32 pixels; the same values in float64 make the comparison exact
    u = dequantize(torch.as_tensor(images), score_generator()).double().flatten(1).numpy()
    cov = (W @ W.T).numpy() + s**2 * np.eye(W.shape[0])
    return multivariate_normal(b.numpy(), cov).logpdf(u)


def test_with_the_exact_posterior_elbo_iwae_and_log_p_coincide(digits):
    """With q(z|u) = p(z|u) every importance weight equals p(u), whatever z is drawn."""
    model, W, b, s, cov, X = make_linear_model(True, digits)
    assert abs(float(cov[0, 1])) < 1e-12
    ref = exact_log_p(X, W, b, s)
    np.testing.assert_allclose(model.elbo(X, k=3), ref, rtol=1e-9)
    np.testing.assert_allclose(model.iwae_bound(X, k=3), ref, rtol=1e-9)
    np.testing.assert_allclose(model.score_samples(X), ref, rtol=1e-9)


def test_elbo_below_iwae_below_log_p_and_iwae_tightens_with_k(digits):
    model, W, b, s, cov, X = make_linear_model(False, digits)
    ref = exact_log_p(X, W, b, s)
    elbo = model.elbo(X, k=4000)
    iwae = {k: model.iwae_bound(X, k=k) for k in (1, 10, 5000)}
    assert np.all(elbo <= iwae[5000])
    np.testing.assert_allclose(iwae[1], model.elbo(X, k=1), rtol=1e-12)  # k = 1 is the ELBO
    assert np.mean(iwae[1]) < np.mean(iwae[10]) < np.mean(iwae[5000]) <= np.mean(ref) + 0.01
    assert np.all(iwae[5000] <= ref + 0.02)
    assert np.mean(ref - iwae[5000]) < 0.02 < 0.1 < np.mean(ref - elbo)
    # the ELBO in closed form: log p(u) - KL(q || exact posterior)
    net = model.network_
    u = dequantize(torch.as_tensor(X), score_generator()).double()
    q_mean, q_logvar = net.posterior(u, None)
    p_mean = (u.flatten(1) - b) @ (cov @ W.T / s**2).T
    q_cov = torch.diag_embed(q_logvar.exp())
    inv = torch.linalg.inv(cov)
    diff = q_mean - p_mean
    kl = 0.5 * (
        torch.einsum("ij,nji->n", inv, q_cov)
        - 2
        + torch.einsum("ni,ij,nj->n", diff, inv, diff)
        + torch.logdet(cov)
        - torch.logdet(q_cov)
    )
    np.testing.assert_allclose(elbo, ref - kl.numpy(), atol=0.05)


def test_score_samples_is_iwae_with_iwae_samples(digits):
    model = tiny(iwae_samples=7).fit(digits.images[:64])
    X = digits.images[200:210]
    np.testing.assert_allclose(model.score_samples(X), model.iwae_bound(X, k=7), rtol=1e-12)
    np.testing.assert_allclose(model.score_samples(X), model.score_samples(X), rtol=0)  # reproducible
    assert np.all(model.elbo(X, k=7) <= model.iwae_bound(X, k=7) + 1e-9)


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "logistic"])
def test_overfits_a_batch_of_16_digits(digits, likelihood):
    X = digits.images[:16]
    kw = dict(
        latent_dim=4,
        width=16,
        batch_size=16,
        val_fraction=0.0,
        decoder_likelihood=likelihood,
        lr=3e-3,
        warmup_steps=0,
        latent_components=2,
    )
    untrained = tiny(max_steps=1, **kw).fit(X)
    trained = tiny(max_steps=300, **kw).fit(X)
    err = lambda m: float(((m.reconstruct(X).float() - X.float()) / 255).pow(2).mean())  # noqa: E731
    assert err(trained) < 0.3 * err(untrained)
    hist = trained.history_
    assert hist[-1]["train_rec_nats"] > hist[0]["train_rec_nats"] + 50


def test_codec_shapes_and_sampler_kinds(digits):
    X = digits.images[:64]
    model = tiny().fit(X)
    codes = model.encode(X[:5])
    assert codes.shape == (5, 2) and codes.dtype == torch.float32
    images = model.decode(codes)
    assert images.dtype == torch.uint8 and images.shape == (5, 1, 8, 8)
    assert torch.equal(model.reconstruct(X[:5]), images)
    assert model.latent_sampler_.kind == "gmm" and model.latent_sampler_.n_components == 2
    prior = tiny(latent_sampler="prior").fit(X)
    assert prior.latent_sampler_.kind == "prior"
    noisy = tiny(pixel_noise=True).fit(X)
    assert not torch.equal(noisy.sample(4, seed=0), noisy.decode(noisy.sample_codes(4, seed=0)))
    # per-draw overrides of the latent sampler and its temperature
    torch.testing.assert_close(
        model.sample_codes(5, seed=0, sampler="prior", temperature=0.5),
        0.5 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0)),
    )
    assert torch.equal(
        model.sample(5, seed=0, sampler="prior", temperature=1.0, tone_curve=False),  # decode rounds plainly
        model.decode(torch.randn(5, 2, generator=torch.Generator().manual_seed(0))),
    )
    assert torch.equal(
        model.sample(5, seed=0, temperature=0.5, tone_curve=False),
        model.decode(model.sample_codes(5, seed=0, temperature=0.5)),
    )
    assert not torch.equal(model.sample_codes(5, seed=0, temperature=0.5), model.sample_codes(5, seed=0))
    with pytest.raises(GenlabError, match="sampler='gmm': this model was fitted with latent_sampler='prior'"):
        prior.sample(2, sampler="gmm")
    with pytest.raises(GenlabError, match="temperature=0"):
        model.sample(2, temperature=0)
    with pytest.raises(GenlabError, match=r"Z: expected codes of shape \(N, 2\)"):
        model.decode(np.zeros((3, 5)))
    with pytest.raises(GenlabError, match="not class-conditional"):
        model.encode(X[:2], y=[1, 2])


def test_save_load_keeps_the_latent_sampler(digits, tmp_path):
    model = tiny(latent_components=3).fit(digits.images[:64])
    model.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    for key in ("weights_", "means_", "covariances_"):
        assert torch.equal(loaded.latent_sampler_state_["fitted"][key], model.latent_sampler_state_["fitted"][key])
    assert torch.equal(loaded.sample_codes(6, seed=2), model.sample_codes(6, seed=2))
    assert torch.equal(loaded.sample(6, seed=2), model.sample(6, seed=2))
    torch.testing.assert_close(loaded.encode(digits.images[:4]), model.encode(digits.images[:4]))


# ---------------------------------------------------------------------- conditional
def test_conditional_vae_samples_the_requested_class(digits):
    train = digits.subset(np.arange(1000))
    model = VAE(
        condition="label",
        latent_dim=4,
        width=16,
        n_blocks=0,
        latent_components=4,
        preset="quick",
        max_steps=300,
        device="cpu",
        lr=2e-3,
    )
    assert model.conditional
    model.fit(train)  # labels taken from the Dataset
    assert model.n_classes_ == 10 and model.class_prior_.shape == (10,)
    assert model.latent_sampler_.kind == "per_class"  # codes drawn from p(z | y)
    assert model.sample_codes(4, y=[0, 1, 2, 3], seed=0).shape == (4, 4)
    samples = model.sample(200, y=np.repeat(np.arange(10), 20), seed=0)
    # nearest class mean (in pixels) of the real digits: a crude classifier, ~90% on real data
    x = train.images.flatten(1).double()
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    predicted = torch.cdist(samples.flatten(1).double(), means).argmin(1)
    accuracy = float((predicted == torch.from_numpy(np.repeat(np.arange(10), 20))).double().mean())
    assert accuracy > 0.85, accuracy
    assert model.sample(3, y=7, seed=1).shape == (3, 1, 8, 8)
    assert torch.equal(model.sample(5, seed=3), model.sample(5, seed=3))  # labels drawn from p(y)
    with pytest.raises(GenlabError, match="label 12 is unknown; the model knows labels 0..9"):
        model.sample(2, y=12)
    with pytest.raises(GenlabError, match="needs labels y"):
        model.encode(train.images[:3])
    ll = model.score_samples(train.images[:4])
    assert ll.shape == (4,) and np.all(np.isfinite(ll))
    assert np.all(
        model.elbo(train.images[:4], y=train.labels[:4])
        <= model.iwae_bound(train.images[:4], y=train.labels[:4]) + 1e-9
    )


def test_conditional_vae_needs_labels(digits):
    with pytest.raises(GenlabError, match="condition='label' needs class labels"):
        tiny(condition="label").fit(digits.images[:50])


# ---------------------------------------------------------------------- errors, resume
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"decoder_likelihood": "poisson"}, "decoder_likelihood='poisson'"),
        ({"beta": -1.0}, "beta=-1.0 must be >= 0"),
        ({"condition": "text"}, "condition='text' is not valid"),
        ({"latent_sampler": "flow"}, "latent_sampler='flow'"),
        ({"latent_dim": 0}, "latent_dim=0 must be >= 1"),
        ({"width": 2.5}, "width=2.5 must be an integer"),
        ({"n_blocks": -1}, "n_blocks=-1 must be >= 0"),
        ({"norm": "weird"}, "norm='weird'"),
        ({"iwae_samples": 0}, "iwae_samples=0 must be >= 1"),
        ({"pixel_noise": "yes"}, "pixel_noise='yes'"),
        ({"latent_components": 500}, "latent_components=500 is larger than the number of codes"),
        ({"latent_temperature": -1.0}, "latent_temperature=-1.0 must be > 0"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(digits, params, message):
    with pytest.raises(GenlabError, match=message):
        tiny(**params).fit(digits.images[:60])


def test_resume_continues_the_run_exactly(digits, tmp_path):
    X = digits.images[:96]
    kw = dict(epochs=3, max_steps=None, batch_size=16, checkpoint_every=3)
    straight = tiny(checkpoint_dir=str(tmp_path / "a"), **kw).fit(X)

    class Killed(VAE):
        def _training_callbacks(self, config):
            from genlab.training import StopAfterSteps

            return [StopAfterSteps(7)]

    with pytest.raises(KeyboardInterrupt):
        Killed(**{**tiny().get_params(), "checkpoint_dir": str(tmp_path / "b"), **kw}).fit(X)
    assert load_latest(tmp_path / "b").step == 6
    resumed = tiny(checkpoint_dir=str(tmp_path / "b"), **kw).fit(X, resume=True)
    sa, sb = straight.network_.state_dict(), resumed.network_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert straight.history_ == resumed.history_
    assert torch.equal(straight.sample(4, seed=0), resumed.sample(4, seed=0))
