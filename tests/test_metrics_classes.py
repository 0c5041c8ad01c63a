"""Class histogram, entropy (nats) and conditional accuracy on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics import class_entropy, class_histogram, conditional_accuracy


def test_histogram_counts_every_class_including_empty_ones():
    counts = class_histogram(torch.tensor([0, 2, 2, 3, 3, 3]), n_classes=5)
    np.testing.assert_array_equal(counts, [1, 0, 2, 3, 0])
    assert counts.dtype == np.int64


def test_entropy_known_values():
    assert class_entropy([5, 5]) == pytest.approx(math.log(2))
    assert class_entropy([10, 0, 0]) == 0.0
    assert class_entropy(np.full(10, 7)) == pytest.approx(math.log(10))
    # p = (1/2, 1/4, 1/4): H = ln 2 / 2 + 2 · ln 4 / 4 = 1.5 ln 2
    assert class_entropy(np.array([2, 1, 1])) == pytest.approx(1.5 * math.log(2))
    assert class_entropy(np.array([0.5, 0.25, 0.25])) == pytest.approx(1.5 * math.log(2))


def test_normalized_entropy():
    assert class_entropy(np.full(10, 3), normalized=True) == pytest.approx(1.0)
    assert class_entropy([4, 0, 0, 0], normalized=True) == 0.0
    assert class_entropy([2, 1, 1], normalized=True) == pytest.approx(1.5 * math.log(2) / math.log(3))
    with pytest.raises(GenlabError, match="at least 2 classes"):
        class_entropy([3], normalized=True)


def test_mode_collapse_lowers_entropy():
    rng = np.random.default_rng(0)
    balanced = class_histogram(rng.integers(0, 10, 5000), 10)
    collapsed = class_histogram(rng.integers(0, 3, 5000), 10)
    assert class_entropy(balanced, normalized=True) > 0.99
    assert class_entropy(collapsed, normalized=True) == pytest.approx(math.log(3) / math.log(10), abs=0.01)


def test_conditional_accuracy():
    assert conditional_accuracy([1, 2, 3, 4], np.array([1, 2, 0, 4])) == 0.75
    assert conditional_accuracy(torch.tensor([0, 0]), torch.tensor([1, 1])) == 0.0
    assert conditional_accuracy(np.array([2.0, 3.0]), [2, 3]) == 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: class_histogram([0, 5], 5), "predicted_labels: label 5"),
        (lambda: class_histogram([0, -1], 5), "predicted_labels: negative"),
        (lambda: class_histogram([0.5], 5), "predicted_labels: labels must be integers"),
        (lambda: class_histogram([[0, 1]], 5), "predicted_labels: shape"),
        (lambda: class_histogram([0, 1], 0), "n_classes=0"),
        (lambda: class_entropy([0, 0]), "counts: all zero"),
        (lambda: class_entropy([1, -1]), "counts: must be finite and non-negative"),
        (lambda: conditional_accuracy([0, 1, 2], [0, 1]), "requested: 2 labels, but predicted has 3"),
        (lambda: conditional_accuracy([], []), "predicted: no labels"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(GenlabError, match=match):
        call()
