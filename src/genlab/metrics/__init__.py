"""Sample-quality metrics on feature matrices (N, F): pixels or evaluator features.

* :mod:`.frechet` — Fréchet distance between fitted Gaussians (the math of FID).
* :mod:`.prdc` — precision/recall (Kynkäänniemi et al. 2019), density/coverage
  (Naeem et al. 2020).
* :mod:`.memorization` — distances of samples to their nearest training row versus
  held-out real rows: is the model copying its training set?
* :mod:`.intrinsic_dim` — MLE (Levina & Bickel) and PCA intrinsic dimension.
* :mod:`.classes` — class histogram, entropy (nats), conditional accuracy.
* :mod:`.kid` — kernel distance (unbiased MMD², KID) and bootstrap confidence intervals.
* :mod:`.pixels` — pixel-value histograms: total-variation distance, exact-background and
  faint-pixel shares.

Every function takes NumPy arrays or torch tensors, computes in torch on the input's
device with bounded memory, and returns Python floats, NumPy arrays or dataclasses.
"""

from .classes import class_entropy, class_histogram, conditional_accuracy
from .frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from .intrinsic_dim import intrinsic_dimension_report, mle_intrinsic_dimension, pca_dimension
from .kid import bootstrap_intervals, kernel_distance, mmd2_unbiased
from .memorization import MemorizationResult, memorization
from .pixels import pixel_histogram, pixel_metrics, total_variation
from .prdc import density_coverage, precision_recall, prdc

__all__ = [
    "gaussian_statistics",
    "frechet_distance_from_statistics",
    "frechet_distance",
    "precision_recall",
    "density_coverage",
    "prdc",
    "memorization",
    "MemorizationResult",
    "mle_intrinsic_dimension",
    "pca_dimension",
    "intrinsic_dimension_report",
    "class_histogram",
    "class_entropy",
    "conditional_accuracy",
    "mmd2_unbiased",
    "kernel_distance",
    "bootstrap_intervals",
    "pixel_histogram",
    "pixel_metrics",
    "total_variation",
]
