"""Has the generator learned the training data by heart? Nearest-training-neighbour distances.

A model that memorises returns (near-)copies of training images: its samples sit
closer to some training row than fresh real images do. The yardstick is the held-out
test set: for each test row the distance to its nearest training row says how close an
*unseen* real image typically comes to the training set. The ``quantile`` (default 5 %)
of those distances is a threshold that only that share of unseen real images beat; the
share of generated samples beating it (``copy_fraction``) should then be about
``quantile`` too. Much more means copying; ``worst(n)`` shows the suspects.

This is the nearest-neighbour copy test behind e.g. Meehan, Chaudhuri & Dasgupta 2020
("A non-parametric test to detect data-copying in generative models", AISTATS), which
compares generated-to-train with test-to-train distances, and the near-duplicate search
of Carlini et al. 2023 ("Extracting training data from diffusion models").

Distances are exact L2 nearest neighbours in the given feature space (pixels or
evaluator features): float32 GEMM candidates re-checked in float64 (see ``_neighbours``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GenlabError
from ..models.validation import check_float, check_int
from ._neighbours import as_features, check_same_width, knn, prepare


@dataclass
class MemorizationResult:
    """Nearest-training-row distances of samples and of held-out test rows.

    Attributes
    ----------
    sample_nn_distance : (N,) float64, L2 distance of each sample to its nearest training row.
    sample_nn_index : (N,) int64, index of that training row.
    test_nn_distance : (T,) float64, the same for each held-out real test row.
    threshold : float, the ``quantile``-quantile of ``test_nn_distance`` (linear interpolation).
    copy_fraction : float, share of samples with ``sample_nn_distance < threshold``.
    reference_fraction : float, share of test rows below the threshold (≈ ``quantile``).
    quantile : float, the quantile used.
    """

    sample_nn_distance: np.ndarray
    sample_nn_index: np.ndarray
    test_nn_distance: np.ndarray
    threshold: float
    copy_fraction: float
    reference_fraction: float
    quantile: float = field(default=0.05)

    def worst(self, n: int = 16) -> np.ndarray:
        """Indices (n,) of the n samples closest to the training set, closest first."""
        n = min(check_int("n", n, minimum=1), self.sample_nn_distance.shape[0])
        return np.argsort(self.sample_nn_distance, kind="stable")[:n]

    def summary(self) -> dict[str, float]:
        """The scalar results, for reports and JSON."""
        return {
            "copy_fraction": self.copy_fraction,
            "reference_fraction": self.reference_fraction,
            "threshold": self.threshold,
            "quantile": self.quantile,
            "median_sample_nn_distance": float(np.median(self.sample_nn_distance)),
            "median_test_nn_distance": float(np.median(self.test_nn_distance)),
        }


def memorization(samples: Any, train: Any, test: Any, quantile: float = 0.05) -> MemorizationResult:
    """Compare generated samples' distances to the training set with held-out real rows'.

    Parameters
    ----------
    samples : (N, F) generated rows (flattened pixels or features).
    train : (n_train, F) the model's training rows.
    test : (T, F) real rows the model never saw, from the same distribution.
    quantile : float in (0, 1), share of test rows that defines "suspiciously close".

    Returns
    -------
    MemorizationResult (distances in the features' own units).
    """
    quantile = check_float("quantile", quantile, minimum=0.0, exclusive=True, maximum=1.0)
    if quantile >= 1.0:
        raise GenlabError(f"quantile={quantile} must be < 1")
    train_t = as_features(train, "train")
    samples_t = as_features(samples, "samples", device=train_t.device)
    test_t = as_features(test, "test", device=train_t.device)
    check_same_width(train_t, samples_t, "train", "samples")
    check_same_width(train_t, test_t, "train", "test")
    train_rows, sample_rows, test_rows = prepare(train_t, samples_t, test_t, names=("train", "samples", "test"))
    sample_d2, sample_idx = knn(sample_rows, train_rows, 1)
    test_d2, _ = knn(test_rows, train_rows, 1)
    sample_dist = sample_d2[:, 0].sqrt().cpu().numpy()
    test_dist = test_d2[:, 0].sqrt().cpu().numpy()
    threshold = float(np.quantile(test_dist, quantile))
    return MemorizationResult(
        sample_nn_distance=sample_dist,
        sample_nn_index=sample_idx[:, 0].cpu().numpy(),
        test_nn_distance=test_dist,
        threshold=threshold,
        copy_fraction=float(np.mean(sample_dist < threshold)),
        reference_fraction=float(np.mean(test_dist < threshold)),
        quantile=quantile,
    )
