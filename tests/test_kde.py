"""KDE against the exact float64 value computed independently with NumPy/SciPy."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.model_selection import KFold
from sklearn.neighbors import KernelDensity as SkKDE

import genlab
from genlab.likelihood import dequantize, score_generator
from genlab.models.kde import kde_log_density, rule_of_thumb_bandwidth


def exact_reference(queries: np.ndarray, train: np.ndarray, h: float) -> np.ndarray:
    """log((1/n) Σ N(x; xᵢ, h² I)) in float64 from explicit differences."""
    d2 = ((queries[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    d = train.shape[1]
    return logsumexp(-d2 / (2 * h * h), axis=1) - np.log(len(train)) - 0.5 * d * np.log(2 * np.pi * h * h)


@pytest.mark.parametrize("h", [0.02, 0.1, 0.5])
@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-6), ("float64", 1e-11)])
def test_score_is_exact_on_digits(digits_split, h, dtype, rtol):
    train, test = digits_split
    model = genlab.make_model("kde", bandwidth=h, dtype=dtype).fit(train.images)
    T = model.training_data_.double().cpu().numpy()  # on the model's device (cuda under "auto")
    Q = (
        dequantize(test.images, score_generator(), dtype=model.training_data_.dtype)
        .reshape(len(test), -1)
        .double()
        .numpy()
    )
    np.testing.assert_allclose(model.score_samples(test.images), exact_reference(Q, T, h), rtol=rtol)


def test_exact_in_784_dimensions_where_trees_fail():
    rng = np.random.default_rng(0)
    T = torch.from_numpy(rng.random((600, 784), dtype=np.float32) ** 4)
    Q = torch.from_numpy(rng.random((50, 784), dtype=np.float32) ** 4)
    for h in (0.05, 0.2):
        got = kde_log_density(Q, T, h).numpy()
        np.testing.assert_allclose(got, exact_reference(Q.double().numpy(), T.double().numpy(), h), rtol=1e-7)


def test_agrees_with_sklearn_in_two_dimensions():
    rng = np.random.default_rng(1)
    T = rng.normal(size=(400, 2)) * [1.0, 0.3]
    Q = rng.normal(size=(100, 2))
    sk = SkKDE(bandwidth=0.3, atol=0, rtol=0).fit(T).score_samples(Q)
    ours = kde_log_density(torch.from_numpy(Q), torch.from_numpy(T), 0.3).numpy()
    np.testing.assert_allclose(ours, sk, rtol=1e-9)


def test_bandwidth_cross_validation_picks_the_best_held_out_grid_point(digits_split):
    train, _ = digits_split
    grid = [0.03, 0.06, 0.1, 0.2]
    model = genlab.make_model("kde", bandwidth="cv", bandwidth_grid=grid, cv=3, random_state=4).fit(train.images)
    X = model.training_data_.double().cpu().numpy()
    manual = []
    for h in grid:
        folds = KFold(3, shuffle=True, random_state=4).split(X)
        manual.append(np.mean([exact_reference(X[te], X[tr], h).mean() for tr, te in folds]))
    np.testing.assert_allclose(model.cv_results_["mean_test_score"], manual, rtol=1e-6)
    assert model.bandwidth_ == grid[int(np.argmax(manual))]


def test_default_cv_refines_around_the_best(digits_split):
    train, test = digits_split
    model = genlab.make_model("kde").fit(train.images[:400])
    res = model.cv_results_
    assert len(res["bandwidth"]) == 42 and np.all(np.diff(res["bandwidth"]) >= 0)
    assert model.bandwidth_ == res["bandwidth"][np.argmax(res["mean_test_score"])]
    assert 0.01 < model.bandwidth_ < 0.5


def test_rules_of_thumb():
    X = torch.rand(1000, 4, dtype=torch.float64)
    sigma = float(X.var(0).mean().sqrt())
    assert rule_of_thumb_bandwidth(X, "scott") == pytest.approx(sigma * 1000 ** (-1 / 8))
    assert rule_of_thumb_bandwidth(X, "silverman") == pytest.approx(sigma * (1000 * 6 / 4) ** (-1 / 8))


def test_samples_copy_training_images_at_small_bandwidth(digits_split):
    # the overfitting lesson in one assert: a narrow KDE hands back its training set
    train, _ = digits_split
    model = genlab.make_model("kde", bandwidth=1e-3).fit(train.images)
    s = model.sample(50, seed=0).reshape(50, -1).int()
    t = train.images.reshape(len(train), -1).int()
    nearest = torch.cdist(s.float(), t.float()).min(1).values
    assert float(nearest.max()) < 8.0  # pixel units over 64 pixels; distinct digits are ~100s apart


def test_bad_bandwidth(tiny_images):
    with pytest.raises(genlab.GenlabError, match="bandwidth='wide'"):
        genlab.make_model("kde", bandwidth="wide").fit(tiny_images)
    with pytest.raises(genlab.GenlabError, match="bandwidth=0"):
        genlab.make_model("kde", bandwidth=0).fit(tiny_images)
    with pytest.raises(genlab.GenlabError, match="bandwidth_grid"):
        genlab.make_model("kde", bandwidth_grid=[0.1, -1]).fit(tiny_images)
