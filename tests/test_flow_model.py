"""The ``flow`` model: the likelihood convention against genlab's diagonal Gaussian (oracle),
exact codec, sampling, temperature, conditioning, ActNorm initialisation and resume,
persistence, scikit-learn tools and input errors."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

import genlab
from genlab import GenlabError
from genlab.likelihood import dequantize, score_generator
from genlab.models import make_model
from genlab.models.flow import Flow, FlowNetwork
from genlab.nn.flows import ActNorm
from genlab.training import load_latest


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kw):
    params = dict(n_levels=2, depth=1, width=8, n_blocks=0, preset="quick", max_steps=6, batch_size=32, device="cpu")
    params.update(kw)
    return Flow(**params)


@pytest.fixture(scope="module")
def fitted(digits):
    return tiny(max_steps=20).fit(digits.images[:200])


def test_actnorm_only_flow_equals_the_diagonal_gaussian_model(digits):
    X = digits.images[:300]
    net = FlowNetwork((1, 8, 8), n_levels=1, depth=0).double()
    u = dequantize(X, score_generator(), dtype=torch.float64)
    net.flow.initialize(u - 0.5)
    ours = net.log_prob_unit(u, None).detach().numpy()
    gauss = make_model("gaussian", covariance_type="diag", reg_covar=0.0, dtype="float64", device="cpu").fit(X)
    np.testing.assert_allclose(ours, gauss.score_samples(X), rtol=1e-10, atol=1e-8)


def test_score_samples_follows_the_likelihood_convention(fitted, digits):
    X = digits.images[:40]
    net = fitted.network_
    with torch.no_grad():
        ref = net.log_prob_unit(dequantize(X, score_generator()), None).double().numpy()
    ll = fitted.score_samples(X)
    np.testing.assert_allclose(ll, ref, rtol=1e-6)
    assert fitted.bits_per_dim(X) == pytest.approx(float(genlab.likelihood.bits_per_dim(ll.mean(), 64)))
    assert Flow.likelihood == "exact" and fitted.likelihood == "exact"
    assert tiny(dequantization="variational").likelihood == "bound"


def test_training_improves_held_out_bits_per_dim(digits):
    X, Xt = digits.images[:600], digits.images[1000:1200]
    short = tiny(max_steps=1, warmup_steps=0, data_space="linear").fit(X)
    longer = tiny(max_steps=150, lr=3e-3, width=16, n_blocks=1, data_space="linear").fit(X)
    assert longer.bits_per_dim(Xt) < short.bits_per_dim(Xt) - 1.0
    # the histogram data space (the default) is a better first layer: lower held-out bits/dim
    # at the same training, and training still improves on it
    hist_short = tiny(max_steps=1, warmup_steps=0).fit(X)
    hist = tiny(max_steps=150, lr=3e-3, width=16, n_blocks=1).fit(X)
    assert hist.data_space == "histogram" and hist.pixel_edges_.shape == (257,)
    assert hist.bits_per_dim(Xt) < min(longer.bits_per_dim(Xt), hist_short.bits_per_dim(Xt) - 0.1)


def test_histogram_data_space_scores_the_exact_log_jacobian_of_its_map(digits):
    """log p(u) = log p_flow(x) + sum log|dx/du|: the map's part checked against central
    differences of the map itself in float64 (it is elementwise, so its Jacobian is diagonal)."""
    model = tiny(max_steps=3).fit(digits.images[:300])
    net = model.network_.double()
    X = digits.images[:20]
    u = dequantize(X, score_generator(), dtype=torch.float64)
    level = torch.floor(256 * u)
    u = (level + (256 * u - level).clamp(0.01, 0.99)) / 256  # keep u +- h inside its level's cell
    h = 1e-7
    slope = (net.to_flow(u + h) - net.to_flow(u - h)) / (2 * h)
    with torch.no_grad():
        flow_part = net.flow.log_prob(net.to_flow(u), None)
        total = net.log_prob_unit(u, None)
    np.testing.assert_allclose((total - flow_part).numpy(), torch.log(slope).flatten(1).sum(1).numpy(), rtol=1e-6)
    assert float(slope.min()) > 0  # monotone


def test_encode_decode_is_exact_and_reconstruct_returns_the_input(fitted, digits):
    X = digits.images[:50]
    z = fitted.encode(X)
    assert z.shape == (50, 64) and z.dtype == torch.float64
    assert torch.equal(fitted.decode(z), X)
    assert torch.equal(fitted.reconstruct(X), X)
    with pytest.raises(GenlabError, match=r"Z: expected latents of shape \(N, 64\)"):
        fitted.decode(torch.zeros(2, 10))


def test_samples_are_finite_at_temperature_one_and_temperature_shrinks_them(fitted):
    u = fitted._sample(10_000, None, torch.Generator().manual_seed(0), temperature=1.0)
    assert u.shape == (10_000, 1, 8, 8)
    eps = torch.randn(10_000, 64, generator=torch.Generator().manual_seed(0))
    raw = fitted._decode_tensor(eps, None)
    assert bool(torch.isfinite(raw).all())
    a = fitted.sample(8, seed=3)
    assert a.dtype == torch.uint8 and torch.equal(a, fitted.sample(8, seed=3))
    cold = fitted.sample(200, seed=1, temperature=0.1).float()
    warm = fitted.sample(200, seed=1, temperature=1.0).float()
    assert cold.std(0).mean() < warm.std(0).mean()
    with pytest.raises(GenlabError, match="temperature"):
        fitted.sample(2, temperature=0.0)


def test_class_conditional_flow(digits):
    X, y = digits.images[:300], digits.labels[:300]
    model = tiny(condition="label", max_steps=10).fit(X, y)
    assert model.n_classes_ == 10
    s = model.sample(6, y=3, seed=0)
    assert s.shape == (6, 1, 8, 8)
    model.sample(6, seed=0)  # labels drawn from the class frequencies
    # the marginal is the prior-weighted mixture of the exact class-conditional densities
    per_class = np.stack([model.log_likelihood_given(X[:20], np.full(20, c)) for c in range(10)])
    prior = model.class_counts_.numpy() / model.class_counts_.numpy().sum()
    ref = np.log((np.exp(per_class - per_class.max(0)) * prior[:, None]).sum(0)) + per_class.max(0)
    np.testing.assert_allclose(model.score_samples(X[:20]), ref, rtol=1e-9)
    z = model.encode(X[:5], y=y[:5])
    assert torch.equal(model.decode(z, y=y[:5]), X[:5])
    soft = np.full((5, 10), 0.1)
    assert model.decode(z, y=soft).shape == (5, 1, 8, 8)
    with pytest.raises(GenlabError, match="needs labels"):
        model.encode(X[:5])
    with pytest.raises(GenlabError, match="needs class labels"):
        tiny(condition="label").fit(X)


def test_interpolate_works_through_the_shared_tool(fitted, digits):
    from genlab.manipulate import interpolate

    X = digits.images[:2]
    path = interpolate(fitted, X[0], X[1], steps=5)
    assert path.shape == (5, 1, 8, 8)
    assert torch.equal(path[0], X[0]) and torch.equal(path[-1], X[1])


def test_variational_dequantization_trains_and_scores_a_bound(digits):
    X = digits.images[:200]
    model = tiny(dequantization="variational", dequantization_samples=2).fit(X)
    ll = model.score_samples(X[:30])
    assert ll.shape == (30,) and np.all(np.isfinite(ll))
    np.testing.assert_array_equal(ll, model.score_samples(X[:30]))  # fixed-seed draws
    assert torch.equal(model.reconstruct(X[:10]), X[:10])


def test_spline_and_checkerboard_variants_fit(digits):
    X = digits.images[:100]
    for kw in (dict(coupling="spline", n_bins=4), dict(mask="checkerboard")):
        model = tiny(**kw).fit(X)
        assert np.all(np.isfinite(model.score_samples(X[:10])))
        assert torch.equal(model.reconstruct(X[:10]), X[:10])


def test_actnorm_initialises_once_and_not_again_on_resume(digits, tmp_path, monkeypatch):
    X = digits.images[:128]
    calls = []
    original = ActNorm.initialize
    monkeypatch.setattr(ActNorm, "initialize", lambda self, x: (calls.append(1), original(self, x))[1])
    kw = dict(epochs=3, max_steps=None, batch_size=16, checkpoint_every=3)
    straight = tiny(checkpoint_dir=str(tmp_path / "a"), **kw).fit(X)
    n_actnorms = sum(isinstance(m, ActNorm) for m in straight.network_.modules())
    assert len(calls) == n_actnorms  # once each, at the first step
    calls.clear()

    class Killed(Flow):
        def _training_callbacks(self, config):
            from genlab.training import StopAfterSteps

            return [StopAfterSteps(7)]

    with pytest.raises(KeyboardInterrupt):
        Killed(**{**tiny().get_params(), "checkpoint_dir": str(tmp_path / "b"), **kw}).fit(X)
    assert len(calls) == n_actnorms
    calls.clear()
    assert load_latest(tmp_path / "b").step == 6
    resumed = tiny(checkpoint_dir=str(tmp_path / "b"), **kw).fit(X, resume=True)
    assert calls == []  # restored weights carry the initialisation
    sa, sb = straight.network_.state_dict(), resumed.network_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert straight.history_ == resumed.history_
    assert torch.equal(straight.sample(4, seed=0), resumed.sample(4, seed=0))


def test_save_load_round_trip(fitted, digits, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert type(loaded) is Flow and loaded.get_params() == fitted.get_params()
    assert all(bool(m.initialized) for m in loaded.network_.modules() if isinstance(m, ActNorm))
    np.testing.assert_array_equal(loaded.score_samples(digits.images[:20]), fitted.score_samples(digits.images[:20]))
    assert torch.equal(loaded.sample(5, seed=2, temperature=0.7), fitted.sample(5, seed=2, temperature=0.7))


def test_clone_and_cross_val_score(digits, no_warnings):
    model = tiny(max_steps=3)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    scores = cross_val_score(model, digits.images[:150].numpy(), digits.labels[:150].numpy(), cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"coupling": "additive"}, "coupling='additive'"),
        ({"mask": "random"}, "mask='random'"),
        ({"dequantization": "none"}, "dequantization='none'"),
        ({"condition": "text"}, "condition='text'"),
        ({"n_levels": 4}, "n_levels=4: the image size 8x8 must be divisible by 2\\^4"),
        ({"depth": -1}, "depth=-1 must be >= 0"),
        ({"width": 2.5}, "width=2.5 must be an integer"),
        ({"n_bins": 1}, "n_bins=1 must be >= 2"),
        ({"tail_bound": 0.0}, "tail_bound=0.0 must be > 0"),
        ({"temperature": -1.0}, "temperature=-1.0 must be > 0"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(digits, params, message):
    with pytest.raises(GenlabError, match=message):
        tiny(**params).fit(digits.images[:60])


def test_bad_input(fitted, digits):
    with pytest.raises(GenlabError, match="dtype float32"):
        fitted.score_samples(digits.images[:5].float())
    with pytest.raises(GenlabError, match="images of shape"):
        fitted.score_samples(np.zeros((3, 1, 4, 4), dtype=np.uint8))
    with pytest.raises(GenlabError, match="not class-conditional"):
        fitted.sample(3, y=1)
    with pytest.raises(GenlabError, match="must be even"):
        tiny(n_levels=None).fit(np.zeros((10, 1, 7, 7), dtype=np.uint8))
