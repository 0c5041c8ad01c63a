import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

import genlab
from genlab.likelihood import dequantize, score_generator


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_matches_scipy_multivariate_normal(digits_split, covariance_type):
    train, test = digits_split
    model = genlab.make_model("gaussian", covariance_type=covariance_type, reg_covar=1e-4, dtype="float64").fit(
        train.images
    )
    X = dequantize(train.images, torch.Generator().manual_seed(0), dtype=torch.float64).reshape(len(train), -1).numpy()
    Q = dequantize(test.images, score_generator(), dtype=torch.float64).reshape(len(test), -1).numpy()
    cov = np.cov(X, rowvar=False, bias=True)
    if covariance_type == "diag":
        cov = np.diag(np.diag(cov))
    cov += 1e-4 * np.eye(cov.shape[0])
    ref = multivariate_normal(X.mean(0), cov).logpdf(Q)
    np.testing.assert_allclose(model.score_samples(test.images), ref, rtol=1e-9)


def test_samples_have_the_data_mean(digits):
    model = genlab.make_model("gaussian").fit(digits.images)
    s = model.sample(5000, seed=0).double().mean(0)
    assert float((s - digits.images.double().mean(0)).abs().mean()) < 6  # clipping at 0 biases a little
