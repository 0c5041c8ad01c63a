"""Nearest-training-row distances: exact against brute force; copies are caught,
fresh samples are not."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from genlab.errors import GenlabError
from genlab.metrics import MemorizationResult, memorization


def test_nearest_neighbours_match_bruteforce():
    rng = np.random.default_rng(0)
    train = rng.random((500, 64), dtype=np.float32) ** 3
    samples = rng.random((120, 64), dtype=np.float32) ** 3
    test = rng.random((80, 64), dtype=np.float32) ** 3
    result = memorization(torch.from_numpy(samples), train, test)
    d = cdist(samples.astype(np.float64), train.astype(np.float64))
    np.testing.assert_array_equal(result.sample_nn_index, d.argmin(1))
    np.testing.assert_allclose(result.sample_nn_distance, d.min(1), rtol=1e-12)
    np.testing.assert_allclose(
        result.test_nn_distance, cdist(test.astype(np.float64), train.astype(np.float64)).min(1), rtol=1e-12
    )
    assert result.threshold == pytest.approx(np.quantile(result.test_nn_distance, 0.05))


def test_exact_copies_are_flagged(digits_split):
    train, test = digits_split
    x_train = train.images.reshape(len(train), -1).numpy() / 255.0
    x_test = test.images.reshape(len(test), -1).numpy() / 255.0
    # digits has a few exact duplicate images; copy rows whose image is unique in train
    _, first, counts = np.unique(x_train, axis=0, return_index=True, return_counts=True)
    picks = first[counts == 1][:50]
    result = memorization(x_train[picks], x_train, x_test)
    assert isinstance(result, MemorizationResult)
    np.testing.assert_array_equal(result.sample_nn_distance, 0.0)
    np.testing.assert_array_equal(result.sample_nn_index, picks)
    assert result.threshold > 0
    assert result.copy_fraction == 1.0
    assert set(result.worst(5)) <= set(range(50))


def test_fresh_samples_look_like_held_out_data():
    """Samples from the data distribution beat the 5% threshold about 5% of the time."""
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(6, 32))
    draw = lambda n: rng.normal(size=(n, 6)) @ basis + 0.1 * rng.normal(size=(n, 32))  # noqa: E731
    train, test, samples = draw(3000), draw(3000), draw(3000)
    result = memorization(samples, train, test, quantile=0.05)
    assert result.reference_fraction == pytest.approx(0.05, abs=1 / 3000)
    assert result.copy_fraction == pytest.approx(0.05, abs=0.02)
    # half of the samples replaced by near-copies of training rows: the metric rises accordingly
    copies = train[:1500] + 1e-3 * rng.normal(size=(1500, 32))
    mixed = memorization(np.concatenate([samples[:1500], copies]), train, test)
    assert mixed.copy_fraction == pytest.approx(0.5 + 0.5 * 0.05, abs=0.02)
    assert set(mixed.worst(100)) <= set(range(1500, 3000))


def test_worst_orders_closest_first():
    result = MemorizationResult(
        sample_nn_distance=np.array([3.0, 0.5, 2.0, 0.1]),
        sample_nn_index=np.zeros(4, dtype=np.int64),
        test_nn_distance=np.ones(4),
        threshold=1.0,
        copy_fraction=0.5,
        reference_fraction=0.0,
    )
    np.testing.assert_array_equal(result.worst(3), [3, 1, 2])
    np.testing.assert_array_equal(result.worst(10), [3, 1, 2, 0])
    assert result.summary()["copy_fraction"] == 0.5
    with pytest.raises(GenlabError, match="n=0"):
        result.worst(0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"quantile": 0.0}, "quantile=0.0"),
        ({"quantile": 1.0}, "quantile=1.0"),
        ({"test": np.ones((5, 3))}, "test: 3 features"),
        ({"samples": np.ones((2, 2, 2))}, "samples: shape"),
        ({"train": np.zeros((0, 4))}, "train: 0 rows"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"samples": np.ones((4, 4)), "train": np.ones((6, 4)), "test": np.ones((5, 4)), "quantile": 0.05}
    args.update(kwargs)
    with pytest.raises(GenlabError, match=match):
        memorization(**args)


def test_exact_where_float32_distances_are_useless():
    """Neighbours 1e-3 apart on points 1e3 from the origin: float32 GEMM distances are
    pure rounding noise there; the float64 refinement still finds the true nearest rows."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(5, 16)) * 1e3
    draw = lambda n: centres[rng.integers(0, 5, n)] + 1e-3 * rng.normal(size=(n, 16))  # noqa: E731
    train, samples, test = draw(300), draw(100), draw(50)
    result = memorization(samples, train, test)
    d = cdist(samples, train)
    np.testing.assert_array_equal(result.sample_nn_index, d.argmin(1))
    np.testing.assert_allclose(result.sample_nn_distance, d.min(1), rtol=1e-9)
