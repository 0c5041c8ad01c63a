"""WAE: every divergence pulls the codes towards N(0, I), reconstructions, samplers,
no likelihood, conditioning and hyper-parameter errors."""

import numpy as np
import pytest
import torch

import genlab
from genlab import GenlabError
from genlab.divergences import mmd_imq
from genlab.models.wae import DEFAULT_REG_WEIGHTS, WAE


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kw):
    params = dict(
        latent_dim=4,
        width=8,
        n_blocks=0,
        latent_components=2,
        preset="quick",
        max_steps=20,
        batch_size=32,
        device="cpu",
    )
    params.update(kw)
    return WAE(**params)


@pytest.mark.parametrize("divergence", ["mmd", "sliced", "cw"])
def test_the_penalty_pulls_the_codes_towards_the_prior(digits, divergence):
    """Against the same autoencoder without the penalty (λ = 0): the training codes end
    closer to N(0, I) by MMD, and their mean and covariance closer to 0 and I."""
    X = digits.images[:400]
    kw = dict(divergence=divergence, max_steps=250, lr=3e-3, warmup_steps=0, val_fraction=0.0)
    plain = tiny(reg_weight=0.0, **kw).fit(X)
    wae = tiny(**kw).fit(X)
    prior = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))

    def distance(model):
        z = model.encode(X)
        return float(mmd_imq(z, prior)), float(torch.linalg.matrix_norm(torch.cov(z.T) - torch.eye(4))) + float(
            z.mean(0).norm()
        )

    (mmd_plain, moments_plain), (mmd_wae, moments_wae) = distance(plain), distance(wae)
    assert mmd_wae < 0.5 * mmd_plain
    assert moments_wae < moments_plain
    assert wae.history_[-1][f"train_{divergence}"] < wae.history_[0][f"train_{divergence}"]


def test_overfits_a_batch_and_reconstructs(digits):
    X = digits.images[:16]
    kw = dict(batch_size=16, val_fraction=0.0, lr=3e-3, warmup_steps=0, width=16)
    err = lambda m: float(((m.reconstruct(X).float() - X.float()) / 255).pow(2).mean())  # noqa: E731
    assert err(tiny(max_steps=300, **kw).fit(X)) < 0.3 * err(tiny(max_steps=1, **kw).fit(X))


def test_no_likelihood_and_both_samplers(digits, tmp_path):
    X = digits.images[:96]
    model = tiny().fit(X)
    assert type(model).likelihood == "none"
    with pytest.raises(GenlabError, match="has no likelihood"):
        model.score_samples(X[:3])
    assert model.latent_sampler_.kind == "gmm"
    s = model.sample(6, seed=1)
    assert s.dtype == torch.uint8 and s.shape == (6, 1, 8, 8) and torch.equal(s, model.sample(6, seed=1))
    prior = tiny(latent_sampler="prior").fit(X)
    torch.testing.assert_close(
        prior.sample_codes(5, seed=0, temperature=1.0), torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    )
    model.save(tmp_path / "w")
    loaded = genlab.load_model(tmp_path / "w")
    assert torch.equal(loaded.sample(6, seed=1), s)
    assert loaded.divergence == "mmd" and loaded.network_.reg_weight == DEFAULT_REG_WEIGHTS["mmd"]


def test_conditional_wae(digits):
    train = digits.subset(np.arange(300))
    model = tiny(condition="label").fit(train.images, train.labels)
    assert model.conditional and model.n_classes_ == 10
    assert model.sample(4, y=3, seed=0).shape == (4, 1, 8, 8)
    with pytest.raises(GenlabError, match="label 10 is unknown"):
        model.sample(1, y=10)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"divergence": "kl"}, "divergence='kl' is not valid"),
        ({"reg_weight": -1.0}, "reg_weight=-1.0 must be >= 0"),
        ({"n_projections": 0}, "n_projections=0 must be >= 1"),
        ({"batch_size": 1}, "batch_size=1 must be >= 2"),
        ({"condition": "text"}, "condition='text'"),
        ({"latent_sampler": "vamp"}, "latent_sampler='vamp'"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(digits, params, message):
    with pytest.raises(GenlabError, match=message):
        tiny(**params).fit(digits.images[:60])
