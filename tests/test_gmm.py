"""GMM against scikit-learn's GaussianMixture (the oracle)."""

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGMM

import genlab
from genlab.likelihood import dequantize, score_generator
from genlab.models.gmm import kmeans_plusplus, lloyd


def unit(images, generator):
    return dequantize(images, generator, dtype=torch.float64).reshape(len(images), -1).numpy()


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_em_from_the_same_start_matches_sklearn(digits_split, covariance_type, dtype, rtol, no_warnings):
    train, test = digits_split
    # genlab fits on the training images dequantised with random_state=0: give sklearn the same points
    x_train = unit(train.images, torch.Generator().manual_seed(0))
    x_test = unit(test.images, score_generator())
    start = SkGMM(6, covariance_type=covariance_type, reg_covar=1e-3, max_iter=1, random_state=0).fit(x_train)
    init = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)
    common = dict(covariance_type=covariance_type, reg_covar=1e-3, max_iter=25, tol=1e-6, **init)
    ref = SkGMM(6, **common).fit(x_train)
    ours = genlab.make_model("gmm", n_components=6, dtype=dtype, random_state=0, **common).fit(train.images)
    expected = ref.score_samples(x_test)
    got = ours.score_samples(test.images)
    scale = np.abs(expected).mean()  # values cross zero: compare relative to their typical size
    assert np.max(np.abs(got - expected)) / scale < rtol
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.weights_.cpu().numpy(), ref.weights_, rtol=50 * rtol, atol=1e-7)
    assert ours.bic(test.images) == pytest.approx(ref.bic(x_test), rel=rtol)


def test_log_likelihood_with_identical_parameters_matches_sklearn(digits_split):
    train, test = digits_split
    x_train = unit(train.images, torch.Generator().manual_seed(0))
    x_test = unit(test.images, score_generator())
    ref = SkGMM(4, reg_covar=1e-2, random_state=0).fit(x_train)
    ours = genlab.make_model("gmm", n_components=4, dtype="float32").fit(train.images)
    ours.weights_ = torch.tensor(ref.weights_)
    ours.means_ = torch.tensor(ref.means_, dtype=torch.float32)
    ours.covariances_ = torch.tensor(ref.covariances_, dtype=torch.float32)
    ours.precisions_cholesky_ = torch.tensor(ref.precisions_cholesky_, dtype=torch.float32)
    np.testing.assert_allclose(ours.score_samples(test.images), ref.score_samples(x_test), rtol=1e-4)


def test_fit_reaches_sklearn_quality_from_its_own_init(digits_split, no_warnings):
    train, test = digits_split
    x_train = unit(train.images, torch.Generator().manual_seed(0))
    x_test = unit(test.images, score_generator())
    ref = SkGMM(10, reg_covar=1e-3, random_state=0).fit(x_train).score(x_test)
    ours = (
        genlab.make_model("gmm", n_components=10, reg_covar=1e-3, random_state=0).fit(train.images).score(test.images)
    )
    assert abs(ours - ref) < 0.05 * abs(ref)


def test_sampling_follows_the_mixture(no_warnings):
    # two well separated blobs, weights 0.7 / 0.3: samples reproduce weights and means
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(40, 4, (700, 1, 2, 2)), 0, 255)
    b = np.clip(rng.normal(200, 4, (300, 1, 2, 2)), 0, 255)
    x = np.concatenate([a, b]).astype(np.uint8)
    gmm = genlab.make_model("gmm", n_components=2, random_state=0).fit(x)
    s = gmm.sample(4000, seed=0).numpy().reshape(4000, -1).astype(float)
    high = s.mean(1) > 120
    assert abs(high.mean() - 0.3) < 0.03
    assert abs(s[high].mean() - 200.5) < 2 and abs(s[~high].mean() - 40.5) < 2
    assert np.mean(np.diff(high.astype(int)) != 0) > 0.2  # shuffled, not grouped by component
    assert set(gmm.predict(x[:5])) | set(gmm.predict(x[-5:])) == {0, 1}


def test_kmeans_plusplus_picks_one_centre_per_blob():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    X = (centres[:, None, :] + 0.1 * torch.randn(3, 50, 2, generator=g, dtype=torch.float64)).reshape(-1, 2)
    seeds = lloyd(X, kmeans_plusplus(X, 3, g))
    dist = torch.cdist(seeds, centres)
    assert sorted(dist.argmin(1).tolist()) == [0, 1, 2] and float(dist.min(1).values.max()) < 0.1


def test_parameter_errors_name_the_parameter(tiny_images):
    for params, msg in [
        ({"covariance_type": "tied"}, "covariance_type='tied'"),
        ({"n_components": 0}, "n_components=0"),
        ({"n_components": 500}, "larger than the number of images"),
        ({"init_params": "magic"}, "init_params='magic'"),
        ({"reg_covar": -1.0}, "reg_covar=-1.0"),
        ({"dtype": "float16"}, "dtype='float16'"),
        ({"means_init": np.zeros((2, 3))}, r"means_init: shape \(2, 3\)"),
    ]:
        with pytest.raises(genlab.GenlabError, match=msg):
            genlab.make_model("gmm", **params).fit(tiny_images)
